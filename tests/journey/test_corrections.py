"""Corrections of recorded milestones: amend or void, signed, the original always visible."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.conftest import NOW, Api
from tests.helpers import Journey, event, iso

PROBLEM = "application/problem+json"


def sign(api: Api, persona: str, meaning: str = "correction of a data entry error") -> Any:
    return {"password_or_key": api.keys[persona], "meaning": meaning}


def correct(api: Api, persona: str, case_id: str, milestone_id: int, **body: Any) -> Any:
    body.setdefault("reason", "transcription error on the collection form")
    body.setdefault("signature", sign(api, persona))
    return api.post(persona, f"/api/v1/cases/{case_id}/milestones/{milestone_id}/corrections", body)


def case_of(api: Api, case_id: str, persona: str = "ncc") -> dict[str, Any]:
    r = api.get(persona, f"/api/v1/cases/{case_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def milestone(case: dict[str, Any], type_: str) -> dict[str, Any]:
    (found,) = [m for m in case["milestones"] if m["type"] == type_ and m["status"] != "voided"]
    return dict(found)


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_amended_collection_time_keeps_the_original_and_recomputes_durations_and_metrics(
    api: Api,
) -> None:
    j = Journey(api)
    j.to_infusion()
    cid = j.case["id"]
    before = case_of(api, cid)
    collected = milestone(before, "collected")
    recorded_at = at(collected["occurred_at"])
    corrected_at = recorded_at - timedelta(hours=6)
    metrics_before = api.get("viewer", "/api/v1/metrics/turnaround?group_by=route").json()

    r = correct(api, "qa", cid, collected["id"], action="amend", occurred_at=iso(corrected_at))
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["status"] == "amended" and out["case_status"] == "infused"
    assert at(out["occurred_at"]) == corrected_at and out["occurred_at"].endswith("Z")
    assert [at(h["occurred_at"]) for h in out["history"]] == [recorded_at]
    assert out["history"][0]["by"] == "qa"
    assert out["history"][0]["reason"] == "transcription error on the collection form"

    after = case_of(api, cid)
    shown = milestone(after, "collected")
    assert shown["status"] == "amended" and at(shown["occurred_at"]) == corrected_at
    assert at(shown["history"][0]["occurred_at"]) == recorded_at  # never lost
    assert all(m.get("history") is None for m in after["milestones"] if m["id"] != shown["id"])
    d0, d1 = before["durations"], after["durations"]
    assert d1["collection_to_receipt_h"] == pytest.approx(d0["collection_to_receipt_h"] + 6)
    assert d1["vein_to_vein_d"] == pytest.approx(d0["vein_to_vein_d"] + 0.25)

    metrics = api.get("viewer", "/api/v1/metrics/turnaround?group_by=route").json()
    (g0,), (g1,) = metrics_before["groups"], metrics["groups"]
    assert g1["vein_to_vein_d"]["p50"] == pytest.approx(d1["vein_to_vein_d"], abs=1e-3)
    assert g1["vein_to_vein_d"]["p50"] == pytest.approx(g0["vein_to_vein_d"]["p50"] + 0.25)
    assert g1["legs"]["collection_to_receipt_h"]["p50"] == pytest.approx(
        d1["collection_to_receipt_h"], abs=1e-3
    )

    # A second amendment stacks: history lists both earlier values, oldest first.
    r = correct(api, "admin", cid, collected["id"], action="amend", note="apheresis bay 2")
    assert r.status_code == 201, r.text
    history = r.json()["history"]
    assert [at(h["occurred_at"]) for h in history] == [recorded_at, corrected_at]
    assert [h["note"] for h in history] == [None, None]
    assert r.json()["note"] == "apheresis bay 2"

    entries = api.get("qa", f"/api/v1/audit?entity=case&entity_id={cid}").json()["items"]
    amends = [e for e in entries if e["action"] == "case.milestone.amend"]
    assert len(amends) == 2
    first = min(amends, key=lambda e: e["seq"])
    assert first["actor"] == "qa"
    assert first["reason"] == "transcription error on the collection form"
    assert at(first["before"]["occurred_at"]) == recorded_at
    assert at(first["after"]["occurred_at"]) == corrected_at
    assert first["after"]["signature_meaning"] == "correction of a data entry error"


def test_a_wrong_later_time_that_blocks_the_next_step_is_fixed_by_amending_it(api: Api) -> None:
    j = Journey(api, start=NOW - timedelta(days=3))
    j.schedule()
    # Collected early on day one, but typed in as this morning.
    wrong = event(api, "ncc", j.case, "collected", NOW - timedelta(hours=1), j.site, j.coi)
    assert wrong.status_code == 201, wrong.text
    shipment = j.ship("to_manufacturing", "FRESH_2_8")
    pickup = {
        "action": "picked_up",
        "occurred_at": iso(NOW - timedelta(days=3) + timedelta(hours=2)),
        "from_party": "apheresis unit",
        "to_party": "courier",
        "coi": j.coi,
    }
    url = f"/api/v1/shipments/{shipment['id']}/custody"
    refused = api.post(j.courier, url, pickup)
    assert refused.status_code == 422 and refused.json()["code"] == "out-of-order"

    actual = NOW - timedelta(days=3) + timedelta(hours=1)
    fixed = {"action": "amend", "occurred_at": iso(actual)}
    r = correct(api, "qa", j.case["id"], wrong.json()["id"], **fixed)
    assert r.status_code == 201, r.text
    assert api.post(j.courier, url, pickup).status_code == 201
    case = case_of(api, j.case["id"])
    assert case["status"] == "in_transit_to_manufacturing"
    assert at(milestone(case, "collected")["occurred_at"]) == actual


def test_voiding_the_latest_milestone_restores_the_previous_status(api: Api) -> None:
    j = Journey(api)
    j.schedule()
    collected = j.step("collected")
    cid = j.case["id"]
    assert "since_collection_d" in case_of(api, cid)["durations"]

    r = correct(api, "qa", cid, collected["id"], action="void", reason="wrong patient's form")
    assert r.status_code == 201, r.text
    assert (r.json()["status"], r.json()["case_status"]) == ("voided", "apheresis_scheduled")
    case = case_of(api, cid)
    assert case["status"] == "apheresis_scheduled"
    (shown,) = case["milestones"]
    assert shown["status"] == "voided" and shown["history"][0]["reason"] == "wrong patient's form"
    assert case["durations"] == {}  # a voided milestone counts for nothing

    # A voided record no longer holds the physical order: the real collection, earlier, is taken.
    again = event(api, "ncc", j.case, "collected", j.t - timedelta(hours=2), j.site, j.coi)
    assert again.status_code == 201, again.text
    case = case_of(api, cid)
    assert case["status"] == "collected"
    assert [m["status"] for m in case["milestones"]] == ["valid", "voided"]
    # A voided milestone cannot be corrected again.
    r = correct(api, "qa", cid, collected["id"], action="amend", note="x")
    assert r.status_code == 409 and r.json()["code"] == "milestone-voided"


def test_voiding_an_infusion_reopens_the_case_and_drops_vein_to_vein(api: Api) -> None:
    j = Journey(api)
    infused = j.to_infusion()
    cid = j.case["id"]
    assert case_of(api, cid)["closed_at"] is not None
    r = correct(api, "admin", cid, infused["id"], action="void", reason="recorded on wrong case")
    assert r.status_code == 201, r.text
    case = case_of(api, cid)
    assert (case["status"], case["closed_at"]) == ("thawed", None)
    assert "vein_to_vein_d" not in case["durations"]
    assert "thaw_to_infusion_h" not in case["durations"]
    (group,) = api.get("viewer", "/api/v1/metrics/turnaround").json()["groups"]
    assert group["n"] == 1 and group["vein_to_vein_d"] is None


def test_voiding_a_milestone_that_is_not_the_latest_is_409_and_changes_nothing(
    api: Api,
) -> None:
    j = Journey(api)
    j.schedule()
    collected = j.step("collected")
    j.custody(j.ship("to_manufacturing", "FRESH_2_8"), "picked_up")
    cid = j.case["id"]
    before = case_of(api, cid)
    r = correct(api, "qa", cid, collected["id"], action="void")
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["code"] == "not-latest"
    assert "void the later milestones first" in r.json()["detail"]
    assert "shipped_to_manufacturing" in r.json()["detail"]
    assert case_of(api, cid) == before


def test_an_amendment_that_breaks_the_physical_order_is_409_and_changes_nothing(
    api: Api,
) -> None:
    j = Journey(api)
    j.schedule()
    collected = j.step("collected")
    shipment = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(shipment, "picked_up", hours=2)
    j.custody(shipment, "delivered", hours=1)
    received = j.step("received_at_manufacturing", hours=0.5)
    cid = j.case["id"]
    before = case_of(api, cid)
    shipped = milestone(before, "shipped_to_manufacturing")

    late = at(shipped["occurred_at"]) + timedelta(minutes=1)
    r = correct(api, "qa", cid, collected["id"], action="amend", occurred_at=iso(late))
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "out-of-order"
    assert "shipped_to_manufacturing" in r.json()["detail"]
    early = at(shipped["occurred_at"]) - timedelta(minutes=1)
    r = correct(api, "qa", cid, received["id"], action="amend", occurred_at=iso(early))
    assert r.status_code == 409 and "shipped_to_manufacturing" in r.json()["detail"]
    future = NOW + timedelta(minutes=10)
    r = correct(api, "qa", cid, received["id"], action="amend", occurred_at=iso(future))
    assert r.status_code == 422 and r.json()["code"] == "future-time"
    # Custody pickups are corrected through the shipment, not here.
    r = correct(api, "admin", cid, shipped["id"], action="amend", note="x")
    assert r.status_code == 409 and r.json()["code"] == "not-correctable"
    assert case_of(api, cid) == before
    # The equal instant keeps the order.
    r = correct(api, "qa", cid, collected["id"], action="amend", occurred_at=shipped["occurred_at"])
    assert r.status_code == 201, r.text


def test_identity_bearing_steps_are_corrected_by_qa_or_admin_others_by_their_recorder(
    api: Api,
) -> None:
    j = Journey(api)
    j.schedule()
    collected = j.step("collected")
    shipment = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(shipment, "picked_up")
    j.custody(shipment, "delivered")
    j.step("received_at_manufacturing")
    started = j.step("manufacturing_started", coi=False)
    cid = j.case["id"]

    r = correct(api, "ncc", cid, collected["id"], action="amend", note="bay 2")
    assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM)
    assert correct(api, "qa", cid, collected["id"], action="amend", note="bay 2").status_code == 201
    # manufacturing_started: the factory (who records it) or an admin; not QA, not the hospital.
    assert correct(api, "ncc", cid, started["id"], action="amend", note="x").status_code == 403
    assert correct(api, "qa", cid, started["id"], action="amend", note="x").status_code == 403
    r = correct(api, "kashiwa", cid, started["id"], action="amend", note="line 3")
    assert r.status_code == 201, r.text
    assert correct(api, "admin", cid, started["id"], action="amend", note="4").status_code == 201
    # Roles that never read cases.
    assert correct(api, "viewer", cid, started["id"], action="amend", note="x").status_code == 403


def test_the_signature_must_be_the_correctors_own_key(api: Api) -> None:
    j = Journey(api)
    j.schedule()
    collected = j.step("collected")
    cid = j.case["id"]
    before = case_of(api, cid)
    for credential in (api.keys["admin"], "not-a-key"):
        r = correct(
            api,
            "qa",
            cid,
            collected["id"],
            action="void",
            signature={"password_or_key": credential, "meaning": "approval"},
        )
        assert r.status_code == 403, r.text
    assert case_of(api, cid) == before


def test_a_case_outside_the_callers_scope_or_an_unknown_milestone_is_404(api: Api) -> None:
    j = Journey(api)
    j.schedule()
    j.step("collected")
    j.custody(j.ship("to_manufacturing", "FRESH_2_8"), "picked_up")
    shipped = milestone(case_of(api, j.case["id"]), "shipped_to_manufacturing")
    cid = j.case["id"]
    # Another hospital's coordinator, and the other factory.
    r = correct(api, "utokyo", cid, shipped["id"], action="amend", note="x")
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)
    r = correct(api, "bridgewater", cid, shipped["id"], action="amend", note="x")
    assert r.status_code == 404
    assert correct(api, "qa", cid, 999_999, action="amend", note="x").status_code == 404
    other = Journey(api, patient="MRN-OTHER")
    other.schedule()
    theirs = other.step("collected")
    assert correct(api, "qa", cid, theirs["id"], action="amend", note="x").status_code == 404


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"action": "amend"}, "body"),
        ({"action": "amend", "note": None, "occurred_at": None}, "body"),
        ({"action": "erase"}, "body/action"),
        ({"action": "amend", "occurred_at": "2026-11-20T09:00:00"}, "body/occurred_at"),
        ({"action": "amend", "occurred_at": "yesterday"}, "body/occurred_at"),
        ({"action": "void", "occurred_at": "2026-11-20T09:00:00Z"}, "body"),
        ({"action": "void", "reason": ""}, "body/reason"),
        ({"action": "void", "signature": None}, "body/signature"),
        ({"action": "void", "signature": {"password_or_key": "k"}}, "body/signature/meaning"),
        ({"action": "void", "extra": 1}, "body/extra"),
    ],
)
def test_bad_bodies_are_422_problems_and_change_nothing(
    api: Api, body: dict[str, Any], loc: str
) -> None:
    j = Journey(api)
    j.schedule()
    collected = j.step("collected")
    cid = j.case["id"]
    before = case_of(api, cid)
    r = correct(api, "qa", cid, collected["id"], **body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    problem = r.json()
    assert problem["status"] == 422 and problem["errors"]
    assert any(e["loc"].startswith(loc) for e in problem["errors"]), problem["errors"]
    assert case_of(api, cid) == before


def test_an_amendment_that_changes_nothing_is_422(api: Api) -> None:
    j = Journey(api)
    j.schedule()
    collected = j.step("collected")
    same = {"action": "amend", "occurred_at": collected["occurred_at"]}
    r = correct(api, "qa", j.case["id"], collected["id"], **same)
    assert r.status_code == 422, r.text


def test_voiding_a_cancellation_reopens_the_case_with_its_slot(api: Api) -> None:
    j = Journey(api)
    j.schedule()
    j.step("collected")
    slot = case_of(api, j.case["id"])["slot"]
    cancelled = j.step("cancelled")
    case = case_of(api, j.case["id"])
    assert (case["status"], case["slot"]) == ("cancelled", None)
    r = correct(api, "ncc", j.case["id"], cancelled["id"], action="void", reason="wrong case")
    assert r.status_code == 201, r.text
    case = case_of(api, j.case["id"])
    assert (case["status"], case["closed_at"], case["slot"]) == ("collected", None, slot)


def test_a_recollection_keeps_its_place_after_the_failed_cycle_and_is_not_voided(
    api: Api,
) -> None:
    j = Journey(api)
    j.schedule()
    j.step("collected")
    shipment = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(shipment, "picked_up")
    j.custody(shipment, "delivered")
    j.step("received_at_manufacturing")
    j.step("manufacturing_started", coi=False)
    failed = j.step("manufacturing_failed", hours=48, coi=False)
    r = event(api, "ncc", j.case, "recollection", j.at(hours=24), j.site)
    assert r.status_code == 201, r.text
    cid, again = j.case["id"], r.json()
    before_failure = at(failed["occurred_at"]) - timedelta(hours=1)
    r = correct(api, "ncc", cid, again["id"], action="amend", occurred_at=iso(before_failure))
    assert r.status_code == 409 and "manufacturing_failed" in r.json()["detail"]
    r = correct(api, "ncc", cid, again["id"], action="void")
    assert r.status_code == 409 and r.json()["code"] == "not-voidable"
    assert case_of(api, cid)["status"] == "apheresis_scheduled"
