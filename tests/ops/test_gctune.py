"""The collector as a running server has it (app/gctune.py): start-up objects frozen, young
collections every GEN0_THRESHOLD allocations, and garbage in cycles still reclaimed."""

from __future__ import annotations

import gc
import weakref

import pytest

from app import gctune
from tests.conftest import Api

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
