"""The orders an indicator counts (a `Scope`: period and filters), what it returns (`Indicator`), and names ↔ codes.

Only top-level orders count (co-handler child orders are parts of their lead order). Officials and the assistant say
岳麓区, 望月湖街道 or 城管局, not 430104: `resolve_*` turn such names into codes through the knowledge base and
gazetteer, and `Names` turns codes back into words for rankings.
"""
from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from hotline.core.clock import CITY_TZ, as_utc, city_midnight, year_before
from orders.indicators.catalogue import CHANNEL_LABELS
from orders.models import MERGED_ROLE, WorkOrder

UNKNOWN = "未知"


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

    def year_earlier(self) -> Scope:
        """The same city days a year earlier (同比), same filters."""
        def moved(moment: dt.datetime) -> dt.datetime:
            return city_midnight(year_before(as_utc(moment).astimezone(CITY_TZ).date()))
        return Scope(moved(self.start), moved(self.end), self.district_adcode, self.street_id, self.category_prefix,
                     self.department_code, self.channel)


@dataclass
class Indicator:
    name: str
    value: float | None
    numerator: float | None = None
    denominator: float | None = None
    definition: str = ""
    breakdown: dict = field(default_factory=dict)


def local_iso(moment: dt.datetime | None) -> str | None:
    """Beijing time to the minute, ISO 8601 (for the moments lists show)."""
    return as_utc(moment).astimezone(CITY_TZ).isoformat(timespec="minutes") if moment else None


def spoken_time(moment: dt.datetime) -> str:
    """Beijing time as a reason says it: 11月18日08:00."""
    local = as_utc(moment).astimezone(CITY_TZ)
    return f"{local.month}月{local.day}日{local:%H:%M}"


def scoped_orders(session: Session, scope: Scope) -> list[WorkOrder]:
    """Top-level orders and merged callers' orders created in the period that match the filters: the base set of
    most indicators. Co-handlers' orders are never in it; measures of handling keep only `handled` orders."""
    query = select(WorkOrder).where(or_(WorkOrder.parent_id.is_(None), WorkOrder.role == MERGED_ROLE),
                                    WorkOrder.created_at >= scope.start,
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


def handled(orders: list[WorkOrder]) -> list[WorkOrder]:
    """The orders handled as such: a caller's order merged into another is counted as a caller (工单数, rankings,
    repeats, surges) but its handling is the handling order's, which is measured once (办结率, 按时, 超期, 满意率 …)."""
    return [o for o in orders if o.role != MERGED_ROLE]


def category_level(path: str | None, level: int) -> str | None:
    """The 大类 (1), 大类/子类 (2) or 大类/子类/细类 (3) prefix of a category path."""
    return "/".join(path.split("/")[:level]) if path else None


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
