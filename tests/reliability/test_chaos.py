"""Crash safety under SIGKILL on both databases: a short run of ``make chaos``.

Couriers post batches and single readings and walkers take cases through their journeys
(an Idempotency-Key on every event) while the uvicorn server is SIGKILLed and restarted;
clients retry whatever was not acknowledged. Afterwards every acknowledged reading, event
and custody scan is stored exactly once, the audit chain verifies and every case's status
is what replaying its milestones gives (loadtest/invariants.py). The checker itself is
shown to catch a duplicated event.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import col, select

from app.db import Database
from app.services.journey.events import S
from loadtest import chaos, invariants
from models.case import Milestone
from tests.conftest import TEMPLATE_KEYS

pytestmark = pytest.mark.slow


def test_acknowledged_writes_survive_sigkills_exactly_once(db_url: str, tmp_path: Path) -> None:
    backend = "postgres" if db_url.startswith("postgres") else "sqlite"
    report = chaos.run(
        db_url,
        TEMPLATE_KEYS[backend],
        logdir=tmp_path,
        backend=backend,
        kills=3,
        uptime=1.5,
        tail=1.5,
        uploaders=2,
        walkers=2,
    )
    print("\n".join(report.lines()))
    verdict, counts = report.verdict, report.ledger.counts
    assert verdict.acknowledged["readings"] > 0 and verdict.acknowledged["events"] > 0
    assert counts["requests retried"] > 0  # the kills did interrupt the clients
    assert sum(verdict.lost.values()) == 0, dict(verdict.lost)
    assert sum(verdict.duplicated.values()) == 0, dict(verdict.duplicated)
    assert verdict.problems == []
    assert report.ledger.errors == []
    assert report.log_trouble == []

    # The checker is not vacuous: a copied milestone is a duplicate and an unexplained state.
    db = Database(db_url, pool_size=1)
    try:
        with db.transaction() as session:
            first = session.exec(
                select(Milestone)
                .where(col(Milestone.case_id).in_(sorted(report.ledger.cases)))
                .order_by(col(Milestone.id))
            ).first()
            assert first is not None
            copy = Milestone.model_validate(first.model_dump(exclude={"id"}))
            session.add(copy)
        again = invariants.check(db, report.ledger)
    finally:
        db.dispose()
    assert again.duplicated["events"] == 1
    assert any(first.case_id in p and "give" in p for p in again.problems)


def test_replay_follows_the_state_machine_and_pickups() -> None:
    happy = ["collected", "shipped_to_manufacturing", "received_at_manufacturing"]
    assert invariants.replay(S.apheresis_scheduled, happy) == S.at_manufacturing
    assert invariants.replay(S.registered, happy) == "collected cannot follow registered"
    again = ["collected", "shipped_to_manufacturing", "received_at_manufacturing"]
    failed = [*happy, "manufacturing_started", "manufacturing_failed", "recollection", *again]
    assert invariants.replay(S.apheresis_scheduled, failed) == S.at_manufacturing
