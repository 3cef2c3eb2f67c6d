"""Matching a complaint to responsibility-list entries: retrieval over examples plus a linear classifier.

Both are fitted from the knowledge base alone at index-build time, and calibrated on out-of-fold predictions of
the knowledge base's own example complaints, so any city's list gets a calibrated confidence without labelled
history.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

from knowledge_base.index_store import PassageRow, StoredIndex, entry_passages, index_dir_for, load_index, save_index
from knowledge_base.kb import KnowledgeBase
from nlp.embedder import Embedder, TfidfEmbedder

log = logging.getLogger(__name__)
FOLDS = 5
RIDGE_LAMBDA = 1.0
RETRIEVAL_K = 96


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _segment_max(sims: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Max similarity per entry; passages of one entry are contiguous, starting at `starts`."""
    return np.maximum.reduceat(sims, starts, axis=1)


def _ridge_fit(x: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Closed-form ridge regression onto one-hot labels (fast for a few thousand examples)."""
    x1 = np.hstack([x, np.ones((x.shape[0], 1), dtype=np.float32)])
    targets = np.zeros((x.shape[0], n_classes), dtype=np.float32)
    targets[np.arange(x.shape[0]), y] = 1.0
    gram = x1.T @ x1 + RIDGE_LAMBDA * np.eye(x1.shape[1], dtype=np.float32)
    return np.linalg.solve(gram, x1.T @ targets).astype(np.float32)


def _ridge_scores(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((x.shape[0], 1), dtype=np.float32)]) @ weights


@dataclass
class MatcherModel:
    """Everything fitted at build time besides the passage vectors."""

    entry_ids: list[str]
    entry_starts: np.ndarray          # first passage row of each entry
    ridge: np.ndarray                 # (sum of dims + 1, n_entries)
    a: float                          # weight of the retrieval similarity in the logit
    b: float                          # weight of the ridge score in the logit
    calibrator: LogisticRegression | None
    oof: dict                         # out-of-fold figures on the KB's own examples


class Encoders:
    """One or more embedders used together (e5 + USE averaged is better than either; offline-stack.md)."""

    def __init__(self, embedders: Sequence[Embedder]):
        self.embedders = list(embedders)
        self.model_id = "+".join(e.model_id for e in self.embedders)

    def queries(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [e.embed_queries(list(texts)) for e in self.embedders]

    def passages(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [e.embed_passages(list(texts)) for e in self.embedders]


def feature_key(kb: KnowledgeBase, entry_id: str) -> tuple[str, str]:
    """Entries owned by the same kind of unit at the same level route to the same department."""
    entry = kb.entries[entry_id]
    return entry.lead, entry.level


class KBMatcher:
    def __init__(self, kb: KnowledgeBase, encoders: Encoders, indexes: list[StoredIndex], model: MatcherModel):
        self.kb = kb
        self.encoders = encoders
        self.indexes = indexes
        self.model = model
        self.rows: list[PassageRow] = indexes[0].rows
        self.entry_pos = {eid: i for i, eid in enumerate(model.entry_ids)}
        self._row_entry = np.array([self.entry_pos[r.entry_id] for r in self.rows])

    # -- scoring -------------------------------------------------------------------------------------------
    def entry_probabilities(self, query_vectors: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probabilities over entries, retrieval similarity per entry, best passage row per entry) for a batch."""
        n = query_vectors[0].shape[0]
        n_entries = len(self.model.entry_ids)
        sim_sum = np.zeros((n, n_entries), dtype=np.float32)
        best_row = np.full((n, n_entries), -1, dtype=np.int64)
        best_sim = np.full((n, n_entries), -np.inf, dtype=np.float32)
        for vectors, stored in zip(query_vectors, self.indexes):
            scores, rows = stored.index.search(vectors, RETRIEVAL_K)
            floor = scores[:, -1:]  # entries outside the top K get the K-th similarity
            per_entry = np.repeat(floor, n_entries, axis=1)
            for q in range(n):
                for score, row in zip(scores[q], rows[q]):
                    if row < 0:
                        continue
                    e = self._row_entry[row]
                    if score > per_entry[q, e] or per_entry[q, e] == floor[q, 0]:
                        per_entry[q, e] = max(per_entry[q, e], score)
                    if score > best_sim[q, e]:
                        best_sim[q, e], best_row[q, e] = score, row
            sim_sum += per_entry
        similarity = sim_sum / len(self.indexes)
        ridge = _ridge_scores(self.model.ridge, np.hstack(query_vectors))
        probs = _softmax(self.model.a * similarity + self.model.b * ridge)
        return probs, similarity, best_row

    def calibrate(self, top_prob: float, margin: float) -> float:
        if self.model.calibrator is None:
            return top_prob
        return float(self.model.calibrator.predict_proba(np.array([[top_prob, margin]]))[0, 1])


# -- building ----------------------------------------------------------------------------------------------
def _entry_layout(rows: list[PassageRow]) -> tuple[list[str], np.ndarray]:
    ids: list[str] = []
    starts: list[int] = []
    for i, row in enumerate(rows):
        if not ids or ids[-1] != row.entry_id:
            ids.append(row.entry_id)
            starts.append(i)
    return ids, np.array(starts)


def _key_probabilities(probs: np.ndarray, key_of_entry: np.ndarray, n_keys: int) -> np.ndarray:
    out = np.zeros((probs.shape[0], n_keys), dtype=np.float64)
    for k in range(n_keys):
        out[:, k] = probs[:, key_of_entry == k].sum(axis=1)
    return out


def fit_matcher(kb: KnowledgeBase, encoders: Encoders, index_root, *, progress: Callable[[str], None] = lambda m: None
                ) -> tuple[list[StoredIndex], MatcherModel]:
    rows = entry_passages(kb)
    entry_ids, starts = _entry_layout(rows)
    texts = [r.text for r in rows]
    progress(f"embedding {len(rows)} passages with {encoders.model_id}")
    passage_vectors = encoders.passages(texts)
    example_rows = np.array([i for i, r in enumerate(rows) if r.kind == "example"])
    progress(f"embedding {len(example_rows)} example complaints as queries")
    query_vectors = encoders.queries([texts[i] for i in example_rows])
    entry_pos = {eid: i for i, eid in enumerate(entry_ids)}
    labels = np.array([entry_pos[rows[i].entry_id] for i in example_rows])
    x_all = np.hstack(query_vectors)

    # Out-of-fold similarity and ridge scores of every example: its own passage (and its fold) is held out.
    progress(f"calibrating on {FOLDS}-fold held-out examples")
    fold_of = np.arange(len(example_rows)) % FOLDS
    oof_sim = np.zeros((len(example_rows), len(entry_ids)), dtype=np.float32)
    oof_ridge = np.zeros_like(oof_sim)
    for fold in range(FOLDS):
        held = fold_of == fold
        masked_rows = example_rows[held]
        sims = np.zeros((held.sum(), len(rows)), dtype=np.float32)
        for q, p in zip(query_vectors, passage_vectors):
            sims += q[held] @ p.T
        sims /= len(passage_vectors)
        sims[:, masked_rows] = -1.0
        oof_sim[held] = _segment_max(sims, starts)
        weights = _ridge_fit(x_all[~held], labels[~held], len(entry_ids))
        oof_ridge[held] = _ridge_scores(weights, x_all[held])

    key_names = sorted({feature_key(kb, e) for e in entry_ids})
    key_pos = {k: i for i, k in enumerate(key_names)}
    key_of_entry = np.array([key_pos[feature_key(kb, e)] for e in entry_ids])
    true_keys = key_of_entry[labels]
    best = None
    for a in (10.0, 20.0, 30.0, 40.0, 60.0):
        for b in (0.0, 2.0, 5.0, 10.0, 20.0):
            probs = _softmax(a * oof_sim + b * oof_ridge)
            nll = -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-9, None)).mean()
            if best is None or nll < best[0]:
                best = (nll, a, b, probs)
    nll, a, b, probs = best
    key_probs = _key_probabilities(probs, key_of_entry, len(key_names))
    order = np.argsort(-key_probs, axis=1)
    top = key_probs[np.arange(len(labels)), order[:, 0]]
    second = key_probs[np.arange(len(labels)), order[:, 1]] if key_probs.shape[1] > 1 else np.zeros_like(top)
    correct = (order[:, 0] == true_keys).astype(int)
    features = np.column_stack([top, top - second])
    calibrator = None
    if 0 < correct.sum() < len(correct):
        calibrator = LogisticRegression(C=10.0).fit(features, correct)
    oof = {
        "examples": int(len(labels)),
        "entry_accuracy@1": float((probs.argmax(axis=1) == labels).mean()),
        "department_kind_accuracy@1": float(correct.mean()),
        "nll": float(nll), "a": a, "b": b,
    }
    progress(f"held-out KB examples: entry@1 {oof['entry_accuracy@1']:.3f}, unit-kind@1 {oof['department_kind_accuracy@1']:.3f}")

    model = MatcherModel(entry_ids, starts, _ridge_fit(x_all, labels, len(entry_ids)), a, b, calibrator, oof)
    stored = []
    for i, (embedder, vectors) in enumerate(zip(encoders.embedders, passage_vectors)):
        extra = {"matcher": model} if i == 0 else {}
        stored.append(save_index(_set_dir(index_root, encoders, embedder), model_id=embedder.model_id,
                                 kb_hash=kb.content_hash, rows=rows, vectors=vectors, extra=extra))
    return stored, model


def _set_dir(index_root, encoders: Encoders, embedder: Embedder):
    """Indexes live per encoder set: the classifier is fitted on all of the set's embeddings together."""
    return index_dir_for(index_dir_for(index_root, encoders.model_id), embedder.model_id)


def prepare_encoders(kb: KnowledgeBase, encoders: Encoders) -> None:
    """A TF-IDF fallback is fitted on the KB's own passages, so the same KB always gives the same vocabulary."""
    for embedder in encoders.embedders:
        if isinstance(embedder, TfidfEmbedder):
            embedder.fit([r.text for r in entry_passages(kb)])
    encoders.model_id = "+".join(e.model_id for e in encoders.embedders)


def load_matcher(kb: KnowledgeBase, encoders: Encoders, index_root) -> KBMatcher:
    stored = [load_index(_set_dir(index_root, encoders, e), model_id=e.model_id, kb_hash=kb.content_hash)
              for e in encoders.embedders]
    return KBMatcher(kb, encoders, stored, stored[0].extra["matcher"])


def build_matcher(kb: KnowledgeBase, encoders: Encoders, index_root, **kwargs) -> KBMatcher:
    stored, model = fit_matcher(kb, encoders, index_root, **kwargs)
    return KBMatcher(kb, encoders, stored, model)
