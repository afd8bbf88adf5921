"""Per-key rate limits (token buckets, per process) answering 429 with Retry-After.

Buckets are kept per process: behind N instances the effective limit is N times the
setting, which is acceptable for abuse protection (not billing).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from app.errors import TooManyRequests

MAX_KEYS = 10_000  # bounded memory: least recently used buckets are forgotten


class RateLimiter:
    def __init__(
        self,
        *,
        per_minute: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = per_minute / 60.0
        self.capacity = burst if burst is not None else max(1.0, per_minute / 6)
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: str, cost: float = 1.0) -> None:
        """Take ``cost`` tokens for ``key`` or raise 429 with the seconds to wait."""
        if self.rate <= 0:
            return
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens < cost:
                self._buckets[key] = (tokens, now)
                wait = math.ceil((cost - tokens) / self.rate)
                raise TooManyRequests(
                    f"rate limit exceeded; retry in {wait} s",
                    headers={"Retry-After": str(wait)},
                    extra={"retry_after_s": wait},
                )
            self._buckets[key] = (tokens - cost, now)
            while len(self._buckets) > MAX_KEYS:
                self._buckets.popitem(last=False)
