"""Matching a complaint to responsibility-list entries: a linear classifier plus retrieval over examples.

The classifier is a LinearSVC over character n-gram TF-IDF and the sentence embeddings of the knowledge base's
example complaints; the retrieval similarity (best FAISS match among an entry's definition and examples) is added
to its score. On the 长沙 development set this named the right kind of unit for 0.94 of complaints, against 0.83
for retrieval alone, 0.91 for retrieval + a ridge classifier and 0.92 for TF-IDF alone
(benchmarks/matcher_variants.py). Retrieval adds no accuracy on that set; it is kept because the matched example
is what an agent reads to check the answer.

Everything is fitted from the knowledge base alone; the confidence is calibrated either on the city's labelled
calibration set (routing/calibration.py) or, without one, on out-of-fold predictions of the list's own examples.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from knowledge_base.index_store import (
    PassageRow,
    StoredIndex,
    entry_passages,
    index_dir_for,
    load_index,
    save_index,
    update_extra,
)
from knowledge_base.kb import KnowledgeBase
from nlp.embedder import Embedder, TfidfEmbedder

log = logging.getLogger(__name__)
RETRIEVAL_K = 96
RETRIEVAL_WEIGHT = 1.0
SVC_C = 0.5
OOF_FOLDS = 3
TEMPERATURES = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0)


def router_calibration_features(raw: np.ndarray) -> np.ndarray:
    """Platt scaling on one feature, logit(matter probability × place confidence): on the 长沙 sets it
    calibrated as well as richer feature sets (ECE 0.042 vs 0.044–0.065) with fewer ways to overfit."""
    joint = np.clip(raw[:, 0] * raw[:, 2], 1e-4, 1 - 1e-4)
    return np.log(joint / (1 - joint)).reshape(-1, 1)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def text_vectorizer() -> TfidfVectorizer:
    return TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True)


def combine_features(lexical: sparse.spmatrix, vectors: list[np.ndarray]) -> sparse.csr_matrix:
    """TF-IDF block and embedding block side by side, each of unit norm."""
    dense = np.hstack(vectors) / np.sqrt(len(vectors))
    return sparse.hstack([lexical, sparse.csr_matrix(dense)]).tocsr()


@dataclass
class MatcherModel:
    """Everything fitted at build time besides the passage vectors."""

    entry_ids: list[str]
    vectorizer: TfidfVectorizer
    classifier: LinearSVC
    temperature: float                      # softmax(temperature * score) → probabilities over entries
    calibrator: LogisticRegression | None = None
    calibrator_kind: str = "none"           # "router": P(department right | matter × place); "matter": P(kind right)
    calibration: dict = field(default_factory=dict)


class Encoders:
    """One or more embedders used together (e5 + USE: their similarities are averaged)."""

    def __init__(self, embedders: Sequence[Embedder]):
        self.embedders = list(embedders)
        self.model_id = "+".join(e.model_id for e in self.embedders)

    def queries(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [e.embed_queries(list(texts)) for e in self.embedders]

    def passages(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [e.embed_passages(list(texts)) for e in self.embedders]


def unit_kind(kb: KnowledgeBase, entry_id: str) -> tuple[str, str]:
    """Entries owned by the same kind of unit at the same level route to the same department."""
    entry = kb.entries[entry_id]
    return entry.lead, entry.level


class KBMatcher:
    def __init__(self, kb: KnowledgeBase, encoders: Encoders, indexes: list[StoredIndex], model: MatcherModel,
                 index_dirs: list | None = None):
        self.kb = kb
        self.encoders = encoders
        self.indexes = indexes
        self.model = model
        self.index_dirs = index_dirs or []
        self.rows: list[PassageRow] = indexes[0].rows
        self.entry_pos = {eid: i for i, eid in enumerate(model.entry_ids)}
        self._row_entry = np.array([self.entry_pos[r.entry_id] for r in self.rows])
        self._class_columns = np.array([self.entry_pos[model.entry_ids[c]] for c in model.classifier.classes_])

    def retrieval(self, query_vectors: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(similarity per entry averaged over embedders, best passage row per entry) for a batch."""
        n, n_entries = query_vectors[0].shape[0], len(self.model.entry_ids)
        total = np.zeros((n, n_entries), dtype=np.float32)
        best_row = np.full((n, n_entries), -1, dtype=np.int64)
        best_sim = np.full((n, n_entries), -np.inf, dtype=np.float32)
        for vectors, stored in zip(query_vectors, self.indexes):
            scores, rows = stored.index.search(vectors, RETRIEVAL_K)
            for q in range(n):
                # Entries outside the top K get the K-th similarity (an upper bound of what they would score).
                per_entry = np.full(n_entries, scores[q, -1], dtype=np.float32)
                for score, row in zip(scores[q], rows[q]):
                    if row < 0:
                        continue
                    e = self._row_entry[row]
                    if score > per_entry[e] or best_row[q, e] < 0:
                        per_entry[e] = max(per_entry[e], score)
                    if score > best_sim[q, e]:
                        best_sim[q, e], best_row[q, e] = score, row
                total[q] += per_entry
        return total / len(self.indexes), best_row

    def scores(self, texts: Sequence[str], query_vectors: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        similarity, best_row = self.retrieval(query_vectors)
        features = combine_features(self.model.vectorizer.transform(list(texts)), query_vectors)
        decision = self.model.classifier.decision_function(features)
        score = np.full_like(similarity, -10.0)
        score[:, self._class_columns] = decision
        return score + RETRIEVAL_WEIGHT * similarity, similarity, best_row

    def entry_probabilities(self, texts: Sequence[str], query_vectors: list[np.ndarray]
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probabilities over entries, retrieval similarity per entry, best passage row per entry)."""
        score, similarity, best_row = self.scores(texts, query_vectors)
        return softmax(self.model.temperature * score), similarity, best_row

    def calibrated(self, top: float, margin: float, place: float) -> float:
        """Calibrated confidence that the routed department is right."""
        model = self.model
        if model.calibrator is None:
            return top * place
        if model.calibrator_kind == "router":
            return float(model.calibrator.predict_proba(router_calibration_features(np.array([[top, margin, place]])))[0, 1])
        return float(model.calibrator.predict_proba(np.array([[top, margin]]))[0, 1]) * place

    def save_model(self) -> None:
        """Persist a re-calibrated model next to the index it belongs to."""
        if self.index_dirs:
            update_extra(self.index_dirs[0], {"matcher": self.model})


# -- building ----------------------------------------------------------------------------------------------
def _fit_classifier(texts: list[str], vectors: list[np.ndarray], labels: np.ndarray) -> tuple[TfidfVectorizer, LinearSVC]:
    vectorizer = text_vectorizer().fit(texts)
    classifier = LinearSVC(C=SVC_C).fit(combine_features(vectorizer.transform(texts), vectors), labels)
    return vectorizer, classifier


def best_temperature(scores: np.ndarray, gold: np.ndarray) -> float:
    """The softmax temperature with the highest likelihood of the gold entries."""
    def nll(t: float) -> float:
        p = softmax(t * scores)[np.arange(len(gold)), gold]
        return float(-np.log(np.clip(p, 1e-9, None)).mean())
    return min(TEMPERATURES, key=nll)


def kind_index(kb: KnowledgeBase, entry_ids: list[str]) -> tuple[list[tuple[str, str]], np.ndarray]:
    """(the kinds of unit, sorted; the kind position of each entry): entries → departments, once."""
    kinds = sorted({unit_kind(kb, e) for e in entry_ids})
    column = {k: i for i, k in enumerate(kinds)}
    return kinds, np.array([column[unit_kind(kb, e)] for e in entry_ids])


def _kind_features(kb: KnowledgeBase, entry_ids: list[str], probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(top unit-kind probability, margin to the second) per row."""
    kinds, of_entry = kind_index(kb, entry_ids)
    kind_probs = np.zeros((probs.shape[0], len(kinds)))
    np.add.at(kind_probs.T, of_entry, probs.T)
    ordered = np.sort(kind_probs, axis=1)
    top = ordered[:, -1]
    second = ordered[:, -2] if len(kinds) > 1 else np.zeros_like(top)
    return np.column_stack([top, top - second]), kind_probs.argmax(axis=1), of_entry


def fit_matcher(kb: KnowledgeBase, encoders: Encoders, index_root, *, out_of_fold: bool = True,
                progress: Callable[[str], None] = lambda m: None) -> KBMatcher:
    rows = entry_passages(kb)
    texts = [r.text for r in rows]
    entry_ids = list(dict.fromkeys(r.entry_id for r in rows))
    entry_pos = {eid: i for i, eid in enumerate(entry_ids)}
    progress(f"embedding {len(rows)} passages with {encoders.model_id}")
    passage_vectors = encoders.passages(texts)
    # Classifier rows: every example complaint plus each entry's definition, embedded as queries.
    train_rows = np.arange(len(rows))
    progress(f"embedding {len(train_rows)} examples and definitions as queries")
    query_vectors = encoders.queries(texts)
    labels = np.array([entry_pos[r.entry_id] for r in rows])
    progress("fitting the classifier (TF-IDF + embeddings → LinearSVC)")
    vectorizer, classifier = _fit_classifier(texts, query_vectors, labels)
    model = MatcherModel(entry_ids, vectorizer, classifier, temperature=4.0)

    index_dirs = [_set_dir(index_root, encoders, e) for e in encoders.embedders]
    stored = [save_index(d, model_id=e.model_id, kb_hash=kb.content_hash, rows=rows, vectors=v,
                         extra={"matcher": model} if i == 0 else {})
              for i, (d, e, v) in enumerate(zip(index_dirs, encoders.embedders, passage_vectors))]
    matcher = KBMatcher(kb, encoders, stored, model, index_dirs)
    if out_of_fold:
        _calibrate_out_of_fold(matcher, rows, texts, query_vectors, passage_vectors, labels, progress)
        matcher.save_model()
    return matcher


def _calibrate_out_of_fold(matcher: KBMatcher, rows, texts, query_vectors, passage_vectors, labels, progress) -> None:
    """Without a labelled calibration set: calibrate on the list's own examples, each fold held out."""
    kb, model = matcher.kb, matcher.model
    examples = np.array([i for i, r in enumerate(rows) if r.kind == "example"])
    if len(examples) < OOF_FOLDS * 2:
        return
    progress(f"calibrating on {OOF_FOLDS}-fold held-out examples ({len(examples)})")
    starts = np.array([i for i, r in enumerate(rows) if i == 0 or rows[i - 1].entry_id != r.entry_id])
    fold_of = np.full(len(rows), -1)
    fold_of[examples] = np.arange(len(examples)) % OOF_FOLDS
    scores = np.zeros((len(examples), len(model.entry_ids)))
    for fold in range(OOF_FOLDS):
        held = fold_of == fold
        keep = ~held
        vectorizer, classifier = _fit_classifier([t for t, k in zip(texts, keep) if k], [v[keep] for v in query_vectors], labels[keep])
        held_idx = np.where(held)[0]
        decision = np.full((len(held_idx), len(model.entry_ids)), -10.0)
        decision[:, classifier.classes_] = classifier.decision_function(
            combine_features(vectorizer.transform([texts[i] for i in held_idx]), [v[held] for v in query_vectors]))
        sims = sum(q[held] @ p.T for q, p in zip(query_vectors, passage_vectors)) / len(query_vectors)
        sims[:, held] = -1.0  # a held-out example must not find itself
        similarity = np.maximum.reduceat(sims, starts, axis=1)
        scores[np.searchsorted(examples, held_idx)] = decision + RETRIEVAL_WEIGHT * similarity
    gold = labels[examples]
    model.temperature = best_temperature(scores, gold)
    probs = softmax(model.temperature * scores)
    features, predicted_kind, of_entry = _kind_features(kb, model.entry_ids, probs)
    correct = (predicted_kind == of_entry[gold]).astype(int)
    if 0 < correct.sum() < len(correct):
        model.calibrator = LogisticRegression(C=10.0).fit(features, correct)
        model.calibrator_kind = "matter"
    model.calibration = {"source": "knowledge-base examples, out of fold", "rows": int(len(gold)),
                         "entry_accuracy@1": round(float((probs.argmax(1) == gold).mean()), 4),
                         "unit_kind_accuracy@1": round(float(correct.mean()), 4), "temperature": model.temperature}
    progress(f"held-out KB examples: entry@1 {model.calibration['entry_accuracy@1']:.3f}, "
             f"unit-kind@1 {model.calibration['unit_kind_accuracy@1']:.3f}")


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
    dirs = [_set_dir(index_root, encoders, e) for e in encoders.embedders]
    stored = [load_index(d, model_id=e.model_id, kb_hash=kb.content_hash) for d, e in zip(dirs, encoders.embedders)]
    return KBMatcher(kb, encoders, stored, stored[0].extra["matcher"], dirs)


def build_matcher(kb: KnowledgeBase, encoders: Encoders, index_root, **kwargs) -> KBMatcher:
    return fit_matcher(kb, encoders, index_root, **kwargs)
