"""WeChat official-account (公众号) callback: verification, plaintext and safe (AES) mode, message intake.

WeChat waits 5 s and retries up to 3 times, so the callback stores the message (deduplicated by MsgId, or
FromUserName+CreateTime for events), answers "success" at once, and afterwards relays text and recognised voice
to the assistant (Rasa), sending its answers back through the customer-service message API (`WeChatSender`); when
the assistant is unavailable the message is filed as an order directly. A text is kept with its delivery until it is
settled (relayed, filed or refused): a filing that fails is retried by the app's worker (`file_due`) and listed for
staff (GET /api/v1/wechat/unfiled), so nothing a citizen sent is lost. Facts: ../shared/docs/offline-stack.md.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import logging
import math
import secrets
import struct
import threading
import time
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Protocol

import httpx
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException
from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Query, Request, Response
from sqlalchemy import Float, Index, Integer, String, Text, select
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Mapped, mapped_column

from api.assistant_client import AssistantUnavailable, clean_message, get_assistant
from api.orders_views import Principal, require_scope
from api.staff import AuditRecord
from api.work_views import centre_only
from hotline.core.db import Base, UTCDateTime, transaction
from nlp.normalize import InputError
from nlp.pii import mask_pii
from orders.intake import file_complaint
from orders.models import utcnow
from orders.outbox import backoff_seconds
from orders.service import WECHAT_SCOPE, Actor, IdempotencyConflict, find_by_idempotency_key
from routing.geocode import GeoPoint

log = logging.getLogger("hotline.wechat")
router = APIRouter(tags=["wechat"])
MAX_BODY_BYTES = 64 * 1024
BLOCK = 32   # WeChat pads to a multiple of 32 bytes (PKCS#7 with block size 32)


class WeChatMessage(Base):
    """Every delivery we accepted, keyed so a retry of the same message is recognised."""

    __tablename__ = "wechat_messages"
    __table_args__ = (Index("ix_wechat_filing_due", "filing", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(String(128), unique=True)
    openid: Mapped[str] = mapped_column(String(64), index=True)
    msg_type: Mapped[str] = mapped_column(String(16))
    order_no: Mapped[str | None] = mapped_column(String(32))
    lat: Mapped[float | None] = mapped_column(Float)      # location messages: GCJ-02 as WeChat sends them
    lng: Mapped[float | None] = mapped_column(Float)
    received_at: Mapped[object] = mapped_column(UTCDateTime(), default=utcnow)
    # A text or voice message's words, kept until the message is settled, and where its filing stands (FILING):
    # a filing that fails must leave the message recoverable, not only a traceback in the log (review H1).
    text: Mapped[str | None] = mapped_column(Text)
    filing: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(300))


# received: stored, with the assistant or being filed (the worker files it once overdue: its process died);
# pending: a direct filing failed, retried with backoff; failed: out of attempts, for staff to retry;
# relayed / filed / refused: settled, the text is dropped (the order, if any, holds it).
FILING = ("received", "pending", "failed", "relayed", "filed", "refused")
UNSETTLED = ("received", "pending", "failed")
FILING_MAX_ATTEMPTS = 8
FILING_BACKOFF_S = 30.0                     # 30 s, 1 min, 2 min … about two hours over the eight attempts
RELAY_GRACE = dt.timedelta(minutes=10)      # far beyond the assistant's timeout: a text still unsettled was orphaned
HOLDING_REPLY = "您的诉求已收到，正在登记，登记后会把工单号发给您。"


# -- signatures and safe mode ----------------------------------------------------------------------------
def signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def signature_ok(expected: str | None, *parts: str) -> bool:
    # Bytes: compare_digest refuses str with non-ASCII characters (a TypeError, i.e. a 500, on a forged signature).
    return bool(expected) and hmac.compare_digest(signature(*parts).encode(), expected.encode())


def _aes_key(encoding_aes_key: str) -> bytes:
    key = base64.b64decode(encoding_aes_key + "=")
    if len(key) != 32:
        raise ValueError("EncodingAESKey must be 43 characters (32 bytes once decoded)")
    return key


def encrypt(message: str, *, encoding_aes_key: str, app_id: str) -> str:
    """Safe-mode encryption (replies and tests): 16 random bytes ‖ length ‖ message ‖ AppId, AES-256-CBC."""
    key = _aes_key(encoding_aes_key)
    body = message.encode()
    plain = secrets.token_bytes(16) + struct.pack(">I", len(body)) + body + app_id.encode()
    pad = BLOCK - len(plain) % BLOCK
    plain += bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def decrypt(ciphertext: str, *, encoding_aes_key: str, app_id: str) -> str:
    key = _aes_key(encoding_aes_key)
    try:
        raw = base64.b64decode(ciphertext, validate=True)
    except ValueError:
        raise ValueError("Encrypt is not base64") from None
    if not raw or len(raw) % 16:
        raise ValueError("Encrypt has a bad length")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(raw) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
        raise ValueError("bad padding")
    plain = plain[:-pad]
    length = struct.unpack(">I", plain[16:20])[0]
    message, sender = plain[20:20 + length], plain[20 + length:]
    if not hmac.compare_digest(sender, app_id.encode()):
        raise ValueError("message was encrypted for another AppId")
    return message.decode()


# -- the outbound side -----------------------------------------------------------------------------------
class WeChatSender(Protocol):
    def send_text(self, openid: str, text: str) -> None: ...


class HttpWeChatSender:
    """Customer-service messages through WeChat's API; the access token is refreshed here and only here."""

    API = "https://api.weixin.qq.com/cgi-bin"

    def __init__(self, app_id: str, app_secret: str, *, client: httpx.Client | None = None):
        self.app_id, self.app_secret = app_id, app_secret
        self._client = client or httpx.Client(timeout=5.0)
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def _access_token(self) -> str:
        with self._lock:
            if self._token and self._token[1] > time.monotonic() + 60:
                return self._token[0]
            response = self._client.get(f"{self.API}/token", params={"grant_type": "client_credential",
                                                                     "appid": self.app_id, "secret": self.app_secret})
            data = response.json()
            if "access_token" not in data:
                raise RuntimeError(f"WeChat token refused: errcode {data.get('errcode')}")
            self._token = (data["access_token"], time.monotonic() + float(data.get("expires_in", 7200)))
            return self._token[0]

    def send_text(self, openid: str, text: str) -> None:
        response = self._client.post(f"{self.API}/message/custom/send", params={"access_token": self._access_token()},
                                     json={"touser": openid, "msgtype": "text", "text": {"content": text}})
        data = response.json()
        if data.get("errcode", 0) != 0:
            raise RuntimeError(f"WeChat send refused: errcode {data.get('errcode')}")


class UnconfiguredSender:
    """Without an AppSecret no reply can be sent: say so in the log instead of failing the intake."""

    def send_text(self, openid: str, text: str) -> None:
        log.warning("WeChat reply not sent (HOTLINE_WECHAT_APP_ID/APP_SECRET not configured)")


class RecordingSender:
    """Test double of the outbound API: keeps what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def send_text(self, openid: str, text: str) -> None:
        with self._lock:
            self.sent.append((openid, text))


# -- the callback ----------------------------------------------------------------------------------------
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


def usable_coordinates(lat: object, lng: object) -> bool:
    return (isinstance(lat, (int, float)) and isinstance(lng, (int, float)) and math.isfinite(lat)
            and math.isfinite(lng) and -90 <= lat <= 90 and -180 <= lng <= 180)


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


def _check_timestamp(timestamp: str, settings) -> None:
    """A signed callback is valid only near its own time: refuse a replay of an old (or far-future) signed URL."""
    window = settings.wechat_timestamp_window_s
    if not window:
        return
    try:
        stamp = int(timestamp)
    except ValueError:
        raise HTTPException(403, "timestamp is not a number") from None
    if abs(time.time() - stamp) > window:
        raise HTTPException(403, f"timestamp outside the {window} s window (replayed or clock skew)")


def _settings(request: Request):
    settings = request.app.state.settings
    if not settings.wechat_token:
        raise HTTPException(404, "WeChat channel is not configured")
    return settings


@router.get("/wechat/callback")
def verify(request: Request, signature_: str = Query(alias="signature"), timestamp: str = Query(),
           nonce: str = Query(), echostr: str = Query()) -> Response:
    settings = _settings(request)
    if not signature_ok(signature_, settings.wechat_token, timestamp, nonce):
        raise HTTPException(403, "signature mismatch")
    _check_timestamp(timestamp, settings)
    return Response(echostr, media_type="text/plain")


@router.post("/wechat/callback")
async def receive(request: Request, background: BackgroundTasks, timestamp: str = Query(), nonce: str = Query(),
                  signature_: str | None = Query(default=None, alias="signature"),
                  encrypt_type: str | None = Query(default=None), msg_signature: str | None = Query(default=None)
                  ) -> Response:
    settings = _settings(request)
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise HTTPException(413, "message too large")
    try:
        if encrypt_type == "aes":
            envelope = ElementTree.fromstring(body, forbid_dtd=True)
            encrypted = envelope.findtext("Encrypt") or ""
            if not signature_ok(msg_signature, settings.wechat_token, timestamp, nonce, encrypted):
                raise HTTPException(403, "signature mismatch")
            xml = _decrypt_any(encrypted, settings).encode()
        else:
            if not signature_ok(signature_, settings.wechat_token, timestamp, nonce):
                raise HTTPException(403, "signature mismatch")
            xml = body
        _check_timestamp(timestamp, settings)
        incoming = parse_message(xml)
    except (ValueError, DefusedXmlException, ElementTree.ParseError) as exc:
        raise HTTPException(400, f"unreadable WeChat message: {exc}") from None
    reply = await _accept(request, incoming)
    if reply is not None:
        background.add_task(*reply)
    return Response("success", media_type="text/plain")


def _decrypt_any(encrypted: str, settings) -> str:
    """The current EncodingAESKey, then the previous one (kept valid while WeChat rotates it)."""
    problem = None
    for key in filter(None, (settings.wechat_aes_key, settings.wechat_aes_key_previous)):
        try:
            return decrypt(encrypted, encoding_aes_key=key, app_id=settings.wechat_app_id or "")
        except ValueError as exc:
            problem = exc
    raise ValueError(f"cannot decrypt: {problem or 'no EncodingAESKey configured'}")


def stored_message(incoming: Incoming, *, now: dt.datetime) -> WeChatMessage:
    """The row kept for a delivery; a text to relay or file is kept with it until settled."""
    row = WeChatMessage(dedupe_key=incoming.dedupe_key, openid=incoming.openid, msg_type=incoming.msg_type,
                        lat=incoming.lat, lng=incoming.lng, received_at=now, attempts=0)
    if incoming.msg_type in {"text", "voice"} and (incoming.text or "").strip():
        row.text, row.filing, row.next_attempt_at = incoming.text, "received", now + RELAY_GRACE
    return row


async def _accept(request: Request, incoming: Incoming):
    """Store the delivery once; return the slow follow-up work (a background task) or None."""
    from fastapi.concurrency import run_in_threadpool

    sessions = request.app.state.sessions

    def store():
        try:
            with transaction(sessions) as session:
                session.add(stored_message(incoming, now=utcnow()))
        except IntegrityError:
            return False
        return True

    if not await run_in_threadpool(store):
        request.app.state.metrics.wechat_duplicates.inc()
        return None
    sender = request.app.state.wechat_sender
    if incoming.msg_type in {"text", "voice"}:
        if not (incoming.text or "").strip():
            return (sender.send_text, incoming.openid, "抱歉，没有识别到语音内容，请用文字描述您的诉求。")
        return (_answer_through_assistant, request.app, incoming)
    if incoming.msg_type == "location" or (incoming.msg_type == "event" and incoming.event == "location"):
        if incoming.msg_type == "location":
            return (sender.send_text, incoming.openid, "已收到您的位置，请接着用文字描述要反映的问题。")
        return None
    if incoming.msg_type == "event" and incoming.event == "subscribe":
        return (sender.send_text, incoming.openid, "欢迎关注12345市民热线。直接发送文字即可反映诉求，发送位置可帮助我们定位。")
    return (sender.send_text, incoming.openid, "目前仅支持文字、语音和位置消息。")


def _last_location(sessions, openid: str):
    with sessions() as session:
        row = session.scalar(select(WeChatMessage).where(WeChatMessage.openid == openid, WeChatMessage.msg_type == "location")
                             .order_by(WeChatMessage.id.desc()).limit(1))
        # Rows stored before coordinates were checked may hold NULL (a NaN) or 999: no location, not a crash.
        return (row.lat, row.lng) if row and usable_coordinates(row.lat, row.lng) else None


def _problem(exc: BaseException) -> str:
    """One masked line for the message row, the staff list and the log: a database error's full text carries the
    statement's parameters, i.e. the complaint."""
    lines = str(exc).strip().splitlines()
    return mask_pii(f"{type(exc).__name__}: {lines[0] if lines else ''}")[:300]


def _settle(session, key: str, filing: str, *, order_no: str | None = None, error: str | None = None) -> None:
    row = session.scalar(select(WeChatMessage).where(WeChatMessage.dedupe_key == key))
    if row is not None:
        row.filing, row.text, row.next_attempt_at, row.last_error = filing, None, None, error
        row.order_no = order_no or row.order_no


def _record_failure(sessions, key: str, attempts: int, problem: str, now: dt.datetime) -> None:
    try:
        with transaction(sessions) as session:
            row = session.scalar(select(WeChatMessage).where(WeChatMessage.dedupe_key == key))
            if row is None:
                return
            row.attempts, row.last_error = attempts, problem
            if attempts >= FILING_MAX_ATTEMPTS:
                row.filing, row.next_attempt_at = "failed", None
            else:
                row.filing = "pending"
                row.next_attempt_at = now + dt.timedelta(seconds=backoff_seconds(attempts, FILING_BACKOFF_S))
    except Exception:  # the database itself is down: the row stays unsettled and the worker finds it when overdue
        log.exception("WeChat message %s: its failed filing could not be recorded", key)


def _send(sender, openid: str, text: str) -> None:
    try:
        sender.send_text(openid, text)
    except Exception:  # the order is kept; the reply can be retried by the outbox (issue 3, not built yet)
        log.exception("WeChat reply failed")


def _route(router_, text: str, point):
    """The router's answer and the point it used. Routing that breaks, even without the point, leaves the order
    unrouted (agents route it from the intake queue): it never stops the filing."""
    if router_ is None:
        return None, point
    for attempt in ((point, None) if point is not None else (None,)):
        try:
            return router_.route(text, attempt), attempt
        except InputError:
            raise
        except Exception as exc:  # any fault of the router: file without it
            log.error("routing a WeChat message%s failed: %s", " with its location" if attempt else "", _problem(exc),
                      exc_info=not isinstance(exc, StatementError))
    return None, None


def _file_order(app, incoming: Incoming) -> str:
    """After the 5-second answer: create the order (idempotent on the MsgId), route it, reply to the citizen."""
    return _file(app, key=incoming.dedupe_key, openid=incoming.openid, text=incoming.text or "", attempts=0)


def _file(app, *, key: str, openid: str, text: str, attempts: int, now: dt.datetime | None = None) -> str:
    """File one message as an order and answer the citizen; returns where its filing stands. Whatever goes wrong is
    recorded on the message (retried with backoff by `file_due`, listed for staff), and the citizen is told at the
    first failure that the complaint was received."""
    sessions, sender, router_ = app.state.sessions, app.state.wechat_sender, app.state.router
    try:
        point = None
        location = _last_location(sessions, openid)
        if location:
            point = GeoPoint(location[0], location[1], "gcj02")   # WeChat's location message uses GCJ-02
        routing, point = _route(router_, text, point)
        try:
            lat_lng = point.to_wgs84() if point else (None, None)
        except Exception as exc:  # a point that cannot be converted is dropped, not the complaint
            log.error("WeChat location not converted: %s", _problem(exc))
            lat_lng = (None, None)
        with transaction(sessions) as session:
            order, created = file_complaint(session, text=text, channel="wechat", actor=Actor("wechat", "system"),
                                            caller_openid=openid, lat=lat_lng[0], lng=lat_lng[1], idempotency_key=key,
                                            idempotency_scope=WECHAT_SCOPE,   # the channel's own keys (L12)
                                            routing=routing, routing_model=router_.embedder_note if router_ else None,
                                            auto_dispatch=app.state.settings.auto_dispatch)
            order_no = order.order_no
            _settle(session, key, "filed", order_no=order_no)
    except IdempotencyConflict:
        # The assistant's complaint form already filed an order for this very message (it uses the MsgId as its
        # key) and then answered too late: no second order; the citizen gets that order's number.
        with transaction(sessions) as session:
            filed = find_by_idempotency_key(session, key=key, scope=WECHAT_SCOPE)
            order_no = filed.order_no if filed else None
            _settle(session, key, "filed", order_no=order_no)
        if order_no:
            _send(sender, openid, f"您的诉求已登记，工单号 {order_no}。回复工单号可查询进度。")
        return "filed"
    except InputError as exc:
        with transaction(sessions) as session:
            _settle(session, key, "refused", error=str(exc)[:300])
        _send(sender, openid, f"抱歉，您的消息无法受理：{exc}")
        return "refused"
    except Exception as exc:  # anything else: keep the message for a retry, never drop it (review H1)
        problem = _problem(exc)
        log.error("WeChat message %s not filed (attempt %d of %d): %s", key, attempts + 1, FILING_MAX_ATTEMPTS,
                  problem, exc_info=not isinstance(exc, StatementError))
        _record_failure(sessions, key, attempts + 1, problem, now or utcnow())
        if attempts == 0:
            _send(sender, openid, HOLDING_REPLY)
        return "failed" if attempts + 1 >= FILING_MAX_ATTEMPTS else "pending"
    if not created:
        return "filed"   # another delivery of the same message already filed (and answered) it
    if routing is not None and (routing.get("department") or {}).get("code"):   # a listed unit, not one to confirm
        reply = (f"您的诉求已登记，工单号 {order_no}。拟由{routing['department']['name']}办理，"
                 f"办理时限 {routing.get('time_limit_days') or '按规定'} 个工作日。回复工单号可查询进度。")
    else:
        reply = f"您的诉求已登记，工单号 {order_no}，我们会尽快分派办理。"
    _send(sender, openid, reply)
    return "filed"


def file_due(app, *, now: dt.datetime | None = None, limit: int = 20) -> int:
    """One round of the app's worker: file the messages whose filing failed and is due again, and texts that a
    dead process left unsettled. Returns how many were attempted."""
    now = now or utcnow()
    with app.state.sessions() as session:
        due = session.execute(select(WeChatMessage.dedupe_key, WeChatMessage.openid, WeChatMessage.text,
                                     WeChatMessage.attempts)
                              .where(WeChatMessage.filing.in_(("received", "pending")),
                                     WeChatMessage.next_attempt_at <= now)
                              .order_by(WeChatMessage.id).limit(limit)).all()
    for key, openid, text, attempts in due:
        _file(app, key=key, openid=openid, text=text or "", attempts=attempts or 0, now=now)
    return len(due)


# -- staff: messages not (yet) filed ------------------------------------------------------------------------
def _unfiled_json(row: WeChatMessage) -> dict:
    def iso(moment):
        return moment.isoformat() if moment else None   # aware UTC (UTCDateTime)

    return {"id": row.id, "openid": row.openid, "msg_type": row.msg_type, "text": mask_pii(row.text or ""),
            "received_at": iso(row.received_at), "filing": row.filing, "attempts": row.attempts,
            "next_attempt_at": iso(row.next_attempt_at), "last_error": row.last_error, "order_no": row.order_no}


def _centre_staff(principal: Principal) -> None:
    centre_only(principal)


@router.get("/api/v1/wechat/unfiled")
def unfiled(request: Request, principal: Annotated[Principal, Depends(require_scope("orders:read"))],
            limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    """WeChat messages whose filing failed (pending: retried automatically; failed: out of attempts) or that are
    overdue, oldest first, text masked. An agent files them by hand or retries them."""
    _centre_staff(principal)
    with request.app.state.sessions() as session:
        query = (select(WeChatMessage).where(WeChatMessage.filing.in_(("pending", "failed")) |
                                             ((WeChatMessage.filing == "received") &
                                              (WeChatMessage.next_attempt_at <= utcnow())))
                 .order_by(WeChatMessage.id))
        rows = list(session.scalars(query.limit(limit)))
        return {"total": len(rows), "items": [_unfiled_json(row) for row in rows]}


@router.post("/api/v1/wechat/unfiled/{message_id}/retry")
def retry_unfiled(message_id: int, request: Request,
                  principal: Annotated[Principal, Depends(require_scope("orders:write"))]) -> dict:
    """File an unsettled message now (after the fault is fixed); idempotent, a filed message is never filed twice."""
    _centre_staff(principal)
    with request.app.state.sessions() as session:
        row = session.get(WeChatMessage, message_id)
        if row is None:
            raise HTTPException(404, f"no WeChat message {message_id}")
        if row.filing not in UNSETTLED:
            raise HTTPException(409, f"WeChat message {message_id} is {row.filing or 'not a text'}: nothing to file")
        key, openid, text, attempts = row.dedupe_key, row.openid, row.text or "", row.attempts or 0
    with transaction(request.app.state.sessions) as session:
        session.add(AuditRecord(actor=principal.name[:64], action="wechat_retry",
                                client=request.client.host if request.client else None,
                                detail={"message_id": message_id, "dedupe_key": key}))
    _file(request.app, key=key, openid=openid, text=text, attempts=attempts)
    with request.app.state.sessions() as session:
        return _unfiled_json(session.get(WeChatMessage, message_id))


# -- text through the assistant ----------------------------------------------------------------------------
def _relayed(sessions, key: str) -> None:
    """The assistant has the message (and files any order itself): settled, its text is not kept."""
    try:
        with transaction(sessions) as session:
            _settle(session, key, "relayed")
    except Exception:  # left unsettled, the worker files it as an order later: a needless order at worst, no loss
        log.exception("WeChat message %s: relay not recorded", key)

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


def _reply_choices(app) -> ReplyChoices:
    choices = getattr(app.state, "wechat_choices", None)
    if choices is None:
        choices = app.state.wechat_choices = ReplyChoices()
    return choices


async def _answer_through_assistant(app, incoming: Incoming) -> None:
    """After the 5-second answer: the citizen's text goes to the assistant (sender = OpenID) and its answers go
    back through the customer-service API. If the assistant is unavailable, the message is filed as an order
    directly (the behaviour before the assistant), so nothing the citizen sent is lost."""
    from fastapi.concurrency import run_in_threadpool

    sender, choices = app.state.wechat_sender, _reply_choices(app)
    # message_key: an order the assistant files on this message uses it as its Idempotency-Key, the same key as the
    # direct filing below, so a Rasa that answers too late never leads to a second order.
    metadata: dict = {"channel": "wechat", "openid": incoming.openid, "role": "citizen",
                      "message_key": incoming.dedupe_key}
    location = await run_in_threadpool(_last_location, app.state.sessions, incoming.openid)
    if location:
        metadata["location"] = {"lat": location[0], "lng": location[1], "datum": "gcj02"}
    try:
        message = choices.resolve(incoming.openid, clean_message(incoming.text or ""))
        messages = await get_assistant(app).send(sender=incoming.openid, message=message, metadata=metadata)
    except (AssistantUnavailable, ValueError) as exc:   # ValueError: over the assistant's length limit
        log.warning("WeChat message filed directly, not through the assistant: %s", exc)
        await run_in_threadpool(_file_order, app, incoming)
        return
    await run_in_threadpool(_relayed, app.state.sessions, incoming.dedupe_key)
    texts, payloads = wechat_replies(messages)
    choices.offer(incoming.openid, payloads)
    for text in texts:
        try:
            await run_in_threadpool(sender.send_text, incoming.openid, text)
        except Exception:  # the conversation state is Rasa's; a lost reply is logged, the citizen can ask again
            log.exception("WeChat reply from the assistant failed")
            return
