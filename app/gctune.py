"""The cyclic garbage collector, set for a server's lifetime.

CPython's collector runs every 700 net allocations of tracked objects and, every hundredth
time or so, walks every tracked object the process holds. A 5,000-reading batch makes tens
of thousands of short-lived objects (decoded items, row tuples), nearly all freed by
reference counting without the collector; yet they start dozens of young collections per
batch, and the full ones walk the whole of FastAPI, SQLAlchemy and our modules, stalling
every thread for milliseconds at a time.

``settle`` runs once per process when the first app starts: a full collection, then
``gc.freeze`` (what exists at start-up — modules, classes, routes — is never walked again;
it lives as long as the process anyway), and a young-generation threshold of
``GEN0_THRESHOLD`` allocations. Garbage in cycles is still collected, only less often; the
older generations keep CPython's ratios. From then on every collection's pause is counted
for ``/metrics`` (``Pauses``).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

GEN0_THRESHOLD = 20_000
# Upper bounds (seconds) of the pause histogram's buckets.
PAUSE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Pauses(Collector):
    """How long the cyclic collector stopped every thread, by generation, for ``/metrics``
    (``v2v_gc_pause_seconds``). Sessions left in reference cycles once made young
    collections of ~18,000 objects every 1.6 s under load, each stalling the server 12-30 ms,
    and nothing showed it.

    The collector calls ``observe`` from inside a collection, in whichever thread allocated:
    it takes no lock (that thread may hold any lock, a metric's own included), it only adds
    to plain counters. Collections never overlap, so there is one writer at a time; a scrape
    reads the counters as they stand.
    """

    def __init__(self) -> None:
        self._started = 0.0
        # Per generation: the count in each bucket (the last one: above every bound), sum.
        self._buckets = [[0] * (len(PAUSE_BUCKETS) + 1) for _ in range(3)]
        self._sums = [0.0, 0.0, 0.0]

    def observe(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        seconds = time.perf_counter() - self._started
        generation = int(info.get("generation", 0))
        index = next((i for i, bound in enumerate(PAUSE_BUCKETS) if seconds <= bound), -1)
        self._buckets[generation][index] += 1
        self._sums[generation] += seconds

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "v2v_gc_pause_seconds",
            "Time the cyclic garbage collector stopped every thread of the process, by generation.",
            labels=["generation"],
        )
        for generation in range(3):
            counts, total = list(self._buckets[generation]), self._sums[generation]
            cumulative, buckets = 0, []
            for bound, count in zip((*PAUSE_BUCKETS, float("inf")), counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
            family.add_metric([str(generation)], buckets, total)
        yield family


PAUSES = Pauses()

_settled = False
_lock = threading.Lock()


def settle() -> bool:
    """Collect, freeze and raise the young threshold, once per process; True the first time."""
    global _settled
    with _lock:
        if _settled:
            return False
        gc.collect()
        gc.freeze()
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(GEN0_THRESHOLD, older, oldest)
        gc.callbacks.append(PAUSES.observe)
        _settled = True
        return True
