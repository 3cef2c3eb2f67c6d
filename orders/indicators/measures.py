"""The measures: each computed by one function over a set of orders (`OF_ORDERS`), so the figure of a scope and
its ranking by a dimension (rankings.by_dimension applies the very same function to each group) can never disagree.

Every function returns an `Indicator` with its value, numerator, denominator and the 口径 in words, so a figure can
always be traced back to orders. What each is called and means is in catalogue.py.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline.core.clock import as_utc
from orders.indicators.catalogue import (
    DEF_ACCURACY,
    DEF_AUTO,
    DEF_COMPLETION,
    DEF_COUNT,
    DEF_DISPATCH_TIME,
    DEF_DISSATISFACTION,
    DEF_DUE_SOON,
    DEF_EARLY,
    DEF_HANDLING,
    DEF_ON_TIME,
    DEF_OVERDUE,
    DEF_REOPEN,
    DEF_REPEAT,
    DEF_RETURNS,
    DEF_SATISFACTION,
    DEF_SEVERE,
)
from orders.indicators.scope import Indicator, Scope, handled, scoped_orders
from orders.lifecycle import OPEN_STATES, State, timeliness
from orders.models import OrderEvent, RoutingDecision, WorkOrder, utcnow

CLOSED_STATES = {State.CLOSED, State.RATED, State.ARCHIVED}


def _rate(name: str, numerator: int, denominator: int, definition: str, **extra) -> Indicator:
    value = round(numerator / denominator, 4) if denominator else None
    return Indicator(name, value, numerator, denominator, definition, **extra)


# -- the measures: one definition each, computed over a given set of orders ---------------------------------------
def _count_of(session: Session, orders: list[WorkOrder], **_) -> Indicator:
    return Indicator("工单数", len(orders), definition=DEF_COUNT)


def _completion_of(session: Session, orders: list[WorkOrder], **_) -> Indicator:
    orders = [o for o in handled(orders) if o.state != State.REJECTED]
    closed = sum(1 for o in orders if o.state in CLOSED_STATES)
    return _rate("办结率", closed, len(orders), DEF_COMPLETION)


def _finished_timeliness(orders: list[WorkOrder]) -> Counter:
    labels: Counter = Counter()
    for o in handled(orders):
        if o.completed_at and o.dispatched_at and o.deadline_at:
            labels[timeliness(as_utc(o.dispatched_at), as_utc(o.deadline_at), finished=as_utc(o.completed_at)).label] += 1
    return labels


def _timely_of(orders: list[WorkOrder]) -> dict[str, Indicator]:
    labels = _finished_timeliness(orders)
    done = sum(labels.values())
    on_time = labels["提前办结"] + labels["按时办结"] + labels["临期办结"]
    return {
        "按时办结率": _rate("按时办结率", on_time, done, DEF_ON_TIME, breakdown=dict(labels)),
        "提前办结率": _rate("提前办结率", labels["提前办结"], done, DEF_EARLY),
        "临期办结率": _rate("临期办结率", labels["临期办结"], done, DEF_DUE_SOON),
    }


def _overdue_of(orders: list[WorkOrder], now: dt.datetime) -> dict[str, Indicator]:
    counts: Counter = Counter()
    for o in handled(orders):
        if o.state in OPEN_STATES and o.dispatched_at and o.deadline_at:
            counts[timeliness(as_utc(o.dispatched_at), as_utc(o.deadline_at), now=now).label] += 1
    return {"超期件数": Indicator("超期件数", counts["超期"] + counts["严重超期"], definition=DEF_OVERDUE),
            "严重超期件数": Indicator("严重超期件数", counts["严重超期"], definition=DEF_SEVERE)}


def _handling_of(session: Session, orders: list[WorkOrder], **_) -> Indicator:
    spans = [(as_utc(o.completed_at) - as_utc(o.first_dispatched_at)).total_seconds() / 3600
             for o in handled(orders) if o.completed_at and o.first_dispatched_at]
    value = round(sum(spans) / len(spans), 2) if spans else None
    return Indicator("平均处置时长（小时）", value, round(sum(spans), 2), len(spans), DEF_HANDLING)


def _dispatch_time_of(session: Session, orders: list[WorkOrder], **_) -> Indicator:
    spans = [(as_utc(o.first_dispatched_at) - as_utc(o.created_at)).total_seconds() / 60
             for o in handled(orders) if o.first_dispatched_at]
    value = round(sum(spans) / len(spans), 1) if spans else None
    return Indicator("平均分拨时长（分钟）", value, round(sum(spans), 1), len(spans), DEF_DISPATCH_TIME)


def _satisfaction_of(session: Session, orders: list[WorkOrder], **_) -> Indicator:
    rated = [o.satisfaction for o in handled(orders) if o.satisfaction]
    happy = sum(1 for s in rated if s in {"满意", "基本满意"})
    return _rate("满意率", happy, len(rated), DEF_SATISFACTION, breakdown=dict(Counter(rated)))


def _dissatisfaction_of(session: Session, orders: list[WorkOrder], **_) -> Indicator:
    rated = [o.satisfaction for o in handled(orders) if o.satisfaction]
    return _rate("不满意率", sum(1 for s in rated if s == "不满意"), len(rated), DEF_DISSATISFACTION)


def _reopen_of(session: Session, orders: list[WorkOrder], **_) -> Indicator:
    orders = [o for o in handled(orders) if o.closed_at or o.reopen_count]
    reopened = sum(1 for o in orders if o.reopen_count)
    return _rate("重办率", reopened, len(orders), DEF_REOPEN)


def _chunks(items: list, size: int = 900) -> Iterable[list]:
    # Bounded IN lists: SQLite caps the number of bound parameters per statement.
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _accuracy_of(session: Session, orders: list[WorkOrder], **_) -> Indicator:
    ids = [o.id for o in handled(orders)]
    decisions = [d for chunk in _chunks(ids) for d in session.scalars(
        select(RoutingDecision).where(RoutingDecision.correct.is_not(None), RoutingDecision.order_id.in_(chunk))
        .order_by(RoutingDecision.id))]
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for d in decisions:
        by_kind["智能（自动派单）" if d.decision == "auto" else "人机联动（坐席确认）"].append(bool(d.correct))
    right = sum(d.correct for d in decisions)
    breakdown = {kind: {"准确": sum(v), "总数": len(v), "准确率": round(sum(v) / len(v), 4)} for kind, v in by_kind.items()}
    return _rate("分拨准确率", right, len(decisions), DEF_ACCURACY, breakdown=breakdown)


def _auto_dispatch_of(session: Session, orders: list[WorkOrder], **_) -> Indicator:
    dispatched = [o.id for o in handled(orders) if o.first_dispatched_at]
    first_mode: dict[int, str | None] = {}
    for chunk in _chunks(dispatched):   # the first dispatch event of each order, in one query per chunk
        for event in session.scalars(select(OrderEvent).where(OrderEvent.action == "dispatch", OrderEvent.order_id
                                                              .in_(chunk)).order_by(OrderEvent.order_id, OrderEvent.seq)):
            first_mode.setdefault(event.order_id, (event.data or {}).get("mode"))
    automatic = sum(1 for order_id in dispatched if first_mode.get(order_id) == "auto")
    return _rate("自动分拨率", automatic, len(dispatched), DEF_AUTO)


def _repeats_of(session: Session, orders: list[WorkOrder], **_) -> Indicator:
    callers: Counter = Counter()
    for o in orders:
        caller = o.caller_phone or o.caller_openid
        if caller:
            callers[caller] += 1
    repeats = sum(n - 1 for n in callers.values() if n > 1)
    return Indicator("重复诉求件数", repeats, definition=DEF_REPEAT)


# (session, orders, *, now) → Indicator: the measures that can be ranked by a dimension (catalogue: supports_by).
OF_ORDERS: dict[str, Callable[..., Indicator]] = {
    "order_count": _count_of,
    "completion_rate": _completion_of,
    "on_time_rate": lambda session, orders, **_: _timely_of(orders)["按时办结率"],
    "early_completion_rate": lambda session, orders, **_: _timely_of(orders)["提前办结率"],
    "due_soon_completion_rate": lambda session, orders, **_: _timely_of(orders)["临期办结率"],
    "overdue_count": lambda session, orders, now=None, **_: _overdue_of(orders, now or utcnow())["超期件数"],
    "severe_overdue_count": lambda session, orders, now=None, **_: _overdue_of(orders, now or utcnow())["严重超期件数"],
    "average_handling_hours": _handling_of,
    "average_dispatch_minutes": _dispatch_time_of,
    "satisfaction_rate": _satisfaction_of,
    "dissatisfaction_rate": _dissatisfaction_of,
    "reopen_rate": _reopen_of,
    "dispatch_accuracy": _accuracy_of,
    "auto_dispatch_rate": _auto_dispatch_of,
    "repeat_requests": _repeats_of,
}


# -- the indicators of a scope -------------------------------------------------------------------------------------
def order_count(session: Session, scope: Scope) -> Indicator:
    return _count_of(session, scoped_orders(session, scope))


def completion_rate(session: Session, scope: Scope) -> Indicator:
    return _completion_of(session, scoped_orders(session, scope))


def on_time_rates(session: Session, scope: Scope) -> dict[str, Indicator]:
    """按时/提前/临期办结率 over orders of the period that have been completed."""
    return _timely_of(scoped_orders(session, scope))


def overdue(session: Session, scope: Scope, *, now: dt.datetime | None = None) -> dict[str, Indicator]:
    """超期件数 and 严重超期件数 among orders still open now."""
    return _overdue_of(scoped_orders(session, scope), now or utcnow())


def average_handling_hours(session: Session, scope: Scope) -> Indicator:
    return _handling_of(session, scoped_orders(session, scope))


def average_dispatch_minutes(session: Session, scope: Scope) -> Indicator:
    return _dispatch_time_of(session, scoped_orders(session, scope))


def satisfaction_rate(session: Session, scope: Scope) -> Indicator:
    return _satisfaction_of(session, scoped_orders(session, scope))


def dissatisfaction_rate(session: Session, scope: Scope) -> Indicator:
    return _dissatisfaction_of(session, scoped_orders(session, scope))


def reopen_rate(session: Session, scope: Scope) -> Indicator:
    return _reopen_of(session, scoped_orders(session, scope))


def dispatch_accuracy(session: Session, scope: Scope) -> Indicator:
    """分拨准确率: routing decisions the department confirmed (signed) among those it answered, by decision type."""
    return _accuracy_of(session, scoped_orders(session, scope))


def auto_dispatch_rate(session: Session, scope: Scope) -> Indicator:
    return _auto_dispatch_of(session, scoped_orders(session, scope))


def repeat_requests(session: Session, scope: Scope) -> Indicator:
    """重复诉求 (same caller): orders after a caller's first one in the period, by phone or OpenID."""
    return _repeats_of(session, scoped_orders(session, scope))


def return_ranking(session: Session, scope: Scope, *, top: int | None = 10) -> Indicator:
    """退单数 and 有责退单数 by department: return events in the period."""
    events = session.scalars(select(OrderEvent).where(OrderEvent.action == "return", OrderEvent.at >= scope.start,
                                                      OrderEvent.at < scope.end))
    totals: Counter = Counter()
    at_fault: Counter = Counter()
    for event in events:
        totals[event.department_code] += 1
        if (event.data or {}).get("at_fault"):
            at_fault[event.department_code] += 1
    breakdown = {dept: {"退单": n, "有责退单": at_fault[dept]} for dept, n in totals.most_common(top)}
    return Indicator("退单数", sum(totals.values()), definition=DEF_RETURNS, breakdown=breakdown)


def with_previous(metric, session: Session, scope: Scope, **kwargs) -> dict:
    """A figure and the same figure for the previous period (环比), for "换成上个月" style follow-ups."""
    current, before = metric(session, scope, **kwargs), metric(session, scope.previous(), **kwargs)
    change = relative_change(current.value, before.value) if isinstance(current, Indicator) else None
    return {"current": current, "previous": before, "change": change}


def check_measures(measures: list[str]) -> None:
    """ValueError naming the names that are not measures of a set of orders (groups and lists are not)."""
    unknown = [m for m in measures if m not in OF_ORDERS]
    if unknown:
        raise ValueError(f"not measures of orders: {', '.join(unknown)}; one of {', '.join(OF_ORDERS)}")


def figures(session: Session, scope: Scope, measures: list[str], *, now: dt.datetime | None = None
            ) -> dict[str, Indicator]:
    """Several measures of one scope from ONE read of its orders (the cockpit's key figures), each by the function
    its own endpoint uses, so the numbers are the same."""
    check_measures(measures)
    orders = scoped_orders(session, scope)
    return {m: OF_ORDERS[m](session, orders, now=now) for m in measures}


def relative_change(now: float | None, before: float | None) -> float | None:
    """Relative change (0.25 = +25%); None when either value is missing or the previous one is 0."""
    if now is None or not before:
        return None
    return round((now - before) / before, 4)


# The indicators of a scope answered one at a time, and the groups answered together (catalogue: kind "group").
SCOPE_FUNCTIONS: dict[str, Callable[[Session, Scope], Indicator]] = {
    "order_count": order_count, "completion_rate": completion_rate, "average_handling_hours": average_handling_hours,
    "average_dispatch_minutes": average_dispatch_minutes, "satisfaction_rate": satisfaction_rate,
    "dissatisfaction_rate": dissatisfaction_rate,
    "reopen_rate": reopen_rate, "return_ranking": return_ranking, "dispatch_accuracy": dispatch_accuracy,
    "auto_dispatch_rate": auto_dispatch_rate, "repeat_requests": repeat_requests}
GROUP_FUNCTIONS: dict[str, Callable[[Session, Scope], dict[str, Indicator]]] = {
    "on_time_rates": on_time_rates, "overdue": overdue}
