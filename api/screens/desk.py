"""坐席受理 (/desk): the agent takes a call — types or pastes the record, sees the router's suggestion with its
reasons, the caller's history and the place question in one view, then files and dispatches in one step (or holds
the order for the review queue, or diverts it to 110/119/122). The intake queue lists what still needs an agent.

Everything goes through the service functions the API uses: `route_complaint` (the routing pool), `file_complaint`
(the one intake), `confirm_department` (accept + dispatch; a changed department teaches the router's guarded
correction memory) and the lifecycle's `apply_action`.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from api.auth.models import AuditRecord
from api.deps import ClientDep, LoadedRouterDep, Principal, SessionsDep, SettingsDep, department_names
from api.routing_pool import route_with_vector, text_embedder
from api.screens.session import CsrfChecked, staff_screen
from api.screens.templating import render
from hotline.core.clock import utcnow
from hotline.core.db import read_only, transaction
from nlp.normalize import InputError
from nlp.pii import mask_phone
from orders.callbacks import (
    CallbackConflict,
    CallbackInvalid,
    CallbackNotFound,
    close_callback,
    open_callbacks,
    take_callback,
)
from orders.dispatch import NothingToConfirm, confirm_department
from orders.intake import file_complaint
from orders.lifecycle import STATE_LABELS, Action, IllegalTransition, State, timeliness
from orders.merge import MergeRefused, merge_order
from orders.queues import queue_items
from orders.search import find_order, orders_of_caller
from orders.service import CHANNELS, ConcurrentUpdate, Forbidden, apply_action
from orders.similar import Place, find_similar

router = APIRouter(include_in_schema=False)
Agent = Annotated[Principal, Depends(staff_screen("desk"))]

CHANNEL_CHOICES = {"hotline": "12345热线", "wechat": "微信公众号", "web": "网站", "app": "移动端", "grid": "网格员上报",
                   "110": "110联动"}
DIVERSION_LINES = {"110": "公安110", "119": "消防119", "122": "交警122", "120": "急救120"}
MAX_TEXT_CHARS = 5000


def _queue(sessions) -> list[dict]:
    now = utcnow()
    with sessions() as session:
        rows = []
        for item in queue_items(session, queue="intake")[:100]:
            order, decision = item.order, item.decision
            started = order.dispatched_at or order.created_at
            rows.append({"order_no": order.order_no, "created_at": order.created_at, "text": order.text_masked[:80],
                         "state": STATE_LABELS[State(order.state)], "urgency": order.urgency, "tags": order.tags,
                         "decision": decision.decision if decision else None,
                         "suggested": decision.department_code if decision else None,
                         "timeliness": timeliness(started, order.deadline_at, now=now).label
                         if order.deadline_at else None})
        return rows


def _history(sessions, phone: str | None) -> dict:
    with sessions() as session:
        total, latest = orders_of_caller(session, phone=phone, limit=5)
        return {"total": total, "orders": [{"order_no": o.order_no, "created_at": o.created_at,
                                            "state": STATE_LABELS[State(o.state)], "text": o.text_masked[:60]}
                                           for o in latest]}


def place_of(routing: dict) -> Place:
    address = routing.get("address") or {}
    return Place((address.get("district") or {}).get("adcode"), (address.get("street") or {}).get("id"),
                 address.get("community"))


def _similar(sessions, settings, router_, routing: dict, vector) -> list[dict]:
    """Open orders that look like the same event as the call being typed (before it is filed)."""
    if vector is None:
        return []
    model_id = text_embedder(router_)[0]
    # A preview reads only: orders stored without a vector are embedded and kept by GET /api/v1/orders/{no}/similar.
    # With `embed` here, this session (never committed) embedded them, wrote them and threw them away each time.
    with read_only(sessions) as session:
        return [{"order_no": hit.order_no, "score": hit.score, "reason": hit.reason,
                 "text": hit.order.text_masked[:80], "state": STATE_LABELS[State(hit.order.state)]}
                for hit in find_similar(session, vector=vector, model_id=model_id, place=place_of(routing),
                                        embed=None, window_days=settings.same_event_window_days,
                                        limit=settings.same_event_limit)]


def _page(request: Request, staff: Principal, sessions, router_, *, form: dict | None = None,
          analysis: dict | None = None, status_code: int = 200, **extra) -> Response:
    with sessions() as session:
        callbacks = open_callbacks(session, limit=50)
    return render(request, "desk.html", staff=staff, active="desk", queue=_queue(sessions), form=form or {},
                  callbacks=callbacks,
                  analysis=analysis, channels=CHANNEL_CHOICES, departments=department_names(router_),
                  diversion_lines=DIVERSION_LINES, status_code=status_code, **extra)


@router.get("/desk")
def desk(request: Request, staff: Agent, sessions: SessionsDep, router_: LoadedRouterDep) -> Response:
    return _page(request, staff, sessions, router_)


def _form(text: str, caller_phone: str, channel: str) -> tuple[dict, str | None]:
    form = {"text": text, "caller_phone": caller_phone.strip(), "channel": channel}
    if not text.strip():
        return form, "请先输入来电记录（诉求内容）"
    if len(text) > MAX_TEXT_CHARS:
        return form, f"诉求内容过长（{len(text)} 字），请精简到 {MAX_TEXT_CHARS} 字以内"
    if channel not in CHANNELS:
        return form, "请选择来源渠道"
    return form, None


@router.post("/desk/analyse", dependencies=[CsrfChecked])
async def analyse(request: Request, staff: Agent, sessions: SessionsDep, router_: LoadedRouterDep,
                  settings: SettingsDep,
                  text: Annotated[str, Form(max_length=4 * MAX_TEXT_CHARS)] = "",
                  caller_phone: Annotated[str, Form(max_length=32)] = "",
                  channel: Annotated[str, Form(max_length=16)] = "hotline") -> Response:
    """The router's answer for the record as typed, without filing anything yet."""
    form, problem = _form(text, caller_phone, channel)
    if problem:
        return _page(request, staff, sessions, router_, form=form, error=problem, status_code=422)
    if router_ is None:
        return _page(request, staff, sessions, router_, form=form, error="分拨模型加载中，请稍候再试；也可直接登记待派",
                     status_code=503)
    try:
        routing, vector = await route_with_vector(request.app, router_, text)
    except InputError as exc:
        return _page(request, staff, sessions, router_, form=form, error=f"无法分析：{exc}", status_code=422)
    history = await run_in_threadpool(_history, sessions, form["caller_phone"] or None)
    similar = await run_in_threadpool(_similar, sessions, settings, router_, routing, vector)
    analysis = {"routing": routing, "history": history, "similar": similar,
                "masked_phone": mask_phone(form["caller_phone"]) if form["caller_phone"] else None}
    return _page(request, staff, sessions, router_, form=form, analysis=analysis)


@router.post("/desk/file", dependencies=[CsrfChecked])
async def file_call(request: Request, staff: Agent, sessions: SessionsDep, router_: LoadedRouterDep,
                    settings: SettingsDep, text: Annotated[str, Form(max_length=4 * MAX_TEXT_CHARS)] = "",
                    caller_phone: Annotated[str, Form(max_length=32)] = "",
                    channel: Annotated[str, Form(max_length=16)] = "hotline",
                    department_code: Annotated[str, Form(max_length=32)] = "",
                    other_department: Annotated[str, Form(max_length=32)] = "",
                    co_handlers: Annotated[list[str] | None, Form()] = None,
                    outcome: Annotated[str, Form(max_length=48)] = "dispatch",
                    note: Annotated[str, Form(max_length=500)] = "") -> Response:
    """File the call as an order (routed again, so the stored answer is the one for the final text), then:
    dispatch to the chosen unit (`dispatch`), leave it in the intake queue (`hold`), merge it into an order about the same
    event (`merge:<order no>`), or divert it (`divert:110`)."""
    form, problem = _form(text, caller_phone, channel)
    if problem:
        return _page(request, staff, sessions, router_, form=form, error=problem, status_code=422)
    department_code = other_department.strip() or department_code   # typed in: the agent overrides the list
    try:
        routing, vector = (await route_with_vector(request.app, router_, text) if router_ is not None
                           else (None, None))
    except InputError as exc:
        return _page(request, staff, sessions, router_, form=form, error=f"无法登记：{exc}", status_code=422)
    known = set(department_names(router_))
    model_id = text_embedder(router_)[0] if router_ is not None else None

    def store() -> tuple[str, bool]:
        """(order number, whether the agent chose another unit than the router)."""
        changed = False
        with transaction(sessions) as session:
            order, _ = file_complaint(session, text=text, channel=channel, actor=staff,
                                      caller_phone=form["caller_phone"] or None, routing=routing,
                                      routing_model=router_.embedder_note if router_ else None, auto_dispatch=False,
                                      text_vector=vector, vector_model=model_id)
            if outcome.startswith("merge:"):
                # Another caller about an event already on file: one handling order, every caller kept.
                into = find_order(session, order_no=outcome[6:])
                if into is None:
                    raise MergeRefused(f"没有工单 {outcome[6:]}")
                merge_order(session, order=order, into=into, actor=staff, reason=note or None)
            elif outcome == "dispatch":
                changed = confirm_department(session, order=order, actor=staff, department_code=department_code or None,
                                   co_handlers=[c for c in co_handlers or [] if c and c != department_code],
                                   note=note or None, known_departments=known).changed
            elif outcome.startswith("divert:") and outcome[7:] in DIVERSION_LINES:
                line = DIVERSION_LINES[outcome[7:]]
                apply_action(session, order_id=order.id, action=Action.REJECT, actor=staff,
                             reason=f"转{line}处置（非12345受理范围）", note=note or None)
            return order.order_no, changed

    try:
        order_no, changed = await run_in_threadpool(store)
    except (NothingToConfirm, MergeRefused, IllegalTransition, Forbidden, ConcurrentUpdate, InputError,
            ValueError) as exc:
        return _page(request, staff, sessions, router_, form=form, error=f"未登记：{exc}", status_code=422)
    if changed and router_ is not None:
        try:   # the agent chose another unit: the router's guarded correction memory learns it
            router_.learn(text, department_code, created_by=staff.name)
        except ValueError:
            pass   # a unit outside the knowledge base teaches nothing
    return RedirectResponse(f"/desk/orders/{order_no}?filed=1", status_code=303)


# -- 转人工: call-back tasks from the chat (orders/callbacks.py) ----------------------------------------------------
@router.post("/desk/callbacks/{task_id}", dependencies=[CsrfChecked])
def callback_step(task_id: int, request: Request, staff: Agent, sessions: SessionsDep, router_: LoadedRouterDep,
                  client: ClientDep, step: Annotated[str, Form(max_length=8)] = "take",
                  note: Annotated[str, Form(max_length=2000)] = "",
                  order_no: Annotated[str, Form(max_length=32)] = "") -> Response:
    """take: the agent calls back (the full phone is shown to them, and the reveal audited); close: done, with what
    was said and the order it led to."""
    phone = None
    try:
        with transaction(sessions) as session:
            if step == "close":
                close_callback(session, id=task_id, actor=staff.name, note=note or None, order_no=order_no or None)
            else:
                task = take_callback(session, id=task_id, actor=staff.name)
                session.add(AuditRecord(actor=staff.name[:64], action="callback_take", client=client,
                                        detail={"callback_id": task_id}))
                phone = task.phone
    except CallbackNotFound as exc:
        return _page(request, staff, sessions, router_, error=str(exc), status_code=404)
    except (CallbackConflict, CallbackInvalid) as exc:
        return _page(request, staff, sessions, router_, error=str(exc), status_code=409)
    if step == "close":
        return _page(request, staff, sessions, router_, notice="回电已办结")
    return _page(request, staff, sessions, router_, taken=(task_id, phone), notice="已认领，请回电")
