"""The demo cohort generator (seeds/demo/) and `v2v demo`."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from statistics import median
from typing import Any

import pytest
from sqlalchemy import delete, text
from sqlmodel import Session, SQLModel, col, select
from typer.testing import CliRunner

from app.cli import cli
from app.config import Settings, get_settings
from app.db import Database
from app.services.coldchain import engine as coldchain
from app.services.coldchain.detector import Rules, evaluate
from app.services.identity.coi import Keyring, generate_signing_entry, parse_scan
from app.services.journey.events import TRANSITIONS
from models.alert import Alert
from models.audit import AuditEntry
from models.case import Case, CaseStatus, Milestone
from models.coldchain import Excursion, Reading, ShipmentState
from models.reference import Profile, Route
from models.shipment import Shipment
from seeds.demo import CLOSED, DemoConfig, DemoRefused, DemoReport, generate
from tests.conftest import NOW

S = CaseStatus
PICKUPS = {
    "shipped_to_manufacturing": (frozenset({S.collected}), S.in_transit_to_manufacturing),
    "shipped_to_site": (frozenset({S.released}), S.in_transit_to_site),
}
DEMO_TABLES = (
    "alert",
    "shipment_state",
    "excursion",
    "reading",
    "device_assignment",
    "custody_event",
    "shipment",
    "device",
    "slot",
    "milestone",
    "cases",
    "coi_sequence",
)  # the audit log is append-only: the chain goes on


def _generate(database: Database, settings: Settings, **kw: Any) -> DemoReport:
    kw.setdefault("seed", 1)
    return generate(database, now=NOW, settings=settings, **kw)


def _wipe(database: Database) -> None:
    with database.transaction() as session:
        for name in DEMO_TABLES:
            session.execute(delete(SQLModel.metadata.tables[name]))


def _snapshot(database: Database) -> tuple[list[Any], list[Any], list[Any]]:
    with database.session() as session:
        cases = [c.model_dump() for c in session.exec(select(Case).order_by(col(Case.id)))]
        milestones = [
            {k: v for k, v in m.model_dump().items() if k != "id"}
            for m in session.exec(
                select(Milestone).order_by(col(Milestone.case_id), col(Milestone.id))
            )
        ]
        readings = list(
            session.execute(
                text(
                    "SELECT shipment_id, device_id, count(*), sum(ts_ms), sum(temp_c), "
                    "sum(lat) FROM reading GROUP BY shipment_id, device_id ORDER BY shipment_id"
                )
            ).all()
        )
    return cases, milestones, readings


def _milestones_by_case(session: Session) -> dict[str, list[Milestone]]:
    out: dict[str, list[Milestone]] = defaultdict(list)
    for m in session.exec(
        select(Milestone).order_by(col(Milestone.occurred_at), col(Milestone.id))
    ):
        out[m.case_id].append(m)
    return out


def test_same_seed_gives_the_same_rows_and_another_seed_others(
    database: Database, settings: Settings
) -> None:
    first_report = _generate(database, settings, cases=120)
    first = _snapshot(database)
    _wipe(database)
    _generate(database, settings, cases=120)
    assert _snapshot(database) == first
    assert first[2], "readings were generated"
    _wipe(database)
    _generate(database, settings, cases=120, readings=False)
    cases, milestones, readings = _snapshot(database)
    assert (cases, milestones) == first[:2] and not readings  # readings do not shift the rest
    _wipe(database)
    _generate(database, settings, cases=120, seed=2, readings=False)
    other = _snapshot(database)
    assert other[0] != first[0] and other[1] != first[1]
    assert first_report.cases == len(first[0]) == 120


def test_statuses_replay_through_the_state_machine(database: Database, settings: Settings) -> None:
    report = _generate(database, settings, cases=300, readings=False)
    with database.session() as session:
        cases = list(session.exec(select(Case)))
        by_case = _milestones_by_case(session)
        shipments = list(session.exec(select(Shipment)))
    assert len(cases) == 300 and report.by_status.total() == 300
    keyring = Keyring(settings.coi_signing_keys.get_secret_value())
    for case in cases:
        token = keyring.verify(case.coi_token)
        assert token.payload is not None and token.payload["coi"] == case.coi
        assert parse_scan(f"{case.coi}{case.coi_check}").coi == case.coi
        state = S.registered if case.apheresis_at is None else S.apheresis_scheduled
        for m in by_case[case.id]:
            sources, target = (TRANSITIONS | PICKUPS)[m.type]
            assert state in sources, (case.id, m.type, state)
            assert m.occurred_at <= m.recorded_at <= NOW
            state = target
        assert case.status == state.value
        assert (case.closed_at is not None) == (case.status in CLOSED)
        assert len({m.occurred_at for m in by_case[case.id]}) == len(by_case[case.id])
    in_flight = {c.status for c in cases} - CLOSED
    assert len(in_flight) >= 4, in_flight  # in flight 'now' at several stages
    assert all(s.picked_up_at is None or s.picked_up_at <= NOW for s in shipments)
    assert "delivered" in {s.status for s in shipments}


def test_turnaround_and_attrition_follow_the_published_figures(
    database: Database, settings: Settings
) -> None:
    report = _generate(database, settings, cases=400, readings=False)
    with database.session() as session:
        kinds = {r.code: r.kind for r in session.exec(select(Route))}
        cases = list(session.exec(select(Case)))
        by_case = _milestones_by_case(session)
    v2v: dict[str, list[float]] = defaultdict(list)
    to_site: dict[str, list[float]] = defaultdict(list)
    closed: dict[str, list[bool]] = defaultdict(list)
    for case in cases:
        kind, rows = kinds[case.route], by_case[case.id]
        at = {m.type: m.occurred_at for m in rows if m.cycle == case.cycle}
        day = timedelta(days=1)
        if "received_at_site" in at:
            to_site[kind].append((at["received_at_site"] - at["collected"]) / day)
        if "infused" in at:
            v2v[kind].append((at["infused"] - at["collected"]) / day)
        if case.status in CLOSED:
            closed[kind].append(case.status == S.cancelled)
    # Novartis Japan: "at least 5-6 weeks" from apheresis to the product's arrival.
    assert 35 <= median(to_site["overseas"]) <= 42
    # Kite: 14-day US turnaround; made locally, about a week shorter at release.
    assert 13 <= median(v2v["local"]) <= 18
    assert median(v2v["local"]) < median(v2v["overseas"]) - 14
    attrition = sum(sum(v) for v in closed.values()) / sum(len(v) for v in closed.values())
    assert 0.05 <= attrition <= 0.15
    assert report.medians()["overseas"]["collection_to_site_d"] == pytest.approx(
        median(to_site["overseas"]), abs=0.01
    )


def test_readings_every_ten_minutes_and_detector_rows_match(
    database: Database, settings: Settings
) -> None:
    config = DemoConfig.load()
    for kind in config.kinds.values():
        kind.probabilities["excursion_per_shipment"] = 0.5
    report = _generate(database, settings, cases=100, config=config)
    assert report.rows["reading"] > 0 and report.rows["excursion"] > 0
    with database.session(write=True) as session:
        profiles = {p.code: p for p in session.exec(select(Profile))}
        shipments = {s.id: s for s in session.exec(select(Shipment))}
        status = {c.id: c.status for c in session.exec(select(Case))}
        readings: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for shipment_id, ts_ms, temp_c in session.execute(
            select(Reading.shipment_id, Reading.ts_ms, Reading.temp_c).order_by(
                col(Reading.shipment_id), col(Reading.ts_ms)
            )
        ):
            readings[shipment_id].append((ts_ms, temp_c))
        stored = defaultdict(list)
        for e in session.exec(select(Excursion).order_by(col(Excursion.started_ms))):
            stored[e.shipment_id].append(e)
        states = {s.shipment_id: s for s in session.exec(select(ShipmentState))}
        kinds = set()
        for shipment_id, rows in readings.items():
            shipment = shipments[shipment_id]
            ts = [t for t, _ in rows]
            assert {b - a for a, b in zip(ts, ts[1:], strict=False)} <= {600_000}
            assert shipment.picked_up_at is not None
            end = shipment.delivered_at or NOW
            assert shipment.picked_up_at.timestamp() * 1000 <= ts[0]
            assert ts[-1] <= end.timestamp() * 1000
            state, excursions = evaluate(Rules.from_profile(profiles[shipment.profile]), rows)
            got = [
                (e.kind, e.status, e.started_ms, e.last_ms, e.ended_ms, e.peak_c, e.severity)
                for e in stored[shipment_id]
            ]
            want = [
                (e.kind, "open" if e.ended_ms is None else "closed", e.started_ms, e.last_ms)
                + (e.ended_ms, e.peak_c, e.severity)
                for e in excursions
            ]
            assert got == want
            row = states[shipment_id]
            assert (row.n, row.last_ts_ms, row.oor_closed_ms) == (
                state.n,
                state.last_ts_ms,
                state.oor_closed_ms,
            )
            assert row.mkt_w == pytest.approx(state.mkt_w)
            open_ids = [e.id for e in stored[shipment_id] if e.status == "open"]
            assert row.open_excursion_id == (open_ids[0] if open_ids else None)
            historic = status[shipment.case_id] in CLOSED
            for e in stored[shipment_id]:
                kinds.add(shipment.profile)
                assert (e.signed_by == "demo QA") == historic
                assert e.disposition in ({"accept", "quarantine"} if historic else {None})
        assert kinds == {"FRESH_2_8", "CRYO_LN2"}

        # Replaying the detector over the stored readings changes nothing for cases in
        # flight: same excursions, same alerts (their dedupe keys find the demo's rows).
        def alerts() -> list[tuple[Any, ...]]:
            return sorted(
                (a.dedupe_key, a.kind, a.severity, a.status, a.message, a.data, a.case_id)
                for a in session.exec(select(Alert))
            )

        before = alerts()
        assert any(a[3] == "open" for a in before) and any(a[3] == "resolved" for a in before)
        replayed = 0
        for shipment_id in stored:
            shipment = shipments[shipment_id]
            if status[shipment.case_id] not in CLOSED:
                coldchain.reevaluate(
                    session, shipment=shipment, profile=profiles[shipment.profile], now=NOW
                )
                replayed += 1
        session.flush()
        assert replayed and alerts() == before
        session.rollback()


def test_cli_loads_once_with_if_empty_and_is_refused_in_production(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("V2V_DATABASE_URL", database.engine.url.render_as_string(False))
    get_settings.cache_clear()
    args = ["demo", "--cases", "40", "--now", "2026-11-26T09:00:00+09:00", "--if-empty"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "JP-US-EWR" in first.output and "median V2V" in first.output
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0 and "not loaded" in second.output
    again = CliRunner().invoke(cli, args[:-1])  # the same seed twice would collide
    assert again.exit_code == 2 and "already in the database" in again.output
    with database.session() as session:
        assert len(session.exec(select(Case.id)).all()) == 40
        entries = session.exec(select(AuditEntry).where(AuditEntry.actor == "demo")).all()
        assert [e.action for e in entries] == ["demo.generated"]
        assert entries[0].after is not None and entries[0].after["cases"] == 40

    monkeypatch.setenv("V2V_ENV", "production")
    monkeypatch.setenv("V2V_SECRET_KEY", "s3cr3t-k3y-9f8Kq2LmZx7Vb4Nc1Rt6Yw3H")
    monkeypatch.setenv("V2V_PATIENT_HASH_KEY", "p4t13nt-Qm4Tz8Xc2Vn6Bl0Kj9Hg3Fd7")
    monkeypatch.setenv("V2V_SESSION_HTTPS_ONLY", "true")
    monkeypatch.setenv("V2V_COI_SIGNING_KEYS", generate_signing_entry("prod-1"))
    monkeypatch.setenv("V2V_AUDIT_KEYS", "audit-1:Zr5Wq9Lc3Hv7Nb1Tx8Mk2Gd6Js0Pf4Ye9Ua")
    get_settings.cache_clear()
    refused = CliRunner().invoke(cli, ["demo", "--cases", "5", "--seed", "9"])
    assert refused.exit_code == 2 and "refused" in refused.output
    with pytest.raises(DemoRefused):
        generate(database, cases=5, seed=9, now=NOW, settings=get_settings())
    get_settings.cache_clear()
    with database.session() as session:
        assert len(session.exec(select(Case.id)).all()) == 40
