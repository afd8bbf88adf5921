"""The collector as a running server has it (app/gctune.py): start-up objects frozen, young
collections every GEN0_THRESHOLD allocations, and garbage in cycles still reclaimed."""

from __future__ import annotations

import gc
import re
import weakref

import pytest

from app import gctune
from app.telemetry import REGISTRY
from tests.conftest import METRICS_TOKEN, Api

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # process-wide


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_a_started_app_freezes_start_up_and_raises_the_young_threshold(api: Api) -> None:
    assert api.client.get("/healthz").status_code == 200  # the app has started
    assert gc.isenabled()
    assert gc.get_threshold()[0] == gctune.GEN0_THRESHOLD
    assert gc.get_freeze_count() > 0
    assert gctune.settle() is False  # once per process: a second app changes nothing


def test_cycles_made_after_start_are_still_collected_without_being_asked(api: Api) -> None:
    assert api.client.get("/healthz").status_code == 200
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # a cycle: reference counting alone never frees it
    gone = weakref.ref(a)
    del a, b
    kept = []
    for _ in range(5):  # enough tracked allocations for young collections to run by themselves
        kept.append([[] for _ in range(gctune.GEN0_THRESHOLD)])
        if gone() is None:
            break
    assert gone() is None


def _pauses(generation: int) -> tuple[float, float]:
    """(collections, seconds) of one generation, as /metrics shows them."""
    labels = {"generation": str(generation)}
    count = REGISTRY.get_sample_value("v2v_gc_pause_seconds_count", labels)
    total = REGISTRY.get_sample_value("v2v_gc_pause_seconds_sum", labels)
    assert count is not None and total is not None
    return count, total


def test_every_collection_pause_is_on_the_metrics_page(api: Api) -> None:
    """An operator sees the collector stop the process: each collection, its generation and
    how long it took, in buckets (a cycle-heavy server once stalled 12-30 ms every 1.6 s)."""
    assert api.client.get("/healthz").status_code == 200  # the app has started
    young, full = _pauses(0), _pauses(2)
    _ = [[] for _ in range(100_000)]  # something for a full collection to walk
    gc.collect(0)
    gc.collect()
    assert _pauses(0)[0] >= young[0] + 1  # (the lists above may have started more)
    count, seconds = _pauses(2)
    assert count >= full[0] + 1
    assert seconds > full[1]  # it took time, and it is added up
    page = api.client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    shown = re.search(r'^v2v_gc_pause_seconds_count\{generation="2"\} (\S+)$', page, re.M)
    assert shown is not None and float(shown.group(1)) >= count
    assert 'v2v_gc_pause_seconds_bucket{generation="2",le="+Inf"}' in page
