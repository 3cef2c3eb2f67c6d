"""Same-event detection (疑似重复/同一事件): which recent open orders a complaint is probably about the same event as.

Six neighbours calling about one water outage, by phone, WeChat and the web, are one event for the unit that fixes
it. At intake the new complaint is compared with the open top-level orders of the last few days
(HOTLINE_SAME_EVENT_WINDOW_DAYS) and the close ones are proposed to the agent with a score and the reason in words;
merging (orders/merge.py) then makes them children of one handling order.

The score is the text embeddings' cosine on the model's own scale (0 at the cosine unrelated complaints typically
reach, 1 for the same text: e5's unrelated Chinese complaints sit at 0.80–0.90, the tests' bigram-hash double's near
0), moved by where and when:
- place, from the stored order fields the router found: the same community or street raises it, another street of
  the same district lowers it a little, another district lowers it so far that no wording makes it a proposal
  (the same outage text from 雨花区 and 岳麓区 is two outages);
- time: a complaint within hours of the other is a little more likely the same event than one six days later.

Vectors are stored once per order and model (`order_embeddings`): the channel hands the router's own vector of the
complaint to the intake (`store_embedding`), so a search embeds only the new text; an order filed without one (an
older order, a channel that routed elsewhere) is embedded the first time a search meets it, with the `embed`
function the caller passes (this package does not load models). Every channel stores the vector at filing. The intake
and the staff screens search in read sessions without `embed` (no write lock while reading; a page's session is
never committed, so what it embedded was thrown away): such orders are embedded and kept by GET
/api/v1/orders/{no}/similar, which runs in a transaction, or all at once by `hotline orders embed` (after a bulk
import of past orders, which stores none).

Search: the candidates are the window's open orders, a few hundred to a few thousand in a city of 5,000 complaints a
month, read from the database for each query. A numpy product over them is exact and takes about a millisecond at
2,000 × 768; a FAISS IndexFlatIP is the same exact inner product, and building one per query would only add a copy,
so numpy it is (an IVF index would pay off only with far more open orders than a city centre holds).
"""
from __future__ import annotations

import datetime as dt
import itertools
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, or_, select
from sqlalchemy.engine import Engine, Row
from sqlalchemy.orm import Session, selectinload

from hotline.core.clock import as_utc, utcnow
from orders.lifecycle import OPEN_STATES
from orders.models import OrderEmbedding, WorkOrder

Embed = Callable[[Sequence[str]], np.ndarray]

# Per embedding model: (cosine mapped to 0, cosine mapped to 1) of the text score, and the proposal threshold on the
# combined score. e5's, measured on the hand-written same-event set (benchmarks/same_event.py, BENCHMARKS.md): at 0.70
# an agent sees a right order for 94% of the callers whose event is already open, and 79% of the proposals are right
# (0.75: 85% and 88%; 0.65: 100% and 71%). A wrong proposal costs the agent a glance, a missed one a second handling
# of the same event, so the lower of the two. An unmeasured model needs a cosine of 0.95: fewer proposals, not wrong.
SCALE_AND_THRESHOLD_BY_MODEL = {
    "e5-": (0.80, 1.0, 0.70),
    "fake-bigram-hash": (0.0, 1.0, 0.45),   # the tests' double only: texts sharing words and places
}
UNMEASURED = (0.0, 1.0, 0.95)

# Adjustments for place and time, on the text score's 0–1 scale (see the module docstring).
SAME_COMMUNITY_BONUS = 0.10
SAME_STREET_BONUS = 0.08
OTHER_STREET_PENALTY = 0.10
OTHER_DISTRICT_PENALTY = 0.70       # identical text in another district stays under any threshold above 0.35
RECENT_BONUS = 0.05                 # at most, for complaints minutes apart; nothing at the window's end
BEST_BONUS = max(SAME_COMMUNITY_BONUS, SAME_STREET_BONUS) + RECENT_BONUS
# The best score an order of another district can reach (the same text, minutes apart). Above it, a search reads
# only its own district's orders and those of no known district (reading rows was most of a search's time).
BEST_OTHER_DISTRICT_SCORE = 1.0 - OTHER_DISTRICT_PENALTY + RECENT_BONUS
MAX_CANDIDATES = 5000           # the newest open orders of the window, so a flood cannot make a search slow
# Orders without a stored vector embedded by one search, newest first (e5 embeds ~40 complaints/s on 2 cores): the
# first searches after an upgrade, or after a burst of WeChat orders, stay fast; the rest wait for later searches.
MAX_EMBEDDED_PER_SEARCH = 32
# Stored vectors kept in memory per database (they never change once stored), so a search reads only the candidates'
# few columns, not a thousand 1.5 kB vectors each time: 20,000 e5-small vectors are about 30 MB.
VECTOR_CACHE_SIZE = 20_000


def _model_rule(model_id: str) -> tuple[float, float, float]:
    for prefix, rule in SCALE_AND_THRESHOLD_BY_MODEL.items():
        if model_id.startswith(prefix):
            return rule
    return UNMEASURED


def proposal_threshold(model_id: str) -> float:
    return _model_rule(model_id)[2]


def text_score(similarity: float, model_id: str) -> float:
    """The cosine on the model's scale: 0 where unrelated complaints typically are, 1 for the same text."""
    low, high = _model_rule(model_id)[:2]
    return min(1.0, max(0.0, (similarity - low) / (high - low)))


@dataclass(frozen=True)
class Place:
    district_adcode: str | None = None
    street_id: str | None = None
    community: str | None = None

    @classmethod
    def of(cls, order: WorkOrder | Row) -> Place:
        """The place of an order, or of a candidate row holding the same three columns."""
        return cls(order.district_adcode, order.street_id, order.community)


@dataclass(frozen=True)
class SimilarOrder:
    order_no: str
    score: float
    similarity: float
    reason: str
    order: WorkOrder


def place_agreement(a: Place, b: Place) -> tuple[float, str]:
    """(score adjustment, words) for two places; unknown places neither help nor hurt."""
    if a.district_adcode and b.district_adcode and a.district_adcode != b.district_adcode:
        return -OTHER_DISTRICT_PENALTY, "不同区县"
    if a.community and b.community and a.community == b.community:
        return SAME_COMMUNITY_BONUS, "同一社区"
    if a.street_id and b.street_id:
        if a.street_id == b.street_id:
            return SAME_STREET_BONUS, "同一街道"
        return -OTHER_STREET_PENALTY, "同区不同街道"
    if a.district_adcode and a.district_adcode == b.district_adcode:
        return 0.0, "同一区县"
    return 0.0, "地点未明"


def time_agreement(hours_apart: float, window_days: int) -> tuple[float, str]:
    hours = abs(hours_apart)
    bonus = RECENT_BONUS * max(0.0, 1.0 - hours / (window_days * 24.0))
    if hours < 1:
        words = "1小时内"
    elif hours < 24:
        words = f"{int(hours) + 1}小时内"
    else:
        words = f"{int(hours // 24) + 1}天内"
    return bonus, words


def event_score(similarity: float, model_id: str, place: tuple[float, str],
                when: tuple[float, str]) -> tuple[float, str]:
    """(score, reason): the text score moved by place and time, and the three in words."""
    score = text_score(similarity, model_id) + place[0] + when[0]
    return round(float(score), 4), f"{place[1]}、文本相似度{similarity:.2f}、{when[1]}"


def vector_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").reshape(-1).tobytes()


def store_embedding(session: Session, *, order: WorkOrder, vector: np.ndarray, model_id: str,
                    new_order: bool = False) -> None:
    """Keep an order's text vector (once per model: a second call for the same model changes nothing). An order
    created in this transaction (`new_order`) has none yet: no need to look."""
    exists = None if new_order else session.scalar(select(OrderEmbedding.id).where(
        OrderEmbedding.order_id == order.id, OrderEmbedding.model_id == model_id))
    if exists is None:
        session.add(OrderEmbedding(order_id=order.id, model_id=model_id, vector=vector_bytes(vector),
                                   created_at=utcnow()))
        session.flush()


# A candidate is a row of (id, order_no, created_at, district_adcode, street_id, community): what scoring needs; the
# whole order is loaded only for the few proposed (reading thousands of whole orders for each search made it most of
# an intake's database time). Plain rows, not objects: building 1,500 objects took longer than the query.
_Candidate = Row


def _candidates(session: Session, *, since: dt.datetime, until: dt.datetime, exclude_id: int | None,
                district_adcode: str | None = None) -> list[_Candidate]:
    """Open top-level orders created in [since, until]: merged callers' and co-handlers' orders are not events.
    With `district_adcode`, only that district's orders and those of no known district."""
    query = (select(WorkOrder.id, WorkOrder.order_no, WorkOrder.created_at, WorkOrder.district_adcode,
                    WorkOrder.street_id, WorkOrder.community)
             .where(WorkOrder.state.in_([s.value for s in OPEN_STATES]), WorkOrder.parent_id.is_(None),
                    WorkOrder.created_at >= since, WorkOrder.created_at <= until)
             .order_by(WorkOrder.created_at.desc(), WorkOrder.id.desc()).limit(MAX_CANDIDATES))
    if exclude_id is not None:
        query = query.where(WorkOrder.id != exclude_id)
    if district_adcode:
        query = query.where(or_(WorkOrder.district_adcode == district_adcode, WorkOrder.district_adcode.is_(None),
                                WorkOrder.district_adcode == ""))
    return list(session.connection().execute(query))   # Core rows: half the time of ORM rows


class _VectorCache:
    """Per engine and model, the stored vectors by order id, each with the order's number and creation time: an id
    SQLite hands out again after a rolled-back insert belongs to an order with another number and time, so it
    never meets the vector of the order that was rolled back. Oldest entries go first when full."""

    def __init__(self, size: int):
        self.size = size
        self._lock = threading.Lock()
        self._by_engine: weakref.WeakKeyDictionary[Engine, dict[str, dict]] = weakref.WeakKeyDictionary()

    def _entries(self, session: Session, model_id: str) -> dict[int, tuple[str, dt.datetime, bytes]]:
        bind = session.get_bind()
        engine = bind if isinstance(bind, Engine) else bind.engine
        with self._lock:
            return self._by_engine.setdefault(engine, {}).setdefault(model_id, {})

    def get_many(self, session: Session, model_id: str, candidates: list[_Candidate]) -> dict[int, bytes]:
        entries = self._entries(session, model_id)
        found = {}
        for c in candidates:
            entry = entries.get(c.id)
            if entry is not None and entry[0] == c.order_no and entry[1] == c.created_at:
                found[c.id] = entry[2]
        return found

    def put_many(self, session: Session, model_id: str, pairs: list[tuple[_Candidate, bytes]]) -> None:
        entries = self._entries(session, model_id)
        with self._lock:
            for c, vector in pairs:
                entries[c.id] = (c.order_no, c.created_at, vector)
            for order_id in list(itertools.islice(entries, max(0, len(entries) - self.size))):
                entries.pop(order_id, None)

    def forget(self, engine: Engine) -> None:
        with self._lock:
            self._by_engine.pop(engine, None)


_vector_cache = _VectorCache(VECTOR_CACHE_SIZE)


def forget_stored_vectors(engine: Engine) -> None:
    """Drop the cached vectors of one database. The service never deletes orders; whoever empties the tables under
    a running process (the tests, between cases, with a fixed clock that gives new orders the same number and
    time) calls this."""
    _vector_cache.forget(engine)


def remember_vector(session: Session, *, order: WorkOrder, vector: np.ndarray, model_id: str) -> None:
    """Keep a COMMITTED order's stored vector in memory, so the searches that meet it next need not read it back
    (the intake calls this after its filing commits; before, a rollback could leave a vector of no order)."""
    _vector_cache.put_many(session, model_id, [(order, vector_bytes(vector))])


def _vectors(session: Session, candidates: list[_Candidate], *, model_id: str, embed: Embed | None,
             dim: int) -> tuple[list[_Candidate], np.ndarray]:
    """The candidates that have (or now get) a vector of `model_id`, and those vectors as rows."""
    stored = _vector_cache.get_many(session, model_id, candidates)
    unread = {c.id: c for c in candidates if c.id not in stored}
    read: list[tuple[_Candidate, bytes]] = []
    ids = list(unread)
    for start in range(0, len(ids), 900):   # SQLite's bound-parameter limit
        rows = session.execute(select(OrderEmbedding.order_id, OrderEmbedding.vector)
                               .where(OrderEmbedding.model_id == model_id,
                                      OrderEmbedding.order_id.in_(ids[start:start + 900])))
        read.extend((unread[order_id], vector) for order_id, vector in rows)
    # Only vectors read back from the database are kept: one embedded here is stored in this transaction, which
    # may still roll back.
    _vector_cache.put_many(session, model_id, read)
    stored.update({c.id: vector for c, vector in read})
    missing_ids = [c.id for c in candidates if c.id not in stored][:MAX_EMBEDDED_PER_SEARCH]
    if missing_ids and embed is not None:
        missing = _orders_by_id(session, missing_ids)
        fresh = np.asarray(embed([missing[i].text for i in missing_ids]), dtype=np.float32)
        for order_id, vector in zip(missing_ids, fresh):
            stored[order_id] = vector_bytes(vector)
            session.add(OrderEmbedding(order_id=order_id, model_id=model_id, vector=stored[order_id],
                                       created_at=utcnow()))
        session.flush()
    kept = [c for c in candidates if c.id in stored and len(stored[c.id]) == dim * 4]
    matrix = (np.frombuffer(b"".join(stored[c.id] for c in kept), dtype="<f4").reshape(len(kept), dim)
              if kept else np.zeros((0, dim), dtype=np.float32))
    return kept, matrix


def _orders_by_id(session: Session, ids: list[int], *, with_children: bool = False) -> dict[int, WorkOrder]:
    if not ids:
        return {}
    query = select(WorkOrder).where(WorkOrder.id.in_(ids))
    if with_children:   # a proposal shows how many callers are merged into it: one query for all, not one each
        query = query.options(selectinload(WorkOrder.children))
    return {o.id: o for o in session.scalars(query)}


def find_similar(session: Session, *, vector: np.ndarray, model_id: str, place: Place,
                 at: dt.datetime | None = None, exclude_order_id: int | None = None, embed: Embed | None = None,
                 window_days: int = 7, limit: int = 5, threshold: float | None = None,
                 later_too: bool = False) -> list[SimilarOrder]:
    """The open orders filed within `window_days` before `at` (and after it too, with `later_too`) whose same-event
    score reaches the threshold (the model's, `proposal_threshold`, unless given), best first, at most `limit`."""
    at = as_utc(at) if at else utcnow()
    threshold = proposal_threshold(model_id) if threshold is None else threshold
    query = np.asarray(vector, dtype=np.float32).reshape(-1)
    window = dt.timedelta(days=window_days)
    own_district_only = threshold > BEST_OTHER_DISTRICT_SCORE and place.district_adcode
    candidates = _candidates(session, since=at - window, until=at + window if later_too else at,
                             exclude_id=exclude_order_id,
                             district_adcode=place.district_adcode if own_district_only else None)
    candidates, matrix = _vectors(session, candidates, model_id=model_id, embed=embed, dim=query.shape[0])
    if not candidates:
        return []
    similarities = matrix @ query
    # Only rows whose text could reach the threshold with the best place and time bonus are scored one by one.
    low, high = _model_rule(model_id)[:2]
    reachable = np.flatnonzero(similarities >= low + (threshold - BEST_BONUS) * (high - low) - 1e-6)
    scored = []
    for position in reachable.tolist():
        candidate, similarity = candidates[position], float(similarities[position])
        hours = (at - as_utc(candidate.created_at)).total_seconds() / 3600.0
        score, reason = event_score(similarity, model_id, place_agreement(place, Place.of(candidate)),
                                    time_agreement(hours, window_days))
        if score >= threshold:
            scored.append((score, round(similarity, 4), reason, candidate))
    scored.sort(key=lambda s: (-s[0], s[3].order_no))
    orders = _orders_by_id(session, [c.id for *_, c in scored[:limit]], with_children=True)
    return [SimilarOrder(c.order_no, score, similarity, reason, orders[c.id])
            for score, similarity, reason, c in scored[:limit]]


def similar_to_order(session: Session, *, order: WorkOrder, model_id: str, embed: Embed | None,
                     window_days: int = 7, limit: int = 5, threshold: float | None = None,
                     vector: np.ndarray | None = None) -> list[SimilarOrder]:
    """Open orders about the same event as `order` (its `vector` when the caller holds it, else its stored one, or
    one made now and stored), filed within `window_days` before or after it; the order's own handling order and
    fellow merged callers are not proposed. With `embed` None nothing is embedded or written (a read-only
    session): candidates without a stored vector are left out."""
    if vector is None:
        if embed is None:
            raise ValueError("similar_to_order needs the order's vector or an embed function")
        vector = order_vector(session, order=order, model_id=model_id, embed=embed)
    found = find_similar(session, vector=vector, model_id=model_id, place=Place.of(order), at=order.created_at,
                         exclude_order_id=order.id, embed=embed, window_days=window_days, limit=limit + 1,
                         threshold=threshold, later_too=True)
    return [hit for hit in found if hit.order.id != order.parent_id][:limit]


def order_vector(session: Session, *, order: WorkOrder, model_id: str, embed: Embed, keep: bool = True) -> np.ndarray:
    """The order's stored vector of `model_id`, or one embedded now: stored with `keep`, for the caller alone
    without (a read session that is never committed)."""
    stored = session.scalar(select(OrderEmbedding.vector).where(OrderEmbedding.order_id == order.id,
                                                                OrderEmbedding.model_id == model_id))
    if stored is not None:
        return np.frombuffer(stored, dtype="<f4")
    vector = np.asarray(embed([order.text]), dtype=np.float32)[0]
    if keep:
        store_embedding(session, order=order, vector=vector, model_id=model_id)
    return vector


# ------------------------------------------------------------------------------- backfill (`hotline orders embed`)
@dataclass(frozen=True)
class EmbedStep:
    embedded: int   # orders given a vector in this step (0 = nothing left after `after_id`)
    last_id: int    # the next step starts after this order id


def _without_vector(model_id: str, *, open_only: bool, text: bool = False):
    """Top-level orders (what a search compares) with no vector of `model_id`: their ids, and texts with `text`."""
    has_vector = select(OrderEmbedding.id).where(OrderEmbedding.order_id == WorkOrder.id,
                                                 OrderEmbedding.model_id == model_id).exists()
    columns = (WorkOrder.id, WorkOrder.text) if text else (WorkOrder.id,)
    query = select(*columns).where(WorkOrder.parent_id.is_(None), ~has_vector)
    if open_only:
        query = query.where(WorkOrder.state.in_([s.value for s in OPEN_STATES]))
    return query


def orders_without_vector(session: Session, *, model_id: str, open_only: bool = False) -> int:
    return session.scalar(select(func.count()).select_from(_without_vector(model_id, open_only=open_only)
                                                           .subquery())) or 0


def embed_missing_after(session: Session, *, model_id: str, embed: Embed, after_id: int = 0, limit: int = 256,
                        open_only: bool = False) -> EmbedStep:
    """Embed and store the vectors of the next `limit` orders after `after_id` that have none (imported history,
    orders filed while no router was loaded), in one embedding call. Run in a transaction per step: a stopped run
    keeps what its committed steps stored, and a second run embeds only what is still missing."""
    rows = session.execute(_without_vector(model_id, open_only=open_only, text=True)
                           .where(WorkOrder.id > after_id).order_by(WorkOrder.id).limit(limit)).all()
    if not rows:
        return EmbedStep(0, after_id)
    ids = [order_id for order_id, _ in rows]
    vectors = np.asarray(embed([text for _, text in rows]), dtype=np.float32)
    if len(vectors) != len(ids):
        raise RuntimeError(f"the embedder returned {len(vectors)} vectors for {len(ids)} orders")
    now = utcnow()
    session.add_all([OrderEmbedding(order_id=order_id, model_id=model_id, vector=vector_bytes(vector), created_at=now)
                     for order_id, vector in zip(ids, vectors)])
    session.flush()
    return EmbedStep(len(ids), ids[-1])
