"""FAISS index of the responsibility list, persisted next to the model id and the knowledge-base hash."""
from __future__ import annotations

import datetime as dt
import json
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from knowledge_base.kb import KnowledgeBase
from nlp.normalize import normalize

INDEX_FORMAT = 1
# Flat searches over a few thousand vectors gain nothing from threads, and idle faiss threads slow torch down.
faiss.omp_set_num_threads(1)


class IndexMismatchError(RuntimeError):
    """The stored index was built from another model or another version of the knowledge base."""


@dataclass(frozen=True)
class PassageRow:
    entry_id: str
    text: str
    kind: str   # "definition" (name + category path + keywords) or "example"


def entry_passages(kb: KnowledgeBase) -> list[PassageRow]:
    """What the index holds: one definition passage and each example complaint per entry in force."""
    rows: list[PassageRow] = []
    for entry in kb.active_entries():
        path = "/".join(kb.category_path(entry.category))
        definition = f"{entry.name}。{path}。{'、'.join(entry.keywords)}"
        rows.append(PassageRow(entry.id, normalize(definition), "definition"))
        rows.extend(PassageRow(entry.id, normalize(example), "example") for example in entry.examples)
    return rows


class VectorIndex:
    """Inner-product FAISS index over L2-normalised vectors (cosine similarity)."""

    def __init__(self, dim: int, index: faiss.Index | None = None):
        self.dim = dim
        self.index = index if index is not None else faiss.IndexFlatIP(dim)

    def add(self, vectors: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = max(1, min(k, self.index.ntotal))
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def __len__(self) -> int:
        return self.index.ntotal


@dataclass
class StoredIndex:
    model_id: str
    kb_hash: str
    rows: list[PassageRow]
    vectors: np.ndarray
    index: VectorIndex
    built_at: str
    extra: dict       # other artefacts built with the index (fitted TF-IDF vocabulary, calibrator …)


def _manifest_path(directory: Path) -> Path:
    return directory / "manifest.json"


def index_dir_for(root: Path, model_id: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_.+" else "_" for ch in model_id)
    return root / safe


def save_index(directory: Path, *, model_id: str, kb_hash: str, rows: list[PassageRow], vectors: np.ndarray,
               extra: dict | None = None) -> StoredIndex:
    """Write atomically: a reader never sees half an index."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    index = VectorIndex(vectors.shape[1])
    index.add(vectors)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=directory.parent))
    built_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    faiss.write_index(index.index, str(tmp / "passages.faiss"))
    np.save(tmp / "vectors.npy", vectors.astype(np.float32))
    (tmp / "rows.json").write_text(json.dumps([r.__dict__ for r in rows], ensure_ascii=False), encoding="utf-8")
    with (tmp / "extra.pkl").open("wb") as handle:
        pickle.dump(extra or {}, handle)
    manifest = {"format": INDEX_FORMAT, "model_id": model_id, "kb_hash": kb_hash, "rows": len(rows),
                "dim": int(vectors.shape[1]), "built_at": built_at}
    _manifest_path(tmp).write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    # Swap by renames so a reader always finds a whole index (the old one or the new one).
    retired = None
    if directory.exists():
        retired = directory.with_name(f".retired-{directory.name}-{os.getpid()}")
        os.replace(directory, retired)
    os.replace(tmp, directory)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
    return StoredIndex(model_id, kb_hash, rows, vectors, index, built_at, extra or {})


def read_manifest(directory: Path) -> dict | None:
    path = _manifest_path(directory)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def load_index(directory: Path, *, model_id: str, kb_hash: str) -> StoredIndex:
    manifest = read_manifest(directory)
    if manifest is None:
        raise FileNotFoundError(f"no index at {directory}: run `hotline index build`")
    problems = []
    if manifest.get("format") != INDEX_FORMAT:
        problems.append(f"index format {manifest.get('format')} != {INDEX_FORMAT}")
    if manifest["model_id"] != model_id:
        problems.append(f"built with model {manifest['model_id']!r}, the router now uses {model_id!r}")
    if manifest["kb_hash"] != kb_hash:
        problems.append(f"built from knowledge base {manifest['kb_hash']}, the current one is {kb_hash}")
    if problems:
        raise IndexMismatchError(
            f"refusing the index at {directory}: " + "; ".join(problems) + ". Rebuild it with `hotline index build`.")
    rows = [PassageRow(**r) for r in json.loads((directory / "rows.json").read_text(encoding="utf-8"))]
    vectors = np.load(directory / "vectors.npy")
    index = VectorIndex(manifest["dim"], faiss.read_index(str(directory / "passages.faiss")))
    with (directory / "extra.pkl").open("rb") as handle:
        extra = pickle.load(handle)  # written by this program only, never user-supplied
    return StoredIndex(manifest["model_id"], manifest["kb_hash"], rows, vectors, index, manifest["built_at"], extra)


def update_extra(directory: Path, extra: dict) -> None:
    """Replace the artefacts stored with an index (e.g. a re-calibrated matcher), atomically."""
    tmp = directory / "extra.pkl.tmp"
    with tmp.open("wb") as handle:
        pickle.dump(extra, handle)
    os.replace(tmp, directory / "extra.pkl")
