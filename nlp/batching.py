"""Micro-batching: concurrent embedding calls gathered into one model call.

The service routes each complaint in its own worker thread; each used to embed its one text alone, so 16 concurrent
requests made 16 small model calls queued behind the embedder's lock (and the CPU), one after another. A batch of 16
texts costs far less than 16 calls of one. :class:`MicroBatcher` is the mechanism, :class:`BatchingEmbedder` puts
it in front of an :class:`~nlp.embedder.Embedder` (same interface), for the service only: the CLI's batch routing
already embeds whole slices in one call and does not wrap its embedders.

How a call goes (leader/follower, no extra thread):

* The caller queues its texts. If no one is collecting a batch, it becomes the *leader*: it waits until the model
  is free and then at most ``wait_s`` from its own arrival (or until ``max_batch`` texts are queued), takes the
  queued calls in arrival order up to ``max_batch`` texts (always at least one call), and runs the model once on
  all their texts. While a batch runs, the next leader collects what arrives meanwhile, so under load batches form
  without anyone waiting longer than the model takes.
* Everyone else sleeps until their rows are ready; each gets exactly the rows of its own texts. An exception raised
  by the model reaches every caller of that batch.
* A lone caller pays at most ``wait_s`` more than before.

Only ``max_in_flight`` batches run at a time through one batcher (1 for embedders: they serialise their calls
anyway, and concurrent torch calls on 2 cores only oversubscribe the CPU). The mechanism is not tied to
embeddings: ``fn`` may be any function of a list that returns one result per item (the service batches whole
routing calls this way, api/routing_pool.py).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from nlp.embedder import TfidfEmbedder

__all__ = ["MicroBatcher", "BatchingEmbedder", "with_batching"]


class _Call:
    __slots__ = ("texts", "taken", "done", "result", "error")

    def __init__(self, texts: list[str]):
        self.texts = texts
        self.taken = False
        self.done = False
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None


class MicroBatcher:
    """``batcher(texts)`` = ``fn(texts)``, but concurrent calls share one ``fn`` call (see the module's docstring).

    ``fn`` takes a list of strings (or any items) and returns one row (result) per item, in order, as an array or a
    list. ``stats`` counts calls, texts and batches (``texts / batches`` is the mean batch size).
    """

    def __init__(self, fn: Callable[[list], Sequence], *, wait_s: float = 0.005, max_batch: int = 32,
                 max_in_flight: int = 1):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if wait_s < 0:
            raise ValueError("wait_s must not be negative")
        self._fn = fn
        self.wait_s = float(wait_s)
        self.max_batch = int(max_batch)
        self._cond = threading.Condition()
        self._queue: list[_Call] = []      # calls not yet taken into a batch, in arrival order
        self.max_in_flight = int(max_in_flight)
        self._collecting = False           # a leader is gathering the next batch
        self._busy = 0                     # batches running in fn
        self.stats = {"calls": 0, "texts": 0, "batches": 0, "largest": 0}

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        call = _Call(list(texts))
        with self._cond:
            self._queue.append(call)
            self.stats["calls"] += 1
            self._cond.notify_all()        # a waiting leader may now have a full batch
            while not call.done:
                if not self._collecting and not call.taken:
                    self._lead()           # runs one batch (maybe without this call, when the queue is long)
                else:
                    self._cond.wait()
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[return-value]

    # -- with self._cond held ---------------------------------------------------------------------------------
    def _queued_texts(self) -> int:
        return sum(len(c.texts) for c in self._queue)

    def _lead(self) -> None:
        self._collecting = True
        deadline = time.monotonic() + self.wait_s
        try:
            while True:
                full = self._queued_texts() >= self.max_batch
                saturated = self._busy >= self.max_in_flight
                if not saturated and (full or time.monotonic() >= deadline):
                    break
                self._cond.wait(None if saturated else max(0.0, deadline - time.monotonic()))
            batch: list[_Call] = []
            size = 0
            while self._queue and (not batch or size + len(self._queue[0].texts) <= self.max_batch):
                call = self._queue.pop(0)
                call.taken = True
                batch.append(call)
                size += len(call.texts)
            self._busy += 1
        finally:
            self._collecting = False
            self._cond.notify_all()        # someone else may collect the next batch meanwhile
        self._cond.release()
        try:
            texts = [t for call in batch for t in call.texts]
            try:
                rows = self._fn(texts)
                if len(rows) != len(texts):
                    raise RuntimeError(f"the embedder returned {len(rows)} rows for {len(texts)} texts")
                error = None
            except BaseException as exc:   # every caller of this batch gets it
                rows, error = None, exc
        finally:
            self._cond.acquire()
        start = 0
        for call in batch:
            if error is None:
                call.result = rows[start:start + len(call.texts)]
            call.error = error
            call.done = True
            start += len(call.texts)
        self.stats["texts"] += len(texts)
        self.stats["batches"] += 1
        self.stats["largest"] = max(self.stats["largest"], len(texts))
        self._busy -= 1
        self._cond.notify_all()


class BatchingEmbedder:
    """An embedder whose ``embed_queries`` calls from concurrent threads are micro-batched (:class:`MicroBatcher`).

    Same interface and ``model_id`` as the embedder it wraps (indexes built with one are searched with the other);
    ``embed_passages`` (index building: large batches already) goes straight through. Other attributes are the
    wrapped embedder's.
    """

    def __init__(self, inner, *, wait_s: float = 0.005, max_batch: int = 32):
        self.inner = inner
        self._queries = MicroBatcher(inner.embed_queries, wait_s=wait_s, max_batch=max_batch)

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def stats(self) -> dict:
        return self._queries.stats

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed_queries takes a sequence of strings, not a single string")
        if not texts:
            return self.inner.embed_queries([])
        return self._queries(texts)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed_passages(texts)

    def describe(self) -> str:
        return self.inner.describe()

    def __getattr__(self, name: str):   # anything else (manifest, max_seq_length, …): the wrapped embedder's
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"BatchingEmbedder({self.inner!r}, wait_s={self._queries.wait_s}, max_batch={self._queries.max_batch})"


def with_batching(embedders: Sequence, *, wait_s: float, max_batch: int) -> list:
    """The embedders with their query calls micro-batched; TF-IDF (no model, and refitted by an index rebuild,
    which looks for the TfidfEmbedder class) and already-wrapped ones are left as they are. ``max_batch`` 1 turns
    batching off (the embedders come back unchanged)."""
    if max_batch <= 1:
        return list(embedders)
    return [e if isinstance(e, (TfidfEmbedder, BatchingEmbedder)) else BatchingEmbedder(e, wait_s=wait_s,
                                                                                       max_batch=max_batch)
            for e in embedders]
