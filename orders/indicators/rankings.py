"""Rankings: order counts by a dimension (`ranking`), and any measure computed for each group of a dimension and
ranked (`by_dimension`: "按时办结率最低的三个部门")."""
from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from hotline.core.clock import CITY_TZ, as_utc
from orders.indicators.catalogue import CATALOGUE, DEF_RANKING, DIMENSIONS
from orders.indicators.measures import OF_ORDERS, check_measures, relative_change
from orders.indicators.scope import NO_NAMES, UNKNOWN, Indicator, Names, Scope, category_level, scoped_orders
from orders.models import WorkOrder, utcnow


@dataclass(frozen=True)
class Grouping:
    label: str
    key: Callable[[WorkOrder], str | None]


# The catalogue's dimensions, each with the order's value it groups by.
_KEYS: dict[str, Callable[[WorkOrder], str | None]] = {
    "channel": lambda o: o.channel,
    "category": lambda o: o.category_path,
    "category1": lambda o: category_level(o.category_path, 1),
    "category2": lambda o: category_level(o.category_path, 2),
    "category3": lambda o: category_level(o.category_path, 3),
    "request_type": lambda o: o.request_type,
    "district": lambda o: o.district_adcode,
    "street": lambda o: o.street_id,
    "department": lambda o: o.department_code,
    "day": lambda o: as_utc(o.created_at).astimezone(CITY_TZ).date().isoformat(),   # the city's calendar day
}
GROUPINGS: dict[str, Grouping] = {name: Grouping(label, _KEYS[name]) for name, label in DIMENSIONS.items()}


def _grouping(dimension: str) -> Grouping:
    if dimension not in GROUPINGS:
        raise ValueError(f"dimension must be one of {', '.join(GROUPINGS)}")
    return GROUPINGS[dimension]


def ranking(session: Session, scope: Scope, dimension: str, *, top: int = 10) -> Indicator:
    """Counts by channel / category (category1…3: 大类, 子类, 细类) / district / street / department, largest first."""
    grouping = _grouping(dimension)
    counts = Counter(grouping.key(o) or UNKNOWN for o in scoped_orders(session, scope))
    return Indicator(f"工单数按{dimension}排名", sum(counts.values()), definition=DEF_RANKING,
                     breakdown=dict(counts.most_common(top)))


def by_dimension(session: Session, scope: Scope, *, measure: str, dimension: str, order: str = "desc",
                 top: int | None = 10, min_denominator: int = 5, now: dt.datetime | None = None,
                 names: Names = NO_NAMES, compare: bool = False) -> Indicator:
    """One measure for each value of a dimension, ranked ("按时办结率最低的三个部门": on_time_rate, department, asc, 3).

    The value, numerator and denominator are the measure over the whole scope; the breakdown lists the groups in
    ranking order, each computed by the same function as the overall figure. A rate or an average needs at least
    `min_denominator` orders in its denominator to be ranked, so one order cannot top a ranking; orders whose
    dimension is unknown count in the total but are ranked only for counts (as 未知).
    With `compare`, each ranked group also carries its value in the previous period of the same length (环比:
    "各区诉求量比上个月") and the relative change; the ranking is by this period only.
    """
    spec = CATALOGUE.get(measure)
    if spec is None or not spec.supports_by:
        groupable = ", ".join(name for name, e in CATALOGUE.items() if e.supports_by)
        raise ValueError(f"{measure!r} cannot be ranked by a dimension; one of {groupable}")
    of_orders = OF_ORDERS[measure]
    grouping = _grouping(dimension)
    if order not in ("asc", "desc"):
        raise ValueError("order must be asc or desc")
    if top is not None and top < 1:
        raise ValueError("top must be at least 1")
    now = now or utcnow()
    orders = scoped_orders(session, scope)
    overall = of_orders(session, orders, now=now)
    groups = _grouped(orders, grouping)
    is_count = spec.kind == "count"
    ranked, too_small = [], []
    for key, members in groups.items():
        result = of_orders(session, members, now=now)
        if not is_count and (key == UNKNOWN or result.value is None):
            continue
        if not is_count and (result.denominator or 0) < min_denominator:
            too_small.append(key)
            continue
        ranked.append((key, result))
    sign = 1 if order == "asc" else -1
    # Ties: the group with more evidence first, then the code, so the order is stable.
    ranked.sort(key=lambda kr: (sign * kr[1].value, -(kr[1].denominator or 0), kr[0]))
    shown = ranked[:top] if top else ranked
    breakdown = {key: {"label": names.of(dimension, key), "value": r.value, "numerator": r.numerator,
                       "denominator": r.denominator} for key, r in shown}
    if compare:
        before_groups = _grouped(scoped_orders(session, scope.previous()), grouping)
        for key, row in breakdown.items():
            before = of_orders(session, before_groups.get(key, []), now=now).value
            row["previous"] = before
            row["change"] = relative_change(row["value"], before)
    rule = (f"{spec.definition}。按{grouping.label}分组，每组按同一口径计算，{'升序' if order == 'asc' else '降序'}排列"
            + (f"，取前{top}名" if top else ""))
    if not is_count:
        rule += (f"；分母少于{min_denominator}件的分组样本不足、不参与排名（本期{len(too_small)}个），"
                 f"{grouping.label}未知的工单只计入总体")
    if compare:
        rule += "；每组附上一周期（同长度）的值与变化"
    return Indicator(f"{spec.label}（按{grouping.label}）", overall.value, overall.numerator, overall.denominator,
                     rule, breakdown)


def table(session: Session, scope: Scope, *, dimension: str, measures: list[str], now: dt.datetime | None = None,
          names: Names = NO_NAMES) -> dict[str, dict]:
    """Several measures for every group of a dimension from ONE read of the scope's orders (the cockpit's 承办单位考核
    table): {key: {"label", name: {"value", "numerator", "denominator"}, …}}, each by the same function as the
    measure's figure and its ranking (so the table, a ranking and the assistant agree). Orders whose dimension is
    unknown are left out of the rows, as rankings leave them."""
    check_measures(measures)
    grouping = _grouping(dimension)
    now = now or utcnow()
    rows: dict[str, dict] = {}
    for key, members in _grouped(scoped_orders(session, scope), grouping).items():
        if key == UNKNOWN:
            continue
        row: dict = {"label": names.of(dimension, key)}
        for measure in measures:
            result = OF_ORDERS[measure](session, members, now=now)
            row[measure] = {"value": result.value, "numerator": result.numerator, "denominator": result.denominator}
        rows[key] = row
    return rows


def _grouped(orders: list[WorkOrder], grouping: Grouping) -> dict[str, list[WorkOrder]]:
    groups: dict[str, list[WorkOrder]] = defaultdict(list)
    for o in orders:
        groups[grouping.key(o) or UNKNOWN].append(o)
    return groups

