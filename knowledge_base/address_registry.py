"""The city's standard address registry (标准地址库): compounds, villages, landmarks… with their street, imported
from the registry's CSV/.xlsx export into `<city>/geo/address_registry.csv`, which the gazetteer reads like
places.csv.

An import is all or nothing: every bad row is reported as file:row:field and nothing is written; re-importing
the same file changes nothing. Rows are keyed by (name, street): a later import updates a place it already has
and keeps the places it does not mention (a registry may come in several files, e.g. one per district).
"""
from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import prcoords
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from shapely.geometry import Point

from knowledge_base.gazetteer import COMMUNITY_TYPES, REGISTRY_FILE, Gazetteer, load_gazetteer
from knowledge_base.loaders import DataFileError, SourceRow, parse_rows, read_rows

REQUIRED_COLUMNS = {"name", "street_code", "type"}
STORED_COLUMNS = ["name", "type", "district_adcode", "street_id", "street_code", "community", "aliases", "lng", "lat",
                  "datum", "source"]
PlaceType = Literal["compound", "village", "community", "landmark", "school", "hospital", "market", "park", "station",
                    "poi", "road"]
# A point this far outside the street's district (degrees, ~1 km) is a wrong point or a wrong street code.
DISTRICT_TOLERANCE_DEG = 0.01
# Words that are a kind of place, not a place's name: as a whole name they would match in every complaint.
GENERIC_NAMES = frozenset("小区 花园 新村 公寓 大厦 广场 市场 社区 村 村委会 居委会 宿舍 家属区 公园 学校 医院 商场 "
                          "商铺 门面 工地 楼盘 单元 楼栋 物业".split())
_SEPARATORS = re.compile(r"[|、；;，,]")
_HAS_NAME_CHARACTER = re.compile(r"[\u4e00-\u9fffA-Za-z]")


def _text(value) -> str:
    """A cell as text: an integer-valued number from a spreadsheet (430104001000.0) without its decimals."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return "" if value is None else str(value).strip()


def _blank_to_none(value):
    return None if isinstance(value, str) and not value.strip() else value


class RegistryRow(BaseModel):
    """One row of a registry file as given."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    name: str = Field(min_length=2, max_length=64)
    aliases: tuple[str, ...] = ()
    street_code: str = Field(pattern=r"^\d{12}$", description="the 12-digit statistical code of the street/town")
    community: str = Field(default="", max_length=32)
    type: PlaceType
    lng: float | None = Field(default=None, ge=73.0, le=136.0, allow_inf_nan=False)
    lat: float | None = Field(default=None, ge=3.0, le=54.0, allow_inf_nan=False)
    datum: Literal["wgs84", "gcj02", "bd09"] = "wgs84"

    @field_validator("name", "street_code", "community", "type", mode="before")
    @classmethod
    def _as_text(cls, value):
        return _text(value)

    @field_validator("type", "datum", mode="before")
    @classmethod
    def _lower(cls, value):
        value = _text(value).lower()
        return {"cgcs2000": "wgs84", "wgs-84": "wgs84", "gcj-02": "gcj02", "bd-09": "bd09"}.get(value, value)

    @field_validator("datum", mode="before")
    @classmethod
    def _default_datum(cls, value):
        return _blank_to_none(value) or "wgs84"

    @field_validator("lng", "lat", mode="before")
    @classmethod
    def _blank(cls, value):
        return _blank_to_none(value)

    @field_validator("name")
    @classmethod
    def _a_name(cls, value: str) -> str:
        return _check_name(value)

    @field_validator("aliases", mode="before")
    @classmethod
    def _split_aliases(cls, value) -> tuple[str, ...]:
        parts = [a.strip() for a in _SEPARATORS.split(_text(value)) if a.strip()]
        return tuple(dict.fromkeys(_check_name(a) for a in parts))

    @model_validator(mode="after")
    def _both_coordinates(self) -> RegistryRow:
        if (self.lng is None) != (self.lat is None):
            raise ValueError("give both lng and lat, or neither")
        return self


def _check_name(value: str) -> str:
    if len(value) < 2 or len(value) > 64:
        raise ValueError(f"{value!r}: a name has 2 to 64 characters")
    if not _HAS_NAME_CHARACTER.search(value):
        raise ValueError(f"{value!r} is not a place name")
    if _SEPARATORS.search(value):
        raise ValueError(f"{value!r} contains a separator (| 、 ; ,): put other names in aliases")
    if value in GENERIC_NAMES:
        raise ValueError(f"{value!r} is a kind of place, not a name: it would match every complaint")
    return value


@dataclass(frozen=True)
class RegistryPlace:
    """A place as stored in address_registry.csv (coordinates in GCJ-02, like the rest of the gazetteer)."""

    name: str
    type: str
    district_adcode: str
    street_id: str
    street_code: str
    community: str = ""
    aliases: str = ""
    lng: str = ""
    lat: str = ""
    datum: str = ""
    source: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return self.name, self.street_id

    def same_place_data(self, other: RegistryPlace) -> bool:
        """Equal apart from the file it came from."""
        return [getattr(self, c) for c in STORED_COLUMNS if c != "source"] == \
            [getattr(other, c) for c in STORED_COLUMNS if c != "source"]


@dataclass
class ImportResult:
    file: Path
    target: Path
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    kept: int = 0              # places of earlier imports that this file does not mention
    written: bool = False
    warnings: list[str] = field(default_factory=list)


def _to_gcj02(lng: float, lat: float, datum: str) -> tuple[float, float]:
    coords = prcoords.Coords(lat, lng)
    if datum == "wgs84":
        coords = prcoords.wgs_gcj(coords)
    elif datum == "bd09":
        coords = prcoords.bd_gcj(coords)
    return coords.lon, coords.lat


def read_registry_file(path: Path, gazetteer: Gazetteer, *, stoplist: set[str] | frozenset[str] = frozenset(),
                       rows_read: Callable[[int], None] | None = None,
                       progress: Callable[[int], None] | None = None) -> list[RegistryPlace]:
    """The file's places, checked against the city's gazetteer, or DataFileError listing every problem as
    file:row:field."""
    rows = read_rows(path, required=REQUIRED_COLUMNS)
    if not rows:
        raise DataFileError([f"{path}: no data rows"])
    if rows_read:
        rows_read(len(rows))
    by_code = {row_code: sid for sid, row_code in _street_codes(gazetteer).items()}
    known_communities: dict[str, set[str]] = {}
    for place in gazetteer.places:
        if place.type in COMMUNITY_TYPES:
            known_communities.setdefault(place.name, set()).update(place.street_ids)
    errors: list[str] = []
    places: list[RegistryPlace] = []
    first_row: dict[tuple[str, str], int] = {}
    checked = 0
    for row, item in _parse_in_chunks(rows, errors, progress):
        checked += 1
        street_id = by_code.get(item.street_code)
        if street_id is None:
            hint = " (12 digits: the street_id followed by 000)" if item.street_code[9:] != "000" else ""
            errors.append(f"{row.where('street_code')}: unknown street code {item.street_code}{hint}")
            continue
        street_name, district = gazetteer.streets[street_id]
        for column, names in (("name", (item.name,)), ("aliases", item.aliases)):
            for name in names:
                if name in stoplist:
                    errors.append(f"{row.where(column)}: {name!r} is on short_name_stoplist.csv (an ordinary word)")
        if item.community:
            streets_of = known_communities.get(item.community)
            if streets_of and street_id not in streets_of:
                where = "、".join(f"{gazetteer.streets[s][0]} ({s})" for s in sorted(streets_of))
                errors.append(f"{row.where('community')}: {item.community} is in {where}, not in {street_name}")
        lng = lat = ""
        if item.lng is not None:
            glng, glat = _to_gcj02(item.lng, item.lat, item.datum)
            problem = _point_problem(gazetteer, glng, glat, district)
            if problem:
                errors.append(f"{row.where('lng')}: {problem}")
            lng, lat = f"{glng:.6f}", f"{glat:.6f}"
        key = (item.name, street_id)
        if key in first_row:
            errors.append(f"{row.where('name')}: {item.name} in {street_name} is already row {first_row[key]}")
            continue
        first_row[key] = row.row
        places.append(RegistryPlace(item.name, item.type, district, street_id, item.street_code, item.community,
                                    "|".join(a for a in item.aliases if a != item.name), lng, lat,
                                    "gcj02" if lng else "", path.name))
    if errors:
        raise DataFileError(errors)
    return places


def _parse_in_chunks(rows: list[SourceRow], errors: list[str], progress, chunk: int = 500):
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        yield from parse_rows(part, RegistryRow, errors)
        if progress:
            progress(len(part))


def _street_codes(gazetteer: Gazetteer) -> dict[str, str]:
    """street_id -> 12-digit code (the streets file's stats_code_12, else the id followed by 000)."""
    return {sid: gazetteer.street_codes.get(sid, sid + "000") for sid in gazetteer.streets}


def _point_problem(gazetteer: Gazetteer, lng: float, lat: float, district: str) -> str | None:
    if not gazetteer.polygons:
        return None
    found = gazetteer.district_at(lng, lat)
    if found is None:
        return f"the point ({lng:.6f}, {lat:.6f} GCJ-02) is outside {gazetteer.city_name}"
    if found != district and gazetteer.polygons[district].distance(Point(lng, lat)) > DISTRICT_TOLERANCE_DEG:
        return (f"the point is in {gazetteer.districts[found]}, but the street code's street is in "
                f"{gazetteer.districts[district]}")
    return None


def read_stored(path: Path) -> dict[tuple[str, str], RegistryPlace]:
    if not path.exists():
        return {}
    with path.open(encoding="utf-8-sig", newline="") as handle:
        stored = [RegistryPlace(**{c: (row.get(c) or "").strip() for c in STORED_COLUMNS}) for row in csv.DictReader(handle)]
    return {p.key: p for p in stored}


def _render(places: list[RegistryPlace]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(STORED_COLUMNS)
    for place in sorted(places, key=lambda p: (p.street_id, p.name)):
        writer.writerow([getattr(place, c) for c in STORED_COLUMNS])
    return buffer.getvalue()


def _write_atomically(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def import_registry(path: Path, city_dir: Path, *, city_name: str = "长沙市",
                    rows_read: Callable[[int], None] | None = None,
                    progress: Callable[[int], None] | None = None) -> ImportResult:
    """Check `path` completely, then merge it into `<city_dir>/geo/address_registry.csv` (or write nothing).
    `rows_read(n)` is told how many rows the file has once it is read, `progress(n)` as they are checked."""
    gazetteer = load_gazetteer(city_dir, city_name=city_name)
    stoplist_file = city_dir / "geo" / "short_name_stoplist.csv"
    stoplist = set()
    if stoplist_file.exists():
        with stoplist_file.open(encoding="utf-8-sig", newline="") as handle:
            stoplist = {(row.get("name") or "").strip() for row in csv.DictReader(handle)}
    places = read_registry_file(path, gazetteer, stoplist=stoplist, rows_read=rows_read, progress=progress)
    target = city_dir / "geo" / REGISTRY_FILE
    stored = read_stored(target)
    result = ImportResult(path, target, rows=len(places))
    merged = dict(stored)
    for place in places:
        before = stored.get(place.key)
        if before is None:
            result.inserted += 1
            merged[place.key] = place
        elif before.same_place_data(place):
            result.unchanged += 1
        else:
            result.updated += 1
            merged[place.key] = place
    result.kept = len(stored) - result.updated - result.unchanged
    if not (result.inserted or result.updated):
        return result
    previous = target.read_bytes() if target.exists() else None
    _write_atomically(target, _render(list(merged.values())))
    try:
        load_gazetteer(city_dir, city_name=city_name)   # the city must still load; it always should
    except DataFileError:
        if previous is None:
            target.unlink()
        else:
            _write_atomically(target, previous.decode("utf-8"))
        raise
    result.written = True
    return result
