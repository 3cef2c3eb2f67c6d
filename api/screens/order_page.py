"""One order as staff see it (/desk/orders/{no}): the complaint, where it stands against its deadline, the router's
stored answer, co-handlers' progress, every step taken, and a form for each step this staff member may take now.

The forms post to /desk/orders/{no}/act, which calls the lifecycle's `apply_action` (the same rules as the API: the
role table in orders/roles.py, the transitions and required fields in orders/lifecycle.py)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse, Response

from api.deps import LoadedRouterDep, SessionsDep, SettingsDep, department_names
from api.routing_pool import text_embedder
from api.screens.session import AnyStaff, CsrfChecked
from api.screens.templating import render
from hotline.core.clock import utcnow
from hotline.core.db import transaction
from nlp.pii import mask_phone
from orders import roles
from orders.attachments import (
    MAX_BYTES,
    MAX_PER_STEP,
    AttachmentRefused,
    Upload,
    attachment_path,
    attachments_of,
    check_uploads,
    store_attachments,
)
from orders.indicators.catalogue import CHANNEL_LABELS
from orders.lifecycle import (
    ACTION_LABELS,
    OPEN_STATES,
    REQUIRED_FIELDS,
    SATISFACTION,
    STATE_LABELS,
    SUPERVISION_TYPES,
    TRANSITIONS,
    Action,
    IllegalTransition,
    State,
    timeliness,
)
from orders.merge import MERGED_ROLE, MergeRefused, link_orders, linked_order_nos, merge_order
from orders.models import Attachment, WorkOrder
from orders.queues import latest_decision
from orders.search import find_order
from orders.service import ConcurrentUpdate, Forbidden, apply_action, pending_extension
from orders.similar import order_vector, similar_to_order

router = APIRouter(include_in_schema=False)

# The order the forms appear in: the usual next step first.
ACTION_ORDER = [Action.ACCEPT, Action.DISPATCH, Action.SIGN, Action.HANDLE, Action.COMPLETE, Action.APPROVE,
                Action.RATE, Action.ARCHIVE, Action.REQUEST_EXTENSION, Action.APPROVE_EXTENSION,
                Action.REFUSE_EXTENSION, Action.EXTEND, Action.RETURN, Action.SEND_BACK, Action.SUPERVISE,
                Action.REOPEN, Action.REJECT]
WITH_FILES = {Action.COMPLETE, Action.HANDLE}   # steps a handler documents with photos or files
FIELD_LABELS = {"reason": "原因", "at_fault": "是否有责", "note": "说明", "result": "办理结果（将告知来电人）",
                "days": "延期天数（工作日）", "satisfaction": "满意度", "supervision_type": "督办类型",
                "department_code": "承办单位代码", "co_handlers": "协办单位代码（逗号分隔，可空）"}


def available_actions(order: WorkOrder, staff) -> list[dict]:
    """The steps this staff member may take on this order now, each with the fields it needs."""
    state = State(order.state)
    if not roles.acts_on(staff.role, staff.department_code, order.department_code):
        return []
    found = []
    for action in ACTION_ORDER:
        allowed_from, _ = TRANSITIONS[action]
        if state not in allowed_from or not roles.may_act(staff.role, action):
            continue
        if action in (Action.APPROVE_EXTENSION, Action.REFUSE_EXTENSION) and pending_extension(order) is None:
            continue
        fields = list(REQUIRED_FIELDS.get(action, ()))
        if action == Action.DISPATCH:
            fields.append("co_handlers")
        if action in (Action.SIGN, Action.ACCEPT, Action.APPROVE, Action.ARCHIVE):
            fields.append("note")
        found.append({"action": action.value, "label": ACTION_LABELS[action], "fields": fields,
                      "required": REQUIRED_FIELDS.get(action, ()), "files": action in WITH_FILES})
    return found


def _similar(session, order: WorkOrder, staff, router_, settings) -> list[dict]:
    """Same-event candidates for the centre's staff (those who may merge), while the order is open."""
    if router_ is None or settings is None or not roles.may_merge(staff.role) or order.role == MERGED_ROLE \
            or order.state not in {s.value for s in OPEN_STATES}:
        return []
    model_id, embed = text_embedder(router_)
    # The page's session is never committed: it reads only. An order without a stored vector is embedded for this
    # view alone; candidates without one are left out (GET /api/v1/orders/{no}/similar embeds and keeps them).
    vector = order_vector(session, order=order, model_id=model_id, embed=embed, keep=False)
    return [{"order_no": hit.order_no, "reason": hit.reason, "text": hit.order.text_masked[:80],
             "state": STATE_LABELS[State(hit.order.state)]}
            for hit in similar_to_order(session, order=order, model_id=model_id, embed=None, vector=vector,
                                        window_days=settings.same_event_window_days,
                                        limit=settings.same_event_limit)]


def _order_view(session, order: WorkOrder, staff, names: dict[str, str], router_=None, settings=None) -> dict:
    now = utcnow()
    started = order.dispatched_at or order.created_at
    finished = order.completed_at
    decision = latest_decision(session, order=order)
    return {
        "order_no": order.order_no, "state": STATE_LABELS[State(order.state)], "state_code": order.state,
        "channel": order.channel, "created_at": order.created_at, "deadline_at": order.deadline_at,
        "timeliness": timeliness(started, order.deadline_at, finished=finished, now=now).label
        if order.deadline_at else None,
        "department": names.get(order.department_code or "", order.department_code),
        "text": order.text_masked, "caller_phone": mask_phone(order.caller_phone) if order.caller_phone else None,
        "category": order.category_path, "address": order.address, "urgency": order.urgency, "tags": order.tags or [],
        "parent": order.parent.order_no if order.parent else None, "role": order.role,
        "children": [{"order_no": c.order_no, "department": names.get(c.department_code or "", c.department_code),
                      "state": STATE_LABELS[State(c.state)], "role": c.role} for c in order.children],
        "decision": {"decision": decision.decision, "confidence": decision.confidence,
                     "department": names.get(decision.department_code or "", decision.department_code),
                     "candidates": decision.candidates, "correct": decision.correct} if decision else None,
        "events": [{"at": e.at, "label": ACTION_LABELS.get(e.action, "登记" if e.action == "create" else e.action),
                    "actor": e.actor, "role": roles.RULES[e.actor_role].label if e.actor_role in roles.RULES
                    else e.actor_role, "state": STATE_LABELS.get(State(e.to_state), e.to_state) if e.to_state else "",
                    "comment": e.comment, "department": names.get(e.department_code or "", e.department_code)}
                   for e in order.events],
        "actions": available_actions(order, staff),
        "attachments": [{"id": a.id, "filename": a.filename, "size_kb": max(1, a.size // 1024), "by": a.uploaded_by,
                         "at": a.uploaded_at, "seq": a.event_seq, "image": a.content_type.startswith("image/")}
                        for a in attachments_of(session, order=order)],
        "reasons": decision.explanation if decision and decision.explanation else None,
        "similar": _similar(session, order, staff, router_, settings),
        "linked": linked_order_nos(order),
        "may_merge": roles.may_merge(staff.role) and order.role != MERGED_ROLE,
    }


def _page(request: Request, staff, view: dict, names: dict[str, str], *, notice: str | None = None,
          error: str | None = None, status_code: int = 200) -> Response:
    return render(request, "order.html", staff=staff, order=view, notice=notice, error=error, departments=names,
                  field_labels=FIELD_LABELS, satisfaction=SATISFACTION, supervision_types=SUPERVISION_TYPES,
                  channel_labels=CHANNEL_LABELS, status_code=status_code)


def _refused(request: Request, staff, sessions, router_, settings, order_no: str, message: str) -> Response:
    """The order's page again with why the step was not taken (409), or 404 when the order is not theirs to see."""
    names = department_names(router_)
    with sessions() as session:
        order = find_order(session, order_no=order_no)
        if order is None or not roles.sees_order(staff.role, staff.department_code, order.department_code):
            return render(request, "message.html", staff=staff, heading="找不到工单", message=message,
                          status_code=404)
        view = _order_view(session, order, staff, names, router_, settings)
    return _page(request, staff, view, names, error=message, status_code=409)


@router.get("/desk/orders/{order_no}")
def order_page(order_no: str, request: Request, staff: AnyStaff, sessions: SessionsDep, router_: LoadedRouterDep,
               settings: SettingsDep, filed: int = 0, done: str | None = None) -> Response:
    names = department_names(router_)
    with sessions() as session:
        order = find_order(session, order_no=order_no)
        if order is None or not roles.sees_order(staff.role, staff.department_code, order.department_code):
            return render(request, "message.html", staff=staff, heading="找不到工单",
                          message=f"没有工单 {order_no}，或您无权查看。", status_code=404)
        view = _order_view(session, order, staff, names, router_, settings)
    done_words = {"merge": "合并", "link": "关联"}
    notice = "已登记" if filed else (f"已{done_words.get(done) or ACTION_LABELS.get(done, done)}" if done else None)
    return _page(request, staff, view, names, notice=notice)


def _data(action: Action, fields: dict[str, str]) -> dict:
    """The form's text fields as the lifecycle wants them (numbers, booleans, lists); empty ones left out."""
    data: dict = {}
    for name in ("reason", "note", "result", "satisfaction", "supervision_type", "department_code"):
        if fields.get(name, "").strip():
            data[name] = fields[name].strip()
    if fields.get("days", "").strip():
        data["days"] = int(fields["days"]) if fields["days"].strip().isdigit() else -1
    if fields.get("at_fault") in ("true", "false"):
        data["at_fault"] = fields["at_fault"] == "true"
    if action == Action.DISPATCH:
        data["co_handlers"] = [c.strip() for c in fields.get("co_handlers", "").replace("，", ",").split(",")
                               if c.strip()]
        data["mode"] = "manual"
    return data


@router.post("/desk/orders/{order_no}/act", dependencies=[CsrfChecked])
async def act(order_no: str, request: Request, staff: AnyStaff, sessions: SessionsDep, router_: LoadedRouterDep,
              settings: SettingsDep,
              action: Annotated[str, Form(max_length=32)] = "",
              reason: Annotated[str, Form(max_length=2000)] = "", note: Annotated[str, Form(max_length=5000)] = "",
              result: Annotated[str, Form(max_length=5000)] = "", days: Annotated[str, Form(max_length=4)] = "",
              at_fault: Annotated[str, Form(max_length=8)] = "",
              satisfaction: Annotated[str, Form(max_length=16)] = "",
              supervision_type: Annotated[str, Form(max_length=16)] = "",
              department_code: Annotated[str, Form(max_length=32)] = "",
              co_handlers: Annotated[str, Form(max_length=400)] = "",
              files: Annotated[list[UploadFile] | None, File()] = None) -> Response:
    try:
        chosen = Action(action)
    except ValueError:
        return render(request, "message.html", staff=staff, heading="无法办理", message="未知的操作", status_code=422)
    names = department_names(router_)
    data = _data(chosen, {"reason": reason, "note": note, "result": result, "days": days, "at_fault": at_fault,
                          "satisfaction": satisfaction, "supervision_type": supervision_type,
                          "department_code": department_code, "co_handlers": co_handlers})
    unknown = [c for c in [data.get("department_code"), *data.get("co_handlers", [])] if c and names and c not in names]
    problem = f"未知的单位代码：{'、'.join(unknown)}" if unknown else None

    moved: list[str] = []   # the complaint, when a dispatch moved it from one unit to another
    uploads = [Upload(f.filename or "", await f.read(MAX_BYTES + 1)) for f in (files or [])[:MAX_PER_STEP + 1]]
    if problem is None and uploads and chosen not in WITH_FILES and any(u.data for u in uploads):
        problem = "只有办理和办结可以附上照片或文件"
    if problem is None:
        try:
            check_uploads(uploads)
        except AttachmentRefused as exc:
            problem = str(exc)

    def apply() -> str | None:
        with transaction(sessions) as session:
            order = find_order(session, order_no=order_no)
            if order is None or not roles.sees_order(staff.role, staff.department_code, order.department_code):
                return "没有此工单，或您无权查看"
            previous = order.department_code
            order = apply_action(session, order_id=order.id, action=chosen, actor=staff, **data)
            if uploads:
                store_attachments(session, order=order, uploads=uploads, uploaded_by=staff.name,
                                  root=settings.state_dir / "attachments", event_seq=order.events[-1].seq)
            if chosen == Action.DISPATCH and previous and previous != data.get("department_code"):
                moved.append(order.text)
        return None

    if problem is None:
        try:
            problem = await run_in_threadpool(apply)
        except IllegalTransition as exc:
            problem = exc.reason
        except (Forbidden, ConcurrentUpdate, ValueError) as exc:
            problem = str(exc)
    if problem:
        return _refused(request, staff, sessions, router_, settings, order_no, f"未能{ACTION_LABELS[chosen]}：{problem}")
    if moved and router_ is not None:
        try:   # a re-dispatch: the router's guarded correction memory learns who really owns it (as the API does)
            router_.learn(moved[0], data["department_code"], created_by=staff.name)
        except ValueError:
            pass
    return RedirectResponse(f"/desk/orders/{order_no}?done={chosen.value}", status_code=303)


@router.get("/desk/orders/{order_no}/attachments/{attachment_id}")
def attachment(order_no: str, attachment_id: int, staff: AnyStaff, sessions: SessionsDep,
               settings: SettingsDep) -> Response:
    """A file of an order, for staff who see the order; images shown inline, PDFs downloaded."""
    with sessions() as session:
        order = find_order(session, order_no=order_no)
        found = session.get(Attachment, attachment_id)
        if (order is None or found is None or found.order_id != order.id
                or not roles.sees_order(staff.role, staff.department_code, order.department_code)):
            raise HTTPException(404, "没有此附件")
        path = attachment_path(settings.state_dir / "attachments", found)
        name, kind = found.filename, found.content_type
    if not path.is_file():
        raise HTTPException(410, "附件文件已不在存储中")
    disposition = "inline" if kind.startswith("image/") else "attachment"
    response = FileResponse(path, media_type=kind, filename=name, content_disposition_type=disposition)
    response.headers["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"
    response.headers["Cache-Control"] = "private, no-store"
    return response


@router.post("/desk/orders/{order_no}/merge", dependencies=[CsrfChecked])
def merge(order_no: str, request: Request, staff: AnyStaff, sessions: SessionsDep, router_: LoadedRouterDep,
          settings: SettingsDep, into: Annotated[str, Form(max_length=32)] = "",
          how: Annotated[str, Form(max_length=8)] = "merge",
          reason: Annotated[str, Form(max_length=500)] = "") -> Response:
    """合并 this caller's order into the handling order `into` (same event), or 关联 the two (related, both go on)."""
    problem = None
    try:
        with transaction(sessions) as session:
            order, other = find_order(session, order_no=order_no), find_order(session, order_no=into.strip())
            if order is None or other is None:
                problem = f"没有工单 {into.strip() or order_no}"
            elif how == "link":
                link_orders(session, order=order, other=other, actor=staff, reason=reason.strip() or None)
            else:
                merge_order(session, order=order, into=other, actor=staff, reason=reason.strip() or None)
    except (MergeRefused, Forbidden, ConcurrentUpdate) as exc:
        problem = str(exc)
    if problem:
        return _refused(request, staff, sessions, router_, settings, order_no,
                        f"未能{'关联' if how == 'link' else '合并'}：{problem}")
    return RedirectResponse(f"/desk/orders/{order_no}?done={'link' if how == 'link' else 'merge'}", status_code=303)
