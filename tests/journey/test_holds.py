"""Product holds and the bedside: a held product is never thawed or infused, an expired
thawed product is never infused, and the two-person check records who verified (not a key).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from app.db import Database
from models.alert import AlertKind
from models.case import Milestone
from models.principal import Role
from models.reference import Site
from models.webhook import WebhookDelivery, WebhookKind
from tests.conftest import Api
from tests.helpers import Journey, event, iso

MIN = timedelta(minutes=1)


def readings(device: str, start: Any, temps: list[float]) -> list[dict[str, Any]]:
    return [
        {"device_id": device, "ts": iso(start + i * 10 * MIN), "temp_c": t}
        for i, t in enumerate(temps)
    ]


def upload(api: Api, items: list[dict[str, Any]]) -> None:
    r = api.post("courier", "/api/v1/readings", {"readings": items})
    assert r.status_code == 200 and not r.json()["rejected"], r.text


def sign(api: Api, persona: str, key_of: str | None = None) -> dict[str, str]:
    return {"password_or_key": api.keys[key_of or persona], "meaning": "approval"}


def hold(api: Api, persona: str, case_id: str, action: str, **over: Any) -> Any:
    body = {"action": action, "reason": f"{action} by {persona}", "signature": sign(api, persona)}
    return api.post(persona, f"/api/v1/cases/{case_id}/hold", {**body, **over})


def dispose(api: Api, excursion_id: int, decision: str) -> Any:
    return api.post(
        "qa",
        f"/api/v1/excursions/{excursion_id}/disposition",
        {"decision": decision, "reason": "warm dock", "signature": sign(api, "qa")},
    )


def excursions(api: Api, shipment: dict[str, Any]) -> list[dict[str, Any]]:
    r = api.get("qa", f"/api/v1/excursions?shipment_id={shipment['id']}")
    return list(r.json()["items"])


def collected_with_excursion(
    api: Api, temps: list[float], patient: str = "MRN-H1"
) -> tuple[Journey, dict[str, Any]]:
    """A local case whose fresh material is in transit and ran warm (an excursion)."""
    j = Journey(api, patient=patient)
    j.schedule()
    j.step("collected", hours=2)
    j.inbound = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(j.inbound, "picked_up")
    upload(api, readings(j.inbound["device_ids"][0], j.t, temps))
    return j, excursions(api, j.inbound)[0]


def to_site(j: Journey) -> None:
    """From inbound transit to the product's arrival at the treatment site."""
    assert j.inbound is not None
    j.custody(j.inbound, "handoff", hours=1)
    j.custody(j.inbound, "delivered", hours=1)
    j.step("received_at_manufacturing", hours=0.5)
    j.step("manufacturing_started", hours=12, coi=False)
    j.step("qc_released", hours=24 * 9, coi=False)
    j.outbound = j.ship("to_site", "CRYO_LN2")
    j.custody(j.outbound, "picked_up", hours=2)
    j.custody(j.outbound, "delivered", hours=3)
    j.step("received_at_site", hours=0.5)


def at_site(api: Api, patient: str = "MRN-H2") -> Journey:
    j = Journey(api, patient=patient)
    j.schedule()
    j.step("collected", hours=2)
    j.inbound = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(j.inbound, "picked_up")
    to_site(j)
    return j


def case_of(api: Api, j: Journey, persona: str = "ncc") -> dict[str, Any]:
    r = api.get(persona, f"/api/v1/cases/{j.case['id']}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def audit_of(api: Api, case_id: str) -> list[dict[str, Any]]:
    r = api.get("qa", f"/api/v1/audit?entity=case&entity_id={case_id}&limit=500")
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def bedside(api: Api, j: Journey, type_: str, at: Any, persona: str = "ncc", **extra: Any) -> Any:
    return event(api, persona, j.case, type_, at, j.site, j.coi, **extra)


def assert_refused(api: Api, j: Journey, r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code


def test_quarantine_holds_the_product_until_a_signed_release(api: Api) -> None:
    j, exc = collected_with_excursion(api, [5, 9, 9, 5])
    r = dispose(api, exc["id"], "quarantine")
    assert r.status_code == 200, r.text
    assert r.json()["warnings"] == [
        "loggers may still hold data: the shipment is not delivered yet"
    ]
    held = case_of(api, j)["hold"]
    assert held["status"] == "on_hold" and held["by"] == "qa"
    assert held["source"] == f"excursion:{exc['id']}" and "warm dock" in held["reason"]
    assert held["since"].endswith("Z")
    assert [c["hold_status"] for c in api.get("ncc", "/api/v1/cases").json()["items"]] == [
        "on_hold"
    ]

    # The journey goes on (the material can be investigated) but never reaches the patient.
    to_site(j)
    before = case_of(api, j)
    trail = audit_of(api, j.case["id"])
    thaw_at = j.at(hours=24)
    r = bedside(api, j, "thawed", thaw_at)
    assert_refused(api, j, r, 409, "product-on-hold")
    after = case_of(api, j)
    assert (after["status"], len(after["milestones"])) == ("at_site", len(before["milestones"]))
    assert audit_of(api, j.case["id"]) == trail

    released = hold(api, "qa", j.case["id"], "release", reason="stability data cover it")
    assert released.status_code == 200, released.text
    body = released.json()
    assert body["hold"]["status"] == "released" and body["hold"]["reason"] == (
        "stability data cover it"
    )
    assert body["id"] == j.case["id"] and body["milestones"] == after["milestones"]
    assert bedside(api, j, "thawed", thaw_at).status_code == 201
    assert bedside(api, j, "infused", j.at(hours=0.3)).status_code == 201
    assert case_of(api, j)["status"] == "infused"


def test_infusion_is_refused_while_held_even_after_the_thaw(api: Api) -> None:
    j = at_site(api)
    assert case_of(api, j)["hold"] is None
    assert bedside(api, j, "thawed", j.at(hours=24)).status_code == 201
    placed = hold(api, "admin", j.case["id"], "place", reason="label query")
    assert placed.status_code == 200, placed.text
    assert placed.json()["hold"]["by"] == "admin"
    infuse_at = j.at(hours=0.2)
    assert_refused(api, j, bedside(api, j, "infused", infuse_at), 409, "product-on-hold")
    assert case_of(api, j)["status"] == "thawed"
    assert hold(api, "qa", j.case["id"], "release").status_code == 200
    assert bedside(api, j, "infused", infuse_at).status_code == 201


def test_reject_holds_and_accept_does_not(api: Api) -> None:
    j, exc = collected_with_excursion(api, [5, 9, 9, 5], patient="MRN-H3")
    assert dispose(api, exc["id"], "accept").status_code == 200
    assert case_of(api, j)["hold"] is None
    j2, exc2 = collected_with_excursion(api, [5, 9, 9, 5], patient="MRN-H4")
    assert dispose(api, exc2["id"], "reject").status_code == 200
    assert case_of(api, j2)["hold"]["status"] == "on_hold"
    actions = [e["action"] for e in audit_of(api, j2.case["id"])]
    assert actions[-1] == "case.hold.place"


def test_only_a_closed_excursion_can_be_signed(api: Api, database: Database) -> None:
    j, exc = collected_with_excursion(api, [5, 9, 9])
    assert exc["status"] == "open"
    r = dispose(api, exc["id"], "quarantine")
    assert_refused(api, j, r, 409, "excursion-open")
    assert j.inbound is not None
    assert excursions(api, j.inbound)[0]["disposition"] is None
    assert case_of(api, j)["hold"] is None
    # The next in-range reading closes it; then it can be signed.
    assert j.inbound is not None
    upload(api, readings(j.inbound["device_ids"][0], j.t + 30 * MIN, [5]))
    assert dispose(api, exc["id"], "quarantine").status_code == 200


def test_the_signer_is_warned_while_loggers_may_still_hold_data(api: Api) -> None:
    j, exc = collected_with_excursion(api, [5, 9, 9, 5], patient="MRN-H5")
    assert j.inbound is not None
    j.custody(j.inbound, "delivered", hours=1)
    first = dispose(api, exc["id"], "accept").json()
    assert first["warnings"] == ["loggers may still hold data: no reading after delivery yet"]

    k, exc2 = collected_with_excursion(api, [5, 9, 9, 5], patient="MRN-H6")
    assert k.inbound is not None
    k.custody(k.inbound, "delivered", hours=1)
    upload(api, readings(k.inbound["device_ids"][0], k.t, [5]))  # up to the delivery
    second = dispose(api, exc2["id"], "accept").json()
    assert second["warnings"] == [] and second["refers_to_id"] is None
    listed = excursions(api, k.inbound)[0]
    assert "warnings" not in listed and listed["refers_to_id"] is None


def test_manual_holds_need_qa_or_admin_and_the_signers_own_key(api: Api) -> None:
    j = at_site(api, patient="MRN-H7")
    case_id = j.case["id"]
    wrong = hold(api, "qa", case_id, "place", signature=sign(api, "qa", key_of="admin"))
    assert_refused(api, j, wrong, 403, "forbidden")
    for persona in ("ncc", "kashiwa", "courier", "viewer"):
        r = api.post(
            persona,
            f"/api/v1/cases/{case_id}/hold",
            {"action": "place", "reason": "x", "signature": sign(api, persona)},
        )
        assert r.status_code == 403, (persona, r.text)
    missing = hold(api, "qa", "0" * 32, "place")
    assert_refused(api, j, missing, 404, "not-found")
    not_held = hold(api, "qa", case_id, "release")
    assert_refused(api, j, not_held, 409, "not-on-hold")
    assert case_of(api, j)["hold"] is None
    assert [e for e in audit_of(api, case_id) if e["action"].startswith("case.hold")] == []

    assert hold(api, "qa", case_id, "place", reason="deviation report 12").status_code == 200
    assert hold(api, "qa", case_id, "release", reason="deviation closed").status_code == 200
    trail = [e for e in audit_of(api, case_id) if e["action"].startswith("case.hold")]
    assert [(e["action"], e["actor"], e["reason"]) for e in trail] == [
        ("case.hold.place", "qa", "deviation report 12"),
        ("case.hold.release", "qa", "deviation closed"),
    ]
    assert trail[0]["after"]["hold_status"] == "on_hold"
    assert trail[1]["after"]["meaning"] == "approval"


SIG = {"password_or_key": "k", "meaning": "m"}


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"action": "place", "signature": SIG}, "body/reason"),
        ({"action": "freeze", "reason": "x", "signature": SIG}, "body/action"),
        ({"action": "place", "reason": "x"}, "body/signature"),
        ({"action": "place", "reason": " ", "signature": SIG}, "body/reason"),
        ({"action": "place", "reason": "x", "signature": SIG, "extra": 1}, "body/extra"),
        (
            {"action": "place", "reason": "x", "signature": {"meaning": "m"}},
            "body/signature/password_or_key",
        ),
    ],
)
def test_bad_hold_input_is_a_422_problem_and_changes_nothing(
    api: Api, body: dict[str, Any], loc: str
) -> None:
    j = Journey(api, patient="MRN-H8")
    r = api.post("qa", f"/api/v1/cases/{j.case['id']}/hold", body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert loc in [e["loc"] for e in r.json()["errors"]]
    assert case_of(api, j)["hold"] is None


def test_an_expired_thawed_product_is_never_infused(api: Api) -> None:
    j = at_site(api, patient="MRN-H9")
    thawed_at = j.at(hours=24)
    assert bedside(api, j, "thawed", thawed_at).status_code == 201
    late = bedside(api, j, "infused", thawed_at + 181 * MIN)
    assert_refused(api, j, late, 409, "thaw-expired")
    assert late.json()["thaw_expiry_min"] == 180
    case = case_of(api, j)
    assert case["status"] == "thawed" and case["milestones"][-1]["type"] == "thawed"
    # Exactly at the end of the window it is still in date.
    assert bedside(api, j, "infused", thawed_at + 180 * MIN).status_code == 201


def test_the_second_verifier_is_recorded_by_name_never_by_key(api: Api, database: Database) -> None:
    nurse = api.key("ncc-nurse", Role.coordinator, site="NCC-EAST")
    j = at_site(api, patient="MRN-H10")
    thaw_at = j.at(hours=24)
    refusals = {
        "same person": api.keys["ncc"],
        "another site": api.keys["kyoto"],
        "no such key": "v2v_abcdef123456_nothing",
        "not a key": 42,
    }
    for why, key in refusals.items():
        r = bedside(api, j, "thawed", thaw_at, data={"verified_by": key})
        assert r.status_code == 422, (why, r.text)
        assert r.json()["errors"][0]["loc"] == "body/data/verified_by", why
        assert not isinstance(key, str) or key not in r.text
    assert case_of(api, j)["status"] == "at_site"

    r = bedside(api, j, "thawed", thaw_at, data={"verified_by": nurse, "bag": "A"})
    assert r.status_code == 201, r.text
    assert nurse not in r.text
    verifier = r.json()["data"]["verified_by"]
    assert verifier["name"] == "ncc-nurse" and verifier["id"]
    assert r.json()["data"]["bag"] == "A"
    # An admin may verify too.
    r = bedside(api, j, "infused", j.at(hours=0.2), data={"verified_by": api.keys["admin"]})
    assert r.status_code == 201, r.text
    assert r.json()["data"]["verified_by"]["name"] == "admin"
    with database.session() as session:
        stored = json.dumps([m.data for m in session.exec(select(Milestone)).all()])
    assert nurse not in stored and api.keys["admin"] not in stored
    assert nurse not in json.dumps(audit_of(api, j.case["id"]))


def test_a_verifier_key_is_refused_on_other_steps(api: Api) -> None:
    j = Journey(api, patient="MRN-H12")
    j.schedule()
    r = bedside(api, j, "collected", j.at(hours=1), data={"verified_by": api.keys["admin"]})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "body/data/verified_by"
    assert api.keys["admin"] not in r.text
    assert case_of(api, j)["status"] == "apheresis_scheduled"


def test_a_site_can_require_the_second_verifier(api: Api, database: Database) -> None:
    nurse = api.key("ncc-nurse", Role.coordinator, site="NCC-EAST")
    j = at_site(api, patient="MRN-H11")
    with database.transaction() as session:
        site = session.get(Site, "NCC-EAST")
        assert site is not None
        site.require_second_verifier = True
        session.add(site)
    thaw_at = j.at(hours=24)
    r = bedside(api, j, "thawed", thaw_at)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == "body/data/verified_by"
    assert bedside(api, j, "thawed", thaw_at, data={"verified_by": nurse}).status_code == 201
    r = bedside(api, j, "infused", j.at(hours=0.2), data={"note": "no verifier"})
    assert r.status_code == 422, r.text


def test_a_hold_is_sent_to_subscribed_webhooks_without_patient_data(
    api: Api, database: Database
) -> None:
    def subscribe(kinds: list[str]) -> str:
        r = api.post(
            "admin",
            "/api/v1/webhooks",
            {"url": "https://receiver.example/h", "secret": "s" * 20, "kinds": kinds},
        )
        assert r.status_code == 201, r.text
        assert r.json()["kinds"] == sorted(kinds)
        return str(r.json()["id"])

    holds_hook = subscribe(["case.hold"])
    alerts_hook = subscribe(["coi_mismatch"])
    everything = subscribe([])
    j = Journey(api, patient="SECRET-MRN-HOOK")
    assert hold(api, "qa", j.case["id"], "place", reason="query").status_code == 200
    assert hold(api, "qa", j.case["id"], "release", reason="answered").status_code == 200
    listed = api.get("admin", "/api/v1/webhooks/deliveries").json()["items"]
    assert sorted((d["webhook_id"], d["event"]) for d in listed) == sorted(
        [(holds_hook, "case.hold"), (everything, "case.hold")] * 2
    )
    assert alerts_hook not in {d["webhook_id"] for d in listed}
    with database.session() as session:
        rows = session.exec(
            select(WebhookDelivery).where(WebhookDelivery.webhook_id == holds_hook)
        ).all()
    payloads = sorted(
        (json.loads(d.payload) for d in rows), key=lambda p: p["case"]["hold"]["status"]
    )
    assert [p["case"]["hold"]["status"] for p in payloads] == ["on_hold", "released"]
    first = payloads[0]
    assert first["event"] == "case.hold" and first["delivery_id"] in {d.id for d in rows}
    assert first["case"]["id"] == j.case["id"] and first["case"]["coi"] == j.coi
    assert set(first["case"]) == {"id", "coi", "site", "status", "hold"}
    assert first["case"]["hold"]["reason"] == "query" and first["occurred_at"].endswith("Z")
    assert all(d.alert_id is None for d in rows)
    assert "SECRET-MRN-HOOK" not in json.dumps(payloads) and "patient" not in json.dumps(payloads)


def test_every_alert_kind_can_still_be_subscribed() -> None:
    assert {k.value for k in AlertKind} <= {k.value for k in WebhookKind}
    assert {"case.hold", "milestone.recorded"} <= {k.value for k in WebhookKind}


def test_unknown_webhook_kinds_are_still_refused(api: Api) -> None:
    r = api.post(
        "admin",
        "/api/v1/webhooks",
        {"url": "https://receiver.example/h", "secret": "s" * 20, "kinds": ["case.freeze"]},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "body/kinds/0"
