"""A classifier trained on a city's past orders, in the history's own label space.

Features: character n-gram TF-IDF (what the usual TF-IDF + LinearSVC baseline sees) plus the router's sentence
embeddings, so the model keeps the baseline's lexical precision and adds paraphrase robustness.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
from scipy import sparse
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

from nlp.normalize import InputError, check_text, clean_for_matching
from routing.history import InputFileError, LabelledRecord

MODEL_FILE = "history_model.joblib"
MANIFEST_FILE = "manifest.json"
EMBEDDING_WEIGHT = 1.0   # dense block scale relative to the (L2-normalised) TF-IDF block
MIN_PER_CLASS = 2


def tfidf_vectorizer() -> TfidfVectorizer:
    return TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=1, max_features=300_000)


def linear_classifier(n_rows: int, smallest_class: int = MIN_PER_CLASS):
    svc = LinearSVC(C=0.5)
    # Probabilities for the router's confidence. k-fold calibration needs at least k rows of every class, and a
    # label seen only MIN_PER_CLASS (2) times is kept: use fewer folds then.
    folds = min(3, smallest_class)
    return CalibratedClassifierCV(svc, cv=folds, method="sigmoid") if n_rows >= 30 and folds >= 2 else svc


@dataclass
class Head:
    name: str
    labels: list[str]
    classifier: object


class HistoryModel:
    def __init__(self, vectorizer: TfidfVectorizer, heads: dict[str, Head], encoder_id: str, manifest: dict):
        self.vectorizer = vectorizer
        self.heads = heads
        self.encoder_id = encoder_id
        self.manifest = manifest

    def features(self, texts: list[str], vectors: list[np.ndarray] | None) -> sparse.csr_matrix:
        lexical = self.vectorizer.transform(texts)
        if not vectors:
            return lexical
        dense = np.hstack(vectors) * (EMBEDDING_WEIGHT / np.sqrt(len(vectors)))
        return sparse.hstack([lexical, sparse.csr_matrix(dense)]).tocsr()

    def predict(self, texts: list[str], vectors: list[np.ndarray] | None, top: int = 5) -> list[dict]:
        x = self.features(texts, vectors)
        out: list[dict] = [{} for _ in texts]
        for name, head in self.heads.items():
            if hasattr(head.classifier, "predict_proba"):
                probs = head.classifier.predict_proba(x)
            else:
                scores = head.classifier.decision_function(x)
                scores = scores.reshape(len(texts), -1) if scores.ndim > 1 else np.column_stack([-scores, scores])
                e = np.exp(scores - scores.max(axis=1, keepdims=True))
                probs = e / e.sum(axis=1, keepdims=True)
            classes = list(head.classifier.classes_)
            for i in range(len(texts)):
                order = np.argsort(-probs[i])[:top]
                out[i][name] = [(head.labels[classes[j]], float(probs[i, j])) for j in order]
        return out

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        joblib.dump({"vectorizer": self.vectorizer, "heads": self.heads, "encoder_id": self.encoder_id}, directory / MODEL_FILE)
        (directory / MANIFEST_FILE).write_text(json.dumps(self.manifest, ensure_ascii=False, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, *, encoder_id: str) -> "HistoryModel":
        path = directory / MODEL_FILE
        if not path.exists():
            raise FileNotFoundError(f"{directory}: no trained model here (expected {MODEL_FILE}); run `hotline train`")
        blob = joblib.load(path)  # written by `hotline train` only
        manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
        if blob["encoder_id"] != encoder_id:
            raise RuntimeError(f"{directory}: trained with embeddings {blob['encoder_id']!r}, the router uses "
                               f"{encoder_id!r}; retrain with `hotline train` or set HOTLINE_EMBEDDER to match")
        return cls(blob["vectorizer"], blob["heads"], blob["encoder_id"], manifest)


def usable_records(records: list[LabelledRecord]) -> tuple[list[LabelledRecord], list[str]]:
    """Records with a usable text; problems are reported by line, not fatal."""
    usable, skipped = [], []
    for record in records:
        try:
            check_text(record.text)
        except InputError as exc:
            skipped.append(f"line {record.line}: {exc}")
            continue
        usable.append(record)
    return usable, skipped


def fit_heads(texts: list[str], labels_by_head: dict[str, list[str | None]], vectors: list[np.ndarray] | None,
              encoder_id: str, *, source_hash: str = "", extra_manifest: dict | None = None) -> HistoryModel:
    vectorizer = tfidf_vectorizer().fit(texts)
    model = HistoryModel(vectorizer, {}, encoder_id, {})
    x_all = model.features(texts, vectors)
    heads, label_counts = {}, {}
    for name, labels in labels_by_head.items():
        keep = [i for i, l in enumerate(labels) if l]
        counts = Counter(labels[i] for i in keep)
        # Classes seen once cannot be learnt or calibrated; they stay reachable through the knowledge base.
        keep = [i for i in keep if counts[labels[i]] >= MIN_PER_CLASS]
        names = sorted({labels[i] for i in keep})
        if len(names) < 2:
            continue
        index = {n: k for k, n in enumerate(names)}
        y = np.array([index[labels[i]] for i in keep])
        classifier = linear_classifier(len(keep), min(counts[n] for n in names)).fit(x_all[keep], y)
        heads[name] = Head(name, names, classifier)
        label_counts[name] = len(names)
    if not heads:
        raise InputFileError("the history has fewer than two labels with at least two orders each: nothing to learn")
    model.heads = heads
    model.manifest = {
        "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "rows": len(texts), "data_sha256": source_hash, "encoder_id": encoder_id,
        "heads": label_counts, **(extra_manifest or {}),
    }
    return model


def train_history_model(records: list[LabelledRecord], encoders, *, source: Path | None = None) -> tuple[HistoryModel, list[str]]:
    usable, skipped = usable_records(records)
    if len(usable) < 10:
        raise InputFileError(f"only {len(usable)} usable orders in the history (need at least 10)")
    texts = [clean_for_matching(r.text) for r in usable]
    vectors = encoders.queries(texts) if encoders else None
    labels = {"category": [r.category for r in usable], "department": [r.department for r in usable]}
    labels = {k: v for k, v in labels.items() if any(v)}
    source_hash = hashlib.sha256(source.read_bytes()).hexdigest() if source else ""
    model = fit_heads(texts, labels, vectors, encoders.model_id if encoders else "none", source_hash=source_hash,
                      extra_manifest={"source": str(source) if source else None, "skipped": len(skipped)})
    return model, skipped
