"""A classifier trained on a city's past orders, in the history's own label space.

A stacked ensemble, because no single view of a citizen's letter wins on real text (BENCHMARKS.md, "Learning from
history"):

* lexical: character 1–3-gram + word TF-IDF → LinearSVC (what the usual TF-IDF + SVM baseline sees);
* semantic: logistic regression on the router's sentence embeddings (paraphrases, long stories);
* words: Complement Naive Bayes on the word TF-IDF (strong on rare departments with few orders);
* the knowledge base: the router's probability for each kind of unit, so the list's boundaries still count where
  the history is thin.

A multinomial logistic regression combines the four from out-of-fold predictions, and a Platt scaling fitted on
the combiner's own out-of-fold answers turns its top probability into the confidence the dispatch policy reads —
measured on orders the model did not see, so ``auto`` at 0.95 means 95 in 100 right on the city's history.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.naive_bayes import ComplementNB
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from nlp.normalize import InputError, check_text, clean_for_matching
from nlp.segment import Segmenter
from routing.history import InputFileError, LabelledRecord

MODEL_FILE = "history_model.joblib"
MANIFEST_FILE = "manifest.json"
FORMAT = 2
MIN_PER_CLASS = 2
# Size bounds: a city with 300 handling units and 10,000 orders stays well under the 300 MB the issue allows
# (coefficients are stored as float32).
CHAR_FEATURES = 150_000
WORD_FEATURES = 60_000
SVM_C = 1.0                 # 5-fold on the real 7-class development half: C=1 ≥ C=0.5
EMBEDDING_LR_C = 1.0        # C=10 converged 9× slower for no gain
NB_ALPHA = 0.3
META_C = 0.03               # 5-fold on the real routing half: 0.03 → 0.584, 0.1 → 0.579, 0.3 → 0.563
KB_FLOOR = 1e-4             # log of the router's kind probabilities; a kind it rules out is not −∞
OOF_FOLDS = 5
OOF_FOLDS_LARGE = 3         # above LARGE_HISTORY orders three folds are as good and train in half the time
LARGE_HISTORY = 5_000

_segmenter: Segmenter | None = None


def _words(text: str) -> list[str]:
    global _segmenter
    if _segmenter is None:
        _segmenter = Segmenter()
    return _segmenter.cut(text)


def _identity(tokens):
    return tokens


class Featurizer:
    """Text → (char + word TF-IDF, word TF-IDF alone): what the SVM and the Naive Bayes read."""

    def __init__(self):
        self.chars = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=2,
                                     max_features=CHAR_FEATURES, dtype=np.float32)
        self.words = TfidfVectorizer(analyzer=_identity, sublinear_tf=True, min_df=1, max_features=WORD_FEATURES,
                                     dtype=np.float32)

    def fit_transform(self, texts: list[str]) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
        try:
            chars = self.chars.fit_transform(texts)
        except ValueError:  # a tiny history where no n-gram occurs twice
            chars = self.chars.set_params(min_df=1).fit_transform(texts)
        return self._blocks(chars, self.words.fit_transform([_words(t) for t in texts]))

    def transform(self, texts: list[str]) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
        return self._blocks(self.chars.transform(texts), self.words.transform([_words(t) for t in texts]))

    @staticmethod
    def _blocks(chars, words) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
        return sparse.hstack([chars, words]).tocsr(), words


@dataclass
class Platt:
    """P(right) = σ(a·logit(top probability) + b·margin + c), fitted on out-of-fold answers."""
    a: float = 1.0
    b: float = 0.0
    c: float = 0.0

    @staticmethod
    def features(probs: np.ndarray) -> np.ndarray:
        top2 = -np.sort(-probs, axis=1)[:, :2]
        p1 = np.clip(top2[:, 0], 1e-6, 1 - 1e-6)
        return np.column_stack([np.log(p1 / (1 - p1)), top2[:, 0] - top2[:, 1]])

    @classmethod
    def fit(cls, probs: np.ndarray, correct: np.ndarray) -> Platt:
        if correct.all() or not correct.any():
            return cls()
        lr = LogisticRegression(C=10.0).fit(cls.features(probs), correct.astype(int))
        return cls(float(lr.coef_[0, 0]), float(lr.coef_[0, 1]), float(lr.intercept_[0]))

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        f = self.features(probs)
        return 1.0 / (1.0 + np.exp(-(self.a * f[:, 0] + self.b * f[:, 1] + self.c)))


@dataclass
class Head:
    """One label space (category or department): base learners, combiner and calibration."""
    name: str
    labels: list[str]
    svm: LinearSVC
    semantic: LogisticRegression | None
    nb: ComplementNB
    meta: Pipeline
    platt: Platt
    metrics: dict = field(default_factory=dict)


def combiner() -> Pipeline:
    """The base learners' scores live on different scales (SVM margins, log-probabilities): standardise them,
    then a strongly regularised multinomial regression (unscaled, it did not converge and lost 0.04)."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=META_C, max_iter=1000))


def _align(model, values: np.ndarray, n_classes: int, fill: float) -> np.ndarray:
    """Scores of a model fitted on a subset of the classes, laid out over all of them."""
    if values.ndim == 1:  # binary decision function
        values = np.column_stack([-values, values])
    out = np.full((values.shape[0], n_classes), fill, dtype=np.float64)
    out[:, model.classes_] = values
    return out


def _svm_scores(svm: LinearSVC, x, n: int) -> np.ndarray:
    return _align(svm, svm.decision_function(x), n, -1.0)


def _nb_scores(nb: ComplementNB, x, n: int) -> np.ndarray:
    # ComplementNB's log-probabilities are nearly flat: centre them per row so the combiner sees their shape.
    scores = _align(nb, nb.predict_log_proba(x), n, np.nan)
    scores = scores - np.nanmax(scores, axis=1, keepdims=True)
    return np.nan_to_num(scores, nan=-10.0)


def _semantic_scores(lr: LogisticRegression | None, dense: np.ndarray | None, n: int, rows: int) -> np.ndarray:
    if lr is None or dense is None:
        return np.zeros((rows, 0))
    return np.log(_align(lr, lr.predict_proba(dense), n, 0.0) + 1e-4)


def _kb_block(kb_kinds: np.ndarray | None, rows: int, width: int) -> np.ndarray:
    if width == 0:
        return np.zeros((rows, 0))
    if kb_kinds is None:  # a caller without the router: every kind alike
        kb_kinds = np.full((rows, width), 1.0 / width)
    return np.log(np.asarray(kb_kinds, dtype=np.float64) + KB_FLOOR)


def _fit_bases(x_lex, x_words, dense, y):
    svm = LinearSVC(C=SVM_C, class_weight="balanced").fit(x_lex, y)
    svm.coef_ = svm.coef_.astype(np.float32)
    nb = ComplementNB(alpha=NB_ALPHA).fit(x_words, y)
    nb.feature_log_prob_ = nb.feature_log_prob_.astype(np.float32)
    semantic = None
    if dense is not None:
        semantic = LogisticRegression(C=EMBEDDING_LR_C, max_iter=2000).fit(dense, y)
    return svm, semantic, nb


def _base_block(bases, x_lex, x_words, dense, n_classes, kb) -> np.ndarray:
    svm, semantic, nb = bases
    rows = x_lex.shape[0]
    return np.hstack([_svm_scores(svm, x_lex, n_classes), _semantic_scores(semantic, dense, n_classes, rows),
                      _nb_scores(nb, x_words, n_classes), kb])


def _folds(y: np.ndarray, k: int):
    smallest = min(Counter(y.tolist()).values())
    splitter = StratifiedKFold(k, shuffle=True, random_state=0) if smallest >= k else KFold(k, shuffle=True, random_state=0)
    return list(splitter.split(np.zeros(len(y)), y))


def fit_head(name: str, labels: list[str], y: np.ndarray, x_lex, x_words, dense: np.ndarray | None,
             kb: np.ndarray, *, progress: Callable[[str], None] = lambda m: None) -> Head:
    """Base learners out of fold → combiner → its own out-of-fold answers → calibration."""
    n = len(labels)
    k = OOF_FOLDS if len(y) <= LARGE_HISTORY else OOF_FOLDS_LARGE
    folds = _folds(y, k)
    oof = None
    for number, (train, test) in enumerate(folds, start=1):
        progress(f"{name}: base learners, fold {number}/{k}")
        bases = _fit_bases(x_lex[train], x_words[train], None if dense is None else dense[train], y[train])
        block = _base_block(bases, x_lex[test], x_words[test], None if dense is None else dense[test], n, kb[test])
        if oof is None:
            oof = np.zeros((len(y), block.shape[1]))
        oof[test] = block
    progress(f"{name}: combiner and calibration")
    meta_oof = np.zeros((len(y), n))
    for train, test in folds:
        meta = combiner().fit(oof[train], y[train])
        meta_oof[test] = _align(meta, meta.predict_proba(oof[test]), n, 0.0)
    correct = meta_oof.argmax(axis=1) == y
    platt = Platt.fit(meta_oof, correct)
    meta = combiner().fit(oof, y)
    progress(f"{name}: final base learners on all orders")
    svm, semantic, nb = _fit_bases(x_lex, x_words, dense, y)
    confidence = platt(meta_oof)
    metrics = {"oof_accuracy": round(float(correct.mean()), 4), "folds": k, **auto_figures(confidence, correct)}
    return Head(name, labels, svm, semantic, nb, meta, platt, metrics)


def auto_figures(confidence: np.ndarray, correct: np.ndarray, threshold: float = 0.95) -> dict:
    sure = confidence >= threshold
    bins = np.minimum((confidence * 10).astype(int), 9)
    ece = sum(abs(correct[bins == b].mean() - confidence[bins == b].mean()) * (bins == b).sum()
              for b in range(10) if (bins == b).any()) / max(1, len(correct))
    return {"auto_coverage_at_0.95": round(float(sure.mean()), 4),
            "auto_accuracy_at_0.95": round(float(correct[sure].mean()), 4) if sure.any() else None,
            "ece": round(float(ece), 4)}


class HistoryModel:
    def __init__(self, featurizer: Featurizer, heads: dict[str, Head], encoder_id: str, manifest: dict,
                 kb_kinds: list | None = None):
        self.featurizer = featurizer
        self.heads = heads
        self.encoder_id = encoder_id
        self.manifest = manifest
        self.kb_kinds = [tuple(k) for k in kb_kinds] if kb_kinds else []

    @property
    def model_id(self) -> str:
        return f"history:{self.manifest.get('data_sha256', '')[:12] or 'unsaved'}:{self.manifest.get('trained_at', '')}"

    def predict(self, texts: list[str], vectors: list[np.ndarray] | None, top: int = 5,
                kb_kinds: np.ndarray | None = None) -> list[dict]:
        """Per text and head: [(label, calibrated probability)], best first. `kb_kinds` are the router's
        probabilities over `self.kb_kinds` (rows align with texts)."""
        x_lex, x_words = self.featurizer.transform(texts)
        dense = np.hstack(vectors) if vectors else None
        kb = _kb_block(kb_kinds, len(texts), len(self.kb_kinds))
        out: list[dict] = [{} for _ in texts]
        for name, head in self.heads.items():
            n = len(head.labels)
            block = _base_block((head.svm, head.semantic, head.nb), x_lex, x_words,
                                dense if head.semantic is not None else None, n, kb)
            probs = _align(head.meta, head.meta.predict_proba(block), n, 0.0)
            # The top label carries the calibrated confidence; the others keep their share of what is left.
            sure = head.platt(probs)
            for i in range(len(texts)):
                order = np.argsort(-probs[i])[:top]
                rest = max(1e-9, 1.0 - probs[i, order[0]])
                ranked = [(head.labels[order[0]], float(sure[i]))]
                ranked += [(head.labels[j], float(probs[i, j] / rest * (1.0 - sure[i]))) for j in order[1:]]
                out[i][name] = ranked
        return out

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        joblib.dump({"format": FORMAT, "featurizer": self.featurizer, "heads": self.heads,
                     "encoder_id": self.encoder_id, "kb_kinds": self.kb_kinds}, directory / MODEL_FILE, compress=3)
        manifest = {**self.manifest, "size_bytes": (directory / MODEL_FILE).stat().st_size}
        self.manifest = manifest
        (directory / MANIFEST_FILE).write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, *, encoder_id: str, kb_hash: str | None = None,
             kind_keys: list | None = None) -> HistoryModel:
        """Refused, with what to do, when it was trained for other embeddings or another knowledge base."""
        path = directory / MODEL_FILE
        if not path.exists():
            raise FileNotFoundError(f"{directory}: no trained model here (expected {MODEL_FILE}); run `hotline train`")
        manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT:
            raise RuntimeError(f"{directory}: a model of format {manifest.get('format', 1)}, this version reads "
                               f"format {FORMAT}; retrain with `hotline train`")
        if manifest.get("encoder_id") != encoder_id:
            raise RuntimeError(f"{directory}: trained with embeddings {manifest.get('encoder_id')!r}, the router uses "
                               f"{encoder_id!r}; retrain with `hotline train` or set HOTLINE_EMBEDDER to match")
        if kb_hash is not None and manifest.get("kb_hash") and manifest["kb_hash"] != kb_hash:
            raise RuntimeError(f"{directory}: trained with knowledge base {manifest['kb_hash'][:12]}, the current one "
                               f"is {kb_hash[:12]}; retrain with `hotline train` after changing the list")
        blob = joblib.load(path)  # written by `hotline train` only
        model = cls(blob["featurizer"], blob["heads"], blob["encoder_id"], manifest, blob.get("kb_kinds"))
        if kind_keys is not None and model.kb_kinds and model.kb_kinds != [tuple(k) for k in kind_keys]:
            raise RuntimeError(f"{directory}: trained with another set of unit kinds; retrain with `hotline train`")
        return model


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
              encoder_id: str, *, kb_kinds: np.ndarray | None = None, kind_keys: list | None = None,
              source_hash: str = "", extra_manifest: dict | None = None,
              progress: Callable[[str], None] = lambda m: None) -> HistoryModel:
    started = time.perf_counter()
    progress("features")
    featurizer = Featurizer()
    x_lex, x_words = featurizer.fit_transform(texts)
    dense = np.hstack(vectors) if vectors else None
    kind_keys = list(kind_keys or [])
    kb = _kb_block(kb_kinds, len(texts), len(kind_keys)) if kind_keys else np.zeros((len(texts), 0))
    heads, label_counts, metrics = {}, {}, {}
    for name, labels in labels_by_head.items():
        keep = [i for i, label in enumerate(labels) if label]
        counts = Counter(labels[i] for i in keep)
        # Labels seen once cannot be learnt or calibrated; they stay reachable through the knowledge base.
        keep = [i for i in keep if counts[labels[i]] >= MIN_PER_CLASS]
        names = sorted({labels[i] for i in keep})
        if len(names) < 2:
            continue
        index = {n: k for k, n in enumerate(names)}
        y = np.array([index[labels[i]] for i in keep])
        rows = np.array(keep)
        head = fit_head(name, names, y, x_lex[rows], x_words[rows], None if dense is None else dense[rows], kb[rows],
                        progress=progress)
        heads[name] = head
        label_counts[name] = len(names)
        metrics[name] = head.metrics
    if not heads:
        raise InputFileError("the history has fewer than two labels with at least two orders each: nothing to learn")
    manifest = {
        "format": FORMAT,
        "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rows": len(texts), "data_sha256": source_hash, "encoder_id": encoder_id,
        "heads": label_counts, "label_counts": {name: dict(Counter(label for label in labels if label).most_common())
                                                for name, labels in labels_by_head.items() if name in heads},
        "metrics_out_of_fold": metrics, "train_seconds": round(time.perf_counter() - started, 1),
        **(extra_manifest or {}),
    }
    return HistoryModel(featurizer, heads, encoder_id, manifest, kind_keys)


def train_history_model(records: list[LabelledRecord], encoders=None, *, router=None, source: Path | None = None,
                        source_hash: str | None = None,
                        progress: Callable[[str], None] = lambda m: None) -> tuple[HistoryModel, list[str]]:
    """Train on labelled orders. With `router`, its encoders embed the texts and its per-kind probabilities join the
    ensemble (the model is then tied to that knowledge base)."""
    usable, skipped = usable_records(records)
    if len(usable) < 10:
        raise InputFileError(f"only {len(usable)} usable orders in the history (need at least 10)")
    texts = [clean_for_matching(r.text) for r in usable]
    kb_kinds = kind_keys = None
    kb_hash = None
    if router is not None:
        encoders = router.matcher.encoders
        progress(f"embedding {len(texts)} orders")
        vectors, kb_kinds = router.history_features(texts)
        kind_keys = router.kind_keys
        kb_hash = router.kb.content_hash
    else:
        progress(f"embedding {len(texts)} orders")
        vectors = encoders.queries(texts) if encoders else None
    departments = [r.department for r in usable]
    if router is not None:
        # Units below the city are learnt as their kind (the complaint's place picks the unit): one matter is not
        # split over every district's unit of that kind.
        departments = [router.history_label(d) if d else d for d in departments]
    labels = {"category": [r.category for r in usable], "department": departments}
    labels = {k: v for k, v in labels.items() if any(v)}
    if source_hash is None:
        source_hash = hashlib.sha256(source.read_bytes()).hexdigest() if source else ""
    model = fit_heads(texts, labels, vectors, encoders.model_id if encoders else "none", kb_kinds=kb_kinds,
                      kind_keys=kind_keys, source_hash=source_hash, progress=progress,
                      extra_manifest={"source": str(source) if source else None, "skipped": len(skipped),
                                      "kb_hash": kb_hash})
    return model, skipped
