"""The city's gazetteer: districts, streets/towns, communities, roads and POIs with aliases and polygons."""
from __future__ import annotations

import csv
import json
import logging
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import ahocorasick
from shapely.geometry import Point, shape
from shapely.prepared import prep

from knowledge_base.loaders import DataFileError

# Place types whose mention pins a street firmly; a road or an area is weaker evidence.
STRONG_TYPES = {"community", "compound", "village", "school", "hospital", "landmark", "market", "park", "station",
                "street", "poi"}
# Community-level units: a mention of one names the 社区/村 of the complaint.
COMMUNITY_TYPES = {"community", "village"}
# Characters that make a new place name out of a known one when put in front of it: 新+月湖社区 is another
# compound, not 月湖社区 (only when jieba leaves the character on its own and no known name ends there).
NAME_PREFIX_CHARS = frozenset("新老东西南北中大小上下前后内外")
# The city's standard address registry (`hotline gazetteer import`), read like places.csv.
REGISTRY_FILE = "address_registry.csv"


@dataclass(frozen=True)
class Place:
    name: str
    type: str                       # district, street, community, road, landmark, school, … (places.csv types)
    district_adcodes: tuple[str, ...]
    street_ids: tuple[str, ...] = ()
    lng: float | None = None        # GCJ-02
    lat: float | None = None
    community: str | None = None    # the 社区/村 a compound or landmark belongs to (address registry)
    standard_name: str = ""         # the list's own name when this is one of its aliases (市政府 → 长沙市政府)


@dataclass
class Gazetteer:
    city_name: str
    districts: dict[str, str]                          # adcode -> name
    streets: dict[str, tuple[str, str]]                # street_id -> (name, district adcode)
    places: list[Place]
    polygons: dict[str, object] = field(default_factory=dict)   # adcode -> shapely geometry (GCJ-02)
    street_codes: dict[str, str] = field(default_factory=dict)  # street_id -> 12-digit statistical code
    _automaton: ahocorasick.Automaton | None = None
    _prepared: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_name: dict[str, list[Place]] = {}
        for place in self.places:
            self._by_name.setdefault(place.name, []).append(place)
        automaton = ahocorasick.Automaton()
        for name, candidates in self._by_name.items():
            automaton.add_word(name, (name, tuple(candidates)))
        automaton.make_automaton()
        self._automaton = automaton
        self._prepared = {code: prep(geom) for code, geom in self.polygons.items()}
        # GEOS builds a prepared geometry's index on first use, and that first use is not thread-safe
        # (libgeos/geos#825): use each one once here, before any request thread can.
        for geom in self._prepared.values():
            geom.covers(Point(0.0, 0.0))

    def mentions(self, text: str) -> list[tuple[int, int, str, tuple[Place, ...]]]:
        """Longest non-overlapping whole gazetteer names in `text`, left to right: (start, end, name, candidates).

        A name is whole when it does not sit inside a longer word or place name: 月湖社区 inside 望月湖社区 (jieba's
        dictionary word 望月湖 runs across its start) or inside 新月湖社区 (a name-forming 新 before it) is not
        月湖社区, and 司门口 inside 公司门口 is not that place. A name right after another known name (大瑶镇|南川社区)
        or after punctuation, a digit or the start of the text is always whole."""
        found = [(end - len(name) + 1, end + 1, name, cands) for end, (name, cands) in self._automaton.iter(text)]
        found = self._whole_names(text, found)
        chosen: list[tuple[int, int, str, tuple[Place, ...]]] = []
        taken = bytearray(len(text))   # characters already covered by a longer name (linear, not chosen × found)
        for item in sorted(found, key=lambda m: (-(m[1] - m[0]), m[0])):
            if taken.find(1, item[0], item[1]) == -1:
                chosen.append(item)
                taken[item[0]:item[1]] = b"\x01" * (item[1] - item[0])
        return sorted(chosen)

    @staticmethod
    def _whole_names(text: str, found: list) -> list:
        ends = {item[1] for item in found}
        words = None                            # jieba's cut, made only when a name needs a closer look
        whole = []
        for item in found:
            start = item[0]
            # A name at the start, after punctuation or a digit, or right after another known name is whole.
            if start > 0 and start not in ends and _is_han(text[start - 1]):
                boundaries, singles = words = words or word_boundaries(text)
                if start not in boundaries:
                    continue                    # a dictionary word runs across the name's start: 望月湖|社区
                if start - 1 in singles and text[start - 1] in NAME_PREFIX_CHARS:
                    continue                    # 新 + 月湖社区: a longer name the gazetteer does not know
            whole.append(item)
        return whole

    def district_at(self, lng: float, lat: float) -> str | None:
        """District adcode covering a GCJ-02 point (a point on a border belongs to one of its districts),
        or None outside the city."""
        point = Point(lng, lat)
        for code, geom in self._prepared.items():
            if geom.covers(point):
                return code
        return None

    def places_with_coordinates(self) -> list[Place]:
        return [p for p in self.places if p.lng is not None and p.lat is not None]

    def knows(self, name: str) -> bool:
        return name in self._by_name

    def user_words(self) -> set[str]:
        """Names for the segmenter's user dictionary (so 望月湖 or 湘雅二医院 stay one word)."""
        return {name for name in self._by_name if len(name) >= 2}


def _is_han(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


_jieba_lock = threading.Lock()
_jieba_tokenizer = None


def word_dictionary():
    """jieba with its own dictionary only (shared, read-only once built; ~1 s and ~75 MB, once per process).
    Deliberately without the gazetteer's names as user words: with them jieba cuts 望|月湖社区 (the known name
    wins), without them 望月湖|社区."""
    global _jieba_tokenizer
    with _jieba_lock:
        if _jieba_tokenizer is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # jieba 0.42.1 imports pkg_resources (see nlp/segment.py)
                import jieba
            jieba.setLogLevel(logging.WARNING)
            tokenizer = jieba.Tokenizer()
            tokenizer.tmp_dir = tempfile.gettempdir()
            tokenizer.initialize()
            _jieba_tokenizer = tokenizer
    return _jieba_tokenizer


def word_boundaries(text: str) -> tuple[set[int], set[int]]:
    """(offsets where a jieba word starts or ends, offsets of characters jieba leaves on their own), by jieba's
    dictionary without its HMM guesses (which glue unknown characters to their neighbours)."""
    boundaries, singles = {0}, set()
    position = 0
    for word in word_dictionary().cut(text, HMM=False):
        if len(word) == 1:
            singles.add(position)
        position += len(word)
        boundaries.add(position)
    return boundaries, singles


def _read_csv(path: Path) -> list[tuple[int, dict[str, str]]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return [(n, {k: (v or "").strip() for k, v in row.items() if k}) for n, row in enumerate(csv.DictReader(handle), start=2)]


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.replace("、", "|").split("|") if v.strip())


def _street_variants(name: str, short: str) -> set[str]:
    variants = {name}
    if short and len(short) >= 2:
        variants |= {short + "街道", short + "街办", short + "办事处"} if name.endswith("街道") else {short + name[-1]}
    return variants


def _read_places(path: Path, streets: dict[str, tuple[str, str]], districts: dict[str, str],
                 errors: list[str]) -> list[Place]:
    """places.csv or the address registry: name, type, district_adcode, street_id, aliases, lng, lat (GCJ-02),
    and in the registry community."""
    places: list[Place] = []
    for number, row in _read_csv(path):
        street_ids = _split(row.get("street_id", ""))
        bad = [s for s in street_ids if s not in streets]
        if bad:
            errors.append(f"{path}:{number}:street_id: unknown street {', '.join(bad)}")
            continue
        codes = _split(row.get("district_adcode", "")) or tuple(dict.fromkeys(streets[s][1] for s in street_ids))
        if not codes or any(c not in districts for c in codes):
            errors.append(f"{path}:{number}:district_adcode: unknown district {row.get('district_adcode')!r}")
            continue
        try:
            lng = float(row["lng"]) if row.get("lng") else None
            lat = float(row["lat"]) if row.get("lat") else None
        except ValueError:
            errors.append(f"{path}:{number}:lng: not a number")
            continue
        community = row.get("community") or None
        for name in (row["name"], *_split(row.get("aliases", ""))):
            if len(name) >= 2:
                places.append(Place(name, row.get("type") or "poi", codes, street_ids, lng, lat, community, row["name"]))
    return places


def load_gazetteer(city_dir: Path, *, city_name: str = "长沙市") -> Gazetteer:
    geo = city_dir / "geo"
    errors: list[str] = []
    districts_file = next(geo.glob("*_districts.csv"), None)
    streets_file = next(geo.glob("*_streets.csv"), None)
    if not districts_file or not streets_file:
        raise DataFileError([f"{geo}: need <city>_districts.csv and <city>_streets.csv"])

    districts = {row["adcode"]: row["name"] for _, row in _read_csv(districts_file)}
    # Short names that are also ordinary words ("那个路口" ≠ 路口镇) are never matched bare.
    stoplist_file = geo / "short_name_stoplist.csv"
    stoplist = {row["name"] for _, row in _read_csv(stoplist_file)} if stoplist_file.exists() else set()
    places: list[Place] = []
    for adcode, name in districts.items():
        places.append(Place(name, "district", (adcode,)))
        short = name[:-1]
        # 长沙县 → 长沙 would swallow every 长沙市; 芙蓉/天心/开福 are also road and temple names,
        # but the longest match (芙蓉中路, 天心阁) wins, so the short form is safe for those.
        if len(short) >= 2 and short not in city_name and short not in stoplist:
            places.append(Place(short, "district", (adcode,)))

    streets: dict[str, tuple[str, str]] = {}
    street_codes: dict[str, str] = {}
    for number, row in _read_csv(streets_file):
        adcode = row.get("district_adcode", "")
        if adcode not in districts:
            errors.append(f"{streets_file}:{number}:district_adcode: unknown district {adcode!r}")
            continue
        streets[row["street_id"]] = (row["street_name"], adcode)
        if row.get("stats_code_12"):
            street_codes[row["street_id"]] = row["stats_code_12"]
        for variant in _street_variants(row["street_name"], row.get("short_name", "")):
            places.append(Place(variant, "street", (adcode,), (row["street_id"],)))
        short = row.get("short_name", "")
        if len(short) >= 2 and short not in stoplist:
            # A bare 望月湖 or 星沙 usually means the area of that street; weaker than the full name.
            places.append(Place(short, "area", (adcode,), (row["street_id"],)))

    aliases_file = geo / "district_aliases.csv"
    if aliases_file.exists():
        for number, row in _read_csv(aliases_file):
            codes = _split(row.get("district_adcode", ""))
            if not codes or any(c not in districts for c in codes):
                errors.append(f"{aliases_file}:{number}:district_adcode: unknown district {row.get('district_adcode')!r}")
                continue
            places.append(Place(row["alias"], "district", codes))

    for places_file in (geo / "places.csv", geo / REGISTRY_FILE):
        if places_file.exists():
            places.extend(_read_places(places_file, streets, districts, errors))

    # Stop-listed names still occupy their span (so 浏阳河 is not read as 浏阳 + 河), but vote for nothing.
    places.extend(Place(name, "ignore", ()) for name in stoplist)

    if errors:
        raise DataFileError(errors)

    polygons = {}
    geojson = next(geo.glob("*_districts.geojson"), None)
    if geojson:
        for feature in json.loads(geojson.read_text(encoding="utf-8"))["features"]:
            polygons[str(feature["properties"]["adcode"])] = shape(feature["geometry"])
    return Gazetteer(city_name, districts, streets, places, polygons, street_codes=street_codes)
