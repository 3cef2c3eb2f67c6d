"""City vitals (城市体征): imported time series with warning thresholds (预警线), checked for their latest level.

A point is (metric code, name, unit, area, timestamp, value); 全市 is the area of city-wide series. A threshold is
(metric, area, direction above/below, warn, alarm); an empty area is the default for every area of that metric and a
named area overrides it. Levels: 正常 / 预警 (warn line reached) / 告警 (alarm line reached), worst of the directions.

Files are CSV (UTF-8) or Excel with a header; which kind is told by the columns (thresholds have `direction`).
Each file is imported whole or not at all; a point already stored (same metric, area, timestamp) is updated, never
duplicated. Timestamps without an offset are Beijing time, stored in UTC.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import Float, Integer, String, Text, UniqueConstraint, and_, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from hotline.core.clock import CITY_TZ, as_utc
from hotline.core.db import Base, UTCDateTime, transaction
from knowledge_base.loaders import DataFileError, files_in, parse_rows, read_rows
from orders.models import utcnow

CITY_WIDE = "全市"
DOMAINS = ("治理", "安全", "经济", "环境", "交通", "民生")
LEVEL_LABELS = {"alarm": "告警", "warn": "预警", "normal": "正常", "none": "未设阈值"}
_LEVEL_RANK = {"none": 0, "normal": 1, "warn": 2, "alarm": 3}


# -- tables --------------------------------------------------------------------------------------------------------
class VitalPoint(Base):
    __tablename__ = "vital_points"
    __table_args__ = (UniqueConstraint("metric", "area", "at", name="uq_vital_point"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    metric: Mapped[str] = mapped_column(String(64), index=True)    # code: aqi, pm25, xiangjiang_level …
    name: Mapped[str] = mapped_column(String(64))                  # 空气质量指数AQI
    unit: Mapped[str] = mapped_column(String(16), default="")
    domain: Mapped[str] = mapped_column(String(8), default="")     # 治理/安全/经济/环境/交通/民生
    area: Mapped[str] = mapped_column(String(64), default=CITY_WIDE)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    value: Mapped[float] = mapped_column(Float)
    source: Mapped[str | None] = mapped_column(String(256))        # the file it came from
    imported_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class VitalThreshold(Base):
    __tablename__ = "vital_thresholds"
    __table_args__ = (UniqueConstraint("metric", "area", "direction", name="uq_vital_threshold"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    metric: Mapped[str] = mapped_column(String(64), index=True)
    area: Mapped[str] = mapped_column(String(64), default="")      # "" = every area of the metric
    direction: Mapped[str] = mapped_column(String(8))              # above: high is bad; below: low is bad
    warn: Mapped[float | None] = mapped_column(Float)
    alarm: Mapped[float | None] = mapped_column(Float)
    note: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


# -- file rows -----------------------------------------------------------------------------------------------------
POINT_COLUMNS = {"metric", "name", "timestamp", "value"}
THRESHOLD_COLUMNS = {"metric", "direction"}


def _blank_to_none(value):
    return None if isinstance(value, str) and not value.strip() else value


class PointRow(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    metric: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$", description="a code: letters, digits, _ . -")
    name: str = Field(min_length=1, max_length=64)
    unit: str = Field(default="", max_length=16)
    domain: str = ""
    area: str = Field(default=CITY_WIDE, max_length=64)
    timestamp: dt.datetime
    value: float = Field(allow_inf_nan=False)

    @field_validator("area", mode="before")
    @classmethod
    def _city_wide(cls, value):
        return _blank_to_none(value) or CITY_WIDE

    @field_validator("domain")
    @classmethod
    def _known_domain(cls, value: str) -> str:
        if value and value not in DOMAINS:
            raise ValueError(f"domain must be empty or one of {'/'.join(DOMAINS)}")
        return value

    @field_validator("timestamp", mode="before")
    @classmethod
    def _slashes(cls, value):
        return value.replace("/", "-") if isinstance(value, str) else value   # 2026/11/20 08:00 from spreadsheets

    @field_validator("timestamp")
    @classmethod
    def _in_utc(cls, value: dt.datetime) -> dt.datetime:
        return as_utc(value, naive_is=CITY_TZ)   # a naive time in the file is the city's clock


class ThresholdRow(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    metric: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
    area: str = Field(default="", max_length=64)
    direction: Literal["above", "below"]
    warn: float | None = Field(default=None, allow_inf_nan=False)
    alarm: float | None = Field(default=None, allow_inf_nan=False)
    note: str = ""

    _blanks = field_validator("warn", "alarm", mode="before")(_blank_to_none)

    @field_validator("area", mode="before")
    @classmethod
    def _all_areas(cls, value):
        return _blank_to_none(value) or ""

    @model_validator(mode="after")
    def _consistent(self) -> ThresholdRow:
        if self.warn is None and self.alarm is None:
            raise ValueError("give warn, alarm or both")
        if self.warn is not None and self.alarm is not None:
            if self.direction == "above" and self.alarm < self.warn:
                raise ValueError("for direction above, alarm must not be below warn")
            if self.direction == "below" and self.alarm > self.warn:
                raise ValueError("for direction below, alarm must not be above warn")
        return self


# -- import --------------------------------------------------------------------------------------------------------
@dataclass
class ImportResult:
    file: Path
    kind: str                  # points / thresholds
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


def read_file(path: Path) -> tuple[str, list]:
    """("points" | "thresholds", validated rows) or DataFileError listing every problem as file:row:field."""
    rows = read_rows(path)
    if not rows:
        raise DataFileError([f"{path}: no data rows"])
    columns = set(rows[0].data)
    if "direction" in columns:
        kind, model, required = "thresholds", ThresholdRow, THRESHOLD_COLUMNS
    else:
        kind, model, required = "points", PointRow, POINT_COLUMNS
    missing = sorted(required - columns)
    if missing:
        raise DataFileError([f"{path}:1: missing column(s) {', '.join(missing)} (points need metric, name, timestamp, "
                             "value; thresholds need metric, direction and warn and/or alarm)"])
    errors: list[str] = []
    parsed = parse_rows(rows, model, errors)
    seen: dict[tuple, int] = {}
    units: dict[str, tuple[str, int]] = {}
    for row, item in parsed:
        key = (item.metric, item.area, item.timestamp) if kind == "points" else (item.metric, item.area, item.direction)
        if key in seen:
            errors.append(f"{row.where('timestamp' if kind == 'points' else 'direction')}: the same "
                          f"{'point' if kind == 'points' else 'threshold'} as row {seen[key]}")
        seen[key] = row.row
        if kind == "points":
            first = units.setdefault(item.metric, (item.unit, row.row))
            if first[0] != item.unit:
                errors.append(f"{row.where('unit')}: {item.metric} has unit {first[0]!r} in row {first[1]}")
    if errors:
        raise DataFileError(sorted(set(errors), key=errors.index))
    return kind, [item for _, item in parsed]


def import_file(session: Session, *, path: Path, progress=None) -> ImportResult:
    """Import one points or thresholds file in the caller's transaction: all rows or (on any error) none.

    `progress(n)` is told as rows are written. Raises DataFileError for bad rows or a unit that differs from the one
    stored for the metric.
    """
    kind, items = read_file(path)
    result = ImportResult(path, kind, rows=len(items))
    try:
        if kind == "points":
            _write_points(session, items, str(path.name), result, progress)
        else:
            _write_thresholds(session, items, result, progress)
        session.flush()
    except IntegrityError:
        raise DataFileError([f"{path}: another import of the same points ran at the same time; run it again"]) from None
    return result


def _write_points(session: Session, items: list[PointRow], source: str, result: ImportResult, progress) -> None:
    stored_units = dict(session.execute(select(VitalPoint.metric, VitalPoint.unit)
                                        .where(VitalPoint.metric.in_({i.metric for i in items})).distinct()).all())
    clashes = [f"{source}: {metric} is stored with unit {stored_units[metric]!r}, the file says {unit!r}"
               for metric, unit in sorted({(i.metric, i.unit) for i in items}) if metric in stored_units
               and stored_units[metric] != unit]
    if clashes:
        raise DataFileError(clashes)
    existing: dict[tuple, VitalPoint] = {}
    for metric in sorted({i.metric for i in items}):
        times = [i.timestamp for i in items if i.metric == metric]
        for point in session.scalars(select(VitalPoint).where(VitalPoint.metric == metric, VitalPoint.at >= min(times),
                                                              VitalPoint.at <= max(times))):
            existing[(point.metric, point.area, as_utc(point.at))] = point
    now = utcnow()
    for number, item in enumerate(items, start=1):
        point = existing.get((item.metric, item.area, item.timestamp))
        if point is None:
            session.add(VitalPoint(metric=item.metric, name=item.name, unit=item.unit, domain=item.domain,
                                   area=item.area, at=item.timestamp, value=item.value, source=source, imported_at=now))
            result.inserted += 1
        elif (point.value, point.name, point.domain) != (item.value, item.name, item.domain):
            point.value, point.name, point.domain, point.source, point.imported_at = (item.value, item.name, item.domain,
                                                                                      source, now)
            result.updated += 1
        else:
            result.unchanged += 1
        if progress and number % 200 == 0:
            session.flush()
            progress(200)
    if progress:
        progress(len(items) % 200)


def _write_thresholds(session: Session, items: list[ThresholdRow], result: ImportResult, progress) -> None:
    existing = {(t.metric, t.area, t.direction): t for t in session.scalars(select(VitalThreshold))}
    for item in items:
        threshold = existing.get((item.metric, item.area, item.direction))
        values = (item.warn, item.alarm, item.note or None)
        if threshold is None:
            session.add(VitalThreshold(metric=item.metric, area=item.area, direction=item.direction, warn=item.warn,
                                       alarm=item.alarm, note=item.note or None, updated_at=utcnow()))
            result.inserted += 1
        elif (threshold.warn, threshold.alarm, threshold.note) != values:
            threshold.warn, threshold.alarm, threshold.note = values
            threshold.updated_at = utcnow()
            result.updated += 1
        else:
            result.unchanged += 1
    if progress:
        progress(len(items))


def files_of(paths: list[Path]) -> list[Path]:
    """The files named, a folder standing for its data files (thresholds last, so a typo in them spoils nothing)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(files_in(path), key=lambda p: (p.stem == "thresholds", p.name)))
        else:
            found.append(path)
    return found


def import_sample_if_empty(sessions, settings) -> int:
    """The embedded demo: load the city's sample vitals (knowledge_base/data/<city>/vitals/) into an empty table."""
    folder = settings.city_dir / "vitals"
    with sessions() as session:
        if session.scalar(select(func.count(VitalPoint.id))) or not folder.is_dir():
            return 0
    imported = 0
    with transaction(sessions) as session:
        for path in files_of([folder]):
            imported += import_file(session, path=path).rows
    return imported


# -- levels and readings -------------------------------------------------------------------------------------------
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

    def to_json(self) -> dict:
        return {"metric": self.metric, "name": self.name, "unit": self.unit, "domain": self.domain, "area": self.area,
                "at": self.at.astimezone(CITY_TZ).isoformat(), "value": self.value, "level": self.level,
                "level_label": LEVEL_LABELS[self.level], "previous_value": self.previous_value,
                "thresholds": self.thresholds}


def latest_readings(session: Session, *, metric: str | None = None, area: str | None = None,
                    domain: str | None = None) -> list[Reading]:
    """The latest point of every (metric, area) series with its level, worst first, then by metric and area."""
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
        before = session.scalar(select(VitalPoint.value).where(VitalPoint.metric == point.metric,
                                                               VitalPoint.area == point.area, VitalPoint.at < point.at)
                                .order_by(VitalPoint.at.desc()).limit(1))
        readings.append(Reading(point.metric, point.name, point.unit, point.domain, point.area, as_utc(point.at),
                                point.value, level_of(point.value, applicable), before,
                                [threshold_json(t) for t in applicable]))
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


# -- command line --------------------------------------------------------------------------------------------------
