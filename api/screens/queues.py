"""The work lists behind the staff screens:
- 派单与联合研判 (/desk/review): disputed and returned orders with the return's reason and 有责/无责, extension
  requests waiting for the centre, and completed orders waiting for the centre's 审核;
- 承办单位 (/desk/department): a unit's open orders, the one that runs out of time first at the top, counted by
  正常/临期/超期/严重超期;
- 督办与回访 (/desk/supervision): the alerts (久而未决, 群体高发, 敏感诉求) over the last 30 days and the orders closed
  and waiting for the 回访 call.
Each row links to the order's page, where the steps are taken."""
from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy import select

from api.deps import LoadedRouterDep, Principal, SessionsDep, department_names
from api.screens.session import staff_screen
from api.screens.templating import render
from hotline.core.clock import utcnow
from orders import indicators as ind
from orders.lifecycle import STATE_LABELS, Action, State, timeliness
from orders.models import OrderEvent, WorkOrder
from orders.queues import queue_items
from orders.service import pending_extension

router = APIRouter(include_in_schema=False)
Reviewer = Annotated[Principal, Depends(staff_screen("review"))]
Handler = Annotated[Principal, Depends(staff_screen("department"))]
Supervisor = Annotated[Principal, Depends(staff_screen("supervision"))]
TIMELINESS_ORDER = ("严重超期", "超期", "临期", "正常")
ALERT_DAYS = 30


def _row(order: WorkOrder, names: dict[str, str], now: dt.datetime) -> dict:
    started = order.dispatched_at or order.created_at
    return {"order_no": order.order_no, "created_at": order.created_at, "text": order.text_masked[:90],
            "state": STATE_LABELS[State(order.state)], "department": names.get(order.department_code or "",
                                                                                order.department_code),
            "deadline_at": order.deadline_at, "urgency": order.urgency, "tags": order.tags or [],
            "timeliness": timeliness(started, order.deadline_at, finished=order.completed_at, now=now).label
            if order.deadline_at else None}


def _last_event(order: WorkOrder, action: str):
    return next((e for e in reversed(order.events) if e.action == action), None)


def review_lists(sessions, names: dict[str, str]) -> dict:
    now = utcnow()
    with sessions() as session:
        disputed = []
        for item in queue_items(session, queue="review"):
            row = _row(item.order, names, now)
            returned = _last_event(item.order, Action.RETURN.value) if item.order.state == State.RETURNED else None
            if returned is not None:
                at_fault = (returned.data or {}).get("at_fault")
                row["why"] = (f"{names.get(returned.department_code or '', returned.department_code)}退单："
                              f"{returned.comment or (returned.data or {}).get('reason') or '未说明原因'}")
                row["fault"] = "有责" if at_fault else "无责" if at_fault is False else None
            else:
                reasons = (item.decision.explanation or {}).get("decision_reasons") if item.decision else None
                row["why"] = "；".join(reasons) if reasons else "职责交叉，需联合研判"
            disputed.append(row)
        # Completions to review, and orders with an extension request (answered or not: pending_extension decides);
        # not every open order, whose steps would each be loaded.
        asked = select(OrderEvent.order_id).where(OrderEvent.action == Action.REQUEST_EXTENSION.value)
        open_orders = list(session.scalars(select(WorkOrder).where(
            (WorkOrder.state == State.COMPLETED)
            | (WorkOrder.state.in_((State.SIGNED, State.HANDLING)) & WorkOrder.id.in_(asked)))
            .order_by(WorkOrder.deadline_at).limit(2000)))
        extensions, completed = [], []
        for order in open_orders:
            if order.state == State.COMPLETED:
                row = _row(order, names, now)
                done = _last_event(order, Action.COMPLETE.value)
                row["why"] = (done.data or {}).get("result") or (done.comment if done else "") or ""
                completed.append(row)
            elif (request := pending_extension(order)) is not None:
                row = _row(order, names, now)
                row["why"] = (f"申请延期 {(request.data or {}).get('days', '?')} 个工作日："
                              f"{request.comment or (request.data or {}).get('reason') or ''}")
                extensions.append(row)
    return {"disputed": disputed, "extensions": extensions, "completed": completed}


@router.get("/desk/review")
async def review(request: Request, staff: Reviewer, sessions: SessionsDep, router_: LoadedRouterDep) -> Response:
    names = department_names(router_)
    lists = await run_in_threadpool(review_lists, sessions, names)
    return render(request, "review.html", staff=staff, active="review", **lists)


@router.get("/desk/department")
async def department(request: Request, staff: Handler, sessions: SessionsDep, router_: LoadedRouterDep,
                     unit: str | None = None) -> Response:
    """A handler sees their own unit; the centre's staff with this screen (admins) pick one."""
    names = department_names(router_)
    code = staff.department_code if staff.role == "handler" else (unit or "").strip() or None

    def rows() -> list[dict]:
        if not code:
            return []
        now = utcnow()
        with sessions() as session:
            return [_row(item.order, names, now) for item in queue_items(session, queue="department",
                                                                        department_code=code)]

    found = await run_in_threadpool(rows)
    counts = Counter(row["timeliness"] for row in found if row["timeliness"])
    return render(request, "department.html", staff=staff, active="department", rows=found, unit=code,
                  unit_name=names.get(code or "", code), departments=names,
                  counts=[(label, counts.get(label, 0)) for label in TIMELINESS_ORDER],
                  department_name=names.get(staff.department_code or ""))


# The alerts of 30 days take a second on a busy month (text similarity over every order): the list keeps them for a
# minute, and says when they were computed.
ALERTS_FRESH_S = 60
_alerts_cache: dict[tuple, tuple[float, dt.datetime, list]] = {}
_alerts_lock = threading.Lock()


def _recent_alerts(sessions, router_, now: dt.datetime) -> tuple[dt.datetime, list]:
    bind = sessions.kw.get("bind")
    key = (id(sessions), str(bind.url) if bind is not None else "", router_.kb.version if router_ is not None else "")
    with _alerts_lock:
        cached = _alerts_cache.get(key)
        if cached and time.monotonic() - cached[0] < ALERTS_FRESH_S:
            return cached[1], cached[2]
    scope = ind.Scope(now - dt.timedelta(days=ALERT_DAYS), now + dt.timedelta(minutes=1))
    labels = ind.Names.from_kb(router_.kb, router_.gazetteer) if router_ is not None else ind.NO_NAMES
    with sessions() as session:
        alerts = ind.alerts(session, scope, names=labels).breakdown.get("alerts", [])
    with _alerts_lock:
        _alerts_cache.clear()
        _alerts_cache[key] = (time.monotonic(), now, alerts)
    return now, alerts


def supervision_lists(sessions, router_, names: dict[str, str]) -> dict:
    now = utcnow()
    computed_at, alerts = _recent_alerts(sessions, router_, now)
    with sessions() as session:
        follow_ups = [_row(order, names, now) for order in session.scalars(
            select(WorkOrder).where(WorkOrder.state == State.CLOSED).order_by(WorkOrder.completed_at).limit(200))]
    return {"alerts": alerts, "follow_ups": follow_ups, "alerts_at": computed_at}


@router.get("/desk/supervision")
async def supervision(request: Request, staff: Supervisor, sessions: SessionsDep,
                      router_: LoadedRouterDep) -> Response:
    names = department_names(router_)
    lists = await run_in_threadpool(supervision_lists, sessions, router_, names)
    return render(request, "supervision.html", staff=staff, active="supervision", alert_days=ALERT_DAYS, **lists)
