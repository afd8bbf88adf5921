"""On-call escalation of a critical alert nobody acknowledges, and one sender among
several schedulers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from app.clock import FrozenClock
from app.config import Settings
from app.db import Database
from app.scheduler import Scheduler, notification_jobs
from models.principal import Role
from tests.conftest import NOW, Api
from tests.helpers import Journey
from tests.notifications.conftest import Mailbox
from tests.notifications.flows import assert_clean, email_of, principal_id, run, subscribe

FOREIGN = "CHJ100126999999"


def _mismatch(api: Api) -> tuple[Journey, int]:
    """A local case in transit and a critical COI-mismatch alert on its shipment."""
    j = Journey(api)
    j.schedule()
    j.step("collected")
    shipment = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(shipment, "picked_up")
    body = {
        "action": "handoff",
        "occurred_at": j.t.isoformat(),
        "from_party": "a",
        "to_party": "b",
        "coi": FOREIGN,
    }
    r = api.post("courier", f"/api/v1/shipments/{shipment['id']}/custody", body)
    assert r.status_code == 409
    [alert] = api.get("admin", "/api/v1/alerts?kind=coi_mismatch").json()["items"]
    assert alert["severity"] == "critical"
    return j, int(alert["id"])


def _rota(api: Api) -> dict[str, str]:
    api.key("ncc-night", Role.coordinator, site="NCC-EAST")
    people = {p: principal_id(api, p) for p in ("ncc", "ncc-night", "qa", "admin")}
    for persona in people:
        subscribe(api, persona, kinds=["delay_breached"], language="en")  # contacts only
    r = api.client.put(
        "/api/v1/sites/NCC-EAST/on-call",
        json={
            "steps": [
                {"principal_ids": [people["ncc"]], "after_min": 10},
                {"principal_ids": [people["ncc-night"]], "after_min": 15},
            ]
        },
        headers=api.headers("admin"),
    )
    assert r.status_code == 200, r.text
    return people


def _escalations(mailbox: Mailbox, persona: str) -> list[Any]:
    return [m for m in mailbox.to(email_of(persona)) if "ESCALATION" in m.subject]


def test_an_unacknowledged_critical_alert_climbs_the_rota(
    api: Api, database: Database, settings: Settings, mailbox: Mailbox, clock: FrozenClock
) -> None:
    _rota(api)
    j, alert_id = _mismatch(api)
    # Step 0 is paged at once.
    assert run(settings, database, "escalations", NOW) == 0
    assert run(settings, database, "notifications", NOW) == 1
    [first] = _escalations(mailbox, "ncc")
    assert j.coi in first.subject and f"/cases/{j.case['id']}" in first.body
    assert_clean(first, foreign=["UTOKYO", "KYOTO"])
    # Not acknowledged within 10 min: the night coordinator.
    assert run(settings, database, "escalations", NOW + timedelta(minutes=9)) == 0
    assert run(settings, database, "escalations", NOW + timedelta(minutes=10)) == 1
    assert run(settings, database, "notifications", NOW + timedelta(minutes=10)) == 1
    assert len(_escalations(mailbox, "ncc-night")) == 1
    # Still nobody after 15 more: QA and every admin.
    assert run(settings, database, "escalations", NOW + timedelta(minutes=24)) == 0
    assert run(settings, database, "escalations", NOW + timedelta(minutes=25)) == 1
    assert run(settings, database, "notifications", NOW + timedelta(minutes=25)) == 2
    assert len(_escalations(mailbox, "qa")) == 1 and len(_escalations(mailbox, "admin")) == 1
    assert run(settings, database, "escalations", NOW + timedelta(hours=5)) == 0  # the end
    for mail in mailbox.messages:
        assert_clean(mail, foreign=["UTOKYO", "KYOTO"])
    listed = api.get("ncc", f"/api/v1/alerts/{alert_id}/notifications").json()["items"]
    assert [n["reason"] for n in listed] == ["step:0", "step:1", "qa_admin", "qa_admin"]
    trail = api.get("qa", f"/api/v1/audit?entity=alert&entity_id={alert_id}").json()["items"]
    steps = [e["after"]["step"] for e in trail if e["action"] == "alert.escalated"]
    assert steps == [0, 1, 2]


def test_acknowledging_stops_the_escalation(
    api: Api, database: Database, settings: Settings, mailbox: Mailbox, clock: FrozenClock
) -> None:
    _rota(api)
    _, alert_id = _mismatch(api)
    assert run(settings, database, "notifications", NOW) == 1
    clock.set(NOW + timedelta(minutes=5))
    assert api.post("ncc", f"/api/v1/alerts/{alert_id}/ack", {"note": "on it"}).status_code == 200
    for minutes in (10, 25, 60):
        at = NOW + timedelta(minutes=minutes)
        assert run(settings, database, "escalations", at) == 0
        assert run(settings, database, "notifications", at) == 0
    assert _escalations(mailbox, "ncc-night") == [] and _escalations(mailbox, "qa") == []
    trail = api.get("qa", f"/api/v1/audit?entity=alert&entity_id={alert_id}").json()["items"]
    stopped = [e for e in trail if e["action"] == "alert.escalation_stopped"]
    assert len(stopped) == 1 and stopped[0]["reason"] == "acknowledged"


def test_the_rota_names_only_people_who_may_see_the_site(api: Api) -> None:
    kyoto = principal_id(api, "kyoto")
    r = api.client.put(
        "/api/v1/sites/NCC-EAST/on-call",
        json={"steps": [{"principal_ids": [kyoto], "after_min": 5}]},
        headers=api.headers("admin"),
    )
    assert r.status_code == 422 and "principal_ids" in str(r.json()["errors"])
    r = api.client.put(
        "/api/v1/sites/NOWHERE/on-call", json={"steps": []}, headers=api.headers("admin")
    )
    assert r.status_code == 404
    assert api.get("ncc", "/api/v1/sites/NCC-EAST/on-call").status_code == 403


def test_two_schedulers_send_each_message_once(
    api: Api, database: Database, settings: Settings, mailbox: Mailbox
) -> None:
    subscribe(api, "ncc")
    _mismatch(api)
    other = Database(database.engine.url.render_as_string(False), pool_size=2)
    instances = [
        Scheduler(db, clock=FrozenClock(NOW), jobs=notification_jobs(settings))
        for db in (database, other)
    ]
    try:
        for _ in range(3):
            ran = [s.run_job("notifications") for s in instances]
            if database.dialect == "postgresql":
                assert ran.count(True) == 1  # the leader alone
            else:
                assert all(ran)  # one host: both run, the outbox's claim keeps it once
            for s in instances:
                s.run_job("escalations")
                s.run_job("digests")
        assert len(mailbox.to(email_of("ncc"))) == 1
    finally:
        for s in instances:
            s.shutdown()
        other.dispose()
