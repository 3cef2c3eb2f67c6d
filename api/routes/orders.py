"""HTTP endpoints for work orders (systems with API keys, staff with tokens, citizens' status lookups). Thin:
validation and mapping of errors only; the rules are in orders/."""
from __future__ import annotations

import datetime as dt
import logging
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth.keys import verify_api_key
from api.deps import (
    ClientDep,
    LoadedRouterDep,
    LookupFailuresDep,
    MetricsDep,
    OrdersReader,
    OrdersWriter,
    Principal,
    PublicLimiterDep,
    RelayLimiterDep,
    RouterDep,
    SessionsDep,
    SettingsDep,
)
from api.ratelimit import RateLimiter
from api.routing_pool import route_with_vector, text_embedder
from api.schemas import Location
from hotline.core.clock import city_midnight
from hotline.core.db import read_only, transaction
from hotline.core.secrets import ASSISTANT_KEY_NAME
from nlp.normalize import InputError
from nlp.pii import mask_phone, mask_pii
from orders import roles
from orders.intake import file_complaint
from orders.lifecycle import ACTION_LABELS, OPEN_STATES, STATE_LABELS, Action, IllegalTransition, State
from orders.merge import (
    MergeInvalid,
    MergeRefused,
    handling_order,
    handling_result,
    link_orders,
    linked_order_nos,
    merge_order,
)
from orders.models import MERGED_ROLE, WorkOrder
from orders.queues import latest_decision
from orders.search import find_order, search_orders
from orders.service import (
    CHANNELS,
    WECHAT_SCOPE,
    ConcurrentUpdate,
    Forbidden,
    IdempotencyConflict,
    apply_action,
    canonical_order_no,
    citizen_lookup,
    orders_of_openid,
)
from orders.similar import SimilarOrder, remember_vector, similar_to_order
from routing.geocode import GeoPoint

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["orders"])


class OrderIn(BaseModel):
    text: str = Field(description="the complaint as the citizen or agent gave it")
    channel: str = Field(default="hotline", description=f"one of {', '.join(CHANNELS)}")
    caller_phone: str | None = Field(default=None, max_length=32)
    caller_openid: str | None = Field(default=None, max_length=64)
    location: Location | None = None


# Free text is bounded as in CallbackIn, codes and choices by what they can be (review 2026-12-06, L14: a 1 MB
# supervise note was stored).
REASON_CHARS, NOTE_CHARS = 2000, 5000
Code = Annotated[str, Field(max_length=32)]


class ActionIn(BaseModel):
    action: Action
    expected_version: int | None = Field(default=None, description="refuse if the order changed since this version")
    department_code: Code | None = None
    co_handlers: list[Code] | None = Field(default=None, max_length=20)
    mode: str | None = Field(default=None, max_length=32)
    reason: str | None = Field(default=None, max_length=REASON_CHARS)
    at_fault: bool | None = None
    note: str | None = Field(default=None, max_length=NOTE_CHARS)
    result: str | None = Field(default=None, max_length=NOTE_CHARS)
    days: int | None = None
    satisfaction: str | None = Field(default=None, max_length=32)
    supervision_type: str | None = Field(default=None, max_length=32)
    leader_flag: bool | None = None


class MergeIn(BaseModel):
    into: str = Field(min_length=1, max_length=32, description="the handling order (主办工单) to merge into")
    expected_version: int | None = Field(default=None, description="refuse if this order changed since this version")
    reason: str | None = Field(default=None, max_length=REASON_CHARS)


class LinkIn(BaseModel):
    other: str = Field(min_length=1, max_length=32, description="the related order (关联工单)")
    reason: str | None = Field(default=None, max_length=REASON_CHARS)


SIMILAR_TEXT_CHARS = 200   # enough for the agent to recognise the event in a list


def similar_json(hit: SimilarOrder) -> dict[str, Any]:
    order = hit.order
    return {"order_no": hit.order_no, "score": hit.score, "similarity": hit.similarity, "reason": hit.reason,
            "label": "疑似同一事件", "state": order.state, "state_label": STATE_LABELS[State(order.state)],
            "channel": order.channel, "text": order.text_masked[:SIMILAR_TEXT_CHARS],
            "department_code": order.department_code, "district_adcode": order.district_adcode,
            "street_id": order.street_id, "created_at": order.created_at.isoformat() if order.created_at else None,
            "merged_callers": sum(1 for c in order.children if c.role == MERGED_ROLE)}


def visible_to(order: WorkOrder, principal: Principal) -> bool:
    """A department handler sees only orders their department holds (a lead order's co-handler sees its child)."""
    return roles.sees_order(principal.role, principal.department_code, order.department_code)


def order_json(order: WorkOrder, *, events: bool = False) -> dict[str, Any]:
    out = {
        "order_no": order.order_no, "state": order.state, "state_label": STATE_LABELS[State(order.state)],
        "version": order.version, "channel": order.channel, "text": order.text_masked,
        "caller_phone": mask_phone(order.caller_phone) if order.caller_phone else None,
        "department_code": order.department_code, "handler": order.handler,
        "category": order.category_path, "kb_item_id": order.kb_item_id,
        "district_adcode": order.district_adcode, "street_id": order.street_id, "address": order.address,
        "urgency": order.urgency, "tags": order.tags, "time_limit_days": order.time_limit_days,
        "created_at": order.created_at.isoformat() if order.created_at else None,
        "deadline_at": order.deadline_at.isoformat() if order.deadline_at else None,
        "parent_order_no": order.parent.order_no if order.parent else None, "role": order.role,
    }
    if events:
        out["merged_orders"] = [c.order_no for c in order.children if c.role == MERGED_ROLE]
        out["linked_orders"] = linked_order_nos(order)
        out["events"] = [{"seq": e.seq, "action": e.action, "from_state": e.from_state, "to_state": e.to_state,
                          "actor": e.actor, "actor_role": e.actor_role, "department_code": e.department_code,
                          "comment": e.comment, "data": e.data, "at": e.at.isoformat()} for e in order.events]
    return out


@router.post("/orders", status_code=201)
async def post_order(body: OrderIn, request: Request, response: Response, key: OrdersWriter,
                     sessions: SessionsDep, settings: SettingsDep, router_: LoadedRouterDep, metrics: MetricsDep,
                     idempotency_key: Annotated[str | None, Header(max_length=128)] = None) -> dict:
    """Create a work order (routed at once when the router is loaded). Send an Idempotency-Key to make retries safe:
    keys are the sender's own (another client's equal key is another key)."""
    if key.role == "handler":
        # A department's own system or staff handles what is dispatched to it; complaints come in through the
        # centre's channels (review 2026-12-06, L12: a department key filed orders).
        raise HTTPException(403, f"{key.name} acts for department {key.department_code}: departments handle orders, "
                                 "they do not file them (use a channel's or the centre's key)")
    scope = key.idempotency_scope
    if idempotency_key and idempotency_key.startswith("msg:") and key.kind == "key":
        if key.name == ASSISTANT_KEY_NAME:
            # The assistant files a WeChat message under the message's own key, the key the WeChat relay files it
            # under when the assistant answers too late: one message, one order. Nobody else writes in that scope.
            scope = WECHAT_SCOPE
    routing, vector, lat, lng, point = None, None, None, None, None
    if body.location:
        point = GeoPoint(body.location.lat, body.location.lng, body.location.datum)
        lat, lng = point.to_wgs84()
    try:
        if router_ is not None:
            routing, vector = await route_with_vector(request.app, router_, body.text, point)
    except InputError as exc:
        raise HTTPException(422, str(exc)) from None

    model_id = text_embedder(router_)[0] if router_ is not None else None

    def store() -> tuple[dict, bool]:
        with transaction(sessions) as session:
            order, created = file_complaint(session, text=body.text, channel=body.channel,
                                            actor=key, caller_phone=body.caller_phone,
                                            caller_openid=body.caller_openid, lat=lat, lng=lng,
                                            idempotency_key=idempotency_key, idempotency_scope=scope, routing=routing,
                                            routing_model=router_.embedder_note if router_ else None,
                                            auto_dispatch=settings.auto_dispatch, text_vector=vector,
                                            vector_model=model_id)
            payload = order_json(order)
        if vector is not None:
            # The agent's screen and the dispatch system see at once which open orders tell the same event. Searched
            # after the commit, in a read session: on SQLite the write lock is held for the filing only, not for
            # reading the window's orders (under load the search inside made every other intake wait for it).
            # Nothing is embedded here; an order stored without a vector is embedded by GET .../similar. `order`
            # is detached with its columns loaded (sessions do not expire on commit): no need to read it again.
            try:
                with read_only(sessions) as session:
                    if created:
                        remember_vector(session, order=order, vector=vector, model_id=model_id)
                    payload["similar"] = [similar_json(hit) for hit in similar_to_order(
                        session, order=order, model_id=model_id, embed=None, vector=vector,
                        window_days=settings.same_event_window_days, limit=settings.same_event_limit)]
            except Exception:
                # The order is stored: its sender gets its number, not a 500 that invites a second filing. The
                # order page and GET .../similar search again.
                log.warning("same-event search failed after order %s was filed", order.order_no, exc_info=True)
                payload["similar"], payload["similar_unavailable"] = [], True
        return payload, created

    try:
        payload, created = await run_in_threadpool(store)
    except InputError as exc:
        raise HTTPException(422, str(exc)) from None
    except ValueError as exc:
        if isinstance(exc, IdempotencyConflict):
            raise HTTPException(409, str(exc)) from None
        raise HTTPException(422, str(exc)) from None
    if not created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    if routing is not None:
        payload["routing"] = {k: routing[k] for k in ("decision", "confidence", "department", "kb_item", "candidates")}
        if created:
            metrics.decisions.labels(routing["decision"]).inc()
    return payload


@contextmanager
def lifecycle_errors():
    """A refused lifecycle step as HTTP: illegal or stale → 409 with the reason, not allowed → 403."""
    try:
        yield
    except IllegalTransition as exc:
        raise HTTPException(409, exc.reason) from None
    except ConcurrentUpdate as exc:
        raise HTTPException(409, str(exc)) from None
    except Forbidden as exc:
        raise HTTPException(403, str(exc)) from None


def order_or_404(session: Session, order_no: str, *, with_steps: bool = False) -> WorkOrder:
    order = find_order(session, order_no=order_no, with_steps=with_steps)
    if order is None:
        raise HTTPException(404, f"no work order {order_no}")
    return order


@router.get("/orders/{order_no}")
def get_order_view(order_no: str, principal: OrdersReader, sessions: SessionsDep) -> dict:
    with read_only(sessions) as session:
        order = order_or_404(session, order_no, with_steps=True)
        if not visible_to(order, principal):
            raise HTTPException(404, f"no work order {order_no}")   # not 403: do not confirm it exists
        decision = latest_decision(session, order=order)
        # The router's answer as stored at intake, so a dispatch system or screen sees why after the fact.
        routing = {"decision": decision.decision, "confidence": decision.confidence,
                   "department_code": decision.department_code, "kb_item_id": decision.kb_item_id,
                   "candidates": decision.candidates, "decided_by": decision.model, "correct": decision.correct,
                   "reasons": decision.explanation} if decision else None
        return order_json(order, events=True) | {"routing": routing}


@router.post("/orders/{order_no}/actions")
def post_action(order_no: str, body: ActionIn, key: OrdersWriter, sessions: SessionsDep,
                router_: LoadedRouterDep) -> dict:
    """One lifecycle step (accept, dispatch, sign, return, …). Illegal steps: 409 with the reason."""
    data = body.model_dump(exclude={"action", "expected_version"}, exclude_none=True)
    if body.action == Action.DISPATCH:
        _check_departments(router_, [body.department_code, *(body.co_handlers or [])])
    with lifecycle_errors(), transaction(sessions) as session:
        order = order_or_404(session, order_no)
        if not visible_to(order, key):
            raise HTTPException(404, f"no work order {order_no}")
        previous_department = order.department_code
        order = apply_action(session, order_id=order.id, action=body.action, actor=key,
                             expected_version=body.expected_version, **data)
        result = order_json(order, events=True)
        complaint = order.text
    _learn_from_redispatch(router_, body, previous_department, complaint, key.name)
    return result


def _check_departments(router_, codes: list[str | None]) -> None:
    """A dispatch names units the knowledge base knows (as /confirm does); an unknown code stranded the order."""
    known = router_.kb.departments if router_ is not None else None
    unknown = [code for code in codes if code and known is not None and code not in known]
    if unknown:
        raise HTTPException(422, f"unknown department {', '.join(map(repr, unknown))}: not in the knowledge base")


def _learn_from_redispatch(router_, body: ActionIn, previous: str | None, complaint: str, who: str) -> None:
    """An order moved from one unit to another: the router remembers who really owned it (after the commit)."""
    if body.action != Action.DISPATCH or not previous or previous == body.department_code or router_ is None:
        return
    try:
        router_.learn(complaint, body.department_code, created_by=who)
    except ValueError:
        pass   # a unit the knowledge base does not know (e.g. an outside body) teaches nothing


# -- same event: similar open orders, merge, link ---------------------------------------------------------------
def _centre_only(principal: Principal) -> None:
    if not roles.in_centre(principal.role):
        raise HTTPException(403, f"role {principal.role!r}: same-event search and merging are the centre's work")


@router.get("/orders/{order_no}/similar")
def similar_view(order_no: str, principal: OrdersReader, sessions: SessionsDep, router_: RouterDep,
                 settings: SettingsDep,
                 limit: Annotated[int | None, Query(ge=1, le=50)] = None) -> dict:
    """Open orders probably about the same event (疑似同一事件), best first, each with its score and the reason;
    the texts are masked."""
    _centre_only(principal)
    model_id, embed = text_embedder(router_)
    with transaction(sessions) as session:   # an order filed without a vector gets one stored now
        order = order_or_404(session, order_no)
        found = similar_to_order(session, order=order, model_id=model_id, embed=embed,
                                 window_days=settings.same_event_window_days,
                                 limit=limit or settings.same_event_limit)
        return {"order_no": order.order_no, "window_days": settings.same_event_window_days,
                "similar": [similar_json(hit) for hit in found]}


@contextmanager
def merge_errors():
    try:
        with lifecycle_errors():
            yield
    except MergeInvalid as exc:
        raise HTTPException(422, str(exc)) from None
    except MergeRefused as exc:
        raise HTTPException(409, str(exc)) from None


def _other_order(session: Session, order_no: str, principal: Principal, what: str) -> WorkOrder:
    other = (session.scalar(select(WorkOrder).where(WorkOrder.order_no == canonical_order_no(order_no)))
             if "\x00" not in order_no else None)
    if other is None or not visible_to(other, principal):
        raise HTTPException(422, f"no work order {order_no} to {what}")
    return other


@router.post("/orders/{order_no}/merge")
def merge_view(order_no: str, body: MergeIn, key: OrdersWriter, sessions: SessionsDep) -> dict:
    """合并: this caller's order becomes a child of the handling order `into` and follows it from now on (its
    caller still sees the progress and the result). Refused: 409 with the reason (closed, already merged, another
    unit's work…), 422 for a request that cannot be right (into itself, an unknown order)."""
    _centre_only(key)
    with merge_errors(), transaction(sessions) as session:
        order = order_or_404(session, order_no)
        into = _other_order(session, body.into, key, "merge into")
        merge_order(session, order=order, into=into, actor=key, reason=body.reason,
                    expected_version=body.expected_version)
        return {"order": order_json(order, events=True), "into": order_json(into, events=True)}


@router.post("/orders/{order_no}/link")
def link_view(order_no: str, body: LinkIn, key: OrdersWriter, sessions: SessionsDep) -> dict:
    """关联: record that two orders are related (e.g. the same place, another matter); neither's state changes."""
    _centre_only(key)
    with merge_errors(), transaction(sessions) as session:
        order = order_or_404(session, order_no)
        other = _other_order(session, body.other, key, "link with")
        link_orders(session, order=order, other=other, actor=key, reason=body.reason)
        return order_json(order, events=True)


# -- citizens ------------------------------------------------------------------------------------------------
def citizen_json(order: WorkOrder, router_) -> dict:
    """What a citizen may see: state, the unit handling it, the deadline and the last step, in plain words; for an
    order merged into the handling order of the same event, that order's progress, and the 办理结果 once closed."""
    handled = handling_order(order)
    department = router_.kb.departments.get(handled.department_code) if router_ and handled.department_code else None
    last = handled.events[-1] if handled.events else None
    return {"order_no": order.order_no, "state": handled.state, "state_label": STATE_LABELS[State(handled.state)],
            "open": State(handled.state) in OPEN_STATES,   # still being handled: a deadline can be missed
            "department": department.name if department else handled.department_code,
            "category": handled.category_path,
            "deadline_at": handled.deadline_at.isoformat() if handled.deadline_at else None,
            "last_step": {"action": ACTION_LABELS.get(last.action, "登记") if last else None,
                          "at": last.at.isoformat() if last else None},
            "merged": handled is not order,   # 同一事件合并办理
            **citizen_result(order)}


def citizen_result(order: WorkOrder) -> dict:
    """The 办理结果 once the centre closed the order (a merged order: its handling order's), masked as citizens see
    every text, with when it was completed; both None before that."""
    result = handling_result(order)
    completed_at = handling_order(order).completed_at if result else None
    return {"result": mask_pii(result) if result else None,
            "completed_at": completed_at.isoformat() if completed_at else None}


def _lookup_wait(*, sessions, client: str | None, public_limiter: RateLimiter, relay_limiter: RateLimiter,
                 api_key: str | None, on_behalf_of: str | None) -> float | None:
    """Seconds to wait before this lookup (None: go ahead). A lookup counts against the caller's address, or, for
    a channel key that relays citizens (scope `lookup:on_behalf`, the assistant's) and names the user it acts
    for, against that user, so one busy chat cannot exhaust the limit for everyone behind 127.0.0.1. Such a key is
    bounded as a whole too (relay_lookups_per_key_per_minute), so rotating X-On-Behalf-Of buys no more guesses."""
    if api_key and on_behalf_of:
        with sessions() as session:
            key = verify_api_key(session, api_key)
        if key is not None and not key.department_code and "lookup:on_behalf" in (key.scopes or ()):
            wait = relay_limiter.check(f"relay:{key.name}")
            if wait is not None:
                return wait
            return public_limiter.check(f"key:{key.name}:{on_behalf_of}")
    return public_limiter.check(client or "unknown")


@router.get("/public/orders/{order_no}", tags=["citizens"])
def citizen_status(order_no: str, sessions: SessionsDep, router_: LoadedRouterDep, client: ClientDep,
                   public_limiter: PublicLimiterDep, relay_limiter: RelayLimiterDep, failures: LookupFailuresDep,
                   phone_last4: Annotated[str, Query(min_length=4, max_length=4, pattern=r"^\d{4}$")],
                   x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
                   x_on_behalf_of: Annotated[str | None, Header(max_length=128, include_in_schema=False)] = None,
                   ) -> dict:
    """Status of an order for the citizen who filed it: order number + the last 4 digits of the phone given."""
    wait = _lookup_wait(sessions=sessions, client=client, public_limiter=public_limiter, relay_limiter=relay_limiter,
                        api_key=x_api_key, on_behalf_of=x_on_behalf_of)
    if wait is not None:
        raise HTTPException(429, "too many lookups; try again shortly", headers={"Retry-After": str(int(wait) + 1)})
    # Wrong digits are counted per order number, whoever sends them (an unknown number too: the answer must not
    # tell which numbers exist); past the limit the number's lookups pause, the right digits included.
    order_key = canonical_order_no(order_no)[:64]   # bounded: the key is kept in memory
    wait = failures.blocked(order_key)
    if wait is not None:
        raise HTTPException(429, "too many wrong phone numbers for this order; lookups of it are paused, try again "
                                 "later or call 12345", headers={"Retry-After": str(int(wait) + 1)})
    with sessions() as session:
        order = citizen_lookup(session, order_no=order_no, phone_last4=phone_last4)
        if order is None:
            failures.record(order_key)
            raise HTTPException(404, "no order with that number and phone")
        return citizen_json(order, router_)


@router.get("/orders", tags=["orders"])
def search(principal: OrdersReader, sessions: SessionsDep, router_: LoadedRouterDep,
                  openid: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
                  q: Annotated[str | None, Query(max_length=100, description="words in the (masked) text")] = None,
                  state: Annotated[State | None, Query()] = None,
                  department: Annotated[str | None, Query(max_length=32)] = None,
                  district: Annotated[str | None, Query(max_length=12)] = None,
                  channel: Annotated[str | None, Query(max_length=16)] = None,
                  start: Annotated[dt.date | None, Query()] = None,
                  end: Annotated[dt.date | None, Query(description="exclusive")] = None,
                  limit: Annotated[int, Query(ge=1, le=200)] = 50,
                  offset: Annotated[int, Query(ge=0, le=100_000)] = 0) -> list[dict]:
    """Search orders (staff and systems; a department handler only within their department), newest first.
    With `openid`: a WeChat/web user's own orders ("my orders"), for the channel or assistant that knows the user's
    OpenID — channel systems only, answered in the citizen's terms."""
    if any("\x00" in value for value in (openid, q, department, district, channel) if value):
        raise HTTPException(422, "NUL characters are not allowed in search parameters")   # PostgreSQL refuses them
    if openid is not None:
        if principal.role != "system":
            raise HTTPException(403, "only channel systems look orders up by OpenID")
        with sessions() as session:
            return [citizen_json(o, router_) for o in orders_of_openid(session, openid=openid)]
    if principal.role == "handler":
        department = principal.department_code
    with read_only(sessions) as session:
        found = search_orders(session, state=state, department_code=department, district_adcode=district,
                              channel=channel, start=city_midnight(start) if start else None,
                              end=city_midnight(end) if end else None, words=(q or "").split(), limit=limit,
                              offset=offset)
        return [order_json(o) for o in found]
