"""Generate the assistant's vocabulary from the knowledge base: a jieba user dictionary and Rasa lookups/regexes/synonyms.

Nothing here is copied by hand: districts, streets and their aliases come from the gazetteer, departments and their
aliases from departments.csv, categories from the taxonomy, indicator names and the words officials use for them from
the indicator catalogue (orders/indicators/catalogue.py); `assistant/vocabulary.yaml` adds what neither holds
(periods, everyday words for categories, checked against the taxonomy).

Three outputs, in `assistant/generated/` (gitignored; `hotline assistant generate` rewrites them):
- `jieba/userdict.txt`: so 望月湖街道 or 按时办结率 stay one token (DIET's entity spans must fall on token edges).
  Words with digits, or made of numerals only, are left out: jieba would cut them out of phone and order numbers.
- `vocabulary.yml` (Rasa NLU data): per entity a lookup table (a feature for every alias), a regex that the
  RegexEntityExtractor uses for the precise aliases, and synonyms alias → canonical value.
  A short alias is guarded so that it does not fire inside a longer known name (岳麓 in 岳麓山, 芙蓉 in 芙蓉中路,
  城市管理 in 长沙市城市管理和综合执法局); everyday words (城管, 噪音, 超期) are features only and DIET decides.
- `manifest.json`: counts and the hash of every input, for `hotline assistant train` to know when to retrain.
"""
from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import yaml

from hotline.core.config import Settings
from knowledge_base.gazetteer import Gazetteer, load_gazetteer
from knowledge_base.kb import KnowledgeBase, load_knowledge_base
from orders.indicators.catalogue import CATALOGUE

VOCABULARY_FILE = Path(__file__).resolve().parent / "vocabulary.yaml"
# Entity types in the order that wins when one word could be two of them (岳麓 is the district before the street).
ENTITY_PRIORITY = ("district", "street", "metric", "period", "department", "category")
# An alias naming an organisation ends like one; a bare 城管 or 公交 is also an everyday word.
ORGANISATION_SUFFIXES = ("局", "委", "委员会", "中心", "公司", "集团", "支队", "大队", "办", "联", "所", "院", "队", "厅")
# Shorter taxonomy names (供水, 燃气, 教育) are everyday words in complaints: features only.
MIN_EXTRACTED_CATEGORY_CHARS = 4
CHINESE_NUMERALS = set("零〇一二三四五六七八九十百千万亿两幺")
MONTH = r"(?:[1１][0-2０-２]|[0０]?[1-9１-９]|十[一二]?|[一二三四五六七八九])"
# "3月", "三月份", "2026年10月", "2025年": kept as said; action_query_indicator turns them into dates.
MONTH_PERIOD_REGEX = (r"(?<![0-9０-９])(?:(?:19|20|１９|２０)[0-9０-９]{2}年(?:" + MONTH + r"月份?)?|" + MONTH
                      + r"月份?)(?![0-9０-９]*[日号])")


@dataclass(frozen=True)
class Term:
    entity: str
    text: str          # as people write it
    value: str         # the canonical value the actions receive
    extract: bool      # the regex extractor may extract it (otherwise only a feature for DIET)
    canonical: bool    # the full official name (never guarded, except categories)


@dataclass
class Vocabulary:
    terms: list[Term]
    month_regex: str
    jieba_words: list[str]
    metrics: dict[str, dict]            # label -> {"indicator", "group"}
    inputs_hash: str

    def values(self, entity: str) -> set[str]:
        return {t.value for t in self.terms if t.entity == entity}

    def texts(self, entity: str) -> set[str]:
        return {t.text for t in self.terms if t.entity == entity}

    def synonyms(self) -> dict[str, str]:
        """alias → canonical value, for every alias whose value differs from its text."""
        return {t.text: t.value for t in self.terms if t.text != t.value}


def load_vocabulary_file(path: Path = VOCABULARY_FILE) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def metric_indicators() -> dict[str, dict]:
    """Metric entity value (the catalogue's label, e.g. 按时办结率) → {"indicator": API name, "group": its group or None},
    for every indicator officials name."""
    return {e.label: {"indicator": e.name, "group": e.group} for e in CATALOGUE.values() if e.words}


def has_number_inside(word: str) -> bool:
    """True for words jieba must not learn: any digit, or numerals only (they would split 13812345678 or 一二三四)."""
    return any(unicodedata.category(ch) == "Nd" for ch in word) or all(ch in CHINESE_NUMERALS for ch in word)


def _is_organisation(alias: str) -> bool:
    return alias.endswith(ORGANISATION_SUFFIXES)


def _place_terms(gazetteer: Gazetteer) -> list[Term]:
    terms: list[Term] = []
    district_names = set(gazetteer.districts.values())
    for place in gazetteer.places:
        if place.type == "district" and len(place.district_adcodes) == 1:
            value = gazetteer.districts[place.district_adcodes[0]]
            terms.append(Term("district", place.name, value, True, place.name in district_names))
        elif place.type in ("street", "area") and len(place.street_ids) == 1:
            value = gazetteer.streets[place.street_ids[0]][0]
            # An "area" is the bare short name (望月湖) or a neighbourhood (溁湾镇); only the former names the street.
            if place.type == "street" or value.startswith(place.name):
                terms.append(Term("street", place.name, value, True, place.name == value))
    return terms


def _department_terms(kb: KnowledgeBase) -> list[Term]:
    terms: list[Term] = []
    city_unit = {d.kind: d.name for d in kb.departments.values() if d.level == "city"}
    for dept in kb.departments.values():
        if dept.level == "city":
            terms.append(Term("department", dept.name, dept.name, True, True))
            terms.extend(Term("department", alias, dept.name, _is_organisation(alias), False) for alias in dept.aliases)
        elif dept.level == "district" and dept.district_name and dept.name.startswith(dept.district_name):
            # "岳麓区城市管理和综合执法局" = district 岳麓区 + department 城市管理和综合执法局: the two entities together
            # name the district bureau, so the kind's name alone maps to the city bureau of that kind.
            bare = dept.name[len(dept.district_name):]
            if len(bare) >= 2:
                terms.append(Term("department", bare, city_unit.get(dept.kind, bare), _is_organisation(bare), False))
    return terms


def _category_terms(kb: KnowledgeBase, colloquial: dict[str, str]) -> list[Term]:
    level2_parents: dict[str, set[str]] = defaultdict(set)
    for node in kb.taxonomy.values():
        level2_parents[node.level2].add(node.level1)
    paths: dict[str, str] = {}
    for node in kb.taxonomy.values():
        paths[node.level1] = node.level1
        # 养犬管理 is under 城市管理 and 公安与社会治安: the name alone cannot pick one path.
        paths[node.level2] = f"{node.level1}/{node.level2}" if len(level2_parents[node.level2]) == 1 else node.level2
        paths[node.level3] = f"{node.level1}/{node.level2}/{node.level3}"
    terms = [Term("category", name, path, len(name) >= MIN_EXTRACTED_CATEGORY_CHARS, True) for name, path in paths.items()]
    unknown = sorted(target for target in colloquial.values() if target not in paths)
    if unknown:
        raise ValueError(f"{VOCABULARY_FILE}: category_terms name taxonomy entries that do not exist: {', '.join(unknown)}")
    terms.extend(Term("category", word, paths[target], False, False) for word, target in colloquial.items()
                 if word not in paths)
    return terms


def _metric_terms() -> list[Term]:
    """The catalogue's words for each indicator: precise ones extracted, everyday ones features only; the value is
    the catalogue's label."""
    terms: list[Term] = []
    for entry in CATALOGUE.values():
        terms.extend(Term("metric", word, entry.label, True, word == entry.label) for word in entry.words)
        terms.extend(Term("metric", word, entry.label, False, False) for word in entry.ambiguous)
    return terms


def _vocabulary_terms(spec: dict) -> list[Term]:
    terms: list[Term] = []
    for canonical, words in spec["periods"].items():
        for word in dict.fromkeys([canonical, *words]):
            terms.append(Term("period", word, canonical, True, word == canonical))
    return terms


def _resolve(terms: list[Term]) -> list[Term]:
    """One entity type per word; within a type, a word with two values keeps itself as value (高桥: two streets)."""
    priority = {name: rank for rank, name in enumerate(ENTITY_PRIORITY)}
    by_text: dict[str, list[Term]] = defaultdict(list)
    for term in terms:
        if len(term.text) >= 2 and not any(ch.isspace() for ch in term.text) and not has_number_inside(term.text) \
                or term.entity == "period":
            by_text[term.text].append(term)
    resolved: list[Term] = []
    for text, claims in by_text.items():
        best = min(claims, key=lambda t: (not t.canonical, priority[t.entity]))
        same_type = [t for t in claims if t.entity == best.entity]
        values = {t.value for t in same_type}
        value = best.value if len(values) == 1 else text
        resolved.append(Term(best.entity, text, value, any(t.extract for t in same_type),
                             any(t.canonical for t in same_type)))
    return sorted(resolved, key=lambda t: (ENTITY_PRIORITY.index(t.entity), -len(t.text), t.text))


def _guarded(term: Term, known_names: set[str], same_type_extracted: set[str], other_extracted: set[str]) -> str:
    """The term as a regex that does not fire inside a longer known name of another kind.

    For each such name = prefix + term + suffix: (?!(?<=prefix)term suffix), i.e. not (after prefix and before suffix).
    And it does not take the first characters of another entity that follows it: 长沙县城 must leave 城管局 whole
    in 长沙县城管局, so the shorter 长沙县 matches instead.
    """
    escaped = re.escape(term.text)
    guards = []
    for other in sorted(other_extracted):
        for overlap in range(1, min(len(term.text), len(other))):
            if term.text.endswith(other[:overlap]):
                guards.append(f"(?!{escaped}{re.escape(other[overlap:])})")
    if term.canonical and term.entity != "category":
        return "".join(dict.fromkeys(guards)) + escaped
    for name in sorted(known_names):
        if name == term.text or term.text not in name or name in same_type_extracted:
            continue
        start = name.find(term.text)
        while start != -1:
            prefix, suffix = name[:start], name[start + len(term.text):]
            # A longer alias of the same entity starting here wins anyway (alternatives are tried longest first);
            # a name made of entities (岳麓区 + 城市管理和综合执法局) is meant to yield them.
            composed = all(not part or part in same_type_extracted or part in other_extracted for part in (prefix, suffix))
            if composed or any(len(other) > len(term.text) and name.startswith(other, start)
                               for other in same_type_extracted):
                start = name.find(term.text, start + 1)
                continue
            guards.append(f"(?!(?<={re.escape(prefix)}){escaped}{re.escape(suffix)})" if prefix
                          else f"(?!{escaped}{re.escape(suffix)})")
            start = name.find(term.text, start + 1)
    return "".join(dict.fromkeys(guards)) + escaped


def _inputs_hash(settings: Settings, kb: KnowledgeBase) -> str:
    digest = hashlib.sha256()
    digest.update(kb.content_hash.encode())
    digest.update(VOCABULARY_FILE.read_bytes())
    digest.update(repr([(e.name, e.label, e.group, e.words, e.ambiguous) for e in CATALOGUE.values()]).encode())
    digest.update(Path(__file__).read_bytes())
    digest.update(settings.city_name.encode())
    return digest.hexdigest()[:16]


def build_vocabulary(settings: Settings) -> Vocabulary:
    kb = load_knowledge_base(settings.city_dir)
    gazetteer = load_gazetteer(settings.city_dir, city_name=settings.city_name)
    spec = load_vocabulary_file()
    terms = _resolve([*_place_terms(gazetteer), *_department_terms(kb),
                      *_category_terms(kb, spec.get("category_terms") or {}), *_metric_terms(), *_vocabulary_terms(spec)])
    words = {t.text for t in terms} | gazetteer.user_words()
    words |= {d.name for d in kb.departments.values()} | {a for d in kb.departments.values() for a in d.aliases}
    words |= {name for node in kb.taxonomy.values() for name in (node.level1, node.level2, node.level3)}
    words |= {str(w) for signs in (spec.get("vital_terms") or {}).values() for w in signs}   # one token: 空气质量
    jieba_words = sorted((w for w in words if len(w) >= 2 and not any(ch.isspace() for ch in w)
                          and not has_number_inside(w)), key=lambda w: (len(w), w))
    return Vocabulary(terms, MONTH_PERIOD_REGEX, jieba_words, metric_indicators(), _inputs_hash(settings, kb))


def _nlu_data(vocabulary: Vocabulary, known_names: set[str]) -> dict:
    nlu: list[dict] = []
    for entity in ENTITY_PRIORITY:
        terms = [t for t in vocabulary.terms if t.entity == entity]
        nlu.append({"lookup": entity, "examples": "".join(f"- {t.text}\n" for t in terms)})
        extracted = [t for t in terms if t.extract]
        extracted_texts = {t.text for t in extracted}
        other_extracted = {t.text for t in vocabulary.terms if t.extract and t.entity != entity}
        # Longest first: Python's alternation takes the first branch that matches (望月湖街道 before 望月湖).
        alternatives = [_guarded(t, known_names, extracted_texts, other_extracted)
                        for t in sorted(extracted, key=lambda t: -len(t.text))]
        patterns = [f"(?:{'|'.join(alternatives)})"] if alternatives else []
        if entity == "period":
            patterns.append(vocabulary.month_regex)
        if patterns:
            nlu.append({"regex": entity, "examples": "".join(f"- {p}\n" for p in patterns)})
    by_value: dict[str, list[str]] = defaultdict(list)
    for text, value in vocabulary.synonyms().items():
        by_value[value].append(text)
    for value, texts in sorted(by_value.items()):
        nlu.append({"synonym": value, "examples": "".join(f"- {t}\n" for t in sorted(texts))})
    return {"version": "3.1", "nlu": nlu}


class _LiteralDumper(yaml.SafeDumper):
    pass


_LiteralDumper.add_representer(
    str, lambda dumper, data: dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None))


def _write_if_changed(path: Path, content: str) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text(encoding="utf-8") == content:
        return False
    path.write_text(content, encoding="utf-8")
    return True


def generated_dir(settings: Settings) -> Path:
    return settings.assistant_dir / "generated"


def write_generated(settings: Settings, vocabulary: Vocabulary | None = None) -> dict:
    """Write the jieba dictionary, the NLU vocabulary and the manifest; returns the manifest."""
    vocabulary = vocabulary or build_vocabulary(settings)
    gazetteer = load_gazetteer(settings.city_dir, city_name=settings.city_name)
    kb = load_knowledge_base(settings.city_dir)
    known_names = {p.name for p in gazetteer.places} | {t.text for t in vocabulary.terms}
    known_names |= {d.name for d in kb.departments.values()} | {a for d in kb.departments.values() for a in d.aliases}
    known_names |= {n for node in kb.taxonomy.values() for n in (node.level1, node.level2, node.level3)}
    out = generated_dir(settings)
    _write_if_changed(out / "jieba" / "userdict.txt", "".join(f"{w}\n" for w in vocabulary.jieba_words))
    header = ("# Generated by `hotline assistant generate` from the knowledge base, the indicator catalogue and "
              "assistant/vocabulary.yaml.\n")
    body = yaml.dump(_nlu_data(vocabulary, known_names), Dumper=_LiteralDumper, allow_unicode=True, sort_keys=False,
                     width=10_000)
    _write_if_changed(out / "vocabulary.yml", header + body)
    counts = {entity: {"aliases": len(vocabulary.texts(entity)), "values": len(vocabulary.values(entity)),
                       "extracted": sum(1 for t in vocabulary.terms if t.entity == entity and t.extract)}
              for entity in ENTITY_PRIORITY}
    manifest = {"inputs_hash": vocabulary.inputs_hash, "city": settings.city, "jieba_words": len(vocabulary.jieba_words),
                "entities": counts, "metrics": vocabulary.metrics}
    _write_if_changed(out / "manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
    return manifest
