"""Property: over random event sequences, a refused event changes nothing.

The state machine is written out again here, independently of app/services/journey.py, from
DESIGN.md's diagram. Each step's outcome is predicted from it; accepted steps must move the
case exactly as predicted, refused ones must leave state, milestones and audit untouched
(a COI mismatch adds exactly one alert and one ``coi.mismatch`` audit entry, nothing else).
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from app.db import Database
from tests.conftest import NOW, Api
from tests.helpers import register

DIAGRAM = {
    ("apheresis_scheduled", "collected"): "collected",
    ("in_transit_to_manufacturing", "received_at_manufacturing"): "at_manufacturing",
    ("at_manufacturing", "manufacturing_started"): "in_manufacturing",
    ("in_manufacturing", "qc_released"): "released",
    ("in_manufacturing", "manufacturing_failed"): "failed",
    ("in_transit_to_site", "received_at_site"): "at_site",
    ("at_site", "thawed"): "thawed",
    ("thawed", "infused"): "infused",
    ("failed", "recollection"): "apheresis_scheduled",
    ("collected", "pickup_in"): "in_transit_to_manufacturing",
    ("released", "pickup_out"): "in_transit_to_site",
}
TERMINAL = {"infused", "cancelled"}
FACTORY = {
    "received_at_manufacturing",
    "manufacturing_started",
    "qc_released",
    "manufacturing_failed",
}
IDENTITY = {"collected", "received_at_manufacturing", "received_at_site", "thawed", "infused"}
EVENTS = sorted({e for _, e in DIAGRAM} - {"pickup_in", "pickup_out"} | {"cancelled"})

step = st.tuples(
    st.sampled_from(EVENTS + ["pickup_in", "pickup_out"]),
    st.sampled_from(["right", "wrong", "none"]),  # COI presented
    st.sampled_from([1.0, 1.0, 1.0, -3.0]),  # hours after the last accepted step
    st.booleans(),  # the right party records it
)
_patients = itertools.count()


def _snapshot(db: Database, case_id: str) -> dict[str, Any]:
    with db.engine.connect() as conn:

        def one(sql: str) -> Any:
            return conn.execute(text(sql), {"c": case_id}).scalar_one()

        return {
            "status": one("SELECT status FROM cases WHERE id = :c"),
            "milestones": one("SELECT count(*) FROM milestone WHERE case_id = :c"),
            "audit": one("SELECT count(*) FROM audit_log"),
            "mismatch_audit": one(
                "SELECT count(*) FROM audit_log WHERE action = 'coi.mismatch' AND entity_id = :c"
            ),
            "alerts": one("SELECT count(*) FROM alert WHERE case_id = :c"),
        }


def _predict(state: str, event: str) -> str | None:
    if event == "cancelled":
        return None if state in TERMINAL else "cancelled"
    return DIAGRAM.get((state, event))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(step, min_size=1, max_size=14))
def test_refused_events_change_nothing(api: Api, database: Database, steps: list[Any]) -> None:
    case = register(api, patient=f"PROP-{next(_patients)}")
    cid, coi = case["id"], case["coi"]
    wrong_coi = coi[:-1] + ("0" if coi[-1] != "0" else "1")
    t = NOW - timedelta(days=60)
    assert (
        api.post(
            "ncc", f"/api/v1/cases/{cid}/schedule", {"apheresis_at": t.isoformat()}
        ).status_code
        == 200
    )
    state, last_physical = "apheresis_scheduled", None
    for event, coi_choice, hours, right_party in steps:
        when = t + timedelta(hours=hours)
        scanned = {"right": coi, "wrong": wrong_coi, "none": None}[coi_choice]
        before = _snapshot(database, cid)
        if event in ("pickup_in", "pickup_out"):
            response = _pickup(api, database, cid, coi, scanned, event, when, before)
            role_ok, needs_coi = True, True
        else:
            party = (
                ("kashiwa" if event in FACTORY else "ncc")
                if right_party
                else ("ncc" if event in FACTORY else "kashiwa")
            )
            site = "CELLARES-KASHIWA" if event in FACTORY else "NCC-EAST"
            body: dict[str, Any] = {"type": event, "occurred_at": when.isoformat(), "site": site}
            if scanned:
                body["coi"] = scanned
            response = api.post(party, f"/api/v1/cases/{cid}/events", body)
            role_ok, needs_coi = right_party, event in IDENTITY or scanned is not None
        target = _predict(state, event)
        in_order = last_physical is None or when >= last_physical
        coi_ok = scanned == coi or not needs_coi
        after = _snapshot(database, cid)
        if target and role_ok and coi_ok and in_order:
            assert response.status_code == 201, (event, state, response.text)
            assert after["status"] == target
            assert after["milestones"] == before["milestones"] + 1
            assert after["audit"] > before["audit"]
            state, t, last_physical = target, when, when
            continue
        assert response.status_code in (403, 404, 409, 422), response.text
        mismatch = response.json().get("code") == "coi-mismatch"
        # The label is checked once the party, the state and the site are right.
        assert mismatch == (target is not None and role_ok and scanned == wrong_coi), response.text
        assert after["status"] == before["status"]
        assert after["milestones"] == before["milestones"]
        if mismatch:
            assert after["mismatch_audit"] == before["mismatch_audit"] + 1
            assert after["alerts"] == before["alerts"] + 1
            # The refusal and the alert it raised, nothing else.
            assert after["audit"] == before["audit"] + 2
        else:
            assert after == before


def _pickup(
    api: Api,
    database: Database,
    cid: str,
    coi: str,
    scanned: str | None,
    event: str,
    when: Any,
    before: dict[str, Any],
) -> Any:
    """Create the shipment (with the right label) and pick it up with the scanned one.

    ``before`` is refreshed after the shipment exists: the property is about the pickup.
    """
    inbound = event == "pickup_in"
    maker = not inbound
    body = {
        "case_id": cid,
        "direction": "to_manufacturing" if inbound else "to_site",
        "origin": "NCC-EAST" if inbound else "CELLARES-KASHIWA",
        "destination": "CELLARES-KASHIWA" if inbound else "NCC-EAST",
        "profile": "FRESH_2_8" if inbound else "CRYO_LN2",
        "courier": "KASHIWA-COLD",
        "container": {"serial": "S", "kind": "box"},
        "coi": coi,
    }
    created = api.post("kashiwa" if maker else "ncc", "/api/v1/shipments", body)
    if created.status_code == 201:
        shipment_id = created.json()["id"]
    elif created.status_code == 409 and "shipment_id" in created.json():
        shipment_id = created.json()["shipment_id"]
    else:
        return created
    before.update(_snapshot(database, cid))
    custody: dict[str, Any] = {
        "action": "picked_up",
        "occurred_at": when.isoformat(),
        "from_party": "site",
        "to_party": "courier",
    }
    if scanned:
        custody["coi"] = scanned
    return api.post("courier", f"/api/v1/shipments/{shipment_id}/custody", custody)
