"""City indicators, each defined once (口径一致，出口唯一): the API, the assistant and reports all call these.

Every function takes the session and a `Scope` (period and filters) and returns an `Indicator` with its value,
numerator, denominator and the definition in words, so a figure can always be traced back to orders.
Only top-level orders count (co-handler child orders are parts of their lead order).
"""
from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from orders.lifecycle import OPEN_STATES, State, timeliness
from orders.models import OrderEvent, RoutingDecision, WorkOrder, utcnow

CLOSED_STATES = {State.CLOSED, State.RATED, State.ARCHIVED}
DIMENSIONS = {"channel": WorkOrder.channel, "category": WorkOrder.category_path, "district": WorkOrder.district_adcode,
              "street": WorkOrder.street_id, "department": WorkOrder.department_code}


@dataclass(frozen=True)
class Scope:
    start: dt.datetime
    end: dt.datetime                      # exclusive
    district_adcode: str | None = None
    street_id: str | None = None
    category_prefix: str | None = None    # "城市管理" or "城市管理/市容秩序"
    department_code: str | None = None
    channel: str | None = None

    def previous(self) -> Scope:
        """The period of the same length just before (环比)."""
        length = self.end - self.start
        return Scope(self.start - length, self.start, self.district_adcode, self.street_id, self.category_prefix,
                     self.department_code, self.channel)


@dataclass
class Indicator:
    name: str
    value: float | None
    numerator: float | None = None
    denominator: float | None = None
    definition: str = ""
    breakdown: dict = field(default_factory=dict)


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    """SQLite returns naive UTC datetimes; PostgreSQL aware ones."""
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def scoped_orders(session: Session, scope: Scope) -> list[WorkOrder]:
    """Top-level orders created in the period that match the filters: the base set of most indicators."""
    query = select(WorkOrder).where(WorkOrder.parent_id.is_(None), WorkOrder.created_at >= scope.start,
                                    WorkOrder.created_at < scope.end)
    for column, value in ((WorkOrder.district_adcode, scope.district_adcode), (WorkOrder.street_id, scope.street_id),
                          (WorkOrder.department_code, scope.department_code), (WorkOrder.channel, scope.channel)):
        if value:
            query = query.where(column == value)
    orders = list(session.scalars(query))
    if scope.category_prefix:
        prefix = scope.category_prefix.rstrip("/")
        orders = [o for o in orders if o.category_path and (o.category_path == prefix or
                                                              o.category_path.startswith(prefix + "/"))]
    return orders


def _rate(name: str, numerator: int, denominator: int, definition: str, **extra) -> Indicator:
    value = round(numerator / denominator, 4) if denominator else None
    return Indicator(name, value, numerator, denominator, definition, **extra)


def order_count(session: Session, scope: Scope) -> Indicator:
    orders = scoped_orders(session, scope)
    return Indicator("工单数", len(orders), definition="期间内登记的工单数（不含协办子工单）")


def ranking(session: Session, scope: Scope, dimension: str, *, top: int = 10) -> Indicator:
    """Counts by channel / category / district / street / department, largest first."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"dimension must be one of {', '.join(DIMENSIONS)}")
    counts = Counter(getattr(o, DIMENSIONS[dimension].key) or "未知" for o in scoped_orders(session, scope))
    return Indicator(f"工单数按{dimension}排名", sum(counts.values()), definition="期间内登记工单按维度计数，降序",
                     breakdown=dict(counts.most_common(top)))


def completion_rate(session: Session, scope: Scope) -> Indicator:
    orders = [o for o in scoped_orders(session, scope) if o.state != State.REJECTED]
    closed = sum(1 for o in orders if o.state in CLOSED_STATES)
    return _rate("办结率", closed, len(orders), "期间内登记（不含不予受理）的工单中已办结（含已回访、已归档）的比例")


def _finished_timeliness(orders: list[WorkOrder]) -> Counter:
    labels: Counter = Counter()
    for o in orders:
        if o.completed_at and o.dispatched_at and o.deadline_at:
            labels[timeliness(_aware(o.dispatched_at), _aware(o.deadline_at), finished=_aware(o.completed_at)).label] += 1
    return labels


def on_time_rates(session: Session, scope: Scope) -> dict[str, Indicator]:
    """按时/提前/临期办结率 over orders of the period that have been completed."""
    labels = _finished_timeliness(scoped_orders(session, scope))
    done = sum(labels.values())
    on_time = labels["提前办结"] + labels["按时办结"] + labels["临期办结"]
    basis = "期间内登记且已办结的工单，以最后一次派单时间到办结时间对照（延期后的）办理时限"
    return {
        "按时办结率": _rate("按时办结率", on_time, done, basis + "：未超时限的比例（含提前、临期）", breakdown=dict(labels)),
        "提前办结率": _rate("提前办结率", labels["提前办结"], done, basis + "：用时不超过时限一半的比例"),
        "临期办结率": _rate("临期办结率", labels["临期办结"], done, basis + "：用时在时限80%–100%之间的比例"),
    }


def overdue(session: Session, scope: Scope, *, now: dt.datetime | None = None) -> dict[str, Indicator]:
    """超期件数 and 严重超期件数 among orders still open now."""
    now = now or utcnow()
    counts: Counter = Counter()
    for o in scoped_orders(session, scope):
        if o.state in OPEN_STATES and o.dispatched_at and o.deadline_at:
            counts[timeliness(_aware(o.dispatched_at), _aware(o.deadline_at), now=now).label] += 1
    definition = "期间内登记、当前仍未办结的工单中，已过办理时限的件数"
    return {"超期件数": Indicator("超期件数", counts["超期"] + counts["严重超期"], definition=definition),
            "严重超期件数": Indicator("严重超期件数", counts["严重超期"], definition=definition + "（超过时限一倍以上）")}


def average_handling_hours(session: Session, scope: Scope) -> Indicator:
    spans = [(_aware(o.completed_at) - _aware(o.first_dispatched_at)).total_seconds() / 3600
             for o in scoped_orders(session, scope) if o.completed_at and o.first_dispatched_at]
    value = round(sum(spans) / len(spans), 2) if spans else None
    return Indicator("平均处置时长（小时）", value, round(sum(spans), 2), len(spans),
                     "已办结工单从首次派单到办结的平均小时数")


def average_dispatch_minutes(session: Session, scope: Scope) -> Indicator:
    spans = [(_aware(o.first_dispatched_at) - _aware(o.created_at)).total_seconds() / 60
             for o in scoped_orders(session, scope) if o.first_dispatched_at]
    value = round(sum(spans) / len(spans), 1) if spans else None
    return Indicator("平均分拨时长（分钟）", value, round(sum(spans), 1), len(spans), "从登记到首次派单的平均分钟数")


def satisfaction_rate(session: Session, scope: Scope) -> Indicator:
    rated = [o.satisfaction for o in scoped_orders(session, scope) if o.satisfaction]
    happy = sum(1 for s in rated if s in {"满意", "基本满意"})
    return _rate("满意率", happy, len(rated), "回访评价中“满意”与“基本满意”的比例", breakdown=dict(Counter(rated)))


def reopen_rate(session: Session, scope: Scope) -> Indicator:
    orders = [o for o in scoped_orders(session, scope) if o.closed_at or o.reopen_count]
    reopened = sum(1 for o in orders if o.reopen_count)
    return _rate("重办率", reopened, len(orders), "曾办结的工单中被重办过的比例")


def return_ranking(session: Session, scope: Scope, *, top: int = 10) -> Indicator:
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
    return Indicator("退单数", sum(totals.values()), definition="期间内承办单位退单的次数，按单位排名；有责退单为退单中被认定有责的次数",
                     breakdown=breakdown)


def dispatch_accuracy(session: Session, scope: Scope) -> Indicator:
    """分拨准确率: routing decisions the department confirmed (signed) among those it answered, by decision type."""
    orders = {o.id for o in scoped_orders(session, scope)}
    decisions = [d for d in session.scalars(select(RoutingDecision).where(RoutingDecision.correct.is_not(None)))
                 if d.order_id in orders]
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for d in decisions:
        by_kind["智能（自动派单）" if d.decision == "auto" else "人机联动（坐席确认）"].append(bool(d.correct))
    right = sum(d.correct for d in decisions)
    breakdown = {kind: {"准确": sum(v), "总数": len(v), "准确率": round(sum(v) / len(v), 4)} for kind, v in by_kind.items()}
    return _rate("分拨准确率", right, len(decisions), "承办单位签收（而非退单或改派）的分拨决策占已有结果决策的比例",
                 breakdown=breakdown)


def auto_dispatch_rate(session: Session, scope: Scope) -> Indicator:
    dispatched = [o for o in scoped_orders(session, scope) if o.first_dispatched_at]
    automatic = 0
    for o in dispatched:
        first = next((e for e in o.events if e.action == "dispatch"), None)
        automatic += bool(first and (first.data or {}).get("mode") == "auto")
    return _rate("自动分拨率", automatic, len(dispatched), "已派单工单中首次派单为自动派单的比例")


def repeat_requests(session: Session, scope: Scope) -> Indicator:
    """重复诉求 (same caller): orders after a caller's first one in the period, by phone or OpenID."""
    callers: Counter = Counter()
    for o in scoped_orders(session, scope):
        caller = o.caller_phone or o.caller_openid
        if caller:
            callers[caller] += 1
    repeats = sum(n - 1 for n in callers.values() if n > 1)
    return Indicator("重复诉求件数", repeats, definition="同一来电号码或微信用户在期间内第二件及以后的工单数")


def with_previous(metric, session: Session, scope: Scope, **kwargs) -> dict:
    """A figure and the same figure for the previous period (环比), for "换成上个月" style follow-ups."""
    current, before = metric(session, scope, **kwargs), metric(session, scope.previous(), **kwargs)
    change = None
    if isinstance(current, Indicator) and current.value is not None and before.value:
        change = round((current.value - before.value) / before.value, 4)
    return {"current": current, "previous": before, "change": change}
