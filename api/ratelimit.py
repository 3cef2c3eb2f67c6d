"""A small in-process sliding-window rate limit for public endpoints (one process; a cluster needs Redis or the
gateway's limiter)."""
from __future__ import annotations

import threading
import time
from collections import defaultdict, deque


class RateLimiter:
    def __init__(self, limit: int, window_s: float):
        self.limit, self.window_s = limit, window_s
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def check(self, key: str, *, now: float | None = None) -> float | None:
        """None if allowed; otherwise the seconds to wait."""
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits[key]
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= self.limit:
                return round(hits[0] + self.window_s - now, 1)
            hits.append(now)
            if len(self._hits) > 100_000:   # forget idle clients; bounded memory under a scan
                for stale in [k for k, v in self._hits.items() if not v]:
                    del self._hits[stale]
            return None
