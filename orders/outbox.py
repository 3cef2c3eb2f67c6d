"""Department webhooks through a transactional outbox, and inbound status callbacks from department systems.

Why an outbox: a webhook sent from inside the request could be lost (the process dies after the commit) or sent for
a step that was then rolled back. Instead the message row is written in the same transaction as the lifecycle
event, and a worker delivers committed rows with retries and exponential backoff; a row is delivered at least once
(receivers dedupe on `message_id`).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import random
import secrets
import uuid
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from hotline.core.clock import as_utc
from hotline.core.db import transaction
from orders.lifecycle import STATE_LABELS, State
from orders.models import DepartmentEndpoint, InboundCallback, OrderEvent, OutboxMessage, WorkOrder, utcnow

SIGNATURE_HEADER = "X-Hotline-Signature"


# -- registration ----------------------------------------------------------------------------------------------
def register_endpoint(session: Session, *, department_code: str, url: str) -> tuple[DepartmentEndpoint, str]:
    """(endpoint, secret). Re-registering a department replaces its URL and issues a new secret."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"a webhook URL must start with http:// or https://, got {url!r}")
    endpoint = session.scalar(select(DepartmentEndpoint).where(DepartmentEndpoint.department_code == department_code))
    secret = secrets.token_urlsafe(32)
    if endpoint is None:
        endpoint = DepartmentEndpoint(department_code=department_code, url=url, secret=secret)
        session.add(endpoint)
    endpoint.url, endpoint.secret, endpoint.active = url, secret, True
    session.flush()
    return endpoint, secret


def list_endpoints(session: Session) -> list[DepartmentEndpoint]:
    """Every department system registered for webhooks, by department (secrets stay in the table)."""
    return list(session.scalars(select(DepartmentEndpoint).order_by(DepartmentEndpoint.department_code)))


def _endpoint_of(session: Session, department_code: str | None) -> DepartmentEndpoint | None:
    if not department_code:
        return None
    return session.scalar(select(DepartmentEndpoint).where(DepartmentEndpoint.department_code == department_code,
                                                           DepartmentEndpoint.active.is_(True)))


# -- enqueueing (inside the caller's transaction) -------------------------------------------------------------
def order_payload(order: WorkOrder, event: OrderEvent) -> dict:
    """What a department system receives: enough to act without calling back; the caller's phone is included
    because the department must call the citizen back, and the receiving endpoint is the department's own."""
    return {"order_no": order.order_no, "state": order.state, "state_label": STATE_LABELS[State(order.state)],
            "department_code": order.department_code, "role": order.role,
            "lead_order_no": order.parent.order_no if order.parent else None,
            "text": order.text_masked, "caller_phone": order.caller_phone, "address": order.address,
            "district_adcode": order.district_adcode, "street_id": order.street_id, "category": order.category_path,
            "kb_item_id": order.kb_item_id, "urgency": order.urgency, "tags": list(order.tags or []),
            "time_limit_days": order.time_limit_days,
            "deadline_at": as_utc(order.deadline_at).isoformat() if order.deadline_at else None,
            "event": {"seq": event.seq, "action": event.action, "from_state": event.from_state,
                      "to_state": event.to_state, "actor": event.actor, "comment": event.comment,
                      "at": as_utc(event.at).isoformat()}}


def _enqueue(session: Session, endpoint: DepartmentEndpoint, topic: str, order: WorkOrder, payload: dict,
             now: dt.datetime) -> OutboxMessage:
    message_id = str(uuid.uuid4())
    message = OutboxMessage(message_id=message_id, endpoint_id=endpoint.id, topic=topic, order_no=order.order_no,
                            payload={"message_id": message_id, "topic": topic, **payload}, created_at=now,
                            next_attempt_at=now, attempts=0)
    session.add(message)
    return message


def enqueue_for_event(session: Session, *, order: WorkOrder, event: OrderEvent, previous_department: str | None,
                      now: dt.datetime) -> list[OutboxMessage]:
    """Messages for one lifecycle step: the holding department hears of every step it did not take itself, and a
    department that lost the order to a re-dispatch is told it was withdrawn."""
    messages = []
    if event.action == "dispatch" and previous_department and previous_department != order.department_code:
        messages += enqueue_withdrawn(session, order=order, event=event, department_code=previous_department, now=now)
    holder = _endpoint_of(session, order.department_code)
    if holder is not None and event.actor_role != "handler":
        topic = "order.dispatched" if event.action == "dispatch" else "order.status_changed"
        messages.append(_enqueue(session, holder, topic, order, order_payload(order, event), now))
    return messages


def enqueue_withdrawn(session: Session, *, order: WorkOrder, event: OrderEvent, department_code: str,
                      now: dt.datetime) -> list[OutboxMessage]:
    """order.withdrawn for a department that no longer holds the order (re-dispatched elsewhere, or merged into an
    order another unit handles), when it has a webhook."""
    endpoint = _endpoint_of(session, department_code)
    if endpoint is None:
        return []
    return [_enqueue(session, endpoint, "order.withdrawn", order, order_payload(order, event), now)]


# -- delivery --------------------------------------------------------------------------------------------------
class WebhookSender(Protocol):
    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int: ...


class HttpWebhookSender:
    """The real sender: an HTTP POST with httpx; the status code decides success (2xx)."""

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        import httpx

        return httpx.post(url, content=body, headers=headers, timeout=timeout).status_code


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff_seconds(attempts: int, base: float, *, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter (base · 2^(n-1), ±20%), capped at 6 hours."""
    delay = min(base * 2 ** max(attempts - 1, 0), 6 * 3600)
    return delay * (rng or random).uniform(0.8, 1.2)


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    dead: int = 0


def deliver_due(sessions: sessionmaker[Session], *, sender: WebhookSender, now: dt.datetime | None = None,
                limit: int = 50, max_attempts: int = 8, backoff_base_s: float = 5.0,
                timeout_s: float = 5.0) -> DeliveryReport:
    """Deliver the messages that are due, oldest first, in three steps so no database lock is held while waiting on
    a department's server: claim (a short lease, so a second worker skips them; SKIP LOCKED on PostgreSQL), send,
    record. A worker that dies mid-way leaves leased rows that become due again when the lease runs out."""
    now = now or utcnow()
    lease = dt.timedelta(seconds=timeout_s * 2 + 30)
    with transaction(sessions) as session:
        query = (select(OutboxMessage, DepartmentEndpoint)
                 .join(DepartmentEndpoint, DepartmentEndpoint.id == OutboxMessage.endpoint_id)
                 .where(OutboxMessage.delivered_at.is_(None), OutboxMessage.dead_at.is_(None),
                        OutboxMessage.next_attempt_at <= now)
                 .order_by(OutboxMessage.id).limit(limit))
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=OutboxMessage)
        claimed = []
        for message, endpoint in session.execute(query).all():
            message.next_attempt_at = now + lease
            message.attempts += 1
            claimed.append((message.id, message.message_id, message.topic, message.attempts, endpoint.url,
                            endpoint.secret, json.dumps(message.payload, ensure_ascii=False, sort_keys=True).encode()))
    outcomes = []
    for row_id, message_id, topic, attempts, url, secret, body in claimed:
        headers = {"Content-Type": "application/json; charset=utf-8", SIGNATURE_HEADER: sign(secret, body),
                   "X-Hotline-Message-Id": message_id, "X-Hotline-Topic": topic}
        try:
            status = sender.post(url, body, headers, timeout_s)
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except Exception as exc:  # network errors of any kind are a failed attempt, retried later
            error = f"{type(exc).__name__}: {str(exc)[:200]}"
        outcomes.append((row_id, attempts, error))
    report = DeliveryReport()
    if not outcomes:
        return report
    done = utcnow()
    with transaction(sessions) as session:
        for row_id, attempts, error in outcomes:
            message = session.get(OutboxMessage, row_id)
            if error is None:
                message.delivered_at, message.last_error = done, None
                report.delivered += 1
            elif attempts >= max_attempts:
                message.dead_at, message.last_error = done, error
                report.dead += 1
            else:
                message.next_attempt_at = done + dt.timedelta(seconds=backoff_seconds(attempts, backoff_base_s))
                message.last_error = error
                report.failed += 1
    return report


def due_count(session: Session, *, now: dt.datetime | None = None) -> int:
    return session.scalar(select(func.count(OutboxMessage.id)).where(
        OutboxMessage.delivered_at.is_(None), OutboxMessage.dead_at.is_(None),
        OutboxMessage.next_attempt_at <= (now or utcnow()))) or 0


def backlog(session: Session) -> int:
    """Messages not yet delivered and not given up on (the outbox_backlog metric)."""
    return session.scalar(select(func.count(OutboxMessage.id)).where(OutboxMessage.delivered_at.is_(None),
                                                                      OutboxMessage.dead_at.is_(None))) or 0


def retry_dead(session: Session, *, now: dt.datetime | None = None) -> int:
    """Give the messages that ran out of attempts another round (after the department fixed its endpoint)."""
    dead = list(session.scalars(select(OutboxMessage).where(OutboxMessage.dead_at.is_not(None))))
    for message in dead:
        message.dead_at, message.attempts, message.next_attempt_at = None, 0, now or utcnow()
    session.flush()
    return len(dead)


# -- inbound status callbacks ------------------------------------------------------------------------------------
def remembered_callback(session: Session, *, source: str, event_id: str) -> InboundCallback | None:
    return session.scalar(select(InboundCallback).where(InboundCallback.source == source,
                                                        InboundCallback.event_id == event_id))


def remember_callback(session: Session, *, source: str, event_id: str, order_no: str, action: str,
                      result: dict) -> InboundCallback:
    callback = InboundCallback(source=source, event_id=event_id, order_no=order_no, action=action, result=result)
    session.add(callback)
    session.flush()
    return callback
