"""Hotline agents' suggest/confirm, work queues, bulk export, department webhooks and status callbacks. Thin views."""
from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from api.auth.models import AuditRecord
from api.deps import (
    LoadedRouterDep,
    Principal,
    SessionsDep,
    department_names,
    require_scope,
)
from api.routes.orders import lifecycle_errors, order_json, order_or_404, visible_to
from hotline.core.clock import city_midnight
from hotline.core.db import transaction
from orders import outbox, roles
from orders.dispatch import NothingToConfirm, confirm_department
from orders.export import EXPORT_COLUMNS, export_rows
from orders.lifecycle import STATE_LABELS, State, timeliness
from orders.models import OutboxMessage, utcnow
from orders.queues import QueueItem, latest_decision, queue_items
from orders.service import apply_action

router = APIRouter(prefix="/api/v1", tags=["work"])

Reader = Annotated[Principal, Depends(require_scope("orders:read"))]
Writer = Annotated[Principal, Depends(require_scope("orders:write"))]


def centre_only(principal: Principal) -> None:
    if not roles.in_centre(principal.role):
        raise HTTPException(403, "only the hotline centre's staff and systems may do this")


# -- agents: the router's suggestions, and confirming or changing the department ----------------------------------
@router.get("/orders/{order_no}/suggestions")
def suggestions(order_no: str, router_: LoadedRouterDep, sessions: SessionsDep, principal: Reader) -> dict:
    """The router's ranked departments for an order, as stored at intake (with the matched duty and score)."""
    centre_only(principal)
    names = department_names(router_)
    with sessions() as session:
        order = order_or_404(session, order_no)
        decision = latest_decision(session, order=order)
        if decision is None:
            raise HTTPException(404, f"order {order_no} has no routing decision (the router was not loaded at intake)")
        return {"order_no": order.order_no, "state": order.state, "decision": decision.decision,
                "confidence": decision.confidence, "correct": decision.correct,
                "suggested": {"code": decision.department_code, "name": names.get(decision.department_code or "")},
                "candidates": [{**c, "department_name": names.get(c.get("department") or "") or c.get("department_name")}
                               for c in decision.candidates]}


class ConfirmIn(BaseModel):
    department_code: str | None = Field(default=None, description="omit to accept the router's suggestion")
    co_handlers: list[str] | None = None
    expected_version: int | None = None
    note: str | None = Field(default=None, max_length=500)


@router.post("/orders/{order_no}/confirm")
def confirm(order_no: str, body: ConfirmIn, sessions: SessionsDep, router_: LoadedRouterDep, principal: Writer) -> dict:
    """An agent confirms the suggested department (人机联动) or picks another (人工): accept if needed, then dispatch.
    A changed department is the router's feedback: the stored decision is marked wrong and the router learns."""
    centre_only(principal)
    known = set(department_names(router_))
    try:
        with lifecycle_errors(), transaction(sessions) as session:
            done = confirm_department(session, order=order_or_404(session, order_no), actor=principal,
                                      department_code=body.department_code, co_handlers=body.co_handlers,
                                      note=body.note, expected_version=body.expected_version,
                                      known_departments=known)
            result, complaint = order_json(done.order, events=True), done.order.text
    except NothingToConfirm as exc:
        raise HTTPException(422, str(exc)) from None
    if done.changed and router_ is not None:
        try:
            router_.learn(complaint, done.department_code, created_by=principal.name)
        except ValueError:
            pass   # a unit outside the knowledge base teaches nothing
    return result


# -- work queues -----------------------------------------------------------------------------------------------
def _queue_item(item: QueueItem, names: dict[str, str], now: dt.datetime) -> dict:
    order, decision = item.order, item.decision
    deadline, started = order.deadline_at, order.dispatched_at or order.created_at   # aware UTC (UTCDateTime)
    status = timeliness(started, deadline, now=now).label if deadline else None
    return {"order_no": order.order_no, "state": order.state, "state_label": STATE_LABELS[State(order.state)],
            "text": order.text_masked[:200], "category": order.category_path, "address": order.address,
            "department_code": order.department_code, "department_name": names.get(order.department_code or ""),
            "urgency": order.urgency, "tags": order.tags, "return_count": order.return_count,
            "deadline_at": deadline.isoformat() if deadline else None, "timeliness": status,
            "decision": decision.decision if decision else None,
            "confidence": decision.confidence if decision else None,
            "suggested_department": decision.department_code if decision else None}


@router.get("/queues/{queue}")
def work_queue(queue: Literal["intake", "review", "department"], router_: LoadedRouterDep, sessions: SessionsDep, principal: Reader,
               department: Annotated[str | None, Query(max_length=32)] = None,
               limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    """intake: orders an agent must confirm (the router only suggested); review: disputed responsibility (职责交叉)
    and returned orders; department: a unit's open orders, most urgent deadline first. A department handler sees
    only their own department's queue."""
    if principal.role == "handler":
        if queue != "department":
            raise HTTPException(403, "department handlers see their department's queue only")
        department = principal.department_code
    elif not roles.in_centre(principal.role):
        raise HTTPException(403, "this role has no work queue")
    if queue == "department" and not department:
        raise HTTPException(422, "name the department (department=…)")
    now, names = utcnow(), department_names(router_)
    with sessions() as session:
        items = [_queue_item(item, names, now) for item in queue_items(session, queue=queue, department_code=department)]
    return {"queue": queue, "department": department, "total": len(items), "items": items[:limit]}


# -- bulk export (audited) -------------------------------------------------------------------------------------
@router.get("/exports/orders.csv")
def export_orders(request: Request, sessions: SessionsDep, principal: Reader, start: Annotated[dt.date, Query()],
                  end: Annotated[dt.date, Query(description="exclusive")],
                  department: Annotated[str | None, Query(max_length=32)] = None,
                  district: Annotated[str | None, Query(max_length=12)] = None) -> StreamingResponse:
    """Orders of a period as CSV for reports. Phones and ID numbers are masked; every export is audited."""
    if not roles.supervises(principal.role):
        raise HTTPException(403, "exports are for supervisors, officials, admins and department handlers")
    if end <= start or (end - start).days > 366:
        raise HTTPException(422, "end must be after start, within 366 days")
    if principal.role == "handler":
        department = principal.department_code
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    with transaction(sessions) as session:
        count = 0
        for row in export_rows(session, start=city_midnight(start), end=city_midnight(end), department_code=department,
                               district_adcode=district):
            writer.writerow(row)
            count += 1
        session.add(AuditRecord(actor=principal.name[:64], action="export",
                                client=request.client.host if request.client else None,
                                detail={"what": "orders.csv", "start": start.isoformat(), "end": end.isoformat(),
                                        "department": department, "district": district, "rows": count}))
    filename = f"orders_{start:%Y%m%d}_{end:%Y%m%d}.csv"
    return StreamingResponse(iter(["\ufeff" + buffer.getvalue()]), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


# -- department systems: webhooks out, status callbacks in -----------------------------------------------------
class WebhookIn(BaseModel):
    url: str = Field(min_length=8, max_length=512, pattern=r"^https?://")


@router.put("/departments/{department_code}/webhook", tags=["departments"])
def set_webhook(department_code: str, body: WebhookIn, router_: LoadedRouterDep, sessions: SessionsDep,
                principal: Annotated[Principal, Depends(require_scope("kb:write"))]) -> dict:
    """Register where a department's system receives its orders. The signing secret is shown once."""
    known = department_names(router_)
    if known and department_code not in known:
        raise HTTPException(404, f"unknown department {department_code!r}")
    with transaction(sessions) as session:
        endpoint, secret = outbox.register_endpoint(session, department_code=department_code, url=body.url)
        return {"department_code": endpoint.department_code, "url": endpoint.url, "secret": secret,
                "signature": f"{outbox.SIGNATURE_HEADER}: sha256=HMAC-SHA256(secret, body)"}


@router.get("/outbox", tags=["departments"])
def outbox_status(sessions: SessionsDep, principal: Annotated[Principal, Depends(require_scope("kb:write"))]) -> dict:
    """Webhook delivery: how many are waiting, and the messages given up on (with their last error)."""
    with sessions() as session:
        dead = session.scalars(select(OutboxMessage).where(OutboxMessage.dead_at.is_not(None))
                               .order_by(OutboxMessage.id.desc()).limit(50))
        return {"backlog": outbox.backlog(session),
                "dead": [{"message_id": m.message_id, "order_no": m.order_no, "topic": m.topic, "attempts": m.attempts,
                          "last_error": m.last_error} for m in dead]}


class CallbackIn(BaseModel):
    event_id: str = Field(min_length=1, max_length=128, description="the department system's own id for this report")
    order_no: str = Field(min_length=1, max_length=32)
    # "extend" from a department is a request (extend_request): the centre approves before the deadline moves.
    action: Literal["sign", "return", "handle", "extend", "extend_request", "complete"]
    reason: str | None = Field(default=None, max_length=2000)
    at_fault: bool | None = None
    note: str | None = Field(default=None, max_length=5000)
    result: str | None = Field(default=None, max_length=5000)
    days: int | None = None


@router.post("/callbacks/status", tags=["departments"])
def status_callback(body: CallbackIn, sessions: SessionsDep, principal: Writer) -> dict:
    """A department system reports a step on one of its orders (sign, return, handle, extend_request, complete).
    Retries with the same event_id are answered from memory and applied once."""
    if principal.role != "handler" or not principal.department_code:
        raise HTTPException(403, "status callbacks need a department system's API key (bound to a department)")

    def apply() -> dict:
        with transaction(sessions) as session:
            seen = outbox.remembered_callback(session, source=principal.name, event_id=body.event_id)
            if seen is not None:
                return {**seen.result, "replayed": True}
            order = order_or_404(session, body.order_no)
            if not visible_to(order, principal):
                raise HTTPException(404, f"no work order {body.order_no}")
            data = body.model_dump(exclude={"event_id", "order_no", "action"}, exclude_none=True)
            action = "extend_request" if body.action == "extend" else body.action
            order = apply_action(session, order_id=order.id, action=action, actor=principal, **data)
            result = {"order_no": order.order_no, "state": order.state, "version": order.version}
            outbox.remember_callback(session, source=principal.name, event_id=body.event_id,
                                     order_no=order.order_no, action=body.action, result=result)
            return {**result, "replayed": False}

    try:
        with lifecycle_errors():
            return apply()
    except IntegrityError:   # the same event_id applied concurrently: the first one won; answer as it did
        with sessions() as session:
            seen = outbox.remembered_callback(session, source=principal.name, event_id=body.event_id)
        if seen is None:
            raise
        return {**seen.result, "replayed": True}
