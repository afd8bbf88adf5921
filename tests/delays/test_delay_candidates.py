"""The delay sweep with stored next checks changes exactly the alerts a full sweep would."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from app.db import Database
from app.jobs import delays as job
from app.services.alerts import lifecycle as alerts
from app.services.delays import checks as delays
from app.services.delays import routes, sweep
from app.services.delays.targets import TARGETS
from models.alert import Alert
from models.case import Case, CaseStatus, Milestone, Slot
from models.reference import Route
from tests.conftest import NOW

ALL_STATUSES = [s.value for s in CaseStatus]
TARGET_NAMES = [name for name, *_ in TARGETS]
Action = tuple[str, str]  # ("raise" or "resolve", dedupe key)


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


def _actions(database: Database, monkeypatch: pytest.MonkeyPatch, now: datetime) -> set[Action]:
    """What the exact rules, applied to every case, would raise and resolve at ``now``."""
    acted: set[Action] = set()

    def raised(_session: Any, **kwargs: Any) -> Alert:
        acted.add(("raise", kwargs["dedupe_key"]))
        return Alert(id=0)

    def resolved(_session: Any, *, dedupe_key: str, now: datetime, **_: Any) -> None:
        acted.add(("resolve", dedupe_key))

    with monkeypatch.context() as patch:
        patch.setattr(alerts, "raise_alert", raised)
        patch.setattr(sweep, "_resolve", resolved)
        with database.session() as session:
            ids = list(session.exec(select(Case.id)).scalars())  # type: ignore[call-overload]
            models = routes.load_models(session)
            process = routes.process_hours(session)
            keys = {key for _, _, key in delays.open_alerts(session)}
            for start in range(0, len(ids), delays.CHUNK):
                sweep.apply_rules(
                    session,
                    case_ids=ids[start : start + delays.CHUNK],
                    models=models,
                    process=process,
                    open_keys=keys,
                    now=now,
                )
    return acted


def _change(database: Database, rng: random.Random, now: datetime) -> None:
    """What happens between sweeps: milestones (some backdated), slots booked and cancelled,
    alerts resolved by hand, cases moving on, recollected or rescheduled."""
    with database.transaction() as session:
        conn = session.connection()
        cases = conn.execute(select(Case.id, Case.cycle)).all()
        reserved = conn.execute(select(Slot.id).where(Slot.status == "reserved")).scalars().all()
        found = (
            conn.execute(
                select(Alert.id).where(Alert.status != "resolved", Alert.kind.in_(delays.KINDS))
            )
            .scalars()
            .all()
        )
        for case_id, cycle in rng.sample(cases, 25):
            conn.execute(
                insert(Milestone),
                {
                    "case_id": case_id,
                    "type": rng.choice(routes.SEQUENCE),
                    "cycle": cycle,
                    # Up to two weeks back: often before the case's latest milestone.
                    "occurred_at": now - timedelta(hours=rng.uniform(0, 24 * 14)),
                    "recorded_at": now,
                    "site": None,
                    "actor": "test",
                },
            )
        for slot_id in rng.sample(reserved, min(8, len(reserved))):
            conn.execute(update(Slot).where(Slot.id == slot_id).values(status="released"))
        for case_id, _ in rng.sample(cases, 8):
            start = now + timedelta(hours=rng.uniform(-24, 24 * 10))
            conn.execute(
                insert(Slot),
                {
                    "case_id": case_id,
                    "site": "CELLARES-KASHIWA",
                    "start_at": start,
                    "end_at": start + timedelta(days=7),
                    "status": "reserved",
                    "created_at": now,
                },
            )
        for alert_id in rng.sample(found, min(6, len(found))):
            conn.execute(update(Alert).where(Alert.id == alert_id).values(status="resolved"))
        for case_id, cycle in rng.sample(cases, 6):
            values: dict[str, Any] = rng.choice(
                [
                    {"status": rng.choice(ALL_STATUSES)},
                    {"cycle": cycle + 1},
                    {"apheresis_at": now - timedelta(hours=rng.uniform(0, 48))},
                    {"apheresis_at": None},
                ]
            )
            conn.execute(update(Case).where(Case.id == case_id).values(**values))


def _retime(database: Database, rng: random.Random) -> None:
    """A route's expected times change (its parameters): every stored check is stale."""
    with database.transaction() as session:
        route = session.get(Route, rng.choice(sorted(routes.load_models(session))))
        assert route is not None
        route.expected = {**(route.expected or {}), "receipt_to_start_h": rng.uniform(1, 60)}
        session.add(route)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sweeps_at_increasing_times_do_what_the_full_sweep_does(
    database: Database, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    _world(database, rng, 300)
    now, acted = NOW, 0
    times = [rng.uniform(0.05, 30) for _ in range(9)] + [-30.0, -40.0]  # the clock may go back
    for step, hours in enumerate(times):
        now += timedelta(hours=hours)
        if step == 5:
            _retime(database, rng)
        elif step:
            _change(database, rng, now)
        expected = _actions(database, monkeypatch, now)
        raised = job.delay_sweep(database, now=now)
        assert raised == len([key for action, key in expected if action == "raise"])
        assert _actions(database, monkeypatch, now) == set(), f"step {step}"
        acted += len(expected)
    assert acted > 50, "the histories should give the rules plenty to do"


def test_the_sweep_acts_once_then_looks_at_next_to_nothing(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _world(database, random.Random(3), 300)
    assert job.delay_sweep(database, now=NOW) > 0
    assert job.delay_sweep(database, now=NOW) == 0  # revisits the cases whose alerts it changed
    with database.session() as session:
        parameters = delays.digest(routes.load_models(session), routes.process_hours(session))
        assert delays.due(session, parameters=parameters, now=NOW) == set()
        later = NOW + timedelta(hours=6)
        found = delays.due(session, parameters=parameters, now=later)
    acting = {key.split(":")[1] for _, key in _actions(database, monkeypatch, later)}
    assert acting, "six hours on, some rule should act"
    assert acting <= found
    # The stored checks are a bound, not everything: most cases that need nothing stay out.
    assert len(found - acting) < len(acting) / 2 + 5
