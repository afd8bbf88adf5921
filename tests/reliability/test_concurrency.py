"""Concurrent writers: no double registration, unique COIs, an unbroken audit chain, no
stall when writers outnumber worker threads, a retryable 503 when the lock is not had."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import select

from app.clock import FrozenClock
from app.db import Database
from app.main import create_app
from models.case import Case
from models.principal import Role
from tests.coldchain.test_readings import in_transit
from tests.conftest import PERSONAS, Api, fresh_db, make_settings
from tests.helpers import Journey, event


def _register(api: Api, patient: str) -> int:
    r = api.post(
        "ncc",
        "/api/v1/cases",
        {
            "site": "NCC-EAST",
            "route": "KASHIWA-LOCAL",
            "product": "CART-CD19",
            "patient_ref": patient,
        },
    )
    return int(r.status_code)


def test_concurrent_registrations_keep_identity_and_audit_intact(api: Api) -> None:
    patients = [f"MRN-C{i}" for i in range(16)] + ["MRN-SAME"] * 8
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda p: _register(api, p), patients))
    assert statuses[:16] == [201] * 16
    assert sorted(statuses[16:]) == [201] + [409] * 7  # exactly one open case for a patient
    cases = api.get("admin", "/api/v1/cases?limit=500").json()["items"]
    assert len(cases) == 17
    assert len({c["coi"] for c in cases}) == 17
    verify = api.get("admin", "/api/v1/audit/verify").json()
    assert verify["ok"] is True and verify["entries"] == 17


def test_concurrent_identical_idempotent_requests_create_once(api: Api) -> None:
    body = {
        "site": "NCC-EAST",
        "route": "KASHIWA-LOCAL",
        "product": "CART-CD19",
        "patient_ref": "MRN-RETRY",
    }

    def send(_: int) -> tuple[int, str]:
        r = api.post("ncc", "/api/v1/cases", body, headers={"Idempotency-Key": "same-key"})
        return r.status_code, r.json().get("id", "")

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(send, range(6)))
    assert {status for status, _ in results} == {201}
    assert len({case_id for _, case_id in results}) == 1
    assert len(api.get("admin", "/api/v1/cases").json()["items"]) == 1


@contextmanager
def _production_pool(db_url: str, clock: FrozenClock, busy_timeout_ms: int) -> Iterator[Api]:
    """The app as served: the default pool (10 + 10 overflow), a given SQLite busy timeout,
    a coordinator of NCC-EAST."""
    settings = make_settings(db_url).model_copy(update={"sqlite_busy_timeout_ms": busy_timeout_ms})
    db = Database(settings.database_url, busy_timeout_ms=busy_timeout_ms, pool_size=10)
    try:
        with TestClient(create_app(settings, clock=clock, database=db)) as client:
            api = Api(client, db, settings)
            api.key("ncc", Role.coordinator, site="NCC-EAST")
            yield api
    finally:
        db.dispose()


def test_more_concurrent_writers_than_worker_threads_all_succeed(
    db_url: str, clock: FrozenClock
) -> None:
    """More journey writes at once than the server has worker threads (40) and connections
    (20): each is recorded. A write must not hold SQLite's lock while it waits for a thread;
    if it did, the writers queued for the lock would take every thread and time out."""
    with _production_pool(db_url, clock, 3_000) as api:
        start = clock() - timedelta(days=100)
        journeys = [
            Journey(api, patient=f"MRN-W{i:03}", start=start + timedelta(days=i)) for i in range(60)
        ]
        for journey in journeys:
            journey.schedule()

        def collect(j: Journey) -> int:
            r = event(api, j.coord, j.case, "collected", j.at(hours=1), j.site, j.coi)
            return int(r.status_code)

        with ThreadPoolExecutor(max_workers=60) as pool:
            statuses = list(pool.map(collect, journeys))
        assert statuses == [201] * len(journeys)
        listed = api.get("ncc", "/api/v1/cases?status=collected&limit=100").json()["items"]
        assert len(listed) == len(journeys)


@pytest.fixture
def sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from fresh_db(request, "sqlite", tmp_path)


def test_a_write_that_cannot_get_sqlite_s_lock_is_a_retryable_503(
    sqlite_url: str, clock: FrozenClock
) -> None:
    """Another writer holds SQLite's database-wide lock past the busy timeout: the write is
    refused with 503 and Retry-After (not a 500), and nothing of it is saved."""
    with _production_pool(sqlite_url, clock, 200) as api:
        j = Journey(api, patient="MRN-HELD")
        j.schedule()
        with api.database.transaction() as holder:
            holder.exec(select(Case.id)).first()  # BEGIN IMMEDIATE: the lock is ours
            r = event(api, j.coord, j.case, "collected", j.at(hours=1), j.site, j.coi)
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "busy"
        case = api.get("ncc", f"/api/v1/cases/{j.case['id']}").json()
        assert case["status"] == "apheresis_scheduled" and case["milestones"] == []


def test_a_reading_that_cannot_get_sqlite_s_lock_is_a_retryable_503(
    sqlite_url: str, clock: FrozenClock
) -> None:
    """The ingest writer cannot start its turn at SQLite's lock within the busy timeout:
    the reading is refused with 503 and Retry-After, nothing is stored, and the logger's
    resend is stored once the lock is free."""
    with _production_pool(sqlite_url, clock, 200) as api:
        for persona, spec in PERSONAS.items():
            api.key(persona, **spec)
        _, shipment, t0 = in_transit(api, patient="MRN-HELD-R")
        device = shipment["device_ids"][0]
        item = {"device_id": device, "ts": (t0 + timedelta(minutes=1)).isoformat(), "temp_c": 5.0}
        with api.database.transaction() as holder:
            holder.exec(select(Case.id)).first()  # BEGIN IMMEDIATE: the lock is ours
            r = api.post("courier", "/api/v1/readings", {"readings": [item]})
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
        assert r.json()["code"] == "busy"
        with api.database.engine.connect() as conn:
            stored = conn.execute(
                text("SELECT count(*) FROM reading WHERE device_id = :d"), {"d": device}
            )
            assert stored.scalar_one() == 0
        again = api.post("courier", "/api/v1/readings", {"readings": [item]})
        assert again.status_code == 200, again.text
        assert again.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
