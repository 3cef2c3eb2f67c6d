"""Filing a WeChat text as an order when the assistant is not answering: routed, idempotent on the MsgId, and
never lost — a failed filing is recorded on the message, retried with backoff by the app's worker (`file_due`)
and listed for staff."""
from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select
from sqlalchemy.exc import StatementError

from api.channels.wechat.messages import Incoming
from api.channels.wechat.models import WeChatMessage
from api.routing_pool import route_one, text_embedder
from hotline.core.db import transaction
from nlp.normalize import InputError
from nlp.pii import mask_pii
from orders.intake import file_complaint
from orders.models import utcnow
from orders.outbox import backoff_seconds
from orders.service import WECHAT_SCOPE, Actor, IdempotencyConflict, find_by_idempotency_key
from routing.geocode import GeoPoint, usable_coordinates

log = logging.getLogger("hotline.wechat")

FILING_MAX_ATTEMPTS = 8


FILING_BACKOFF_S = 30.0                     # 30 s, 1 min, 2 min … about two hours over the eight attempts


RELAY_GRACE = dt.timedelta(minutes=10)      # far beyond the assistant's timeout: a text still unsettled was orphaned


HOLDING_REPLY = "您的诉求已收到，正在登记，登记后会把工单号发给您。"


def stored_message(incoming: Incoming, *, now: dt.datetime) -> WeChatMessage:
    """The row kept for a delivery; a text to relay or file is kept with it until settled."""
    row = WeChatMessage(dedupe_key=incoming.dedupe_key, openid=incoming.openid, msg_type=incoming.msg_type,
                        lat=incoming.lat, lng=incoming.lng, received_at=now, attempts=0)
    if incoming.msg_type in {"text", "voice"} and (incoming.text or "").strip():
        row.text, row.filing, row.next_attempt_at = incoming.text, "received", now + RELAY_GRACE
    return row


def last_location(sessions, openid: str):
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


def _route(router_, settings, text: str, point):
    """(the router's answer, the point it used, the matter's vector). Routed with the other complaints routing at
    the same moment (`api.routing_pool`), like the HTTP intake. Routing that breaks, even without the point,
    leaves the order unrouted (agents route it from the intake queue): it never stops the filing."""
    if router_ is None:
        return None, point, None
    for attempt in ((point, None) if point is not None else (None,)):
        try:
            routing, vector = route_one(router_, settings, text, attempt, "")
            return routing, attempt, vector
        except InputError:
            raise
        except Exception as exc:  # any fault of the router: file without it
            log.error("routing a WeChat message%s failed: %s", " with its location" if attempt else "", _problem(exc),
                      exc_info=not isinstance(exc, StatementError))
    return None, None, None


def file_incoming(app, incoming: Incoming) -> str:
    """After the 5-second answer: create the order (idempotent on the MsgId), route it, reply to the citizen."""
    return file_message(app, key=incoming.dedupe_key, openid=incoming.openid, text=incoming.text or "", attempts=0)


def file_message(app, *, key: str, openid: str, text: str, attempts: int, now: dt.datetime | None = None) -> str:
    """File one message as an order and answer the citizen; returns where its filing stands. Whatever goes wrong is
    recorded on the message (retried with backoff by `file_due`, listed for staff), and the citizen is told at the
    first failure that the complaint was received."""
    sessions, sender, router_ = app.state.sessions, app.state.wechat_sender, app.state.router
    # Kept with the order for same-event search, so the search does not embed the complaint a second time.
    model_id = text_embedder(router_)[0] if router_ is not None else None
    try:
        point = None
        location = last_location(sessions, openid)
        if location:
            point = GeoPoint(location[0], location[1], "gcj02")   # WeChat's location message uses GCJ-02
        routing, point, vector = _route(router_, app.state.settings, text, point)
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
                                            auto_dispatch=app.state.settings.auto_dispatch,
                                            text_vector=vector, vector_model=model_id)
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
        file_message(app, key=key, openid=openid, text=text or "", attempts=attempts or 0, now=now)
    return len(due)


def mark_relayed(sessions, key: str) -> None:
    """The assistant has the message (and files any order itself): settled, its text is not kept."""
    try:
        with transaction(sessions) as session:
            _settle(session, key, "relayed")
    except Exception:  # left unsettled, the worker files it as an order later: a needless order at worst, no loss
        log.exception("WeChat message %s: relay not recorded", key)

