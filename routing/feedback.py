"""Learning from corrections without retraining: a memory of re-dispatched complaints that only steers repeats.

When an order is re-dispatched (or a department returns it and it lands elsewhere), the complaint, the unit that
really owned it and what the router had said are remembered. A later complaint follows the correction only when it
is the SAME matter told again: its text is a near-duplicate of the corrected one (NEAR_DUPLICATE_SIMILARITY) AND the
router sees the same matter in it (router.py checks the entries / kind of unit). The owner is stored as (kind,
level), so a correction made in 岳麓区 also helps the same complaint in 雨花区.

Each correction has an id, who made it, when, an expiry (Settings.correction_lifetime_days) and `superseded_by`
(a later correction of a near-duplicate text naming another unit replaces it). Corrections are listed and removed
(API, CLI); removing one rebuilds the in-memory index at once, and a change made by another process to the same
store (the CLI beside a running service) is picked up at the next lookup.
"""
from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from hotline.core.clock import as_utc
from knowledge_base.index_store import VectorIndex
from nlp.pii import mask_pii

# A correction only reaches near-duplicates of its complaint. Measured on the 长沙 development set (450 complaints,
# 100,756 pairs about different knowledge-base entries; benchmarks/correction_similarity.py, results in
# benchmarks/results/correction_similarity*.json) with the router's query vectors:
# - e5-small: unrelated pairs p50 0.879, p99 0.914, p99.9 0.927, max 0.952 (医保转移 vs 社保转移; 停车扫码多扣费 vs
#   共享电单车扣调度费); the same entry in other words/places p50 0.908, max 0.940; re-wordings of one complaint
#   (template around it, particles, synonyms, a clause dropped or added, ASR fillers; 2,317) p0 0.958, p1 0.968,
#   p50 0.989. The old 0.86 reached 89% of unrelated pairs (one correction: 398 of 450 complaints on average).
#   0.96 keeps 99.96% of re-wordings and no unrelated pair (max 0.952); the matter check guards the thin margin.
# - The first encoder is USE only when e5 cannot load; USE and the tests' bigram-hash double have other scales,
#   measured the same way (see NEAR_DUPLICATE_BY_MODEL).
# An encoder not measured gets the strictest value (corrections then reach fewer repeats, never more complaints).
NEAR_DUPLICATE_SIMILARITY = 0.96
NEAR_DUPLICATE_BY_MODEL = {
    "e5-": NEAR_DUPLICATE_SIMILARITY,
    "use-": 0.85,               # unrelated p99.9 0.616, max 0.764; re-wordings p1 0.821, p5 0.881, 97% kept
    "fake-bigram-hash": 0.70,   # unrelated p99.9 0.512, max 0.617; re-wordings p1 0.683 (the tests' double only)
}
DEFAULT_LIFETIME_DAYS = 180
_SEARCH_K = 8


def near_duplicate_threshold(model_id: str) -> float:
    """The cosine above which two complaints embedded by `model_id` are the same complaint told again."""
    for prefix, value in NEAR_DUPLICATE_BY_MODEL.items():
        if model_id.startswith(prefix):
            return value
    return NEAR_DUPLICATE_SIMILARITY


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _parse(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return as_utc(dt.datetime.fromisoformat(value))


@dataclass(frozen=True)
class Correction:
    similarity: float
    kind: str
    level: str
    department_code: str
    entry_id: str | None
    text: str
    id: int | None = None
    original_entry_id: str | None = None       # the entry the router had chosen when the correction was made
    original_kind: str | None = None           # … and its kind of unit and level
    original_level: str | None = None
    original_department_code: str | None = None


# Columns of routing_corrections, in order; the ones after `vector` were added later (migrated in place).
COLUMNS = {
    "id": "INTEGER PRIMARY KEY", "created_at": "TEXT", "text": "TEXT", "kind": "TEXT", "level": "TEXT",
    "department_code": "TEXT", "entry_id": "TEXT", "model_id": "TEXT", "vector": "BLOB",
    "original_entry_id": "TEXT", "original_kind": "TEXT", "original_level": "TEXT",
    "original_department_code": "TEXT", "expires_at": "TEXT", "created_by": "TEXT", "superseded_by": "INTEGER",
}
ORIGIN_FIELDS = ("original_entry_id", "original_kind", "original_level", "original_department_code")


class FeedbackStore(Protocol):
    """Where corrections persist. SQLiteFeedbackStore is the only implementation (the work-order database keeps
    the decisions and re-dispatch events, not this memory); another store must keep the same fields."""

    def append(self, *, text: str, kind: str, level: str, department_code: str, entry_id: str | None,
               vector: np.ndarray, model_id: str, created_at: str, expires_at: str, created_by: str | None = None,
               original_entry_id: str | None = None, original_kind: str | None = None,
               original_level: str | None = None, original_department_code: str | None = None) -> int: ...

    def all(self) -> list[dict]: ...

    def supersede(self, ids: list[int], by: int) -> None: ...

    def set_origin(self, row_id: int, **origin: str | None) -> None: ...

    def remove(self, row_id: int) -> bool: ...


class SQLiteFeedbackStore:
    """A small embedded store (one table) for the CLI and the service."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = sqlite3.connect(path, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("CREATE TABLE IF NOT EXISTS routing_corrections ("
                               + ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items()) + ")")
            present = {row[1] for row in self._conn.execute("PRAGMA table_info(routing_corrections)")}
            for name, kind in COLUMNS.items():   # a file written before a column existed: add it (NULL for old rows)
                if name not in present:
                    self._conn.execute(f"ALTER TABLE routing_corrections ADD COLUMN {name} {kind}")
            self._conn.commit()

    def append(self, *, text, kind, level, department_code, entry_id, vector, model_id, created_at, expires_at,
               created_by=None, original_entry_id=None, original_kind=None, original_level=None,
               original_department_code=None) -> int:
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO routing_corrections (created_at, text, kind, level, department_code, entry_id, model_id,"
                " vector, original_entry_id, original_kind, original_level, original_department_code, expires_at,"
                " created_by) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (created_at, text, kind, level, department_code, entry_id, model_id,
                 np.asarray(vector, dtype=np.float32).tobytes(), original_entry_id, original_kind, original_level,
                 original_department_code, expires_at, created_by))
            self._conn.commit()
            return int(cursor.lastrowid)

    def all(self) -> list[dict]:
        with self._lock:
            cursor = self._conn.execute(f"SELECT {', '.join(COLUMNS)} FROM routing_corrections ORDER BY id")
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def supersede(self, ids: list[int], by: int) -> None:
        with self._lock:
            self._conn.executemany("UPDATE routing_corrections SET superseded_by = ? WHERE id = ?",
                                   [(by, i) for i in ids])
            self._conn.commit()

    def set_origin(self, row_id: int, **origin) -> None:
        with self._lock:
            self._conn.execute("UPDATE routing_corrections SET " + ", ".join(f"{k} = ?" for k in ORIGIN_FIELDS)
                               + " WHERE id = ?", [origin.get(k) for k in ORIGIN_FIELDS] + [row_id])
            self._conn.commit()

    def remove(self, row_id: int) -> bool:
        with self._lock:
            removed = self._conn.execute("DELETE FROM routing_corrections WHERE id = ?", (row_id,)).rowcount
            # A correction it had replaced is not revived: the person who superseded it said it was wrong.
            self._conn.commit()
            return removed > 0

    def data_version(self) -> int:
        """Changes when ANOTHER connection commits (SQLite's data_version): the CLI beside a running service."""
        with self._lock:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])


def fill_expiry(row: dict, lifetime: dt.timedelta, now: dt.datetime | None = None) -> dict:
    """Rows stored before expiry existed live one lifetime from their creation."""
    if not row.get("expires_at"):
        created = _parse(row.get("created_at")) or now or _now()
        row["expires_at"] = (created + lifetime).isoformat(timespec="seconds")
    return row


def correction_json(row: dict, now: dt.datetime | None = None) -> dict:
    """A stored correction as the API and the CLI show it (stored masked; masked again to be sure), no vector."""
    keys = ("id", "created_at", "expires_at", "created_by", "department_code", "kind", "level", "entry_id",
            "original_department_code", "original_entry_id", "original_kind", "original_level", "superseded_by")
    return {"text": mask_pii(row["text"]), "status": row.get("status") or correction_status(row, now),
            **{k: row.get(k) for k in keys}}


def correction_status(row: dict, now: dt.datetime | None = None) -> str:
    if row.get("superseded_by"):
        return "superseded"
    expires = _parse(row.get("expires_at"))
    if expires is not None and expires <= (now or _now()):
        return "expired"
    return "active"


class FeedbackMemory:
    def __init__(self, store: FeedbackStore, *, embed, model_id: str, dim: int, min_similarity: float | None = None,
                 lifetime_days: int = DEFAULT_LIFETIME_DAYS, clock=_now):
        self.store = store
        self._embed = embed            # texts -> (n, dim) query vectors of the first encoder
        self.model_id = model_id
        self.dim = dim
        self.min_similarity = near_duplicate_threshold(model_id) if min_similarity is None else min_similarity
        self.lifetime = dt.timedelta(days=lifetime_days)
        self._clock = clock
        self._lock = threading.RLock()
        self._vectors: dict[int, np.ndarray] = {}
        self._rows: list[dict] = []
        self._index = VectorIndex(dim)
        self._active: list[dict] = []          # rows behind the index, in index order
        self._next_expiry: dt.datetime | None = None
        self._version = self._store_version()
        self.reload()

    # -- state ---------------------------------------------------------------------------------------------
    def _store_version(self) -> int | None:
        version = getattr(self.store, "data_version", None)
        return version() if version else None

    def reload(self) -> None:
        """Read every row from the store and rebuild the index of the active ones."""
        rows = self.store.all()
        stale = [r for r in rows if r["model_id"] != self.model_id and r["id"] not in self._vectors]
        if stale:  # vectors from another model are re-embedded from the (masked) text
            for row, vector in zip(stale, self._embed([r["text"] for r in stale])):
                self._vectors[row["id"]] = np.asarray(vector, dtype=np.float32)
        for row in rows:
            if row["id"] not in self._vectors:
                self._vectors[row["id"]] = np.frombuffer(row["vector"], dtype=np.float32).copy()
            row.pop("vector", None)
            fill_expiry(row, self.lifetime, self._clock())
        with self._lock:
            self._rows = rows
            known = {r["id"] for r in rows}
            self._vectors = {k: v for k, v in self._vectors.items() if k in known}
            self._rebuild()

    def _rebuild(self) -> None:
        now = self._clock()
        active = [r for r in self._rows if correction_status(r, now) == "active"]
        index = VectorIndex(self.dim)
        if active:
            index.add(np.stack([self._vectors[r["id"]] for r in active]))
        self._index, self._active = index, active
        expiries = [e for e in (_parse(r.get("expires_at")) for r in active) if e is not None]
        self._next_expiry = min(expiries) if expiries else None

    def _sync(self) -> None:
        version = self._store_version()
        if version is not None and version != self._version:
            self._version = version
            self.reload()

    def __len__(self) -> int:
        """Active corrections (neither expired nor superseded)."""
        return len(self._active)

    # -- learning ------------------------------------------------------------------------------------------
    def learn(self, text: str, *, kind: str, level: str, department_code: str, entry_id: str | None = None,
              vector: np.ndarray | None = None, created_by: str | None = None, original_entry_id: str | None = None,
              original_kind: str | None = None, original_level: str | None = None,
              original_department_code: str | None = None) -> dict:
        """Store a correction; active corrections of a near-duplicate text that named another unit are superseded.
        Returns the stored row (without its vector), with `supersedes`: the ids it replaced."""
        masked = mask_pii(text)
        vector = np.asarray(vector if vector is not None else self._embed([masked])[0], dtype=np.float32)
        now = self._clock()
        item = {"text": masked, "kind": kind, "level": level, "department_code": department_code,
                "entry_id": entry_id, "created_by": created_by, "original_entry_id": original_entry_id,
                "original_kind": original_kind, "original_level": original_level,
                "original_department_code": original_department_code,
                "created_at": now.isoformat(timespec="seconds"),
                "expires_at": (now + self.lifetime).isoformat(timespec="seconds")}
        with self._lock:
            self._sync()
            replaced = [c.id for c in self._search(vector, len(self._active))
                        if c.department_code != department_code]
            row_id = self.store.append(vector=vector, model_id=self.model_id, **item)
            if replaced:
                self.store.supersede(replaced, row_id)
            self._version = self._store_version()
            for row in self._rows:
                if row["id"] in replaced:
                    row["superseded_by"] = row_id
            row = {"id": row_id, **item, "model_id": self.model_id, "superseded_by": None}
            self._rows.append(row)
            self._vectors[row_id] = vector
            self._rebuild()
        return {**row, "supersedes": replaced}

    def set_origin(self, row_id: int, **origin: str | None) -> None:
        """What the router had said about a correction's complaint (for rows stored before that was recorded)."""
        with self._lock:
            self.store.set_origin(row_id, **origin)
            self._version = self._store_version()
            for row in self._rows:
                if row["id"] == row_id:
                    row.update({k: origin.get(k) for k in ORIGIN_FIELDS})
            self._rebuild()

    def without_origin(self) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self._active if not r.get("original_entry_id") and not r.get("original_kind")]

    # -- undo ----------------------------------------------------------------------------------------------
    def remove(self, row_id: int) -> bool:
        """Delete a correction; the running memory stops using it at once. False when there is no such id."""
        with self._lock:
            removed = self.store.remove(row_id)
            self._version = self._store_version()
            self._rows = [r for r in self._rows if r["id"] != row_id]
            self._vectors.pop(row_id, None)
            self._rebuild()
        return removed

    def list(self) -> list[dict]:
        """Every stored correction, newest first, with its status (active / expired / superseded); text masked."""
        with self._lock:
            self._sync()
            now = self._clock()
            return [{**r, "status": correction_status(r, now)} for r in reversed(self._rows)]

    # -- lookup --------------------------------------------------------------------------------------------
    def _search(self, vector: np.ndarray, k: int) -> list[Correction]:
        if not self._active:
            return []
        scores, rows = self._index.search(np.asarray(vector, dtype=np.float32).reshape(1, -1), k)
        out = []
        for s, r in zip(scores[0], rows[0]):
            if r < 0 or s < self.min_similarity:
                continue
            row = self._active[r]
            out.append(Correction(float(s), row["kind"], row["level"], row["department_code"], row["entry_id"],
                                  row["text"], row["id"], *(row.get(k) for k in ORIGIN_FIELDS)))
        return out

    def nearest(self, vector: np.ndarray, k: int = _SEARCH_K) -> list[Correction]:
        """Active corrections whose complaint is a near-duplicate of this one, closest first."""
        with self._lock:
            self._sync()
            if self._next_expiry is not None and self._clock() >= self._next_expiry:
                self._rebuild()   # one expired since the last lookup
            return self._search(vector, k)
