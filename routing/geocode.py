"""Geocoding to jurisdiction: text (and/or a point) → standard address, district, street/town, community."""
from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import ahocorasick
import prcoords

from knowledge_base.gazetteer import COMMUNITY_TYPES, STRONG_TYPES, Gazetteer, Place, word_dictionary

Datum = Literal["wgs84", "gcj02", "bd09"]

# Evidence weights per mention type: a named street office or district is explicit, a road may cross several.
MENTION_WEIGHT = {"street": 3.0, "district": 2.5, "community": 2.5, "village": 2.5, "compound": 2.0, "area": 1.5,
                  "road": 1.0, "old_name": 1.5}
NEAREST_PLACE_RADIUS_M = 2_000.0
# Types that name a territory (they give the context other names are resolved in), and roads; every other type is a
# named place (小区, 村, landmark, school…) that a homonym in another district may share.
_TERRITORY_TYPES = {"district", "street", "area", "old_name"}
# Named places that may be the last part of a standard address, finest first.
_DETAIL_RANK = {"compound": 0, "village": 0, "landmark": 1, "poi": 1, "school": 1, "hospital": 1, "market": 1,
                "park": 1, "station": 2}
# A house or building number right after a place: 188号, 3栋2单元, 12号楼, 7组, 二段15号, A座.
_NUMBER = r"(?:\d{1,5}|[A-Za-z]|[零一二两三四五六七八九十百]{1,4})"
# A street's short name that is a road too (文艺路, 坡子街) takes a house number like a road.
_ROAD_NAME = re.compile(r"(?:路|大道|(?<!街)街|巷)$")
_HOUSE_NUMBER = re.compile(rf"(?:{_NUMBER}段)?(?:{_NUMBER}(?:号院|号楼|号|栋|幢|座|单元|楼|室|组|期)(?:[-之]?)){{1,4}}")


@dataclass
class GeoPoint:
    lat: float
    lng: float
    datum: Datum = "wgs84"

    def to_gcj02(self) -> tuple[float, float]:
        coords = prcoords.Coords(self.lat, self.lng)
        if self.datum == "wgs84":
            coords = prcoords.wgs_gcj(coords)
        elif self.datum == "bd09":
            coords = prcoords.bd_gcj(coords)
        return coords.lat, coords.lon

    def to_wgs84(self) -> tuple[float, float]:
        coords = prcoords.Coords(self.lat, self.lng)
        if self.datum == "gcj02":
            coords = prcoords.gcj_wgs_bored(coords)   # iterative inverse, ~1e-6° error
        elif self.datum == "bd09":
            coords = prcoords.bd_wgs_bored(coords)
        return coords.lat, coords.lon


def usable_coordinates(lat: object, lng: object) -> bool:
    """A real point on the globe: numbers, finite, latitude within ±90, longitude within ±180 (the one rule every
    channel's location follows; api/schemas.py states it for JSON bodies)."""
    return (isinstance(lat, (int, float)) and isinstance(lng, (int, float)) and math.isfinite(lat)
            and math.isfinite(lng) and -90 <= lat <= 90 and -180 <= lng <= 180)


def gcj02_to_wgs84(lat: float, lng: float) -> tuple[float, float]:
    return GeoPoint(lat, lng, "gcj02").to_wgs84()


def wgs84_to_gcj02(lat: float, lng: float) -> tuple[float, float]:
    return GeoPoint(lat, lng, "wgs84").to_gcj02()


def _distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dphi, dlmb = p2 - p1, math.radians(lng2 - lng1)
    h = math.sin(dphi / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dlmb / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(h))


@dataclass
class GeocodeResult:
    standard_address: str = ""
    district: dict | None = None          # {"adcode", "name"}
    street: dict | None = None            # {"id", "name"}
    community: str | None = None
    confidence: float = 0.0
    ambiguous: bool = False
    question: str | None = None           # what to ask the citizen when ambiguous
    outside_city: str | None = None       # a place in another city that the text names
    source: str = "none"                  # text / coordinates / text+coordinates / none
    mentions: list[str] = field(default_factory=list)
    candidates: list[dict] = field(default_factory=list)
    coordinates: dict | None = None       # {"lat", "lng", "datum": "gcj02", "wgs84": {...}}
    # A 街道/镇/乡 the text names that the gazetteer does not know ("洪桥镇"): the territorial unit is that office,
    # though it is not on this city's list (a former name, another city, or a gap in the list).
    unlisted_street: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# "XX镇" / "XX乡" / "XX街道" after a county, district or city name or a sentence break: a town's own name is 2–3
# characters. Words that end in 镇/乡/街道 but name no place (城乡, 乡镇, 家乡, 这条街道…) are refused by their head.
_TOWN_MENTION = re.compile(r"(?:^|[县区市省州于在到至住从的，。、,；;：:\s（(])([\u4e00-\u9fa5]{2,3}?)(街道|镇|乡)(?![村镇长里亲下土愁音])")
_NOT_A_TOWN_HEAD = re.compile(r"^(?:[这那该各本我全每某哪其此]|所在|辖区|附近|周边|当地|相关|有关|城市|农村|乡村|城镇|乡镇)")
_LEAD_IN = "于在到至住从的"
_NOT_A_TOWN_TAIL = {"城乡", "城镇", "乡镇", "小镇", "下乡", "家乡", "老乡", "故乡", "同乡", "思乡", "外乡", "重镇", "古镇"}
_OFFICE_SUFFIX = {"街道": "街道办事处", "镇": "镇人民政府", "乡": "乡人民政府"}


def unlisted_street_office(text: str, gazetteer: Gazetteer) -> str | None:
    """The first 街道/镇/乡 office the text names that the gazetteer does not know, as an office name."""
    for match in _TOWN_MENTION.finditer(text):
        head, suffix = match.group(1), match.group(2)
        if len(head) == 3 and head[0] in _LEAD_IN:   # "住在大托镇": the boundary was 住, the name is 大托
            head = head[1:]
        if (_NOT_A_TOWN_HEAD.search(head) or head[-1] + suffix[0] in _NOT_A_TOWN_TAIL
                or gazetteer.knows(head + suffix)):
            continue
        return head + _OFFICE_SUFFIX[suffix]
    return None


class Geocoder(Protocol):
    def geocode(self, text: str, point: GeoPoint | None = None) -> GeocodeResult: ...


class GazetteerGeocoder:
    """Resolves territory (块) from gazetteer mentions and, when given, a coordinate."""

    def __init__(self, gazetteer: Gazetteer, *, foreign_names_file: Path | None = None, city_adcode: str = "430100",
                 province_name: str = "湖南省"):
        self.gaz = gazetteer
        self.province_name = province_name
        self._with_coords = gazetteer.places_with_coordinates()
        self._foreign = self._load_foreign(foreign_names_file, city_adcode) if foreign_names_file else None
        word_dictionary()   # loaded now rather than in the first request that needs whole-name checks

    @staticmethod
    def _load_foreign(path: Path, city_adcode: str) -> ahocorasick.Automaton | None:
        """Names of other cities and their districts, to notice a complaint about somewhere else."""
        automaton = ahocorasick.Automaton()
        with path.open(encoding="utf-8-sig") as handle:
            for row in csv.DictReader(handle):
                if row["level"] not in {"province", "city", "district"} or row["adcode"].startswith(city_adcode[:4]):
                    continue
                if row["level"] == "province" and row["adcode"].startswith(city_adcode[:2]):
                    continue
                if row["adcode"].startswith(city_adcode[:2]) and row["level"] == "district":
                    continue  # other districts of the same province share names with ours (开福/岳麓 are unique anyway)
                name = row["name"]
                automaton.add_word(name, name)
        if len(automaton) == 0:
            return None
        automaton.make_automaton()
        return automaton

    def reverse(self, point: GeoPoint) -> tuple[str | None, str | None, float, dict]:
        """(district adcode, nearest street id, street confidence, coordinates dict) for a point."""
        lat, lng = point.to_gcj02()
        wlat, wlng = point.to_wgs84()
        coords = {"lat": round(lat, 6), "lng": round(lng, 6), "datum": "gcj02",
                  "wgs84": {"lat": round(wlat, 6), "lng": round(wlng, 6)}}
        district = self.gaz.district_at(lng, lat)
        if district is None:
            return None, None, 0.0, coords
        best: tuple[float, Place] | None = None
        for place in self._with_coords:
            if district not in place.district_adcodes or len(place.street_ids) != 1:
                continue
            d = _distance_m(lat, lng, place.lat, place.lng)
            if d <= NEAREST_PLACE_RADIUS_M and (best is None or d < best[0]):
                best = (d, place)
        if best is None:
            return district, None, 0.0, coords
        return district, best[1].street_ids[0], round(1.0 - best[0] / NEAREST_PLACE_RADIUS_M * 0.6, 3), coords

    def geocode(self, text: str, point: GeoPoint | None = None) -> GeocodeResult:
        result = GeocodeResult()
        district_score: dict[str, float] = defaultdict(float)
        street_score: dict[str, float] = defaultdict(float)
        community_of: dict[str, str] = {}
        mentions = self._resolved_mentions(text)
        for _, _, name, candidates in mentions:
            result.mentions.append(name)
            weight = max(MENTION_WEIGHT.get(p.type, 2.0 if p.type in STRONG_TYPES else 1.0) for p in candidates)
            # Homonyms (高桥街道 vs 高桥镇) share the mention's weight: other cues must decide.
            targets = {(p.district_adcodes, p.street_ids): p for p in candidates}
            share = weight / len(targets)
            for (codes, street_ids), place in targets.items():
                for code in codes:
                    district_score[code] += share / len(codes)
                for sid in street_ids:
                    street_score[sid] += share / len(street_ids)
                    if place.type in COMMUNITY_TYPES:
                        community_of[sid] = name

        if point is not None:
            d_code, s_id, s_conf, coords = self.reverse(point)
            result.coordinates = coords
            if d_code:
                district_score[d_code] += 3.0
                if s_id:
                    street_score[s_id] += 2.0 * s_conf
            result.source = "text+coordinates" if result.mentions else "coordinates"
        elif result.mentions:
            result.source = "text"

        if not street_score:
            result.unlisted_street = unlisted_street_office(text, self.gaz)
        if self._foreign is not None and not district_score:
            foreign = [name for _, name in self._foreign.iter(text) if len(name) >= 3]
            if foreign:
                result.outside_city = foreign[0] if len(foreign) == 1 else "".join(dict.fromkeys(foreign))
        if not district_score:
            return result

        # Streets also vote for their district (以块为主: the finest cue pins the coarser ones).
        for sid, score in street_score.items():
            district_score[self.gaz.streets[sid][1]] += score * 0.5
        ranked = sorted(district_score.items(), key=lambda kv: -kv[1])
        total = sum(district_score.values())
        best_code, best = ranked[0]
        district_conf = best / total
        result.district = {"adcode": best_code, "name": self.gaz.districts[best_code]}
        result.candidates = [{"district": self.gaz.districts[c], "adcode": c, "score": round(s / total, 3)} for c, s in ranked[:3]]
        if len(ranked) > 1 and ranked[1][1] >= 0.8 * best:
            result.ambiguous = True
            names = "还是".join(self.gaz.districts[c] for c, _ in ranked[:2])
            result.question = f"请问事发地点在{names}？"

        in_district = sorted(((s, v) for s, v in street_score.items() if self.gaz.streets[s][1] == best_code), key=lambda kv: -kv[1])
        confidence = district_conf
        if in_district:
            sid, score = in_district[0]
            street_total = sum(v for _, v in in_district)
            street_conf = score / street_total
            if len(in_district) > 1 and in_district[1][1] >= 0.8 * score and not result.ambiguous:
                result.ambiguous = True
                names = "还是".join(self.gaz.streets[s][0] for s, _ in in_district[:2])
                result.question = f"请问具体在{names}？"
            result.street = {"id": sid, "name": self.gaz.streets[sid][0]}
            result.community = community_of.get(sid)
            confidence = district_conf * (0.5 + 0.5 * street_conf)
        else:
            confidence = district_conf * 0.6   # district only: good for a district bureau, not for a street office
        result.confidence = round(min(1.0, confidence), 3)
        result.standard_address, result.community = self._standard_address(text, result, mentions)
        return result

    def _resolved_mentions(self, text: str) -> list[tuple[int, int, str, tuple[Place, ...]]]:
        """The text's whole gazetteer names with their candidate places; a 小区, 村 or other named place known in
        several districts keeps only the candidates in the district, street or road the text also names."""
        mentions = []
        for start, end, name, candidates in self.gaz.mentions(text):
            candidates = tuple(p for p in candidates if p.type != "ignore")
            if candidates:
                mentions.append((start, end, name, candidates))
        districts: set[str] = set()
        streets: set[str] = set()
        roads: list[Place] = []
        for _, _, _, candidates in mentions:
            for place in candidates:
                if place.type in _TERRITORY_TYPES:
                    districts.update(place.district_adcodes)
                    streets.update(place.street_ids)
                elif place.type == "road":
                    roads.append(place)
        if not (districts or roads):
            return mentions

        def on_a_named_road(place: Place) -> bool:
            for road in roads:
                if place.street_ids and road.street_ids:
                    if set(place.street_ids) & set(road.street_ids):
                        return True
                elif set(place.district_adcodes) & set(road.district_adcodes):
                    return True
            return False

        resolved = []
        for start, end, name, candidates in mentions:
            if len({(p.district_adcodes, p.street_ids) for p in candidates}) > 1 and \
                    not any(p.type in _TERRITORY_TYPES or p.type == "road" for p in candidates):
                for keep in (lambda p: bool(districts & set(p.district_adcodes)),
                             lambda p: bool(streets & set(p.street_ids)),
                             on_a_named_road):
                    narrowed = tuple(p for p in candidates if keep(p))
                    if narrowed:
                        candidates = narrowed
            resolved.append((start, end, name, candidates))
        return resolved

    def _standard_address(self, text: str, result: GeocodeResult,
                          mentions: list[tuple[int, int, str, tuple[Place, ...]]]) -> tuple[str, str | None]:
        """(standard address, community). Province, city, district, street, community, then the road and the finest
        named place the text gives (each followed by its house or building number when one comes right after it):
        recognised names only, so no complaint words ("反映…", "再不解决…") ever end up in the address. The
        community is the one named, else the one the address registry gives for the named compound."""
        district = result.district["adcode"]
        street = result.street["id"] if result.street else None

        def fits(place: Place) -> bool:
            return district in place.district_adcodes and (
                street is None or not place.street_ids or street in place.street_ids)

        def number_after(end: int) -> str:
            match = _HOUSE_NUMBER.match(text, end)
            return match.group(0).rstrip("-之") if match else ""

        road = detail = community_end = None
        community = result.community
        for start, end, name, candidates in mentions:
            fitting = [p for p in candidates if fits(p)]
            if not fitting:
                continue
            if road is None and any(p.type == "road" or (p.type == "area" and _ROAD_NAME.search(name)) for p in fitting):
                number = number_after(end)
                # 赤岭路 in 赤岭路街道 adds nothing unless a house number follows it.
                if number or not (result.street and result.street["name"].startswith(name)):
                    road = (name, number)
            elif any(p.type in COMMUNITY_TYPES for p in fitting) and name == community:
                community_end = end
            ranks = [_DETAIL_RANK[p.type] for p in fitting if p.type in _DETAIL_RANK]
            if ranks:
                number = number_after(end)
                key = (not number, min(ranks), start)
                place = min((p for p in fitting if p.type in _DETAIL_RANK), key=lambda p: _DETAIL_RANK[p.type])
                if detail is None or key < detail[0]:
                    # The registry's community of a compound counts only inside the street the result names.
                    registry_community = place.community if street and street in place.street_ids else None
                    detail = (key, place.standard_name or name, number, registry_community)
        if community is None and detail and detail[3]:
            community = detail[3]

        parts = [self.province_name, self.gaz.city_name, result.district["name"]]
        if result.street:
            parts.append(result.street["name"])
        if community and community not in parts:
            parts.append(community)
        if road and road[0] not in parts:
            parts.append(road[0] + road[1])
        if detail and detail[1] not in parts:
            parts.append(detail[1] + detail[2])
        elif community_end is not None and not (road and road[1]):
            parts.append(number_after(community_end))
        return "".join(parts), community
