"""Merging callers' orders about one event into one handling order (合并), and linking related orders (关联).

How a merged order lives on (decided 2026-12-06, issue 13):
- It becomes a child of the handling order (`parent_id`, role "merged"); it keeps its own number, channel, caller
  and text, so every caller can still look it up and is still reached with the result.
- It follows the handling order: at the merge and at every later step of the handling order its state, unit and
  deadline are the handling order's (`orders.service.follow_handling_order`, after every step); the steps
  themselves are recorded on the handling order only, and the merged order's trail says where it went. A citizen's
  status lookup of a merged order shows the handling order's progress and, once closed, its 办理结果.
- Indicators: each caller is counted in 工单数 (order_count) and the counts by place and matter; the handling
  measures (办结率, 按时办结率, 超期, 满意率, 分拨准确率 …) count the handling order once, as they count a lead
  order and not its co-handlers' orders (`orders.indicators.scope.scoped_orders` and `handled`). The 回访 rating
  is the handling order's (one satisfaction per handling).
- Only orders not yet taken up by a unit, or held by the handling order's own unit, can be merged: another unit's
  signed work is not silently taken from it.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from orders import roles
from orders.lifecycle import OPEN_STATES, STATE_LABELS, State
from orders.models import MERGED_ROLE, WorkOrder, utcnow
from orders.outbox import enqueue_withdrawn
from orders.service import Actor, ConcurrentUpdate, Forbidden, follow_handling_order, record_event

# Before a unit has taken the order up: merging it elsewhere takes nobody's work away.
NOT_TAKEN_UP = frozenset({State.RECEIVED, State.ACCEPTED, State.DISPATCHED, State.RETURNED})


class MergeRefused(ValueError):
    """The orders' state forbids the merge now; the message says why, in words an agent can act on."""


class MergeInvalid(MergeRefused):
    """The request itself cannot be right whatever the orders' state (an order merged into itself)."""


def _label(order: WorkOrder) -> str:
    return STATE_LABELS[State(order.state)]


def check_merge(order: WorkOrder, into: WorkOrder) -> None:
    """MergeRefused naming the first rule the merge breaks."""
    if order.id == into.id:
        raise MergeInvalid("不能把工单合并到它自己")
    if into.parent_id is not None:
        owner = into.parent.order_no if into.parent else "主办工单"
        raise MergeRefused(f"{into.order_no} 不是主办工单（它属于 {owner}），请合并到 {owner}")
    if State(into.state) not in OPEN_STATES:
        raise MergeRefused(f"{into.order_no} 已{_label(into)}，不能再合并进来；请作为新事件办理或重办")
    if order.parent_id is not None:
        owner = order.parent.order_no if order.parent else "另一工单"
        what = "已合并到" if order.role == MERGED_ROLE else "是协办工单，属于"
        raise MergeRefused(f"{order.order_no} {what} {owner}，不能再合并")
    if State(order.state) not in OPEN_STATES:
        raise MergeRefused(f"{order.order_no} 已{_label(order)}，不能合并")
    if any(child.role != MERGED_ROLE for child in order.children):
        raise MergeRefused(f"{order.order_no} 是有协办单位的牵头工单，不能合并到其他工单")
    if (State(order.state) not in NOT_TAKEN_UP and order.department_code
            and order.department_code != into.department_code):
        raise MergeRefused(f"{order.order_no} 已由 {order.department_code} {_label(order)}，而 {into.order_no} 由 "
                           f"{into.department_code or '中心'} 办理：请先协调承办单位，不能直接合并")


def merge_order(session: Session, *, order: WorkOrder, into: WorkOrder, actor: Actor, reason: str | None = None,
                expected_version: int | None = None, now: dt.datetime | None = None) -> WorkOrder:
    """Make `order` (and the callers already merged into it) a merged child of the handling order `into`, with a
    step on both trails. Forbidden for roles that may not merge; MergeRefused when a rule forbids it."""
    if not roles.may_merge(actor.role):
        raise Forbidden(f"role {actor.role!r} may not merge orders")
    if expected_version is not None and order.version != expected_version:
        raise ConcurrentUpdate(f"order {order.order_no} changed (version {order.version}, you had {expected_version})")
    check_merge(order, into)
    now = now or utcnow()
    order_no, into_no = order.order_no, into.order_no
    try:
        moved = [order, *[c for c in order.children if c.role == MERGED_ROLE]]
        for caller in moved:
            before, unit_before = caller.state, caller.department_code
            caller.parent = into
            caller.role = MERGED_ROLE
            caller.updated_at = now
            follow_handling_order(into)
            event = record_event(caller, action="merge", from_state=before, actor=actor, now=now,
                                 comment=reason or f"同一事件，合并到 {into_no} 办理", data={"into": into_no})
            if unit_before and unit_before != caller.department_code:   # dispatched, not yet taken up, elsewhere
                enqueue_withdrawn(session, order=caller, event=event, department_code=unit_before, now=now)
        into.updated_at = now
        record_event(into, action="merge_in", from_state=into.state, actor=actor, now=now, comment=reason,
                     data={"orders": [c.order_no for c in moved], "channels": sorted({c.channel for c in moved})})
        session.flush()
    except StaleDataError:
        raise ConcurrentUpdate(f"order {order_no} or {into_no} was changed by someone else; reload it") from None
    return order


def link_orders(session: Session, *, order: WorkOrder, other: WorkOrder, actor: Actor, reason: str | None = None,
                now: dt.datetime | None = None) -> WorkOrder:
    """关联: record on both trails that the two orders are related, without changing either's state."""
    if not roles.may_merge(actor.role):
        raise Forbidden(f"role {actor.role!r} may not link orders")
    if order.id == other.id:
        raise MergeInvalid("不能把工单与它自己关联")
    now = now or utcnow()
    for this, that in ((order, other), (other, order)):
        this.updated_at = now
        record_event(this, action="link", from_state=this.state, actor=actor, now=now, comment=reason,
                     data={"linked": that.order_no})
    try:
        session.flush()
    except StaleDataError:
        raise ConcurrentUpdate(f"order {order.order_no} or {other.order_no} was changed by someone else") from None
    return order


def linked_order_nos(order: WorkOrder) -> list[str]:
    return sorted({e.data.get("linked") for e in order.events if e.action == "link" and e.data.get("linked")})


def handling_order(order: WorkOrder) -> WorkOrder:
    """The order whose progress a caller sees: the handling order of a merged one, else the order itself."""
    return order.parent if order.role == MERGED_ROLE and order.parent is not None else order


def handling_result(order: WorkOrder) -> str | None:
    """The 办理结果 a citizen may read: the last completion's text, once the centre has approved it."""
    handled = handling_order(order)
    if State(handled.state) not in {State.CLOSED, State.RATED, State.ARCHIVED}:
        return None
    results = [e.comment for e in handled.events if e.action == "complete" and e.comment]
    return results[-1] if results else None
