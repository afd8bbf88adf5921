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
older generations keep CPython's ratios.
"""

from __future__ import annotations

import gc
import threading

GEN0_THRESHOLD = 20_000

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
        _settled = True
        return True
