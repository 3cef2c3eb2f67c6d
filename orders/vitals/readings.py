"""Levels (正常 / 预警 / 告警, worst of the directions) and what the API and the CLI read: the latest value of
each series with its level, and one series over a period."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from hotline.core.clock import CITY_TZ, as_utc
from orders.vitals.models import CITY_WIDE, LEVEL_LABELS, VitalPoint, VitalThreshold

_LEVEL_RANK = {"none": 0, "normal": 1, "warn": 2, "alarm": 3}


def _beyond(value: float, line: float | None, direction: str) -> bool:
    """At or past a line (a value on the line has reached it)."""
    return line is not None and (value >= line if direction == "above" else value <= line)


def level_of(value: float, thresholds: list[VitalThreshold]) -> str:
    """alarm / warn / normal against the thresholds (the worst direction wins); none without thresholds."""
    if not thresholds:
        return "none"
    level = "normal"
    for t in thresholds:
        reached = ("alarm" if _beyond(value, t.alarm, t.direction) else "warn" if _beyond(value, t.warn, t.direction)
                   else "normal")
        level = max(level, reached, key=_LEVEL_RANK.__getitem__)
    return level


def _thresholds_for(all_thresholds: list[VitalThreshold], metric: str, area: str) -> list[VitalThreshold]:
    """An area's own thresholds per direction, else the metric's default (area "")."""
    chosen: dict[str, VitalThreshold] = {}
    for t in sorted(all_thresholds, key=lambda t: t.area != ""):   # defaults first, then the area's own override them
        if t.metric == metric and t.area in ("", area):
            chosen[t.direction] = t
    return list(chosen.values())


def threshold_json(t: VitalThreshold) -> dict:
    return {"direction": t.direction, "warn": t.warn, "alarm": t.alarm, "area": t.area or "全部区域", "note": t.note}


@dataclass
class Reading:
    metric: str
    name: str
    unit: str
    domain: str
    area: str
    at: dt.datetime
    value: float
    level: str
    previous_value: float | None = None
    thresholds: list[dict] = field(default_factory=list)
    every_hours: float | None = None      # the series' reporting interval (the gap before its latest point)
    stale: bool = False                   # nothing new for more than STALE_INTERVALS intervals

    def to_json(self) -> dict:
        return {"metric": self.metric, "name": self.name, "unit": self.unit, "domain": self.domain, "area": self.area,
                "at": self.at.astimezone(CITY_TZ).isoformat(), "value": self.value, "level": self.level,
                "level_label": LEVEL_LABELS[self.level], "previous_value": self.previous_value,
                "thresholds": self.thresholds, "every_hours": self.every_hours, "stale": self.stale}


# A series is stale once its next point is more than two reporting intervals late (a daily figure not updated for
# two days); a series with one point is taken as daily.
STALE_INTERVALS = 2.0
DEFAULT_INTERVAL = dt.timedelta(days=1)


def latest_readings(session: Session, *, metric: str | None = None, area: str | None = None,
                    domain: str | None = None, now: dt.datetime | None = None) -> list[Reading]:
    """The latest point of every (metric, area) series with its level and whether it is stale, worst first, then by
    metric and area."""
    now = as_utc(now) if now else dt.datetime.now(dt.UTC)
    newest = select(VitalPoint.metric, VitalPoint.area, func.max(VitalPoint.at).label("at")) \
        .group_by(VitalPoint.metric, VitalPoint.area)
    for column, wanted in ((VitalPoint.metric, metric), (VitalPoint.area, area), (VitalPoint.domain, domain)):
        if wanted:
            newest = newest.where(column == wanted)
    newest = newest.subquery()
    points = list(session.scalars(select(VitalPoint).join(newest, and_(
        VitalPoint.metric == newest.c.metric, VitalPoint.area == newest.c.area, VitalPoint.at == newest.c.at))))
    thresholds = list(session.scalars(select(VitalThreshold)))
    readings = []
    for point in points:
        applicable = _thresholds_for(thresholds, point.metric, point.area)
        before = session.execute(select(VitalPoint.value, VitalPoint.at).where(
            VitalPoint.metric == point.metric, VitalPoint.area == point.area, VitalPoint.at < point.at)
            .order_by(VitalPoint.at.desc()).limit(1)).first()
        at = as_utc(point.at)
        interval = (at - as_utc(before[1])) if before else DEFAULT_INTERVAL
        readings.append(Reading(point.metric, point.name, point.unit, point.domain, point.area, at,
                                point.value, level_of(point.value, applicable), before[0] if before else None,
                                [threshold_json(t) for t in applicable],
                                every_hours=round(interval.total_seconds() / 3600, 1),
                                stale=now - at > interval * STALE_INTERVALS))
    readings.sort(key=lambda r: (-_LEVEL_RANK[r.level], r.metric, r.area != CITY_WIDE, r.area))
    return readings


class UnknownMetric(LookupError):
    pass


def series(session: Session, *, metric: str, start: dt.datetime, end: dt.datetime, area: str | None = None) -> dict:
    """Points of a metric in [start, end), by area, each with its level; UnknownMetric if nothing was ever stored."""
    first = session.scalar(select(VitalPoint).where(VitalPoint.metric == metric).order_by(VitalPoint.at.desc()).limit(1))
    if first is None:
        raise UnknownMetric(f"no vital sign {metric!r}")
    query = select(VitalPoint).where(VitalPoint.metric == metric, VitalPoint.at >= start, VitalPoint.at < end)
    if area:
        query = query.where(VitalPoint.area == area)
    thresholds = list(session.scalars(select(VitalThreshold).where(VitalThreshold.metric == metric)))
    by_area: dict[str, list[dict]] = {}
    for point in session.scalars(query.order_by(VitalPoint.area, VitalPoint.at)):
        level = level_of(point.value, _thresholds_for(thresholds, metric, point.area))
        by_area.setdefault(point.area, []).append({"at": as_utc(point.at).astimezone(CITY_TZ).isoformat(),
                                                   "value": point.value, "level": level,
                                                   "level_label": LEVEL_LABELS[level]})
    return {"metric": metric, "name": first.name, "unit": first.unit, "domain": first.domain,
            "start": start.astimezone(CITY_TZ).isoformat(), "end": end.astimezone(CITY_TZ).isoformat(),
            "series": by_area, "thresholds": [threshold_json(t) for t in thresholds if not area or t.area in ("", area)]}


def threshold_words(threshold: dict) -> str:
    sign = "≥" if threshold["direction"] == "above" else "≤"
    return "，".join(f"{word}{sign}{threshold[key]:g}" for word, key in (("预警", "warn"), ("告警", "alarm"))
                    if threshold[key] is not None)

