"""The callback (verification and messages, answered within WeChat's 5 s), the relay of texts to the assistant,
and the staff's list of messages not (yet) filed."""
from __future__ import annotations

import logging
import time
from typing import Annotated

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException
from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from api.auth.staff import AuditRecord
from api.channels.assistant_client import AssistantUnavailable, clean_message, get_assistant
from api.channels.wechat.crypto import decrypt, signature_ok
from api.channels.wechat.filing import file_incoming, file_message, last_location, mark_relayed, stored_message
from api.channels.wechat.messages import Incoming, ReplyChoices, parse_message, wechat_replies
from api.channels.wechat.models import UNSETTLED, WeChatMessage
from api.deps import (
    Principal,
    SessionsDep,
    SettingsDep,
    require_scope,
)
from api.routes.work import centre_only
from api.routing_pool import run_routing
from api.schemas import RowId
from hotline.core.config import Settings
from hotline.core.db import transaction
from nlp.pii import mask_pii
from orders.models import utcnow

log = logging.getLogger("hotline.wechat")

router = APIRouter(tags=["wechat"])


MAX_BODY_BYTES = 64 * 1024


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


def configured(settings: SettingsDep) -> Settings:
    """The settings, when the WeChat channel is configured (a token); else the callback does not exist (404)."""
    if not settings.wechat_token:
        raise HTTPException(404, "WeChat channel is not configured")
    return settings


WeChatSettings = Annotated[Settings, Depends(configured)]


@router.get("/wechat/callback")
def verify(settings: WeChatSettings, signature_: str = Query(alias="signature"), timestamp: str = Query(),
           nonce: str = Query(), echostr: str = Query()) -> Response:
    if not signature_ok(signature_, settings.wechat_token, timestamp, nonce):
        raise HTTPException(403, "signature mismatch")
    _check_timestamp(timestamp, settings)
    return Response(echostr, media_type="text/plain")


@router.post("/wechat/callback")
async def receive(request: Request, settings: WeChatSettings, background: BackgroundTasks, timestamp: str = Query(), nonce: str = Query(),
                  signature_: str | None = Query(default=None, alias="signature"),
                  encrypt_type: str | None = Query(default=None), msg_signature: str | None = Query(default=None)
                  ) -> Response:
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
def unfiled(sessions: SessionsDep, principal: Annotated[Principal, Depends(require_scope("orders:read"))],
            limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    """WeChat messages whose filing failed (pending: retried automatically; failed: out of attempts) or that are
    overdue, oldest first, text masked. An agent files them by hand or retries them."""
    _centre_staff(principal)
    with sessions() as session:
        query = (select(WeChatMessage).where(WeChatMessage.filing.in_(("pending", "failed")) |
                                             ((WeChatMessage.filing == "received") &
                                              (WeChatMessage.next_attempt_at <= utcnow())))
                 .order_by(WeChatMessage.id))
        rows = list(session.scalars(query.limit(limit)))
        return {"total": len(rows), "items": [_unfiled_json(row) for row in rows]}


@router.post("/api/v1/wechat/unfiled/{message_id}/retry")
def retry_unfiled(message_id: RowId, request: Request, sessions: SessionsDep,
                  principal: Annotated[Principal, Depends(require_scope("orders:write"))]) -> dict:
    """File an unsettled message now (after the fault is fixed); idempotent, a filed message is never filed twice."""
    _centre_staff(principal)
    with sessions() as session:
        row = session.get(WeChatMessage, message_id)
        if row is None:
            raise HTTPException(404, f"no WeChat message {message_id}")
        if row.filing not in UNSETTLED:
            raise HTTPException(409, f"WeChat message {message_id} is {row.filing or 'not a text'}: nothing to file")
        key, openid, text, attempts = row.dedupe_key, row.openid, row.text or "", row.attempts or 0
    with transaction(sessions) as session:
        session.add(AuditRecord(actor=principal.name[:64], action="wechat_retry",
                                client=request.client.host if request.client else None,
                                detail={"message_id": message_id, "dedupe_key": key}))
    file_message(request.app, key=key, openid=openid, text=text, attempts=attempts)
    with sessions() as session:
        return _unfiled_json(session.get(WeChatMessage, message_id))


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
    location = await run_in_threadpool(last_location, app.state.sessions, incoming.openid)
    if location:
        metadata["location"] = {"lat": location[0], "lng": location[1], "datum": "gcj02"}
    try:
        message = choices.resolve(incoming.openid, clean_message(incoming.text or ""))
        messages = await get_assistant(app).send(sender=incoming.openid, message=message, metadata=metadata)
    except (AssistantUnavailable, ValueError) as exc:   # ValueError: over the assistant's length limit
        log.warning("WeChat message filed directly, not through the assistant: %s", exc)
        # Routing work: the routing pool's threads, not the general pool that reads and writes share.
        await run_routing(app, file_incoming, app, incoming)
        return
    await run_in_threadpool(mark_relayed, app.state.sessions, incoming.dedupe_key)
    texts, payloads = wechat_replies(messages)
    choices.offer(incoming.openid, payloads)
    for text in texts:
        try:
            await run_in_threadpool(sender.send_text, incoming.openid, text)
        except Exception:  # the conversation state is Rasa's; a lost reply is logged, the citizen can ask again
            log.exception("WeChat reply from the assistant failed")
            return

