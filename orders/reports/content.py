"""The figures of a 日报/周报/月报/季报, all read from the indicator functions (orders/indicators/: one definition
each), for the period containing a date on the city's calendar.

环比 is `with_previous` (the equal period just before, as the cockpit compares); 同比 is the same function over the
same dates a year earlier. The one figure the catalogue does not have, 直办 vs 转办, is counted here from the same
scoped orders, with its 口径 written below.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from hotline.core.clock import CITY_TZ, city_midnight, utcnow
from orders import indicators as ind
from orders.indicators.scope import handled
from orders.lifecycle import State

PERIOD_LABELS = {"day": "日报", "week": "周报", "month": "月报", "quarter": "季报"}
PERIOD_WORDS = {"day": "日", "week": "周", "month": "月", "quarter": "季度"}

DEF_DIRECT = ("直办＝期间内登记的工单中，未派往任何承办单位、由12345中心直接了结的（直接答复后以“不予受理”办结，如咨询"
              "当场解答、不属受理范围）；转办＝已派往承办单位办理的（有首次派单时间）；待分拨＝尚未派单、也未了结的。"
              "合并办理的同一事件按主办工单计一件（与办结率口径一致），不含协办子工单")
DEF_CHANGES = "环比＝与紧邻的等长周期相比；同比＝与上一年同日期区间相比；比率类指标的变化为百分点"

# Units named in the report when a rate falls below these (the field survey's 通报 tables: 满意率 < 85% …).
# Only units with at least MIN_UNIT_SAMPLE orders in the denominator are judged, so one order cannot name a unit.
# 办结率 is left out: the orders of a period just ended are still being handled, so it would name most units.
THRESHOLDS = {"satisfaction_rate": 0.85, "on_time_rate": 0.90}
MIN_UNIT_SAMPLE = 5

# The key figures, in the order a report lists them.
KEY_FIGURES = ("order_count", "completion_rate", "on_time_rate", "overdue_count", "satisfaction_rate",
               "dissatisfaction_rate", "reopen_rate", "average_handling_hours", "average_dispatch_minutes",
               "repeat_requests")
# The per-unit table's measures (as the cockpit's): counts 按时办结 / 超时办结 / 未办结 are these rates' parts.
UNIT_COLUMNS = ("order_count", "completion_rate", "on_time_rate", "overdue_count", "satisfaction_rate",
                "dissatisfaction_rate")


class PeriodError(ValueError):
    """An unknown period kind or a date that cannot be read."""


@dataclass(frozen=True)
class Period:
    kind: str          # day / week / month / quarter
    start: dt.date     # first day, the city's calendar
    end: dt.date       # the day after the last

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    @property
    def last_day(self) -> dt.date:
        return self.end - dt.timedelta(days=1)

    @property
    def title(self) -> str:
        """2026年12月1日 / 2026年第49周（11月30日—12月6日） / 2026年12月 / 2026年第4季度."""
        s = self.start
        if self.kind == "day":
            return f"{s.year}年{s.month}月{s.day}日"
        if self.kind == "week":
            year, week, _ = s.isocalendar()
            last = self.last_day
            return f"{year}年第{week}周（{s.month}月{s.day}日—{last.month}月{last.day}日）"
        if self.kind == "month":
            return f"{s.year}年{s.month}月"
        return f"{s.year}年第{(s.month - 1) // 3 + 1}季度"

    def scope(self) -> ind.Scope:
        return ind.Scope(city_midnight(self.start), city_midnight(self.end))

    def year_earlier(self) -> ind.Scope:
        return self.scope().year_earlier()


def period_containing(kind: str, day: dt.date) -> Period:
    """The day, week (Monday to Sunday), month or quarter that contains `day`."""
    if kind not in PERIOD_LABELS:
        raise PeriodError(f"period must be one of {', '.join(PERIOD_LABELS)}, not {kind!r}")
    if not 1901 <= day.year <= 9998:   # 同比 and the period's end must stay on the calendar
        raise PeriodError(f"date must be between 1901 and 9998, not {day.isoformat()}")
    if kind == "day":
        return Period(kind, day, day + dt.timedelta(days=1))
    if kind == "week":
        start = day - dt.timedelta(days=day.weekday())
        return Period(kind, start, start + dt.timedelta(days=7))
    months = 3 if kind == "quarter" else 1
    start = dt.date(day.year, (day.month - 1) // months * months + 1, 1)
    month = start.month - 1 + months
    return Period(kind, start, dt.date(start.year + month // 12, month % 12 + 1, 1))


def last_complete(kind: str, today: dt.date) -> Period:
    """The latest period of `kind` that has ended before `today` (yesterday, last week, last month …)."""
    return period_containing(kind, period_containing(kind, today).start - dt.timedelta(days=1))


def city_today(now: dt.datetime | None = None) -> dt.date:
    return (now or utcnow()).astimezone(CITY_TZ).date()


# -- the figures ---------------------------------------------------------------------------------------------------
def _indicator_function(name: str):
    """(session, scope) → Indicator for a catalogue entry, whether answered alone or with its group."""
    entry = ind.CATALOGUE[name]
    if entry.group:
        return lambda session, scope, **kw: ind.GROUP_FUNCTIONS[entry.group](session, scope, **kw)[entry.label]
    return ind.SCOPE_FUNCTIONS[name]


def _change(current: float | None, before: float | None, kind: str) -> float | None:
    """A rate's change in percentage points (as a fraction); a count's or an average's as a relative change."""
    if current is None or before is None:
        return None
    if kind == "rate":
        return round(current - before, 4)
    return round((current - before) / before, 4) if before else None


def key_figure(*, session: Session, period: Period, name: str, now: dt.datetime) -> dict:
    entry = ind.CATALOGUE[name]
    function = _indicator_function(name)
    extra = {"now": now} if entry.group == "overdue" else {}
    compared = ind.with_previous(function, session, period.scope(), **extra)
    year_ago = function(session, period.year_earlier(), **extra)
    current, previous = compared["current"], compared["previous"]
    return {"name": name, "label": entry.label, "unit": entry.unit, "kind": entry.kind,
            "higher_is_better": entry.higher_is_better, "definition": entry.definition,
            "value": current.value, "numerator": current.numerator, "denominator": current.denominator,
            "previous": previous.value, "change": _change(current.value, previous.value, entry.kind),
            "year_ago": year_ago.value, "year_change": _change(current.value, year_ago.value, entry.kind)}


def direct_and_transferred(*, session: Session, scope: ind.Scope) -> dict:
    """直办 vs 转办 (口径: DEF_DIRECT) over the orders a figure counts (scoped_orders, handled as 办结率 does)."""
    orders = handled(ind.scoped_orders(session, scope))
    transferred = sum(1 for o in orders if o.first_dispatched_at)
    direct = sum(1 for o in orders if not o.first_dispatched_at and o.state in (State.REJECTED, State.ARCHIVED))
    total = len(orders)
    return {"total": total, "direct": direct, "transferred": transferred, "pending": total - direct - transferred,
            "direct_share": round(direct / total, 4) if total else None,
            "transferred_share": round(transferred / total, 4) if total else None, "definition": DEF_DIRECT}


def _shares(session: Session, scope: ind.Scope, dimension: str, names: ind.Names, top: int = 50) -> list[dict]:
    ranked = ind.ranking(session, scope, dimension, top=top)
    total = ranked.value or 0
    return [{"key": key, "label": names.of(dimension, key) if dimension in ("channel", "district", "department")
             else key, "count": count, "share": round(count / total, 4) if total else None}
            for key, count in ranked.breakdown.items()]


def _unit_table(session: Session, scope: ind.Scope, *, now: dt.datetime, names: ind.Names) -> list[dict]:
    """One row per 承办单位 (the unit holding the order), each column the catalogue's measure for that unit (one read
    of the orders, as the cockpit's table): 派遣总数, 按时办结, 超时办结 (completed past the limit), 未办结 (not yet
    closed), the rates, and the unit's 退单 / 有责退单 in the period."""
    table = ind.table(session, scope, dimension="department", measures=list(UNIT_COLUMNS), now=now, names=names)
    returns = ind.return_ranking(session, scope, top=None).breakdown
    rows = []
    for code, cells in sorted(table.items(), key=lambda kv: (-(kv[1]["order_count"]["value"] or 0), kv[0])):
        row = {"code": code, "name": cells["label"]}
        for name in UNIT_COLUMNS:
            row[name] = cells[name]["value"]
            row[f"{name}_denominator"] = cells[name]["denominator"]
        timely, closing = cells["on_time_rate"], cells["completion_rate"]
        row["on_time_done"] = timely["numerator"] or 0
        row["late_done"] = (timely["denominator"] or 0) - (timely["numerator"] or 0)
        row["not_closed"] = (closing["denominator"] or 0) - (closing["numerator"] or 0)
        row["returns"] = (returns.get(code) or {}).get("退单", 0)
        row["returns_at_fault"] = (returns.get(code) or {}).get("有责退单", 0)
        rows.append(row)
    return rows


def _below_thresholds(units: list[dict]) -> list[dict]:
    flagged = []
    for name, floor in THRESHOLDS.items():
        label = ind.CATALOGUE[name].label
        for row in units:
            value, sample = row.get(name), row.get(f"{name}_denominator") or 0
            if value is not None and sample >= MIN_UNIT_SAMPLE and value < floor:
                flagged.append({"unit": row["name"], "code": row["code"], "indicator": label, "value": value,
                                "threshold": floor, "sample": sample})
    return sorted(flagged, key=lambda f: (f["indicator"], f["value"], f["unit"]))


def build_content(*, session: Session, period: Period, names: ind.Names = ind.NO_NAMES, segmenter=None,
                  now: dt.datetime | None = None, city_name: str = "") -> dict:
    """Everything a report shows, as plain data (the HTML, Excel and PDF renderers only lay it out)."""
    now = now or utcnow()
    scope = period.scope()
    figures = {name: key_figure(session=session, period=period, name=name, now=now) for name in KEY_FIGURES}
    count = figures["order_count"]
    units = _unit_table(session, scope, now=now, names=names)
    topics = ind.hot_topics(session, scope, top=5, names=names, segmenter=segmenter)
    found_alerts = ind.alerts(session, scope, now=now, limit=10, names=names)
    trend = ind.ranking(session, scope, "day", top=None)
    days = [period.start + dt.timedelta(days=i) for i in range(period.days)]
    return {
        "city": city_name, "period": period.kind, "period_label": PERIOD_LABELS[period.kind],
        "period_word": PERIOD_WORDS[period.kind], "title": period.title, "start": period.start.isoformat(),
        "end": period.end.isoformat(), "last_day": period.last_day.isoformat(), "days": period.days,
        "generated_at": now.astimezone(CITY_TZ).strftime("%Y-%m-%d %H:%M"),
        "figures": figures,
        "daily_average": round(count["value"] / period.days, 1) if count["value"] is not None else None,
        "direct": direct_and_transferred(session=session, scope=scope),
        "channels": _shares(session, scope, "channel", names),
        "request_types": _shares(session, scope, "request_type", names),
        "categories": _shares(session, scope, "category1", names),
        "subcategories": _shares(session, scope, "category2", names, top=10),
        "districts": _shares(session, scope, "district", names, top=30),
        "trend": [{"day": d.isoformat(), "count": trend.breakdown.get(d.isoformat(), 0)} for d in days],
        "units": units,
        "below_thresholds": _below_thresholds(units),
        "thresholds": {ind.CATALOGUE[name].label: floor for name, floor in THRESHOLDS.items()},
        "min_unit_sample": MIN_UNIT_SAMPLE,
        "hot_topics": topics.breakdown["topics"],
        "hot_topics_definition": topics.definition,
        "alerts": found_alerts.breakdown["alerts"],
        "alerts_by_kind": found_alerts.breakdown["by_kind"],
        "alerts_total": found_alerts.value,
        "alerts_definition": found_alerts.definition,
        "changes_definition": DEF_CHANGES,
    }
