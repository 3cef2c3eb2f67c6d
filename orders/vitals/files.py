"""Importing vitals files (CSV or Excel with a header): points or thresholds, told by the columns; each file
whole or not at all, a point already stored updated, never duplicated; timestamps without an offset are Beijing
time."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hotline.core.clock import CITY_TZ, as_utc
from hotline.core.db import transaction
from knowledge_base.loaders import DataFileError, files_in, parse_rows, read_rows
from orders.models import utcnow
from orders.vitals.models import CITY_WIDE, DOMAINS, VitalPoint, VitalThreshold

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

