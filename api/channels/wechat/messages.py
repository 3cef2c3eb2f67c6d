"""What WeChat sends (XML → `Incoming`, coordinates checked) and what we send back (cut to WeChat's byte limits)."""
from __future__ import annotations

import threading
import time
import unicodedata
from dataclasses import dataclass

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from routing.geocode import usable_coordinates


@dataclass
class Incoming:
    openid: str
    msg_type: str
    create_time: str
    msg_id: str | None
    text: str | None = None
    lat: float | None = None
    lng: float | None = None
    event: str | None = None

    @property
    def dedupe_key(self) -> str:
        return f"msg:{self.msg_id}" if self.msg_id else f"evt:{self.openid}:{self.create_time}:{self.event or ''}"


def _coordinates(lat_text: str | None, lng_text: str | None) -> tuple[float, float]:
    # float() takes "nan", "inf" and "1e999"; SQLite stored NaN as NULL, which later crashed every direct filing of
    # that citizen's texts (review H1). Anything but a real point on the globe is refused.
    try:
        lat, lng = float(lat_text), float(lng_text)    # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError("location needs numeric coordinates") from None
    if not usable_coordinates(lat, lng):
        raise ValueError("location coordinates must be finite, latitude within ±90 and longitude within ±180")
    return lat, lng


def parse_message(xml: bytes) -> Incoming:
    try:
        root = ElementTree.fromstring(xml, forbid_dtd=True)
    except DefusedXmlException:
        raise ValueError("XML with entity or DTD declarations is refused") from None
    except ElementTree.ParseError as exc:
        raise ValueError(f"malformed XML ({exc})") from None

    def field(name: str) -> str | None:
        node = root.find(name)
        return node.text if node is not None and node.text is not None else None

    msg_type = (field("MsgType") or "").lower()
    incoming = Incoming(openid=field("FromUserName") or "", msg_type=msg_type, create_time=field("CreateTime") or "",
                        msg_id=field("MsgId"), event=(field("Event") or "").lower() or None)
    if not incoming.openid or not msg_type:
        raise ValueError("FromUserName and MsgType are required")
    if msg_type == "text":
        incoming.text = field("Content")
    elif msg_type == "voice":
        incoming.text = field("Recognition")          # may be empty: WeChat is withdrawing voice recognition
    elif msg_type == "location":
        incoming.lat, incoming.lng = _coordinates(field("Location_X"), field("Location_Y"))
    elif msg_type == "event" and incoming.event == "location":
        incoming.lat, incoming.lng = _coordinates(field("Latitude"), field("Longitude"))
    return incoming


WECHAT_TEXT_BYTES = 2048        # the customer-service API's limit for one text message


WECHAT_REPLIES_PER_MESSAGE = 5  # what we allow ourselves per citizen message (WeChat caps replies per 48 h)


_CUT_MARK = "……（内容较长，已截断）"


class ReplyChoices:
    """The numbered choices last offered to each WeChat user (buttons have no equivalent there), so a reply of
    "2" can be sent to the assistant as the second button's payload. In memory, bounded, forgotten after 30 min."""

    def __init__(self, ttl_s: float = 1800.0, max_users: int = 10_000):
        self.ttl_s, self.max_users = ttl_s, max_users
        self._choices: dict[str, tuple[float, list[str]]] = {}
        self._lock = threading.Lock()

    def offer(self, openid: str, payloads: list[str]) -> None:
        with self._lock:
            self._choices.pop(openid, None)
            if payloads:
                self._choices[openid] = (time.monotonic() + self.ttl_s, payloads)
                while len(self._choices) > self.max_users:       # dicts keep insertion order: drop the oldest
                    self._choices.pop(next(iter(self._choices)))

    def resolve(self, openid: str, text: str) -> str:
        with self._lock:
            expires, payloads = self._choices.get(openid, (0.0, []))
        number = unicodedata.normalize("NFKC", text).strip().rstrip(".、。")   # "２" typed full-width is 2
        if time.monotonic() < expires and number.isascii() and number.isdigit() and 1 <= int(number) <= len(payloads):
            return payloads[int(number) - 1]
        return text


def _split_bytes(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` UTF-8 bytes, cut after a line or sentence end when one is near."""
    pieces = []
    while len(text.encode()) > limit:
        fits = max(1, len(text.encode()[:limit].decode("utf-8", "ignore")))   # whole characters only
        cut = max(text.rfind(mark, 0, fits) for mark in "\n。！？；!?;")
        cut = cut + 1 if cut >= fits // 2 else fits
        if text[:cut].strip():
            pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text.strip():
        pieces.append(text)
    return pieces


def wechat_replies(messages: list[dict]) -> tuple[list[str], list[str]]:
    """The assistant's messages as WeChat text messages, and the payloads of the numbered choices offered.
    Text only: charts (`custom`) and images are dropped, buttons become numbered lines; short messages are
    joined, long ones split at 2,048 bytes, and at most 5 go out."""
    parts, payloads = [], []
    for message in messages:
        lines = [message["text"]] if message.get("text") else []
        for button in message.get("buttons") or []:
            payloads.append(button["payload"])
            lines.append(f"{len(payloads)}. {button['title']}")
        if message.get("buttons"):
            lines.append("（回复序号即可选择）")
        if lines:
            parts.append("\n".join(lines))
    texts = _split_bytes("\n\n".join(parts), WECHAT_TEXT_BYTES)
    if len(texts) > WECHAT_REPLIES_PER_MESSAGE:
        room = WECHAT_TEXT_BYTES - len(_CUT_MARK.encode())
        last = texts[WECHAT_REPLIES_PER_MESSAGE - 1].encode()[:room].decode("utf-8", "ignore")
        texts = texts[:WECHAT_REPLIES_PER_MESSAGE - 1] + [last.rstrip() + _CUT_MARK]
    return texts, payloads

