"""How the channels (web chat relay, WeChat) talk to the Rasa assistant: one small interface, a real HTTP client to
Rasa's REST channel and a test double that answers in the same format.

Rasa's REST channel: POST {rasa_url}/webhooks/rest/webhook {"sender", "message", "metadata"} → a list of bot
messages, each {"recipient_id", "text"?, "buttons"?: [{"title", "payload"}], "custom"?: {"chart"?, "link"?},
"image"?}.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import unicodedata
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

log = logging.getLogger("hotline.assistant")

UNAVAILABLE_MESSAGE = "助手暂时不可用，请拨打12345"
MAX_BARS = 30          # a chart with more bars is unreadable on a phone; the text answer carries the rest
MAX_MESSAGE_CHARS = 2000
# Rasa's answer to one turn, read at most this far (a few messages with buttons and a chart are a few KB); a longer
# one is refused like any other broken answer (review 2026-12-06, L5: a 9 MB reply was relayed whole).
MAX_REPLY_BYTES = 256 * 1024


class AssistantUnavailable(Exception):
    """Rasa is down, timed out or answered with something that is not a list of messages."""


class AssistantClient(Protocol):
    async def send(self, *, sender: str, message: str, metadata: dict[str, Any]) -> list[dict[str, Any]]: ...


class RasaRestClient:
    """Rasa's REST webhook over HTTP, with a deadline for the whole turn and a size cap on the answer; every failure
    becomes AssistantUnavailable."""

    def __init__(self, base_url: str, *, timeout_s: float, transport: httpx.AsyncBaseTransport | None = None):
        self.url = base_url.rstrip("/") + "/webhooks/rest/webhook"
        self.timeout_s = timeout_s
        self._transport = transport

    async def _answer(self, turn: dict[str, Any]) -> bytes:
        # A client per turn: the relay and WeChat's background work may run on different event loops (tests, the
        # thread pool), and an AsyncClient must not outlive its loop. On loopback this costs well under a millisecond.
        async with httpx.AsyncClient(timeout=self.timeout_s, transport=self._transport) as http:
            async with http.stream("POST", self.url, json=turn) as response:
                if response.status_code != 200:
                    raise AssistantUnavailable(f"Rasa answered HTTP {response.status_code}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > MAX_REPLY_BYTES:
                    raise AssistantUnavailable(f"Rasa's answer is larger than {MAX_REPLY_BYTES} bytes")
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():   # decoded: a compressed answer counts as it unpacks
                    size += len(chunk)
                    if size > MAX_REPLY_BYTES:
                        raise AssistantUnavailable(f"Rasa's answer is larger than {MAX_REPLY_BYTES} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)

    async def send(self, *, sender: str, message: str, metadata: dict[str, Any]) -> list[dict[str, Any]]:
        # httpx's timeout bounds each read; a reply dripped a byte at a time held a turn 20 s with a 3 s timeout
        # (review 2026-12-06, L5). The whole turn — connect, send, every read — ends at the deadline.
        turn = {"sender": sender, "message": message, "metadata": metadata}
        try:
            body = await asyncio.wait_for(self._answer(turn), timeout=self.timeout_s)
        except (TimeoutError, httpx.TimeoutException):
            raise AssistantUnavailable(f"Rasa did not answer within {self.timeout_s} s") from None
        except httpx.HTTPError as exc:
            raise AssistantUnavailable(f"Rasa unreachable ({type(exc).__name__})") from None
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            raise AssistantUnavailable("Rasa answered with something that is not JSON") from None
        if not isinstance(payload, list):
            raise AssistantUnavailable("Rasa answered with something that is not a list of messages")
        return clean_messages(payload)


Responder = Callable[[str, str, dict[str, Any]], list[dict[str, Any]] | Awaitable[list[dict[str, Any]]]]


class ScriptedAssistant:
    """Test double: answers in Rasa's REST format with what `responder(sender, message, metadata)` returns (it may
    raise AssistantUnavailable to play a Rasa that is down) and records every turn it was sent."""

    def __init__(self, responder: Responder):
        self.responder = responder
        self.turns: list[dict[str, Any]] = []

    async def send(self, *, sender: str, message: str, metadata: dict[str, Any]) -> list[dict[str, Any]]:
        self.turns.append({"sender": sender, "message": message, "metadata": metadata})
        answer = self.responder(sender, message, metadata)
        if inspect.isawaitable(answer):
            answer = await answer
        return clean_messages(answer)


class DisabledAssistant:
    """The assistant is turned off (HOTLINE_ASSISTANT_ENABLED=false, `hotline serve --no-assistant`): nothing is
    relayed to whatever listens on the Rasa port; every turn is "unavailable" (the chat answers 503, WeChat files
    the message as an order directly)."""

    async def send(self, *, sender: str, message: str, metadata: dict[str, Any]) -> list[dict[str, Any]]:
        raise AssistantUnavailable("the assistant is turned off (--no-assistant)")


def get_assistant(app) -> AssistantClient:
    """The app's assistant client: one set on app.state.assistant (tests), else Rasa at settings.rasa_url (or no
    assistant at all when it is turned off)."""
    client = getattr(app.state, "assistant", None)
    if client is None:
        settings = app.state.settings
        if not settings.assistant_enabled:
            client = app.state.assistant = DisabledAssistant()
        else:
            client = app.state.assistant = RasaRestClient(settings.rasa_url, timeout_s=settings.assistant_timeout_s)
    return client


def clean_message(text: str) -> str:
    """What a person typed, ready for the assistant: control characters and lone surrogates (which cannot be sent
    as UTF-8) removed, tabs as spaces, ends trimmed. Raises ValueError with the reason when nothing is left or it
    is too long."""
    text = text.replace("\r\n", "\n").replace("\t", " ")
    text = "".join(ch for ch in text if ch == "\n" or unicodedata.category(ch) not in ("Cc", "Cs")).strip()
    if not text:
        raise ValueError("消息为空，请输入内容 (empty message)")
    if len(text) > MAX_MESSAGE_CHARS:
        raise ValueError(f"消息过长：{len(text)} 字，最多 {MAX_MESSAGE_CHARS} 字 (message too long)")
    return text


# -- what the channels may rely on -------------------------------------------------------------------------------
def clean_messages(payload: list[Any]) -> list[dict[str, Any]]:
    """Keep only well-formed parts of Rasa's messages, so the page and WeChat can trust their shape."""
    messages = []
    for raw in payload:
        if not isinstance(raw, dict):
            continue
        message: dict[str, Any] = {"recipient_id": str(raw.get("recipient_id", ""))}
        if isinstance(raw.get("text"), str) and raw["text"].strip():
            message["text"] = raw["text"]
        buttons = [{"title": b["title"], "payload": str(b.get("payload") or b["title"])}
                   for b in raw.get("buttons") or [] if isinstance(b, dict) and isinstance(b.get("title"), str)]
        if buttons:
            message["buttons"] = buttons
        if isinstance(raw.get("custom"), dict):
            custom = dict(raw["custom"])
            for key, clean in (("chart", clean_chart), ("link", clean_link)):
                if key in custom:
                    cleaned = clean(custom[key])
                    if cleaned is None:
                        custom.pop(key)
                        log.warning("dropped a malformed %s from the assistant", key)
                    else:
                        custom[key] = cleaned
            if custom:
                message["custom"] = custom
        if isinstance(raw.get("image"), str) and safe_image_url(raw["image"]):
            message["image"] = raw["image"]
        if len(message) > 1:
            messages.append(message)
    return messages


def safe_image_url(url: str) -> bool:
    """An http(s) URL or a relative one; never javascript:, data: or any other scheme. Whitespace and control
    characters (which browsers drop, so "java\tscript:" would run) are refused outright."""
    if not url or len(url) > 2048 or any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme:
        return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)
    return ":" not in url.split("/", 1)[0]   # "javascript%3A…" stays a path; "x:y" without a scheme is refused


def clean_link(link: Any) -> dict[str, str] | None:
    """A link to one of this site's pages {"href": "/cockpit?…", "title"}: a path only (no scheme, no other host),
    so an answer can never send a member of staff elsewhere."""
    if not isinstance(link, dict) or not isinstance(link.get("href"), str) or not isinstance(link.get("title"), str):
        return None
    href, title = link["href"], link["title"].strip()
    if not href.startswith("/") or href.startswith("//") or "\\" in href or not safe_image_url(href) or not title:
        return None
    return {"href": href, "title": title[:40]}


def clean_chart(chart: Any) -> dict[str, Any] | None:
    """A bar chart {"type": "bar", "title", "unit", "labels", "values"} with as many finite values as labels."""
    if not isinstance(chart, dict) or chart.get("type", "bar") != "bar":
        return None
    labels, values = chart.get("labels"), chart.get("values")
    if not isinstance(labels, list) or not isinstance(values, list) or len(labels) != len(values) or not labels:
        return None
    numbers = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        numbers.append(value)
    return {"type": "bar", "title": str(chart.get("title") or ""), "unit": str(chart.get("unit") or ""),
            "labels": [str(label) for label in labels[:MAX_BARS]], "values": numbers[:MAX_BARS]}
