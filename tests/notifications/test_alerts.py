"""Alerts reach the subscribed people of the alert's site, by e-mail through a real SMTP
server and by Apprise URLs; failures are retried, then dead-lettered, without blocking."""

from __future__ import annotations

from datetime import timedelta

from app.config import Settings
from app.db import Database
from app.jobs import sweeps
from app.services.notifications import delivery
from tests.conftest import NOW, Api
from tests.helpers import Journey
from tests.notifications.conftest import PUBLIC_URL, Mailbox, Sink, free_port
from tests.notifications.flows import assert_clean, email_of, run, subscribe


def _in_transit(api: Api, route: str, patient: str) -> Journey:
    j = Journey(api, route=route, patient=patient)
    j.schedule()
    j.step("collected")
    j.custody(j.ship("to_manufacturing", "FRESH_2_8"), "picked_up")
    return j


def test_loss_of_signal_reaches_the_coordinator_of_its_site_only(
    api: Api, database: Database, settings: Settings, mailbox: Mailbox
) -> None:
    subscribe(api, "ncc", kinds=["loss_of_signal"])
    subscribe(api, "utokyo", kinds=["loss_of_signal"])
    subscribe(api, "kyoto")  # every kind, but no case of its site goes silent
    ncc = _in_transit(api, "KASHIWA-LOCAL", "MRN-0001")
    tokyo = _in_transit(api, "TOKYO-KASHIWA", "MRN-0002")
    # Both shipments go silent: each site's coordinator hears of its own, nobody else.
    assert sweeps.loss_of_signal(database, now=NOW) == 2
    assert run(settings, database, "notifications", NOW) == 2
    [mail] = mailbox.to(email_of("ncc"))
    [tokyo_mail] = mailbox.to(email_of("utokyo"))
    assert mailbox.to(email_of("kyoto")) == []
    assert len(mailbox.messages) == 2
    # Japanese (their zone is Tokyo), the COI, the case page; no other site's data.
    assert ncc.coi in mail.subject and "信号途絶" in mail.subject
    assert "測定値が届いていません" in mail.body
    assert f"{PUBLIC_URL}/cases/{ncc.case['id']}" in mail.body
    assert_clean(mail, foreign=[tokyo.coi, tokyo.case["id"], "UTOKYO"])
    assert tokyo.coi in tokyo_mail.subject
    assert_clean(tokyo_mail, foreign=[ncc.coi, ncc.case["id"], "NCC"])
    # Sent once: a second run finds nothing due.
    assert run(settings, database, "notifications", NOW) == 0
    assert len(mailbox.messages) == 2


def test_quiet_hours_hold_back_all_but_critical(
    api: Api, database: Database, settings: Settings, mailbox: Mailbox
) -> None:
    # NOW is 09:00 in Tokyo: inside 08:00–10:00.
    subscribe(api, "ncc", quiet_hours={"from": "08:00", "to": "10:00"}, language="en")
    j = _in_transit(api, "KASHIWA-LOCAL", "MRN-0001")
    shipment = api.get("ncc", f"/api/v1/shipments?case_id={j.case['id']}").json()["items"][0]
    assert sweeps.loss_of_signal(database, now=NOW) == 1  # major
    assert run(settings, database, "notifications", NOW) == 0
    # A COI mismatch is critical: it goes at once.
    wrong = api.post(
        "courier",
        f"/api/v1/shipments/{shipment['id']}/custody",
        {
            "action": "handoff",
            "occurred_at": j.t.isoformat(),
            "from_party": "a",
            "to_party": "b",
            "coi": "CHJ100126999999",
        },
    )
    assert wrong.status_code == 409
    assert run(settings, database, "notifications", NOW) == 1
    [critical] = mailbox.to(email_of("ncc"))
    assert critical.subject.startswith("[vein2vein] CRITICAL: coi mismatch")
    assert all("loss of signal" not in m.subject for m in mailbox.messages)
    assert run(settings, database, "notifications", NOW + timedelta(minutes=59)) == 0
    assert run(settings, database, "notifications", NOW + timedelta(hours=1)) == 1
    [mail] = [m for m in mailbox.to(email_of("ncc")) if "loss of signal" in m.subject]
    assert "no reading from shipment" in mail.body and "JST" in mail.body


def test_a_failing_target_is_retried_then_dead_without_blocking_others(
    api: Api, database: Database, settings: Settings, mailbox: Mailbox, sink: Sink
) -> None:
    closed = f"json://127.0.0.1:{free_port()}/hook"  # nothing listens there
    working = f"json://127.0.0.1:{sink.port}/hook"
    subscribe(api, "ncc", contacts=[closed, working, email_of("ncc")])
    j = _in_transit(api, "KASHIWA-LOCAL", "MRN-0001")
    assert sweeps.loss_of_signal(database, now=NOW) == 1
    at = NOW
    assert run(settings, database, "notifications", at) == 3
    assert len(mailbox.to(email_of("ncc"))) == 1 and len(sink.posts) == 1
    assert j.coi in sink.posts[0]["title"] and "patient" not in str(sink.posts[0])
    for attempt in range(1, delivery.MAX_ATTEMPTS):
        at += delivery.backoff(attempt) - timedelta(seconds=1)
        assert run(settings, database, "notifications", at) == 0  # not due yet
        at += timedelta(seconds=1)
        assert run(settings, database, "notifications", at) == 1  # the failing one only
    dead = api.get("admin", "/api/v1/notifications/deliveries?status=dead").json()["items"]
    assert len(dead) == 1
    assert dead[0]["attempts"] == delivery.MAX_ATTEMPTS and dead[0]["last_error"]
    assert dead[0]["target"].startswith("json://…") and "127.0.0.1" not in dead[0]["target"]
    sent = api.get("admin", "/api/v1/notifications/deliveries?status=sent").json()["items"]
    assert len(sent) == 2
    # The others were sent once, never again.
    assert len(mailbox.messages) == 1 and len(sink.posts) == 1
    # The alert's own record says who was told and how it went; the audit trail too.
    alert_id = dead[0]["alert_id"]
    listed = api.get("ncc", f"/api/v1/alerts/{alert_id}/notifications").json()["items"]
    assert sorted(n["status"] for n in listed) == ["dead", "sent", "sent"]
    assert api.get("kyoto", f"/api/v1/alerts/{alert_id}/notifications").status_code == 404
    trail = api.get("admin", f"/api/v1/audit?entity=alert&entity_id={alert_id}").json()["items"]
    actions = [e["action"] for e in trail]
    assert "alert.notification_queued" in actions and "alert.notification_dead" in actions
    assert actions.count("alert.notification_sent") == 2
    assert closed not in str(trail) and working not in str(trail)
