"""Work-order operations. Keyword-only functions that take the session explicitly; the caller owns the transaction.

Why a package of its own: the design card has no home for the order loop (routing is stateless, api is transport),
and every channel, the dispatch API, indicators and the assistant share it.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import unicodedata
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from hotline.core.clock import CITY_TZ
from nlp.normalize import check_text
from nlp.pii import mask_pii
from nlp.request_type import request_type
from orders import roles
from orders.lifecycle import (
    ACTION_LABELS,
    OPEN_STATES,
    STATE_LABELS,
    Action,
    IllegalTransition,
    State,
    add_working_days,
    next_state,
)
from orders.models import MERGED_ROLE, OrderEvent, RoutingDecision, Supervision, WorkOrder, utcnow
from orders.outbox import enqueue_for_event

DEFAULT_TIME_LIMIT_DAYS = 5
CHANNELS = ("hotline", "wechat", "web", "open311", "grid", "app", "sensor", "110")

# Who may do what: the table in orders/roles.py.
ROLE_ACTIONS: dict[str, frozenset[Action]] = {role: rule.actions for role, rule in roles.RULES.items()}


class OrderNotFound(LookupError):
    pass


class ConcurrentUpdate(RuntimeError):
    """Someone else changed the order first; reload and try again."""


class IdempotencyConflict(ValueError):
    """The Idempotency-Key was already used for a different request."""


class Forbidden(PermissionError):
    pass


@dataclass(frozen=True)
class Actor:
    name: str
    role: str
    department_code: str | None = None


def _request_hash(**fields) -> str:
    return hashlib.sha256(json.dumps(fields, ensure_ascii=False, sort_keys=True, default=str).encode()).hexdigest()


def record_event(order: WorkOrder, *, action: str, from_state: str | None, actor: Actor, now: dt.datetime,
                 comment: str | None = None, data: dict | None = None) -> OrderEvent:
    """Append a step to the order's trail (also used by orders/merge.py)."""
    event = OrderEvent(seq=len(order.events) + 1, action=action, from_state=from_state, to_state=order.state,
                       actor=actor.name, actor_role=actor.role, department_code=order.department_code,
                       comment=comment, data=data or {}, at=now)
    order.events.append(event)
    return event


def follow_handling_order(order: WorkOrder) -> None:
    """Merged callers' orders take the handling order's state, unit and deadline (their steps are its steps)."""
    for child in order.children:
        if child.role == MERGED_ROLE:
            child.state = order.state
            child.department_code = order.department_code
            child.deadline_at = order.deadline_at
            child.completed_at, child.closed_at = order.completed_at, order.closed_at


# Idempotency keys are the sender's own (review 2026-12-06, L12): a key means something only together with who sent
# it, so another client's key never replays someone else's order, and nobody can take a key another client will use
# (WeChat's predictable `msg:<MsgId>`). The column holds sha256(scope NUL key): fixed length, unambiguous whatever
# the key and the scope hold. Scopes: "key:<API key name>", "staff:<username>", and the WeChat channel's below.
WECHAT_SCOPE = "channel:wechat"


def scoped_idempotency_key(scope: str, key: str) -> str:
    """What work_orders.idempotency_key holds for `key` sent by `scope` (migration 0008 wrote the older keys so)."""
    return hashlib.sha256(f"{scope}\0{key}".encode()).hexdigest()


def actor_scope(actor: Actor) -> str:
    """The idempotency scope of an actor whose caller named none (service-internal callers, tests)."""
    return f"actor:{actor.role}:{actor.name}"


def find_by_idempotency_key(session: Session, *, key: str, scope: str) -> WorkOrder | None:
    return session.scalar(select(WorkOrder).where(WorkOrder.idempotency_key == scoped_idempotency_key(scope, key)))


def create_order(session: Session, *, text: str, channel: str, actor: Actor, caller_phone: str | None = None,
                 caller_openid: str | None = None, lat: float | None = None, lng: float | None = None,
                 idempotency_key: str | None = None, routing: dict | None = None, routing_model: str | None = None,
                 auto_dispatch: bool = False, order_no_prefix: str = "CS", idempotency_scope: str | None = None,
                 now: dt.datetime | None = None) -> tuple[WorkOrder, bool]:
    """(order, created). The same Idempotency-Key from the same sender (`idempotency_scope`; default: the actor's)
    with the same request returns the first order, never a second; another sender's equal key is another key.
    With `auto_dispatch`, an order the router is confident about (decision "auto") is accepted and dispatched at
    once; the others wait in the agents' queue (suggest) or the joint-review queue (review)."""
    text = check_text(text)
    idempotency_key = idempotency_key or None   # an empty header is no key (stored as "" it made the next one a 500)
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; one of {', '.join(CHANNELS)}")
    now = now or utcnow()
    request_hash = _request_hash(text=text, channel=channel, phone=caller_phone, openid=caller_openid, lat=lat, lng=lng)
    scope = idempotency_scope or actor_scope(actor)
    if idempotency_key:
        existing = find_by_idempotency_key(session, key=idempotency_key, scope=scope)
        if existing is not None:
            return _replay(existing, request_hash), False

    digits = "".join(ch for ch in caller_phone or "" if ch.isdigit())
    order = WorkOrder(channel=channel, state=State.RECEIVED, text=text, text_masked=mask_pii(text),
                      caller_phone=digits or None, caller_phone_last4=digits[-4:] or None,
                      caller_openid=caller_openid, request_hash=request_hash,
                      idempotency_key=scoped_idempotency_key(scope, idempotency_key) if idempotency_key else None,
                      lat=lat, lng=lng, created_at=now, updated_at=now, tags=[], request_type=request_type(text),
                      events=[], children=[])   # known empty: no SELECT for them when the first step is recorded
    try:
        # A savepoint: a concurrent request with the same key makes this insert fail, and we return the winner.
        with session.begin_nested():
            session.add(order)
            session.flush()
    except IntegrityError:
        if not idempotency_key:
            raise
        existing = find_by_idempotency_key(session, key=idempotency_key, scope=scope)
        if existing is None:
            raise
        return _replay(existing, request_hash), False
    # The city's date (Beijing time), as citizens read it; the id keeps numbers unique.
    order.order_no = f"{order_no_prefix}{now.astimezone(CITY_TZ):%Y%m%d}{order.id:06d}"
    record_event(order, action="create", from_state=None, actor=actor, now=now, data={"channel": channel})
    if routing:
        attach_routing(session, order_id=order.id, routing=routing, model=routing_model, now=now)
        if auto_dispatch:
            dispatch_if_confident(session, order=order, routing=routing, now=now)
    session.flush()
    return order, True


ROUTER_ACTOR = Actor("router", "system")


def dispatch_if_confident(session: Session, *, order: WorkOrder, routing: dict, now: dt.datetime) -> bool:
    """Accept and dispatch an order the router is confident about (the dispatch policy's "auto" decision)."""
    department = (routing.get("department") or {}).get("code")
    if routing.get("decision") != "auto" or not department or routing.get("diversion"):
        return False
    apply_action(session, order_id=order.id, action=Action.ACCEPT, actor=ROUTER_ACTOR, now=now)
    apply_action(session, order_id=order.id, action=Action.DISPATCH, actor=ROUTER_ACTOR, now=now,
                 department_code=department, mode="auto",
                 co_handlers=[c["code"] for c in routing.get("co_handlers") or [] if c.get("code")])
    return True


def attach_routing(session: Session, *, order_id: int, routing: dict, model: str | None = None,
                   now: dt.datetime | None = None) -> RoutingDecision:
    """Record the router's answer for an order (at intake, or later when a channel routes after replying)."""
    order = get_order(session, order_id=order_id)
    _apply_routing(order, routing)
    decision = RoutingDecision(order_id=order.id, decided_at=now or utcnow(), decision=routing.get("decision", "suggest"),
                               confidence=float(routing.get("confidence") or 0.0),
                               department_code=(routing.get("department") or {}).get("code"),
                               kb_item_id=(routing.get("kb_item") or {}).get("id"),
                               candidates=[_candidate_summary(c) for c in routing.get("candidates", [])],
                               model=_decided_by(routing, model), explanation=routing_reasons(routing))
    session.add(decision)
    session.flush()
    return decision


def routing_reasons(routing: dict) -> dict:
    """What the agent needs to see of the router's answer later, on the order's page (the candidates are kept
    apart): why this unit, how sure, where, and what to ask or flag."""
    top_why = ((routing.get("candidates") or [{}])[0] or {}).get("why") or {}
    address = routing.get("address") or {}
    return {"explanation": routing.get("explanation"), "decision_reasons": routing.get("decision_reasons") or [],
            "kb_item": routing.get("kb_item"), "category": routing.get("category"),
            "time_limit_days": routing.get("time_limit_days"), "jurisdiction": routing.get("jurisdiction"),
            "resolution": address.get("resolution"), "question": address.get("question"),
            "matched_example": top_why.get("matched_example"), "similarity": top_why.get("similarity"),
            "boundary": top_why.get("boundary"), "tags": routing.get("tags") or [], "urgency": routing.get("urgency"),
            "diversion": routing.get("diversion"),
            "other_matters": [{"kb_item": m.get("kb_item"), "department": m.get("department")}
                              for m in routing.get("other_matters") or []],
            "co_handlers": routing.get("co_handlers") or []}


def _decided_by(routing: dict, embeddings: str | None) -> str | None:
    """Which model decided (the knowledge base or a history model) and with which embeddings."""
    parts = [p for p in (routing.get("decided_by"), embeddings) if p]
    return " · ".join(parts)[:256] if parts else None


def _replay(existing: WorkOrder, request_hash: str) -> WorkOrder:
    if existing.request_hash != request_hash:
        raise IdempotencyConflict("this Idempotency-Key was already used for a different request")
    return existing


def _candidate_summary(candidate: dict) -> dict:
    return {"department": (candidate.get("department") or {}).get("code"),
            "department_name": (candidate.get("department") or {}).get("name"),
            "kb_item": (candidate.get("kb_item") or {}).get("id"), "score": candidate.get("score")}


def _apply_routing(order: WorkOrder, routing: dict) -> None:
    """Copy what the router found (place, matter, time limit, tags) onto the order."""
    address = routing.get("address") or {}
    order.address = address.get("standard_address") or None
    order.district_adcode = (address.get("district") or {}).get("adcode")
    order.street_id = (address.get("street") or {}).get("id")
    order.community = address.get("community")
    order.kb_item_id = (routing.get("kb_item") or {}).get("id")
    order.category_path = "/".join(routing.get("category") or []) or None
    order.category_code = routing.get("category_code")
    order.time_limit_days = routing.get("time_limit_days")
    # A 110/119/122 matter (持刀伤人, 着火) is urgent whatever the wording, and the agent must see where it belongs.
    diversion = routing.get("diversion")
    order.urgency = "紧急" if diversion else routing.get("urgency") or "非紧急"
    order.tags = list(routing.get("tags") or []) + ([f"转{diversion}"] if diversion else [])
    order.sentiment = routing.get("sentiment")


def canonical_order_no(order_no: str) -> str:
    """An order number as stored: without the spaces and lower case people type it with."""
    return order_no.strip().upper()


def citizen_lookup(session: Session, *, order_no: str, phone_last4: str) -> WorkOrder | None:
    """The order if `phone_last4` matches its caller's phone; None otherwise (the same answer for a wrong number
    and an unknown order, so the lookup cannot be used to find out which orders exist)."""
    # NUL: PostgreSQL refuses it in a query (a 500); no order number holds one anyway.
    order = (session.scalar(select(WorkOrder).where(WorkOrder.order_no == canonical_order_no(order_no)))
             if "\x00" not in order_no else None)
    expected = (order.caller_phone_last4 if order else None) or "????"
    # Decimal digits of any script (full-width １２３４ from a Chinese keyboard) as ASCII: compare_digest refuses
    # non-ASCII text, which made such input a 500.
    given = "".join(str(unicodedata.decimal(ch)) for ch in phone_last4 if ch.isdecimal())[-4:]
    return order if hmac.compare_digest(expected, given.rjust(4, "!")) and order is not None else None


def orders_of_openid(session: Session, *, openid: str, limit: int = 10) -> list[WorkOrder]:
    """A WeChat user's own orders, newest first ("my orders"); one merged into the handling order of the same event
    is still theirs (the status then follows the handling order)."""
    mine = or_(WorkOrder.parent_id.is_(None), WorkOrder.role == MERGED_ROLE)
    return list(session.scalars(select(WorkOrder).where(WorkOrder.caller_openid == openid, mine)
                                .order_by(WorkOrder.created_at.desc(), WorkOrder.id.desc()).limit(limit)))


def get_order(session: Session, *, order_id: int) -> WorkOrder:
    order = session.get(WorkOrder, order_id)
    if order is None:
        raise OrderNotFound(f"work order {order_id} not found")
    return order


def _check_permission(order: WorkOrder, action: Action, actor: Actor) -> None:
    if not roles.may_act(actor.role, action):
        hint = (f"; ask the centre with {Action.REQUEST_EXTENSION.value} (days, reason)"
                if action == Action.EXTEND and Action.REQUEST_EXTENSION in ROLE_ACTIONS.get(actor.role, ()) else "")
        raise Forbidden(f"role {actor.role!r} may not {action.value} orders{hint}")
    if not roles.acts_on(actor.role, actor.department_code, order.department_code):
        raise Forbidden("this order is not held by your department")


def apply_action(session: Session, *, order_id: int, action: Action | str, actor: Actor,
                 expected_version: int | None = None, now: dt.datetime | None = None, **data) -> WorkOrder:
    """Move an order through its lifecycle, recording the step. Illegal moves raise IllegalTransition."""
    action = Action(action)
    now = now or utcnow()
    order = get_order(session, order_id=order_id)
    if expected_version is not None and order.version != expected_version:
        raise ConcurrentUpdate(f"order {order.order_no} changed (version {order.version}, you had {expected_version})")
    _check_permission(order, action, actor)
    before = State(order.state)
    after = next_state(before, action, data)
    _check_order_rules(order, action, before)
    comment = data.get("reason") or data.get("note") or data.get("result")
    order_no = order.order_no   # read now: after a failed flush the session cannot load attributes
    previous_department = order.department_code
    try:
        # Any query below may autoflush; a row that changed under us fails there or at the final flush.
        _side_effects(session, order, action, actor, now, data)
        order.state = after
        order.updated_at = now
        follow_handling_order(order)
        event = record_event(order, action=action.value, from_state=before, actor=actor, now=now, comment=comment,
                             data={k: v for k, v in data.items() if k not in {"reason", "note", "result"}})
        # Webhooks are written in this same transaction (outbox): they exist if and only if the step does.
        enqueue_for_event(session, order=order, event=event, previous_department=previous_department, now=now)
        for child in order.children if action == Action.DISPATCH else ():
            if child.events and child.events[-1].at == now:
                enqueue_for_event(session, order=child, event=child.events[-1], previous_department=None, now=now)
        session.flush()
    except StaleDataError:
        raise ConcurrentUpdate(f"order {order_no} was changed by someone else; reload it") from None
    return order


def pending_extension(order: WorkOrder) -> OrderEvent | None:
    """The department's extension request the centre has not answered yet (a re-dispatch voids it), or None."""
    answers = {Action.APPROVE_EXTENSION.value, Action.REFUSE_EXTENSION.value, Action.DISPATCH.value, "reopen"}
    for event in reversed(order.events):
        if event.action == Action.REQUEST_EXTENSION.value:
            return event
        if event.action in answers:
            return None
    return None


def _check_order_rules(order: WorkOrder, action: Action, state: State) -> None:
    """Rules that need more than the state: the extension request under review, open co-handler orders."""
    if action == Action.REQUEST_EXTENSION and pending_extension(order) is not None:
        raise IllegalTransition(action, state, "已有一条待审批的延期申请，请等中心审批后再申请")
    if action in roles.EXTENSION_REVIEW and pending_extension(order) is None:
        raise IllegalTransition(action, state, f"没有待审批的延期申请，不能{ACTION_LABELS[action]}")
    if action in (Action.COMPLETE, Action.APPROVE):
        # 牵头 closes last: the lead reports done once every 协办 has reported, and is closed once every 协办 is closed.
        still_open = OPEN_STATES - {State.COMPLETED} if action == Action.COMPLETE else OPEN_STATES
        open_children = [c for c in order.children if c.role != MERGED_ROLE and State(c.state) in still_open]
        if open_children:
            listed = "、".join(f"{c.order_no}（{c.department_code}，{STATE_LABELS[State(c.state)]}）" for c in open_children)
            raise IllegalTransition(action, state, f"协办工单尚未办结，牵头工单不能{ACTION_LABELS[action]}：{listed}")


def _latest_decision(session: Session, order: WorkOrder) -> RoutingDecision | None:
    return session.scalar(select(RoutingDecision).where(RoutingDecision.order_id == order.id)
                          .order_by(RoutingDecision.id.desc()).limit(1))


def _side_effects(session: Session, order: WorkOrder, action: Action, actor: Actor, now: dt.datetime, data: dict) -> None:
    if action == Action.ACCEPT:
        order.accepted_at = now
    elif action == Action.DISPATCH:
        _dispatch(session, order, actor, now, data)
    elif action == Action.SIGN:
        order.handler = actor.name
        decision = _latest_decision(session, order)
        if decision is not None and decision.correct is None:
            # The department accepted the order: the router's answer was right if it named this department.
            decision.correct = decision.department_code == order.department_code
            decision.final_department_code = order.department_code
    elif action == Action.RETURN:
        order.return_count += 1
        decision = _latest_decision(session, order)
        if decision is not None and decision.department_code == order.department_code:
            decision.correct = False
    elif action == Action.EXTEND:
        order.deadline_at = add_working_days(order.deadline_at or now, int(data["days"]))
    elif action == Action.APPROVE_EXTENSION:
        request = pending_extension(order)
        data["days"] = int(request.data["days"])   # recorded on the approval: what was granted
        order.deadline_at = add_working_days(order.deadline_at or now, data["days"])
    elif action == Action.COMPLETE:
        order.completed_at = now
    elif action == Action.APPROVE:
        order.closed_at = now
    elif action == Action.SEND_BACK:
        order.completed_at = None
    elif action == Action.RATE:
        order.satisfaction = data["satisfaction"]
    elif action == Action.REOPEN:
        order.reopen_count += 1
        order.completed_at = order.closed_at = order.satisfaction = None
        order.dispatched_at = now
        order.deadline_at = add_working_days(now, order.time_limit_days or DEFAULT_TIME_LIMIT_DAYS)
    elif action == Action.SUPERVISE:
        session.add(Supervision(order_id=order.id, supervision_type=data["supervision_type"],
                                leader_flag=bool(data.get("leader_flag")), note=data.get("note"), by=actor.name, at=now))


def _dispatch(session: Session, order: WorkOrder, actor: Actor, now: dt.datetime, data: dict) -> None:
    department = data["department_code"]
    if order.department_code and order.department_code != department:
        decision = _latest_decision(session, order)
        if decision is not None and decision.correct is None and decision.department_code == order.department_code:
            decision.correct = False
    order.department_code = department
    order.handler = None
    order.dispatched_at = now
    order.first_dispatched_at = order.first_dispatched_at or now
    order.deadline_at = add_working_days(now, order.time_limit_days or DEFAULT_TIME_LIMIT_DAYS)
    co_handlers = [c for c in data.get("co_handlers") or [] if c != department]
    if co_handlers and order.parent_id is None:
        order.role = "lead"
        for code in co_handlers:
            child = WorkOrder(channel=order.channel, state=State.DISPATCHED, text=order.text,
                              text_masked=order.text_masked, parent=order, role="co", department_code=code,
                              district_adcode=order.district_adcode, street_id=order.street_id,
                              address=order.address, kb_item_id=order.kb_item_id, category_code=order.category_code,
                              category_path=order.category_path, time_limit_days=order.time_limit_days,
                              urgency=order.urgency, tags=list(order.tags or []), created_at=now, updated_at=now,
                              accepted_at=now, dispatched_at=now, first_dispatched_at=now,
                              deadline_at=order.deadline_at)
            session.add(child)
            session.flush()
            child.order_no = f"{order.order_no}-{sum(1 for c in order.children if c.role == 'co')}"
            record_event(child, action="dispatch", from_state=None, actor=actor, now=now,
                         comment=f"协办，牵头工单 {order.order_no}", data={"lead_order": order.order_no})


__all__ = ["Actor", "ConcurrentUpdate", "Forbidden", "IdempotencyConflict", "IllegalTransition", "OrderNotFound",
           "apply_action", "create_order", "get_order"]
