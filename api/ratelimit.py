"""A small in-process sliding-window rate limit for public endpoints (one process; a cluster needs Redis or the
gateway's limiter).

Bounded memory (review 2026-12-06, L11): the buckets are kept in order of last use. Each check first drops, from the
least recently used end, the buckets whose every hit has left the window (amortised O(1): it stops at the first
bucket still in use), and beyond `max_keys` buckets the least recently used one is forgotten. No check scans the
whole table (one did, under the lock, beyond 100,000 keys; a key whose deque still held hits was never dropped).
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque

# ~0.6-0.9 KB per key with a full bucket of 30 hits: about 40 MB at most, whatever the number of clients.
MAX_KEYS = 50_000


class RateLimiter:
    def __init__(self, limit: int, window_s: float, *, max_keys: int = MAX_KEYS):
        self.limit, self.window_s, self.max_keys = limit, window_s, max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._hits)

    def _forget_idle(self, now: float) -> None:
        horizon = now - self.window_s
        while self._hits:
            oldest, hits = next(iter(self._hits.items()))
            if hits and hits[-1] > horizon:
                return
            del self._hits[oldest]

    def _bucket(self, key: str, now: float) -> deque[float]:
        self._forget_idle(now)
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
            while len(self._hits) > self.max_keys:   # a flood of new clients: forget the least recent
                self._hits.popitem(last=False)
        else:
            self._hits.move_to_end(key)
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        return hits

    def _wait(self, hits: deque[float], now: float) -> float | None:
        return round(hits[0] + self.window_s - now, 1) if len(hits) >= self.limit else None

    def check(self, key: str, *, now: float | None = None) -> float | None:
        """None if allowed (and counted); otherwise the seconds to wait."""
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._bucket(key, now)
            wait = self._wait(hits, now)
            if wait is None:
                hits.append(now)
            return wait

    def blocked(self, key: str, *, now: float | None = None) -> float | None:
        """Like `check`, but counts nothing: for limits on failures, which `record` counts."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return self._wait(self._bucket(key, now), now)

    def record(self, key: str, *, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._bucket(key, now).append(now)
