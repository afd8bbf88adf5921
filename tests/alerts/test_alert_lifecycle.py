"""Alerts close: by a person in scope with a reason (a COI mismatch only by QA, signed), or by
themselves when their condition ends; raising, acknowledging and resolving are audited."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlmodel import select

from app.db import Database
from app.jobs import delays, sweeps
from app.services.alerts import messages
from models.webhook import WebhookDelivery
from tests.coldchain.test_readings import in_transit, post, readings
from tests.conftest import NOW, Api
from tests.helpers import Journey, iso

MIN = timedelta(minutes=1)
WRONG = "CHJ100126999999"  # a well-formed COI of no case


def _silent(api: Api, database: Database, patient: str = "MRN-A1") -> dict[str, Any]:
    """An open loss-of-signal alert on a local case of NCC-EAST."""
    _, ship, t0 = in_transit(api, patient=patient)
    post(api, "courier", readings(ship["device_ids"][0], t0, [5.0]))
    assert sweeps.loss_of_signal(database, now=t0 + 45 * MIN) >= 1
    items = api.get("admin", "/api/v1/alerts?kind=loss_of_signal").json()["items"]
    return next(a for a in items if a["shipment_id"] == ship["id"])


def _mismatch(api: Api) -> dict[str, Any]:
    """A critical coi_mismatch alert from a wrong label scanned at collection."""
    j = Journey(api, patient="MRN-COI")
    j.schedule()
    r = api.post(
        "ncc",
        f"/api/v1/cases/{j.case['id']}/events",
        {"type": "collected", "occurred_at": iso(j.at(hours=1)), "site": "NCC-EAST", "coi": WRONG},
    )
    assert r.status_code == 409
    (alert,) = api.get("ncc", "/api/v1/alerts?kind=coi_mismatch").json()["items"]
    return dict(alert)


def _audit(api: Api, alert_id: int) -> list[dict[str, Any]]:
    r = api.get("qa", f"/api/v1/audit?entity=alert&entity_id={alert_id}")
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def _resolve(api: Api, persona: str, alert_id: int, body: Any) -> Any:
    return api.post(persona, f"/api/v1/alerts/{alert_id}/resolve", body)


def test_a_coordinator_in_scope_resolves_with_a_reason(api: Api, database: Database) -> None:
    hook = api.post(
        "admin",
        "/api/v1/webhooks",
        {"url": "https://hospital.example/v2v", "kinds": ["loss_of_signal"], "secret": "s" * 24},
    )
    assert hook.status_code == 201, hook.text
    alert = _silent(api, database)
    reason = {"reason": "logger swapped by the courier; readings resume on the new one"}
    assert _resolve(api, "kyoto", alert["id"], reason).status_code == 404  # another hospital
    assert _resolve(api, "bridgewater", alert["id"], reason).status_code == 404  # other factory
    assert _resolve(api, "viewer", alert["id"], reason).status_code == 403
    assert _resolve(api, "courier", alert["id"], reason).status_code == 403  # watches, no more

    r = _resolve(api, "ncc", alert["id"], reason)
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["status"], done["resolved_by"], done["resolve_reason"]) == (
        "resolved",
        "ncc",
        reason["reason"],
    )
    assert done["resolved_at"].endswith("Z") and done["code"] == "coldchain.loss_of_signal"

    again = _resolve(api, "qa", alert["id"], reason)
    assert again.status_code == 409 and again.json()["code"] == "alert-resolved"

    entries = _audit(api, alert["id"])
    assert [e["action"] for e in entries] == ["alert.raised", "alert.resolved"]
    assert entries[0]["actor"] == "system:coldchain.loss_of_signal"
    last = entries[-1]
    assert (last["actor"], last["reason"]) == ("ncc", reason["reason"])
    assert (last["before"]["status"], last["after"]["status"]) == ("open", "resolved")

    with database.session() as session:
        rows = session.exec(
            select(WebhookDelivery).where(WebhookDelivery.alert_id == alert["id"])
        ).all()
    events = {row.event: json.loads(row.payload) for row in rows}
    assert sorted(events) == ["alert.opened", "alert.resolved"]
    sent = events["alert.resolved"]["alert"]
    assert (sent["resolved_by"], sent["resolve_reason"]) == ("ncc", reason["reason"])


def test_the_factory_qa_and_admin_resolve_too(api: Api, database: Database) -> None:
    for n, persona in enumerate(("kashiwa", "qa", "admin")):
        alert = _silent(api, database, patient=f"MRN-F{n}")
        r = _resolve(api, persona, alert["id"], {"reason": "checked with the courier"})
        assert r.status_code == 200, (persona, r.text)
        assert r.json()["resolved_by"] == persona


def test_a_coi_mismatch_is_resolved_only_by_qa_with_a_signature(api: Api) -> None:
    alert = _mismatch(api)
    url = f"/api/v1/alerts/{alert['id']}/resolve"
    reason = "wrong bag scanned; the right label was verified by two nurses"
    signed = {"reason": reason, "signature": {"password_or_key": "", "meaning": "review"}}

    def sign(key: str) -> dict[str, Any]:
        return {**signed, "signature": {"password_or_key": key, "meaning": "review"}}

    assert api.post("ncc", url, sign(api.keys["ncc"])).status_code == 403
    assert api.post("admin", url, sign(api.keys["admin"])).status_code == 403
    unsigned = api.post("qa", url, {"reason": reason})
    assert unsigned.status_code == 422
    assert unsigned.headers["content-type"].startswith("application/problem+json")
    assert unsigned.json()["errors"][0]["loc"] == "body/signature"
    assert api.post("qa", url, sign(api.keys["admin"])).status_code == 403  # not QA's own key
    still = api.get("qa", "/api/v1/alerts?kind=coi_mismatch&status=all").json()["items"]
    assert still[0]["status"] == "open"

    r = api.post("qa", url, sign(api.keys["qa"]))
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["resolved_by"]) == ("resolved", "qa")
    last = _audit(api, alert["id"])[-1]
    assert last["action"] == "alert.resolved" and last["reason"] == reason
    assert (last["after"]["signed_by"], last["after"]["meaning"]) == ("qa", "review")
    assert api.post("qa", url, sign(api.keys["qa"])).status_code == 409


def test_bad_bodies_are_problems_and_change_nothing(api: Api, database: Database) -> None:
    alert = _silent(api, database)
    url = f"/api/v1/alerts/{alert['id']}/resolve"
    for body in (
        {},
        {"reason": ""},
        {"reason": "   "},
        {"reason": "x" * 2001},
        {"reason": "ok", "note": "unknown field"},
        {"reason": "ok", "signature": {"password_or_key": "k"}},
        ["reason"],
    ):
        r = api.post("ncc", url, body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert api.post("ncc", "/api/v1/alerts/abc/resolve", {"reason": "x"}).status_code == 422
    assert api.post("ncc", "/api/v1/alerts/999999/resolve", {"reason": "x"}).status_code == 404
    (now,) = [a for a in api.get("ncc", "/api/v1/alerts").json()["items"] if a["id"] == alert["id"]]
    assert (now["status"], now["resolved_by"], now["resolve_reason"]) == ("open", None, None)
    assert [e["action"] for e in _audit(api, alert["id"])] == ["alert.raised"]


def test_raise_ack_and_automatic_resolution_are_audited_refreshes_are_not(
    api: Api, database: Database
) -> None:
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    post(api, "courier", readings(device, t0, [5.0]))
    for minutes in (45, 50, 55):  # raised once, then refreshed twice
        sweeps.loss_of_signal(database, now=t0 + minutes * MIN)
    (alert,) = api.get("ncc", "/api/v1/alerts?kind=loss_of_signal").json()["items"]
    ack = api.post("ncc", f"/api/v1/alerts/{alert['id']}/ack", {"note": "calling the courier"})
    assert ack.status_code == 200
    post(api, "courier", readings(device, t0 + 56 * MIN, [5.0]))
    sweeps.loss_of_signal(database, now=t0 + 57 * MIN)
    entries = _audit(api, alert["id"])
    assert [(e["action"], e["actor"]) for e in entries] == [
        ("alert.raised", "system:coldchain.loss_of_signal"),
        ("alert.acknowledged", "ncc"),
        ("alert.resolved", "system:coldchain.loss_of_signal"),
    ]
    assert entries[1]["reason"] == "calling the courier"
    assert entries[2]["before"] == {"status": "acknowledged"}
    done = api.get("ncc", "/api/v1/alerts?kind=loss_of_signal&status=resolved").json()["items"]
    assert done[0]["resolved_by"] == "system:coldchain.loss_of_signal"


def test_status_all_lists_every_alert_and_unknown_statuses_are_refused(
    api: Api, database: Database
) -> None:
    first = _silent(api, database, patient="MRN-S1")
    _silent(api, database, patient="MRN-S2")
    assert _resolve(api, "ncc", first["id"], {"reason": "handled"}).status_code == 200
    every = api.get("ncc", "/api/v1/alerts?status=all").json()["items"]
    assert sorted(a["status"] for a in every) == ["open", "resolved"]
    assert every == api.get("ncc", "/api/v1/alerts").json()["items"]
    assert len(api.get("ncc", "/api/v1/alerts?status=resolved").json()["items"]) == 1
    bad = api.get("ncc", "/api/v1/alerts?status=closed")
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")


def test_at_risk_resolves_when_the_milestone_happens_breached_waits_for_a_person(
    api: Api, database: Database
) -> None:
    j = Journey(api, patient="D1", start=NOW - timedelta(days=3))
    j.schedule()
    j.step("collected")
    collected = j.t
    delays.delay_sweep(database, now=collected + timedelta(hours=5.7))  # at risk
    delays.delay_sweep(database, now=collected + timedelta(hours=7))  # target missed
    s = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(s, "picked_up", hours=7)
    j.custody(s, "delivered")
    j.step("received_at_manufacturing")
    delays.delay_sweep(database, now=j.t + MIN)
    got = {a["kind"]: a for a in api.get("ncc", "/api/v1/alerts?status=all").json()["items"]}
    risk, late = got["delay_at_risk"], got["delay_breached"]
    assert (risk["status"], risk["resolved_by"]) == ("resolved", "system:delay.at_risk")
    assert risk["resolve_reason"] == "received_at_manufacturing recorded"
    assert late["status"] == "open"
    r = _resolve(api, "kashiwa", late["id"], {"reason": "courier strike; reviewed at the QBR"})
    assert r.status_code == 200, r.text


def test_at_risk_resolves_when_the_case_is_cancelled(api: Api, database: Database) -> None:
    j = Journey(api, patient="D2", start=NOW - timedelta(days=3))
    j.schedule()
    j.step("collected")
    delays.delay_sweep(database, now=j.t + timedelta(hours=5.7))
    (risk,) = api.get("ncc", "/api/v1/alerts?kind=delay_at_risk&status=open").json()["items"]
    j.step("cancelled", hours=5.8, coi=False)
    delays.delay_sweep(database, now=j.t + MIN)
    (risk,) = api.get("ncc", "/api/v1/alerts?kind=delay_at_risk").json()["items"]
    assert (risk["status"], risk["resolve_reason"]) == ("resolved", "case cancelled")
    assert delays.delay_sweep(database, now=j.t + 2 * MIN) == 0


def test_every_alert_of_the_flows_carries_the_code_and_params_of_its_message(
    api: Api, database: Database
) -> None:
    from tests.interop.test_epcis import LOGGER, capture, document, sensors, shipment

    # Cold chain: a long warm excursion (excursion, budget, MKT), silence, stale fresh material.
    _, ship, t0 = in_transit(api, patient="MRN-C1")
    post(api, "courier", readings(ship["device_ids"][0], t0, [5, *(9,) * 15]))
    sweeps.loss_of_signal(database, now=t0 + 4 * 60 * MIN)
    sweeps.hold_time(database, now=t0 + 30 * 60 * MIN)
    # Delays and a slot missed.
    d = Journey(api, patient="MRN-D1", start=NOW - timedelta(days=3))
    d.schedule()
    d.step("collected", hours=30)
    delays.delay_sweep(database, now=d.t + timedelta(hours=5.7))
    delays.delay_sweep(database, now=d.t + timedelta(hours=7))
    # A thawed product left waiting, then infused.
    j = Journey(api, patient="MRN-T1")
    j.schedule()
    j.step("collected")
    inbound = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(inbound, "picked_up")
    j.custody(inbound, "delivered")
    j.step("received_at_manufacturing")
    j.step("manufacturing_started", coi=False)
    j.step("qc_released", coi=False)
    outbound = j.ship("to_site", "CRYO_LN2")
    j.custody(outbound, "picked_up")
    j.custody(outbound, "delivered")
    j.step("received_at_site")
    j.step("thawed")
    sweeps.thaw_clock(database, now=j.t + 31 * MIN)
    j.step("infused", hours=0.6)
    sweeps.thaw_clock(database, now=j.t + MIN)
    # A wrong label and an EPCIS sensor alarm.
    _mismatch(api)
    e, _ = shipment(api, devices=[LOGGER], patient="MRN-E1")
    report = {"type": "Temperature", "exception": "ALARM_CONDITION", "value": 9.5, "uom": "CEL"}
    capture(api, "courier", document(sensors(e.t + 10 * MIN, [report])))

    alerts = api.get("admin", "/api/v1/alerts?status=all&limit=200").json()["items"]
    codes = set()
    for alert in alerts:
        assert alert["code"] and alert["params"] is not None, alert
        assert (
            messages.render(alert["code"], alert["params"], lang="en", tz="UTC")
            == (alert["message"])
        )
        assert messages.render(alert["code"], alert["params"], lang="ja", tz="Asia/Tokyo")
        codes.add(alert["code"])
    assert codes == {
        "coldchain.excursion",
        "coldchain.budget",
        "coldchain.mkt",
        "coldchain.loss_of_signal",
        "coldchain.fresh_stability",
        "coldchain.thaw_window.late",
        "delay.at_risk",
        "delay.breached",
        "delay.slot_conflict",
        "identity.coi_mismatch",
        "interop.epcis_alarm",
    }
    thaw = next(a for a in alerts if a["kind"] == "thaw_window")
    assert (thaw["status"], thaw["resolve_reason"]) == ("resolved", "case infused")
