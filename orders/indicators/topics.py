"""热点诉求 (groups of orders saying much the same thing) and 高发区域 (streets and communities with many orders and
more than the period before): deterministic and explainable, their 口径 in catalogue.py."""
from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from functools import lru_cache

import numpy as np
from sqlalchemy.orm import Session

from hotline.core.clock import as_utc
from nlp.letters import strip_courtesy
from nlp.segment import Segmenter
from orders.indicators.catalogue import (
    HOT_AREAS_DEFAULTS,
    HOT_TOPICS_DEFAULTS,
    hot_areas_definition,
    hot_topics_definition,
)
from orders.indicators.scope import NO_NAMES, UNKNOWN, Indicator, Names, Scope, category_level, local_iso, scoped_orders
from orders.models import WorkOrder

# -- hot topics (热点诉求) ------------------------------------------------------------------------------------------
_WORD_RUNS = re.compile(r"[\u3400-\u9fff]+|[a-z]+")


def _char_ngrams(text: str) -> list[str]:
    """Character 2- and 3-grams inside runs of Chinese characters or Latin letters: digits (masked phones, order
    numbers), punctuation and emoji carry no topic."""
    grams: list[str] = []
    for run in _WORD_RUNS.findall(unicodedata.normalize("NFKC", text).lower()):
        for n in (2, 3):
            grams.extend(run[i:i + n] for i in range(len(run) - n + 1))
    return grams


def tfidf_rows(orders: list[WorkOrder]):
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


# What a complaint opens with before its matter: who is calling and that they report something.
_LEAD_IN = re.compile(r"^(?:(?:来电|市民|群众|居民|网友|业主)(?:人)?|本人|我们?|有人)?(?:反映|反应|投诉|举报|咨询|求助|称)[:：，,]?")
_CLAUSE = re.compile(r"[，。！？；、,.!?;:：\s]+")
# A residential place a clause may open with (XX小区门口…), and the words locating something there.
_ESTATE = re.compile(r"^[\u4e00-\u9fa5]{1,8}?(?:小区|社区|花园|公寓|大院|新村|村)")
_BY = re.compile(r"^(?:的)?(?:门口|门前|附近|旁边|周边|周围|楼下|里面|内)")
# A clause opening with who it is about rather than what ("其家庭…", "某工业园…").
_PRONOUN = re.compile(r"^(?:其|某)")
LABEL_PHRASE_CHARS = 14


def topic_label(sample: str, terms: list[str], place: str | None, known_places: tuple[str, ...] = ()) -> str:
    """A short phrase an official would write for a hot topic ("望月湖街道 路灯不亮"): where, if most of the group
    is in one place, and the clause of the most typical complaint that holds most of the topic's words (the group's
    most telling words weigh most), with the lead-in (来电人反映…, 其/某) and the place words cut off, ended at a
    word when it is long; the topic's words when no clause holds them."""
    places = sorted({p for p in (place, *known_places) if p}, key=len, reverse=True)
    weights = {term: 1 / rank for rank, term in enumerate(terms[:5], start=1)}
    best, best_score = "", 0.0
    for clause in _CLAUSE.split(strip_courtesy(sample or "")):
        clause = _LEAD_IN.sub("", clause.strip())
        for name in places:
            clause = clause.replace(name, "")
        core = _PRONOUN.sub("", _BY.sub("", _ESTATE.sub("", clause)))
        score = sum(weight for term, weight in weights.items() if term in core)
        if score > best_score:           # the first of equals: the complaint's own order
            best, best_score = core, score
    phrase = _shortened(best, terms) or "、".join(terms[:2])
    return f"{place} {phrase}".strip() if place else phrase


def _shortened(phrase: str, terms: list[str]) -> str:
    """The phrase, or when longer than LABEL_PHRASE_CHARS its head ended after the last topic word that fits."""
    if len(phrase) <= LABEL_PHRASE_CHARS:
        return phrase
    ends = [phrase.find(t) + len(t) for t in terms if 0 <= phrase.find(t) and phrase.find(t) + len(t) <= LABEL_PHRASE_CHARS]
    cut = max(ends, default=0)
    return phrase[:cut] if cut >= 6 else phrase[:LABEL_PHRASE_CHARS]


def _main_place(group: list[WorkOrder], streets: list[dict], districts: list[dict]) -> str | None:
    """The street (else the district) of at least half the group's orders, by name; None when spread out."""
    for places in (streets, districts):
        if places and places[0]["count"] * 2 >= len(group) and places[0]["name"] != UNKNOWN:
            return places[0]["name"]
    return None


def hot_topics(session: Session, scope: Scope, *, similarity: float = HOT_TOPICS_DEFAULTS["similarity"],
               min_size: int = HOT_TOPICS_DEFAULTS["min_size"], top: int = 10,
               max_orders: int = HOT_TOPICS_DEFAULTS["max_orders"], names: Names = NO_NAMES,
               segmenter=None) -> Indicator:
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
    matrix = tfidf_rows(orders)
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
        sample = orders[representative[0]].text_masked or ""
        topics.append({
            "topic": "、".join(terms_of[:3]), "size": len(rows), "terms": terms_of,
            "label": topic_label(sample, terms_of, _main_place(group, streets, districts),
                                 (*names.districts.values(), *names.streets.values())),
            "order_nos": [orders[r].order_no for r in representative],
            "sample": (orders[representative[0]].text_masked or "")[:80],
            "category": categories.most_common(1)[0][0] if categories else None,
            "categories": dict(categories.most_common(3)), "districts": districts, "streets": streets,
            "first_at": local_iso(min(o.created_at for o in group)), "last_at": local_iso(max(o.created_at for o in group)),
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


def hot_areas(session: Session, scope: Scope, *, min_count: int = HOT_AREAS_DEFAULTS["min_count"],
              growth: float = HOT_AREAS_DEFAULTS["growth"], top: int = 10, names: Names = NO_NAMES) -> Indicator:
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
            "categories": dict(Counter(category_level(o.category_path, 2) or UNKNOWN for o in group).most_common(5)),
        })
    areas.sort(key=lambda a: (-a["count"], -(a["ratio"] or float("inf")), a["level"] != "street",
                              a["street_id"] or "", a["community"] or ""))
    definition = hot_areas_definition(min_count=min_count, growth=growth)
    return Indicator("高发区域", len(areas), len(areas), len(now_by), definition, {"areas": areas[:top]})
