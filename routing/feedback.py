"""Learning from corrections without retraining: a nearest-neighbour memory of re-dispatched complaints.

When an order is re-dispatched (or a department returns it and it lands elsewhere), the complaint and the unit
that really owned it are remembered. The next similar complaint is pulled towards that owner at once. The memory
stores the owner as (kind, level) so a correction made in 岳麓区 also helps the same matter in 雨花区.
"""
from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from knowledge_base.index_store import VectorIndex
from nlp.pii import mask_pii

DEFAULT_MIN_SIMILARITY = 0.86


@dataclass(frozen=True)
class Correction:
    similarity: float
    kind: str
    level: str
    department_code: str
    entry_id: str | None
    text: str


class FeedbackStore(Protocol):
    """Where corrections persist; the work-order service supplies its own database-backed store."""

    def append(self, *, text: str, kind: str, level: str, department_code: str, entry_id: str | None,
               vector: np.ndarray, model_id: str) -> None: ...

    def all(self) -> list[dict]: ...


class SQLiteFeedbackStore:
    """A small embedded store (one table) for the CLI and the embedded default."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS routing_corrections (id INTEGER PRIMARY KEY, created_at TEXT, text TEXT,"
                " kind TEXT, level TEXT, department_code TEXT, entry_id TEXT, model_id TEXT, vector BLOB)")
            self._conn.commit()

    def append(self, *, text, kind, level, department_code, entry_id, vector, model_id) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO routing_corrections (created_at, text, kind, level, department_code, entry_id, model_id, vector)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (dt.datetime.now(dt.timezone.utc).isoformat(), text, kind, level, department_code, entry_id, model_id,
                 np.asarray(vector, dtype=np.float32).tobytes()))
            self._conn.commit()

    def all(self) -> list[dict]:
        with self._lock:
            cursor = self._conn.execute(
                "SELECT text, kind, level, department_code, entry_id, model_id, vector FROM routing_corrections ORDER BY id")
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]


class FeedbackMemory:
    def __init__(self, store: FeedbackStore, *, embed, model_id: str, dim: int,
                 min_similarity: float = DEFAULT_MIN_SIMILARITY):
        self.store = store
        self._embed = embed            # texts -> (n, dim) query vectors of the first encoder
        self.model_id = model_id
        self.min_similarity = min_similarity
        self._index = VectorIndex(dim)
        self._items: list[dict] = []
        self._lock = threading.Lock()
        rows = store.all()
        stale = [r for r in rows if r["model_id"] != model_id]
        if stale:  # vectors from another model are re-embedded from the (masked) text
            fresh = embed([r["text"] for r in stale])
            for row, vector in zip(stale, fresh):
                row["vector"] = vector.astype(np.float32).tobytes()
        for row in rows:
            self._add(np.frombuffer(row["vector"], dtype=np.float32).reshape(1, -1), row)

    def _add(self, vector: np.ndarray, item: dict) -> None:
        with self._lock:
            self._index.add(vector)
            self._items.append(item)

    def __len__(self) -> int:
        return len(self._items)

    def learn(self, text: str, *, kind: str, level: str, department_code: str, entry_id: str | None = None,
              vector: np.ndarray | None = None) -> None:
        masked = mask_pii(text)
        vector = vector if vector is not None else self._embed([masked])[0]
        item = {"text": masked, "kind": kind, "level": level, "department_code": department_code, "entry_id": entry_id}
        self.store.append(vector=vector, model_id=self.model_id, **item)
        self._add(np.asarray(vector, dtype=np.float32).reshape(1, -1), item)

    def nearest(self, vector: np.ndarray, k: int = 3) -> list[Correction]:
        with self._lock:
            if not self._items:
                return []
            scores, rows = self._index.search(np.asarray(vector, dtype=np.float32).reshape(1, -1), k)
            items = list(self._items)
        return [Correction(float(s), items[r]["kind"], items[r]["level"], items[r]["department_code"],
                           items[r]["entry_id"], items[r]["text"])
                for s, r in zip(scores[0], rows[0]) if r >= 0 and s >= self.min_similarity]
