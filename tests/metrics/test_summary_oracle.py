"""Turnaround read from the per-case table equals the from-scratch summary (the definitions
in app/services/metrics/turnaround.py over every case's records), over a demo cohort, for
every grouping and filter, on both databases."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from app.config import Settings
from app.db import Database
from app.services.metrics import turnaround as metrics
from seeds.demo import generate
from tests.conftest import NOW, Api

GROUPINGS = ("route", "route_kind", "manufacturing_site", "site", "product", "month")


@pytest.fixture
def demo(database: Database, settings: Settings) -> None:
    report = generate(database, cases=160, seed=11, now=NOW, settings=settings, readings=False)
    assert report.rows["milestone"] > 160


def close(got: Any, want: Any) -> None:
    """Equal, floats to the 4 decimals both round to (sums may differ in the last bit)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want)
        for k in want:
            close(got[k], want[k])
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=2e-4)
    else:
        assert got == want


def oracle(database: Database, group_by: str, **filters: Any) -> list[dict[str, Any]]:
    with database.session() as session:
        rows = metrics.fetch_rows(session, **filters)
        return metrics.turnaround(rows, metrics.targets(session), group_by)


@pytest.mark.parametrize("group_by", GROUPINGS)
def test_every_grouping_matches_the_from_scratch_summary(
    api: Api, database: Database, demo: None, group_by: str
) -> None:
    body = api.get("viewer", f"/api/v1/metrics/turnaround?group_by={group_by}").json()
    want = oracle(database, group_by)
    assert len(want) > 1 and sum(g["n"] for g in want) > 100
    assert [g["key"] for g in body["groups"]] == [g["key"] for g in want]
    for got, expected in zip(body["groups"], want, strict=True):
        close(got, expected)


@pytest.mark.parametrize(
    ("query", "filters"),
    [
        ("product=CART-BCMA", {"product": "CART-BCMA"}),
        ("route=JP-US-EWR&site=NCC-EAST", {"routes": ["JP-US-EWR"], "site": "NCC-EAST"}),
        (
            "from=2026-06-01&to=2026-09-15T12:00:00%2B09:00",
            {
                "collected_from": datetime.fromisoformat("2026-06-01T00:00:00+00:00"),
                "collected_to": datetime.fromisoformat("2026-09-15T12:00:00+09:00"),
            },
        ),
    ],
)
def test_filters_match_the_from_scratch_summary(
    api: Api, database: Database, demo: None, query: str, filters: dict[str, Any]
) -> None:
    for group_by in ("route", "month"):
        r = api.get("viewer", f"/api/v1/metrics/turnaround?group_by={group_by}&{query}")
        assert r.status_code == 200, r.text
        want = oracle(database, group_by, **filters)
        assert want, "the filter selects some cases"
        assert [g["key"] for g in r.json()["groups"]] == [g["key"] for g in want]
        for got, expected in zip(r.json()["groups"], want, strict=True):
            close(got, expected)
