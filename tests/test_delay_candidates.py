"""The delay sweep's database filter never leaves out a case its exact rules would act on."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from app.db import Database
from app.jobs import delays as job
from app.services import alerts, delays, routes
from models.alert import Alert
from models.case import Case, CaseStatus, Milestone, Slot
from tests.conftest import NOW

ALL_STATUSES = [s.value for s in CaseStatus]
TARGET_NAMES = [name for name, *_ in routes.TARGETS]


def _world(database: Database, rng: random.Random, n: int) -> None:
    """Cases in every state: prefixes and gaps of the journey, slots, open and closed alerts."""
    with database.transaction() as session:
        models = routes.load_models(session)
        process = routes.process_hours(session)
        cases: list[dict[str, Any]] = []
        milestones: list[dict[str, Any]] = []
        slots: list[dict[str, Any]] = []
        found: list[dict[str, Any]] = []
        for i in range(n):
            cid = f"{i:032d}"
            route = rng.choice(sorted(models))
            product = rng.choice(sorted(process))
            steps = routes.step_times(models[route], process[product])
            status = rng.choice([s.value for s in delays.ACTIVE] * 3 + ALL_STATUSES)
            cycle = rng.choice([1, 1, 1, 2])
            # Collected anywhere from just now to three months ago, or not at all.
            at = NOW - timedelta(hours=rng.uniform(-2, 24 * 90))
            apheresis = rng.choice([None, at - timedelta(hours=rng.uniform(-30, 30))])
            cases.append(
                {
                    "id": cid,
                    "coi": f"CHW1234{26:02d}{i:06d}",
                    "coi_check": "0",
                    "coi_token": "t",
                    "site": "NCC-EAST",
                    "route": route,
                    "product": product,
                    "patient_hash": f"p{i}",
                    "status": status,
                    "cycle": cycle,
                    "apheresis_at": apheresis,
                    "created_at": at,
                    "updated_at": at,
                    "closed_at": None,
                }
            )
            to_start = sum(
                (steps[name] for name in routes.SEQUENCE[:4]), timedelta(0)
            )  # collection to manufacturing start, as expected
            collected_at = at
            depth = rng.randrange(len(routes.SEQUENCE) + 1)
            for k, name in enumerate(routes.SEQUENCE[:depth]):
                # Near the expected step (so targets are met, missed and close calls).
                at += steps[name] * rng.uniform(0.0, 2.5)
                if rng.random() < 0.12:  # a gap in the record
                    continue
                for _ in range(2 if rng.random() < 0.05 else 1):  # rarely recorded twice
                    milestones.append(
                        {
                            "case_id": cid,
                            "type": name,
                            "cycle": cycle if rng.random() > 0.05 else cycle + 1,
                            "occurred_at": at + timedelta(minutes=rng.uniform(0, 30) * k),
                            "recorded_at": NOW,
                            "site": None,
                            "actor": "test",
                        }
                    )
            for _ in range(rng.choice([0, 1, 1, 1, 2])):
                # Slots around the expected start, some late enough to hold the case up.
                start = collected_at + to_start * rng.uniform(0.3, 3.0)
                slots.append(
                    {
                        "case_id": cid,
                        "site": models[route].manufacturing_site,
                        "start_at": start,
                        "end_at": start + timedelta(days=7),
                        "status": rng.choice(["reserved", "reserved", "released"]),
                        "created_at": NOW,
                    }
                )
            keys = [delays.slot_key(cid)]
            keys += [delays.at_risk_key(cid, name) for name in TARGET_NAMES]
            keys += [delays.breached_key(cid, name) for name in TARGET_NAMES]
            for key in rng.sample(keys, rng.choice([0, 0, 1, 2, 4])):
                kind = {"slot": "slot_conflict"}.get(key.split(":")[0], key.split(":")[0])
                found.append(
                    {
                        "kind": kind,
                        "severity": "major",
                        "status": rng.choice(["open", "acknowledged", "resolved"]),
                        "case_id": cid,
                        "dedupe_key": key,
                        "message": "m",
                        "created_at": NOW,
                        "updated_at": NOW,
                    }
                )
        conn = session.connection()
        for table, rows in ((Case, cases), (Milestone, milestones), (Slot, slots), (Alert, found)):
            if rows:
                conn.execute(insert(table.__table__), rows)  # type: ignore[attr-defined]


def _acting(database: Database, monkeypatch: pytest.MonkeyPatch, now: datetime) -> set[str]:
    """Cases on which the exact rules, applied to every active case, would raise or resolve."""
    acted: set[str] = set()

    def raised(_session: Any, **kwargs: Any) -> None:
        acted.add(kwargs["case_id"])

    def resolved(_session: Any, *, dedupe_key: str, now: datetime) -> None:
        acted.add(dedupe_key.split(":")[1])

    with monkeypatch.context() as patch:
        patch.setattr(alerts, "raise_alert", raised)
        patch.setattr(job, "resolve", resolved)
        with database.session() as session:
            ids = list(session.exec(select(Case.id)).scalars())  # type: ignore[call-overload]
            models = routes.load_models(session)
            process = routes.process_hours(session)
            keys = job._open_delay_keys(session)
            for start in range(0, len(ids), job.CHUNK):
                job._sweep_cases(
                    session, ids[start : start + job.CHUNK], models, process, keys, now
                )
    return acted


@pytest.mark.parametrize("seed", [1, 2])
def test_no_case_a_rule_acts_on_is_left_out(
    database: Database, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    _world(database, rng, 600)
    for hours in (0.0, 7.5, 49.0):
        now = NOW + timedelta(hours=hours)
        acting = _acting(database, monkeypatch, now)
        with database.session() as session:
            found = delays.candidates(
                session,
                models=routes.load_models(session),
                process=routes.process_hours(session),
                now=now,
            )
        assert acting, "the generated states should give the rules something to do"
        assert acting <= found, sorted(acting - found)[:5]
        # The filter is a bound, not everything: most cases that need nothing stay out.
        assert len(found - acting) < len(acting) / 4 + 5


def test_the_sweep_acts_once_then_has_nothing_left_to_do(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _world(database, random.Random(3), 300)
    assert job.delay_sweep(database, now=NOW) > 0
    assert job.delay_sweep(database, now=NOW) == 0
    assert _acting(database, monkeypatch, NOW) == set()
