"""City indicators, each defined once (口径一致，出口唯一): the API, the assistant and reports all call these.

Every function takes the session and a `Scope` (period and filters) and returns an `Indicator` with its value,
numerator, denominator and the definition in words, so a figure can always be traced back to orders.
Only top-level orders count (co-handler child orders are parts of their lead order).

Each measure is computed by one function over a set of orders; the scope functions (`completion_rate` …) apply it to
the orders of a scope and `by_dimension` applies the very same function to each group of a dimension, so a ranking
can never disagree with the figure it ranks. `MEASURES` describes them (label, unit, definition) for every consumer.
"""
from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline.core.clock import CITY_TZ, as_utc
from nlp.lexicons import lexicons
from nlp.segment import Segmenter
from orders.lifecycle import OPEN_STATES, STATE_LABELS, State, timeliness
from orders.models import OrderEvent, RoutingDecision, WorkOrder, utcnow

CLOSED_STATES = {State.CLOSED, State.RATED, State.ARCHIVED}
# The original dimensions (kept for callers); GROUPINGS below is the full set, with 大类/子类.
DIMENSIONS = {"channel": WorkOrder.channel, "category": WorkOrder.category_path, "district": WorkOrder.district_adcode,
              "street": WorkOrder.street_id, "department": WorkOrder.department_code}


def city_midnight(day: dt.date) -> dt.datetime:
    """The start of a calendar day in the city (periods given as dates are the city's days, not UTC days)."""
    # In UTC: SQLite compares stored UTC timestamps as text and would ignore a +08:00 offset on the parameter.
    return dt.datetime(day.year, day.month, day.day, tzinfo=CITY_TZ).astimezone(dt.UTC)
UNKNOWN = "未知"
CHANNEL_LABELS = {"hotline": "12345热线", "wechat": "微信公众号", "web": "网站", "open311": "Open311接口", "grid": "网格员上报",
                  "app": "移动应用", "sensor": "感知设备", "110": "110转办"}


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


def _local(moment: dt.datetime | None) -> str | None:
    return as_utc(moment).astimezone(CITY_TZ).isoformat(timespec="minutes") if moment else None


def _clock(moment: dt.datetime) -> str:
    """Beijing time as a reason says it: 11月18日08:00."""
    local = as_utc(moment).astimezone(CITY_TZ)
    return f"{local.month}月{local.day}日{local:%H:%M}"


def scoped_orders(session: Session, scope: Scope) -> list[WorkOrder]:
    """Top-level orders created in the period that match the filters: the base set of most indicators."""
    query = select(WorkOrder).where(WorkOrder.parent_id.is_(None), WorkOrder.created_at >= scope.start,
                                    WorkOrder.created_at < scope.end)
    for column, value in ((WorkOrder.district_adcode, scope.district_adcode), (WorkOrder.street_id, scope.street_id),
                          (WorkOrder.department_code, scope.department_code), (WorkOrder.channel, scope.channel)):
        if value:
            query = query.where(column == value)
    orders = list(session.scalars(query.order_by(WorkOrder.created_at, WorkOrder.id)))
    if scope.category_prefix:
        prefix = scope.category_prefix.rstrip("/")
        orders = [o for o in orders if o.category_path and (o.category_path == prefix or
                                                              o.category_path.startswith(prefix + "/"))]
    return orders


def _rate(name: str, numerator: int, denominator: int, definition: str, **extra) -> Indicator:
    value = round(numerator / denominator, 4) if denominator else None
    return Indicator(name, value, numerator, denominator, definition, **extra)


# -- the measures: one definition each, computed over a given set of orders ---------------------------------------
DEF_COUNT = "期间内登记的工单数（不含协办子工单）"
DEF_COMPLETION = "期间内登记（不含不予受理）的工单中已办结（含已回访、已归档）的比例"
DEF_TIMELY_BASIS = "期间内登记且已办结的工单，以最后一次派单时间到办结时间对照（延期后的）办理时限"
DEF_ON_TIME = DEF_TIMELY_BASIS + "：未超时限的比例（含提前、临期）"
DEF_EARLY = DEF_TIMELY_BASIS + "：用时不超过时限一半的比例"
DEF_DUE_SOON = DEF_TIMELY_BASIS + "：用时在时限80%–100%之间的比例"
DEF_OVERDUE = "期间内登记、当前仍未办结的工单中，已过办理时限的件数"
DEF_SEVERE = DEF_OVERDUE + "（超过时限一倍以上）"
DEF_HANDLING = "已办结工单从首次派单到办结的平均小时数"
DEF_DISPATCH_TIME = "从登记到首次派单的平均分钟数"
DEF_SATISFACTION = "回访评价中“满意”与“基本满意”的比例"
DEF_REOPEN = "曾办结的工单中被重办过的比例"
DEF_RETURNS = "期间内承办单位退单的次数，按单位排名；有责退单为退单中被认定有责的次数"
DEF_ACCURACY = "承办单位签收（而非退单或改派）的分拨决策占已有结果决策的比例"
DEF_AUTO = "已派单工单中首次派单为自动派单的比例"
DEF_REPEAT = "同一来电号码或微信用户在期间内第二件及以后的工单数"
DEF_RANKING = "期间内登记工单按维度计数，降序"


def _count_of(session: Session, orders: list[WorkOrder], **_) -> Indicator:
    return Indicator("工单数", len(orders), definition=DEF_COUNT)


def _completion_of(session: Session, orders: list[WorkOrder], **_) -> Indicator:
    orders = [o for o in orders if o.state != State.REJECTED]
    closed = sum(1 for o in orders if o.state in CLOSED_STATES)
    return _rate("办结率", closed, len(orders), DEF_COMPLETION)


def _finished_timeliness(orders: list[WorkOrder]) -> Counter:
    labels: Counter = Counter()
    for o in orders:
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
    for o in orders:
        if o.state in OPEN_STATES and o.dispatched_at and o.deadline_at:
            counts[timeliness(as_utc(o.dispatched_at), as_utc(o.deadline_at), now=now).label] += 1
    return {"超期件数": Indicator("超期件数", counts["超期"] + counts["严重超期"], definition=DEF_OVERDUE),
            "严重超期件数": Indicator("严重超期件数", counts["严重超期"], definition=DEF_SEVERE)}


def _handling_of(session: Session, orders: list[WorkOrder], **_) -> Indicator:
    spans = [(as_utc(o.completed_at) - as_utc(o.first_dispatched_at)).total_seconds() / 3600
             for o in orders if o.completed_at and o.first_dispatched_at]
    value = round(sum(spans) / len(spans), 2) if spans else None
    return Indicator("平均处置时长（小时）", value, round(sum(spans), 2), len(spans), DEF_HANDLING)


def _dispatch_time_of(session: Session, orders: list[WorkOrder], **_) -> Indicator:
    spans = [(as_utc(o.first_dispatched_at) - as_utc(o.created_at)).total_seconds() / 60
             for o in orders if o.first_dispatched_at]
    value = round(sum(spans) / len(spans), 1) if spans else None
    return Indicator("平均分拨时长（分钟）", value, round(sum(spans), 1), len(spans), DEF_DISPATCH_TIME)


def _satisfaction_of(session: Session, orders: list[WorkOrder], **_) -> Indicator:
    rated = [o.satisfaction for o in orders if o.satisfaction]
    happy = sum(1 for s in rated if s in {"满意", "基本满意"})
    return _rate("满意率", happy, len(rated), DEF_SATISFACTION, breakdown=dict(Counter(rated)))


def _reopen_of(session: Session, orders: list[WorkOrder], **_) -> Indicator:
    orders = [o for o in orders if o.closed_at or o.reopen_count]
    reopened = sum(1 for o in orders if o.reopen_count)
    return _rate("重办率", reopened, len(orders), DEF_REOPEN)


def _chunks(items: list, size: int = 900) -> Iterable[list]:
    # Bounded IN lists: SQLite caps the number of bound parameters per statement.
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _accuracy_of(session: Session, orders: list[WorkOrder], **_) -> Indicator:
    ids = [o.id for o in orders]
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
    dispatched = [o.id for o in orders if o.first_dispatched_at]
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


@dataclass(frozen=True)
class Measure:
    """One indicator as consumers see it: API name, Chinese label, unit, 口径, and its computation over orders."""

    name: str
    label: str
    unit: str                    # 件 / 比例 / 小时 / 分钟
    kind: str                    # count / rate / average / list
    definition: str
    of_orders: Callable[..., Indicator] | None = None   # (session, orders, *, now) → Indicator; None: not groupable

    @property
    def supports_by(self) -> bool:
        return self.of_orders is not None


MEASURES: dict[str, Measure] = {m.name: m for m in [
    Measure("order_count", "工单数", "件", "count", DEF_COUNT, _count_of),
    Measure("completion_rate", "办结率", "比例", "rate", DEF_COMPLETION, _completion_of),
    Measure("on_time_rate", "按时办结率", "比例", "rate", DEF_ON_TIME,
            lambda session, orders, **_: _timely_of(orders)["按时办结率"]),
    Measure("early_completion_rate", "提前办结率", "比例", "rate", DEF_EARLY,
            lambda session, orders, **_: _timely_of(orders)["提前办结率"]),
    Measure("due_soon_completion_rate", "临期办结率", "比例", "rate", DEF_DUE_SOON,
            lambda session, orders, **_: _timely_of(orders)["临期办结率"]),
    Measure("overdue_count", "超期件数", "件", "count", DEF_OVERDUE,
            lambda session, orders, now=None, **_: _overdue_of(orders, now or utcnow())["超期件数"]),
    Measure("severe_overdue_count", "严重超期件数", "件", "count", DEF_SEVERE,
            lambda session, orders, now=None, **_: _overdue_of(orders, now or utcnow())["严重超期件数"]),
    Measure("average_handling_hours", "平均处置时长", "小时", "average", DEF_HANDLING, _handling_of),
    Measure("average_dispatch_minutes", "平均分拨时长", "分钟", "average", DEF_DISPATCH_TIME, _dispatch_time_of),
    Measure("satisfaction_rate", "满意率", "比例", "rate", DEF_SATISFACTION, _satisfaction_of),
    Measure("reopen_rate", "重办率", "比例", "rate", DEF_REOPEN, _reopen_of),
    Measure("dispatch_accuracy", "分拨准确率", "比例", "rate", DEF_ACCURACY, _accuracy_of),
    Measure("auto_dispatch_rate", "自动分拨率", "比例", "rate", DEF_AUTO, _auto_dispatch_of),
    Measure("repeat_requests", "重复诉求件数", "件", "count", DEF_REPEAT, _repeats_of),
    Measure("return_ranking", "退单数（按承办单位）", "件", "count", DEF_RETURNS),
]}


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
    return Indicator("退单数", sum(totals.values()), definition=DEF_RETURNS, breakdown=breakdown)


def with_previous(metric, session: Session, scope: Scope, **kwargs) -> dict:
    """A figure and the same figure for the previous period (环比), for "换成上个月" style follow-ups."""
    current, before = metric(session, scope, **kwargs), metric(session, scope.previous(), **kwargs)
    change = None
    if isinstance(current, Indicator) and current.value is not None and before.value:
        change = round((current.value - before.value) / before.value, 4)
    return {"current": current, "previous": before, "change": change}


# -- dimensions: rankings of counts and of rates -------------------------------------------------------------------
def _category_level(path: str | None, level: int) -> str | None:
    return "/".join(path.split("/")[:level]) if path else None


@dataclass(frozen=True)
class Grouping:
    label: str
    key: Callable[[WorkOrder], str | None]


GROUPINGS: dict[str, Grouping] = {
    "channel": Grouping("来源渠道", lambda o: o.channel),
    "category": Grouping("事项（大类/子类/细类）", lambda o: o.category_path),
    "category1": Grouping("事项大类", lambda o: _category_level(o.category_path, 1)),
    "category2": Grouping("事项子类", lambda o: _category_level(o.category_path, 2)),
    "district": Grouping("区县", lambda o: o.district_adcode),
    "street": Grouping("街道（乡镇）", lambda o: o.street_id),
    "department": Grouping("承办单位", lambda o: o.department_code),
}


@dataclass(frozen=True)
class Names:
    """Code → name tables (from the knowledge base and gazetteer), so rankings read as words. Unknown codes stay."""

    districts: Mapping[str, str] = field(default_factory=dict)
    streets: Mapping[str, str] = field(default_factory=dict)
    departments: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_kb(cls, kb, gazetteer) -> Names:
        return cls(dict(gazetteer.districts), {sid: name for sid, (name, _) in gazetteer.streets.items()},
                   {code: dept.name for code, dept in kb.departments.items()})

    def of(self, dimension: str, key: str | None) -> str:
        table = {"district": self.districts, "street": self.streets, "department": self.departments,
                 "channel": CHANNEL_LABELS}.get(dimension, {})
        return table.get(key, key) if key else UNKNOWN


NO_NAMES = Names()


def _grouping(dimension: str) -> Grouping:
    if dimension not in GROUPINGS:
        raise ValueError(f"dimension must be one of {', '.join(GROUPINGS)}")
    return GROUPINGS[dimension]


def ranking(session: Session, scope: Scope, dimension: str, *, top: int = 10) -> Indicator:
    """Counts by channel / category (category1, category2: 大类, 子类) / district / street / department, largest first."""
    grouping = _grouping(dimension)
    counts = Counter(grouping.key(o) or UNKNOWN for o in scoped_orders(session, scope))
    return Indicator(f"工单数按{dimension}排名", sum(counts.values()), definition=DEF_RANKING,
                     breakdown=dict(counts.most_common(top)))


def by_dimension(session: Session, scope: Scope, *, measure: str, dimension: str, order: str = "desc",
                 top: int | None = 10, min_denominator: int = 5, now: dt.datetime | None = None,
                 names: Names = NO_NAMES) -> Indicator:
    """One measure for each value of a dimension, ranked ("按时办结率最低的三个部门": on_time_rate, department, asc, 3).

    The value, numerator and denominator are the measure over the whole scope; the breakdown lists the groups in
    ranking order, each computed by the same function as the overall figure. A rate or an average needs at least
    `min_denominator` orders in its denominator to be ranked, so one order cannot top a ranking; orders whose
    dimension is unknown count in the total but are ranked only for counts (as 未知).
    """
    spec = MEASURES.get(measure)
    if spec is None or not spec.supports_by:
        groupable = ", ".join(name for name, m in MEASURES.items() if m.supports_by)
        raise ValueError(f"{measure!r} cannot be ranked by a dimension; one of {groupable}")
    grouping = _grouping(dimension)
    if order not in ("asc", "desc"):
        raise ValueError("order must be asc or desc")
    if top is not None and top < 1:
        raise ValueError("top must be at least 1")
    now = now or utcnow()
    orders = scoped_orders(session, scope)
    overall = spec.of_orders(session, orders, now=now)
    groups: dict[str, list[WorkOrder]] = defaultdict(list)
    for o in orders:
        groups[grouping.key(o) or UNKNOWN].append(o)
    is_count = spec.kind == "count"
    ranked, too_small = [], []
    for key, members in groups.items():
        result = spec.of_orders(session, members, now=now)
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
    rule = (f"{spec.definition}。按{grouping.label}分组，每组按同一口径计算，{'升序' if order == 'asc' else '降序'}排列"
            + (f"，取前{top}名" if top else ""))
    if not is_count:
        rule += (f"；分母少于{min_denominator}件的分组样本不足、不参与排名（本期{len(too_small)}个），"
                 f"{grouping.label}未知的工单只计入总体")
    return Indicator(f"{spec.label}（按{grouping.label}）", overall.value, overall.numerator, overall.denominator,
                     rule, breakdown)


# -- hot topics (热点诉求) ------------------------------------------------------------------------------------------
# Cosine similarity at which two complaints count as the same topic. On 5,000 orders made from the 长沙 KB examples
# in random streets, 0.3–0.6 all gave groups of one matter (0.4: 99.9% purity) and never a chained giant group.
SIMILARITY = 0.4
_WORD_RUNS = re.compile(r"[\u3400-\u9fff]+|[a-z]+")


def _char_ngrams(text: str) -> list[str]:
    """Character 2- and 3-grams inside runs of Chinese characters or Latin letters: digits (masked phones, order
    numbers), punctuation and emoji carry no topic."""
    grams: list[str] = []
    for run in _WORD_RUNS.findall(unicodedata.normalize("NFKC", text).lower()):
        for n in (2, 3):
            grams.extend(run[i:i + n] for i in range(len(run) - n + 1))
    return grams


def _tfidf(orders: list[WorkOrder]):
    """Unit-length TF-IDF rows of the masked texts; None when there is no order or no text has any n-gram."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer=_char_ngrams, sublinear_tf=True)
    try:
        return vectorizer.fit_transform([o.text_masked or "" for o in orders]).tocsr()
    except ValueError:   # no orders, or an empty vocabulary: nothing to compare
        return None


def _similar_components(matrix, threshold: float) -> np.ndarray:
    """Connected components of the graph joining rows whose cosine similarity is at least `threshold`."""
    from scipy.sparse.csgraph import connected_components
    from sklearn.neighbors import radius_neighbors_graph

    graph = radius_neighbors_graph(matrix, radius=1.0 - threshold + 1e-9, metric="cosine", mode="connectivity",
                                   include_self=False)
    return connected_components(graph, directed=False)[1]


@lru_cache(maxsize=1)
def _plain_segmenter():
    return Segmenter()


def _document_frequency(words: set[str], texts: list[str]) -> Counter:
    """In how many texts each word occurs (as a substring), in one Aho-Corasick pass instead of segmenting them all."""
    import ahocorasick

    frequency: Counter = Counter()
    if not words:
        return frequency
    automaton = ahocorasick.Automaton()
    for word in words:
        automaton.add_word(word, word)
    automaton.make_automaton()
    for text in texts:
        frequency.update({word for _, word in automaton.iter(text)})
    return frequency


def _topic_terms(group: list[set[str]], document_frequency: Counter, documents: int, count: int = 5) -> list[str]:
    """Words most shared inside the group and rare elsewhere: in-group document count × log inverse frequency."""
    inside = Counter(word for words in group for word in words)
    score = {w: n * math.log((1 + documents) / (1 + document_frequency[w])) for w, n in inside.items() if n > 1}
    return [w for w, _ in sorted(score.items(), key=lambda ws: (-ws[1], ws[0]))[:count]]


def _place_counts(orders: list[WorkOrder], names: Names) -> tuple[list[dict], list[dict]]:
    districts = Counter(o.district_adcode for o in orders if o.district_adcode)
    streets = Counter(o.street_id for o in orders if o.street_id)
    def listed(counts: Counter, dimension: str) -> list[dict]:
        return [{"code": code, "name": names.of(dimension, code), "count": n}
                for code, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]

    return listed(districts, "district"), listed(streets, "street")


def hot_topics_definition(*, similarity: float, min_size: int, max_orders: int) -> str:
    return (f"期间内登记的工单（不含协办子工单，最多取最近{max_orders}件），以脱敏后诉求文本的字符二元、三元组TF-IDF向量"
            f"计算余弦相似度，相似度≥{similarity}的两件工单相连，相连成组且不少于{min_size}件的即为一个热点话题，按件数"
            "降序；关键词取组内多件共有、其他工单少见的词，代表工单取最接近组中心的工单")


def hot_topics(session: Session, scope: Scope, *, similarity: float = SIMILARITY, min_size: int = 3, top: int = 10,
               max_orders: int = 20_000, names: Names = NO_NAMES, segmenter=None) -> Indicator:
    """热点诉求: groups of orders saying much the same thing, largest first.

    Deterministic and explainable: the masked texts become character 2–3-gram TF-IDF vectors; two orders whose
    cosine similarity is at least `similarity` are joined, and each connected group of at least `min_size` orders is
    one topic. Its terms are the words (segmented by `segmenter`, e.g. the router's, which knows the place names)
    shared most inside the group and rarest outside; its representative orders are the closest to the group's mean.
    """
    if not 0 < similarity <= 1:
        raise ValueError("similarity must be in (0, 1]")
    if min_size < 2 or top < 1:
        raise ValueError("min_size must be at least 2 and top at least 1")
    orders = scoped_orders(session, scope)[-max_orders:]   # the most recent ones when the period is huge
    definition = hot_topics_definition(similarity=similarity, min_size=min_size, max_orders=max_orders)
    matrix = _tfidf(orders)
    if matrix is None:
        return Indicator("热点诉求", 0, 0, len(orders), definition, {"topics": []})
    labels = _similar_components(matrix, similarity)
    members: dict[int, list[int]] = defaultdict(list)
    for row, label in enumerate(labels):
        members[int(label)].append(row)
    groups = sorted((rows for rows in members.values() if len(rows) >= min_size),
                    key=lambda rows: (-len(rows), -max(as_utc(orders[r].created_at).timestamp() for r in rows), rows[0]))
    segmenter = segmenter or _plain_segmenter()
    texts = [o.text_masked or "" for o in orders]
    words = {r: set(segmenter.content_words(texts[r])) for rows in groups[:top] for r in rows}
    document_frequency = _document_frequency(set().union(*words.values()) if words else set(), texts)
    topics = []
    for rows in groups[:top]:
        centroid = np.asarray(matrix[rows].mean(axis=0)).ravel()
        closeness = matrix[rows] @ centroid
        representative = [rows[i] for i in sorted(range(len(rows)), key=lambda i: (-closeness[i], rows[i]))[:3]]
        group = [orders[r] for r in rows]
        categories = Counter(o.category_path for o in group if o.category_path)
        districts, streets = _place_counts(group, names)
        terms_of = _topic_terms([words[r] for r in rows], document_frequency, len(orders))
        topics.append({
            "topic": "、".join(terms_of[:3]), "size": len(rows), "terms": terms_of,
            "order_nos": [orders[r].order_no for r in representative],
            "sample": (orders[representative[0]].text_masked or "")[:80],
            "category": categories.most_common(1)[0][0] if categories else None,
            "categories": dict(categories.most_common(3)), "districts": districts, "streets": streets,
            "first_at": _local(min(o.created_at for o in group)), "last_at": _local(max(o.created_at for o in group)),
        })
    in_topics = sum(len(rows) for rows in groups)
    return Indicator("热点诉求", len(groups), in_topics, len(orders), definition, {"topics": topics})


# -- 高发区域 --------------------------------------------------------------------------------------------------------
def _area_keys(order: WorkOrder) -> list[tuple[str, str, str | None]]:
    """(level, street id, community) of the areas an order counts in: its street, and its community when known."""
    keys = []
    if order.street_id:
        keys.append(("street", order.street_id, None))
    if order.community:
        keys.append(("community", order.street_id or "", order.community))
    return keys


def hot_areas_definition(*, min_count: int, growth: float) -> str:
    return (f"期间内登记的工单（不含协办子工单）按街道（乡镇）及社区计数：本期不少于{min_count}件，且不少于上一个等长"
            f"周期的{growth}倍（上期为0视为上升）的区域为高发区域，按本期件数降序；分类为事项子类")


def hot_areas(session: Session, scope: Scope, *, min_count: int = 5, growth: float = 1.5, top: int = 10,
              names: Names = NO_NAMES) -> Indicator:
    """高发区域: streets (and communities) with many orders in the period and more than before.

    Hot when the period has at least `min_count` orders there AND at least `growth` times the previous period of the
    same length (a place with none before counts as rising). Each area lists its 子类 breakdown.
    """
    if min_count < 1 or growth < 1 or top < 1:
        raise ValueError("min_count and top must be at least 1, growth at least 1.0")
    current, before = scoped_orders(session, scope), scoped_orders(session, scope.previous())
    now_by: dict[tuple, list[WorkOrder]] = defaultdict(list)
    then_counts: Counter = Counter()
    for o in current:
        for key in _area_keys(o):
            now_by[key].append(o)
    for o in before:
        for key in _area_keys(o):
            then_counts[key] += 1
    areas = []
    for key, group in now_by.items():
        count, previous = len(group), then_counts[key]
        if count < min_count or (previous and count < growth * previous):
            continue
        level, street_id, community = key
        district = Counter(o.district_adcode for o in group if o.district_adcode).most_common(1)
        areas.append({
            "level": level, "street_id": street_id or None, "street": names.of("street", street_id or None),
            "community": community, "district": district[0][0] if district else None,
            "district_name": names.of("district", district[0][0]) if district else UNKNOWN,
            "count": count, "previous": previous, "ratio": round(count / previous, 2) if previous else None,
            "categories": dict(Counter(_category_level(o.category_path, 2) or UNKNOWN for o in group).most_common(5)),
        })
    areas.sort(key=lambda a: (-a["count"], -(a["ratio"] or float("inf")), a["level"] != "street",
                              a["street_id"] or "", a["community"] or ""))
    definition = hot_areas_definition(min_count=min_count, growth=growth)
    return Indicator("高发区域", len(areas), len(areas), len(now_by), definition, {"areas": areas[:top]})


# -- alerts (预警) ---------------------------------------------------------------------------------------------------
SEVERITY_ORDER = {"高": 0, "中": 1, "低": 2}
SENSITIVE_SEVERITY = {"扬言": "高", "维稳": "高", "信访": "中", "舆情": "中"}


def _working_days_late(deadline: dt.datetime, now: dt.datetime) -> int:
    """Whole working days past the deadline: the largest k with add_working_days(deadline, k) <= now (0 if not due)."""
    whole_days = (now - deadline) // dt.timedelta(days=1)
    if whole_days < 1:
        return 0
    first = deadline.date() + dt.timedelta(days=1)
    return int(np.busday_count(first, first + dt.timedelta(days=whole_days)))   # Monday–Friday, as lifecycle counts


def _long_unresolved(orders: list[WorkOrder], now: dt.datetime, overdue_working_days: int, open_days: int,
                     names: Names) -> list[dict]:
    alerts = []
    for o in orders:
        if o.state not in OPEN_STATES:
            continue
        days_open = (now - as_utc(o.created_at)).total_seconds() / 86400
        late = _working_days_late(as_utc(o.deadline_at), now) if o.deadline_at else 0
        reasons, severe = [], days_open > 2 * open_days
        if late > overdue_working_days:
            reasons.append(f"已超过办理时限{late}个工作日（时限至{_clock(o.deadline_at)}）")
            if o.dispatched_at:
                severe |= timeliness(as_utc(o.dispatched_at), as_utc(o.deadline_at), now=now).label == "严重超期"
        if days_open > open_days:
            reasons.append(f"登记已{int(days_open)}天")
        if reasons:
            alerts.append(_alert("久而未决", "高" if severe else "中", [o], "，".join(reasons) +
                                 f"，仍未办结（当前：{STATE_LABELS[State(o.state)]}）", names))
    return alerts


def _windows(times: list[float], size: int, hours: float) -> list[tuple[int, int]]:
    """Maximal runs of sorted `times` in which some `hours`-long window holds at least `size` of them."""
    intervals: list[list[int]] = []
    last = 0
    for first in range(len(times)):
        last = max(last, first)
        while last + 1 < len(times) and times[last + 1] - times[first] <= hours * 3600:
            last += 1
        if last - first + 1 >= size:
            if intervals and first <= intervals[-1][1]:
                intervals[-1][1] = last
            else:
                intervals.append([first, last])
    return [(a, b) for a, b in intervals]


def _surges(orders: list[WorkOrder], matrix, size: int, hours: float, similarity: float, names: Names) -> list[dict]:
    from scipy.sparse.csgraph import connected_components

    by_street: dict[str, list[int]] = defaultdict(list)
    for row, o in enumerate(orders):
        if o.street_id:
            by_street[o.street_id].append(row)
    matters = {path: n for n, path in enumerate(sorted({o.category_path for o in orders if o.category_path}))}
    all_matters = np.array([matters.get(o.category_path, -1) for o in orders])   # -1: no category, matches nothing
    alerts = []
    for street_id, rows in sorted(by_street.items()):
        if len(rows) < size:
            continue
        matter = all_matters[rows]
        same_matter = (matter[:, None] == matter[None, :]) & (matter[:, None] >= 0)
        similar = (matrix[rows] @ matrix[rows].T).toarray() >= similarity if matrix is not None else False
        labels = connected_components(same_matter | similar, directed=False)[1]
        for label in sorted(set(labels.tolist())):
            group = sorted((orders[rows[i]] for i in np.flatnonzero(labels == label)),
                           key=lambda o: (as_utc(o.created_at), o.id))
            times = [as_utc(o.created_at).timestamp() for o in group]
            for first, last in _windows(times, size, hours):
                burst = group[first:last + 1]
                communities = Counter(o.community for o in burst if o.community).most_common(1)
                place = names.of("street", street_id)
                if communities and communities[0][1] == len(burst):
                    place += communities[0][0]
                category = Counter(o.category_path for o in burst if o.category_path).most_common(1)
                reason = (f"{place}在{_clock(burst[0].created_at)}至{_clock(burst[-1].created_at)}出现{len(burst)}件相似诉求"
                          + (f"（{category[0][0]}）" if category else "") + f"，达到{hours:g}小时内{size}件的群体高发线")
                alerts.append(_alert("群体高发", "高" if len(burst) >= 2 * size else "中", burst, reason, names))
    return alerts


def _sensitive(orders: list[WorkOrder], tags: tuple[str, ...], names: Names) -> list[dict]:
    alerts = []
    for o in orders:
        found = [t for t in tags if t in (o.tags or [])]
        if found and o.state in OPEN_STATES:
            severity = min((SENSITIVE_SEVERITY.get(t, "中") for t in found), key=SEVERITY_ORDER.__getitem__)
            alerts.append(_alert("敏感诉求", severity, [o], f"工单带有敏感标签：{'、'.join(found)}，仍未办结"
                                                          f"（当前：{STATE_LABELS[State(o.state)]}），请及时关注", names))
    return alerts


def _alert(kind: str, severity: str, orders: list[WorkOrder], reason: str, names: Names) -> dict:
    district = Counter(o.district_adcode for o in orders if o.district_adcode).most_common(1)
    street = Counter(o.street_id for o in orders if o.street_id).most_common(1)
    return {"kind": kind, "severity": severity, "order_nos": [o.order_no for o in orders], "reason": reason,
            "district": names.of("district", district[0][0]) if district else None,
            "street": names.of("street", street[0][0]) if street else None,
            "latest_at": _local(max(o.created_at for o in orders))}


def alerts_definition(*, overdue_working_days: int, open_days: int, cluster_size: int, cluster_hours: float,
                      cluster_similarity: float, sensitive_tags: tuple[str, ...] | None) -> str:
    tags = "/".join(sensitive_tags or lexicons()["sensitive_tags"])
    return (f"期间内登记的工单（不含协办子工单）中：久而未决＝仍未办结且超过办理时限{overdue_working_days}个工作日以上，"
            f"或登记超过{open_days}天（严重超期或登记超过{2 * open_days}天为高）；群体高发＝同一街道{cluster_hours:g}小时内"
            f"不少于{cluster_size}件相似诉求（同一细类事项，或文本余弦相似度≥{cluster_similarity}），达到{2 * cluster_size}件"
            f"为高；敏感诉求＝仍未办结且带有{tags}标签（扬言、维稳为高）。按严重程度排序")


def alerts(session: Session, scope: Scope, *, now: dt.datetime | None = None, overdue_working_days: int = 3,
           open_days: int = 30, cluster_size: int = 5, cluster_hours: float = 24, cluster_similarity: float = SIMILARITY,
           sensitive_tags: tuple[str, ...] | None = None, limit: int = 200, names: Names = NO_NAMES) -> Indicator:
    """预警 over the orders registered in the scope, most severe first:

    - 久而未决: still open and past the deadline by more than `overdue_working_days` working days, or registered more
      than `open_days` days ago (高 when 严重超期 or open for twice that long);
    - 群体高发: at least `cluster_size` similar orders on one street within `cluster_hours` hours — similar meaning the
      same matter (细类) or text cosine similarity ≥ `cluster_similarity` (高 at twice the size);
    - 敏感诉求: still open and tagged 扬言/信访/维稳/舆情 (高 for 扬言 and 维稳).
    """
    if overdue_working_days < 0 or open_days < 1 or cluster_size < 2 or cluster_hours <= 0 or limit < 1:
        raise ValueError("thresholds out of range: overdue_working_days ≥ 0, open_days ≥ 1, cluster_size ≥ 2, "
                         "cluster_hours > 0, limit ≥ 1")
    now = now or utcnow()
    tags = tuple(sensitive_tags or lexicons()["sensitive_tags"])
    orders = scoped_orders(session, scope)
    matrix = _tfidf(orders)
    found = (_long_unresolved(orders, now, overdue_working_days, open_days, names)
             + _surges(orders, matrix, cluster_size, cluster_hours, cluster_similarity, names)
             + _sensitive(orders, tags, names))
    kinds = ("敏感诉求", "群体高发", "久而未决")
    found.sort(key=lambda a: (SEVERITY_ORDER[a["severity"]], kinds.index(a["kind"]), a["latest_at"] or "",
                              a["order_nos"]))
    definition = alerts_definition(overdue_working_days=overdue_working_days, open_days=open_days,
                                   cluster_size=cluster_size, cluster_hours=cluster_hours,
                                   cluster_similarity=cluster_similarity, sensitive_tags=tags)
    return Indicator("预警", len(found), definition=definition,
                     breakdown={"by_kind": dict(Counter(a["kind"] for a in found)), "alerts": found[:limit]})


def _defaults(function, *names: str) -> dict:
    return {name: function.__kwdefaults__[name] for name in names}


# The indicators that are lists or rankings of their own, described with their default thresholds.
MEASURES.update({m.name: m for m in [
    Measure("ranking", "工单数排名", "件", "ranking", DEF_RANKING),
    Measure("hot_topics", "热点诉求", "个", "list",
            hot_topics_definition(**_defaults(hot_topics, "similarity", "min_size", "max_orders"))),
    Measure("hot_areas", "高发区域", "个", "list", hot_areas_definition(**_defaults(hot_areas, "min_count", "growth"))),
    Measure("alerts", "预警", "条", "list", alerts_definition(**_defaults(
        alerts, "overdue_working_days", "open_days", "cluster_size", "cluster_hours", "cluster_similarity",
        "sensitive_tags"))),
]})


# -- names → codes (the assistant and officials say 岳麓区, not 430104) ------------------------------------------------
class UnknownName(ValueError):
    """A district / street / department name that the knowledge base does not know, or knows more than once."""


def _clean_name(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip()


def resolve_district(value: str, *, gazetteer) -> str:
    """Adcode of a district given by code, name or alias (岳麓区, 岳麓, 长沙市岳麓区, 河西)."""
    value = _clean_name(value)
    if value in gazetteer.districts:
        return value
    bare = value.removeprefix(gazetteer.city_name) or value
    codes = {code for code, name in gazetteer.districts.items() if name == bare}
    codes |= {code for p in gazetteer.places if p.type == "district" and p.name == bare for code in p.district_adcodes}
    if len(codes) == 1:
        return codes.pop()
    if codes:
        raise UnknownName(f"“{value}”对应多个区县：{'、'.join(sorted(gazetteer.districts[c] for c in codes))}，请写全称")
    raise UnknownName(f"不认识的区县“{value}”")


def _peel_district(value: str, gazetteer) -> tuple[str | None, str]:
    """(district adcode, rest) when `value` starts with a district's name (岳麓区望月湖街道)."""
    bare = value.removeprefix(gazetteer.city_name)
    for code, name in sorted(gazetteer.districts.items(), key=lambda kv: -len(kv[1])):
        if bare.startswith(name) and len(bare) > len(name):
            return code, bare[len(name):]
    return None, bare


def resolve_street(value: str, *, gazetteer, district: str | None = None) -> str:
    """Street/town id given by id or name (望月湖街道, 望月湖, 岳麓区望月湖街道); `district` settles homonyms (高桥)."""
    value = _clean_name(value)
    if value in gazetteer.streets:
        return value
    named_district, rest = _peel_district(value, gazetteer)
    district = named_district or district
    ids = {sid for sid, (name, _) in gazetteer.streets.items() if name == rest}
    ids |= {sid for p in gazetteer.places if p.type in ("street", "area") and p.name == rest for sid in p.street_ids}
    if district:
        ids = {sid for sid in ids if gazetteer.streets[sid][1] == district}
    if len(ids) == 1:
        return ids.pop()
    if ids:
        options = "、".join(sorted(gazetteer.districts[gazetteer.streets[s][1]] + gazetteer.streets[s][0] for s in ids))
        raise UnknownName(f"“{value}”有多个：{options}，请同时指明区县")
    raise UnknownName(f"不认识的街道（乡镇）“{value}”" + (f"（在{gazetteer.districts.get(district, district)}）"
                                                      if district else ""))


def resolve_department(value: str, *, kb, gazetteer, district: str | None = None) -> str:
    """Department code given by code, full name, alias (城管局), district + alias (岳麓区城管局) or a street's name
    (望月湖街道 → its office). With a district, an alias means that district's unit of the same kind."""
    value = _clean_name(value)
    if value in kb.departments:
        return value
    departments = list(kb.departments.values())
    exact = [d for d in departments if d.name == value]
    if len(exact) == 1:
        return exact[0].code
    named_district, rest = _peel_district(value, gazetteer)
    district = named_district or district
    city = gazetteer.city_name
    # The kinds the words name: an alias or a name without its place prefix (城市管理和综合执法局).
    kinds = {d.kind for d in departments if rest in d.aliases or (d.level != "street" and d.name.removeprefix(city)
                                                                  .removeprefix(d.district_name) == rest)}
    candidates = [d for d in departments if rest in d.aliases or d.name == rest]
    if district:
        local = [d for d in departments if d.kind in kinds and d.level == "district" and d.district_adcode == district]
        candidates = local or [d for d in candidates if d.district_adcode in ("", district)]
    elif named_district is None and not candidates:
        candidates = [d for d in departments if d.kind in kinds and d.level == "city"]
    if not candidates:
        try:   # a street's name means that street's office
            street = resolve_street(value, gazetteer=gazetteer, district=district)
        except UnknownName:
            street = None
        candidates = [d for d in departments if street and d.level == "street" and d.street_id == street]
    if len(candidates) == 1:
        return candidates[0].code
    if candidates:
        raise UnknownName(f"“{value}”对应多个单位：{'、'.join(sorted(d.name for d in candidates)[:5])}，请写全称或指明区县")
    raise UnknownName(f"不认识的单位“{value}”")
