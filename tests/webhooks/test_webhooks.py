"""Webhooks: signed deliveries from a durable outbox, retries with backoff, dead letters."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlmodel import select

from app.clock import FrozenClock
from app.db import Database
from app.jobs.webhooks import deliver_webhooks
from app.services.alerts import lifecycle as alerts
from app.services.webhooks import outbox as webhooks
from app.services.webhooks.outbox import LEASE, MAX_ATTEMPTS, backoff, claim_next, record_result
from integrations.webhooks import SendResult, verify
from models.alert import AlertKind, Severity
from models.webhook import Webhook, WebhookDelivery
from tests.conftest import Api
from tests.helpers import Journey, iso

WRONG = "CHJ100126999999"
SECRET = "s3cret-s3cret-s3cret"
HOOK_URL = "https://receiver.example/hooks/v2v"


class Receiver:
    """Plays the subscriber: answers with scripted statuses (or transport errors), then 200."""

    def __init__(self, *script: int | Exception, default: int | Exception = 200) -> None:
        self.script = list(script)
        self.default = default
        self.requests: list[httpx.Request] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            outcome = self.script.pop(0) if self.script else self.default
        if isinstance(outcome, Exception):
            raise outcome
        return httpx.Response(outcome, json={"ok": outcome < 300})

    @contextmanager
    def client(self) -> Iterator[httpx.Client]:
        with httpx.Client(transport=httpx.MockTransport(self)) as client:
            yield client


def subscribe(
    api: Api, *, kinds: list[str] | None = None, url: str = HOOK_URL, secret: str = SECRET
) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url, "secret": secret}
    if kinds is not None:
        body["kinds"] = kinds
    r = api.post("admin", "/api/v1/webhooks", body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def coi_mismatch(api: Api, patient: str = "MRN-0001") -> dict[str, Any]:
    """A case whose collection is refused for a wrong label: one critical coi_mismatch alert."""
    j = Journey(api, patient=patient)
    j.schedule()
    r = api.post(
        "ncc",
        f"/api/v1/cases/{j.case['id']}/events",
        {"type": "collected", "occurred_at": iso(j.at(hours=1)), "site": "NCC-EAST", "coi": WRONG},
    )
    assert r.status_code == 409 and r.json()["code"] == "coi-mismatch"
    return j.case


def deliveries(api: Api, query: str = "") -> list[dict[str, Any]]:
    r = api.get("admin", f"/api/v1/webhooks/deliveries{query}")
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def deliver(database: Database, clock: FrozenClock, receiver: Receiver) -> int:
    with receiver.client() as client:
        return deliver_webhooks(database, now=clock(), client=client)


def test_a_coi_mismatch_is_delivered_once_and_signed(
    api: Api, database: Database, clock: FrozenClock
) -> None:
    hook = subscribe(api)
    assert "secret" not in hook and hook["kinds"] == [] and hook["active"] is True
    case = coi_mismatch(api)
    (pending,) = deliveries(api, "?status=pending")
    assert pending["webhook_id"] == hook["id"] and pending["event"] == "alert.opened"
    assert pending["attempts"] == 0

    receiver = Receiver()
    assert deliver(database, clock, receiver) == 1
    (request,) = receiver.requests
    assert str(request.url) == HOOK_URL and request.method == "POST"
    raw = request.content
    expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert request.headers["X-V2V-Signature"] == expected
    assert verify(SECRET, raw, request.headers["X-V2V-Signature"])
    assert not verify("another-secret-entirely", raw, request.headers["X-V2V-Signature"])
    assert request.headers["X-V2V-Event"] == "alert.opened"
    assert request.headers["X-V2V-Delivery"] == pending["id"]
    assert request.headers["Content-Type"] == "application/json"
    body = json.loads(raw)
    assert body["delivery_id"] == pending["id"] and body["event"] == "alert.opened"
    assert body["occurred_at"] == "2026-11-26T00:00:00Z"
    assert body["alert"]["kind"] == "coi_mismatch" and body["alert"]["severity"] == "critical"
    assert body["alert"]["case_id"] == case["id"]
    assert body["alert"]["id"] == pending["alert_id"]

    (done,) = deliveries(api, "?status=delivered")
    assert done["id"] == pending["id"] and done["attempts"] == 1
    assert done["last_status_code"] == 200 and done["delivered_at"] == "2026-11-26T00:00:00Z"
    # Idempotent: nothing is due any more, now or later.
    assert deliver(database, clock, receiver) == 0
    clock.advance(hours=2)
    assert deliver(database, clock, receiver) == 0
    assert len(receiver.requests) == 1


def test_a_failed_delivery_is_retried_after_the_backoff_and_delivered_once(
    api: Api, database: Database, clock: FrozenClock
) -> None:
    subscribe(api)
    coi_mismatch(api)
    receiver = Receiver(500)
    assert deliver(database, clock, receiver) == 1
    (row,) = deliveries(api, "?status=pending")
    assert row["attempts"] == 1 and row["last_status_code"] == 500
    assert row["last_error"] == "HTTP 500"
    assert row["next_attempt_at"] == "2026-11-26T00:00:30Z"

    assert deliver(database, clock, receiver) == 0
    clock.advance(seconds=29)
    assert deliver(database, clock, receiver) == 0
    clock.advance(seconds=1)
    assert deliver(database, clock, receiver) == 1
    assert deliver(database, clock, receiver) == 0

    first, second = receiver.requests
    assert first.content == second.content
    assert first.headers["X-V2V-Delivery"] == second.headers["X-V2V-Delivery"] == row["id"]
    assert first.headers["X-V2V-Signature"] == second.headers["X-V2V-Signature"]
    (done,) = deliveries(api, "?status=delivered")
    assert done["id"] == row["id"] and done["attempts"] == 2 and done["last_error"] is None


def test_backoff_doubles_from_thirty_seconds_and_is_capped_at_an_hour() -> None:
    waits = [backoff(n).total_seconds() for n in range(1, 10)]
    assert waits == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]


def test_a_permanently_failing_receiver_ends_dead_and_an_admin_can_retry_it(
    api: Api, database: Database, clock: FrozenClock
) -> None:
    subscribe(api)
    coi_mismatch(api)
    failing = Receiver(default=httpx.ConnectError("connection refused"))
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert deliver(database, clock, failing) == 1, attempt
        assert deliver(database, clock, failing) == 0, attempt
        clock.advance(seconds=backoff(attempt).total_seconds())
    assert len(failing.requests) == MAX_ATTEMPTS
    assert deliver(database, clock, failing) == 0
    clock.advance(days=1)
    assert deliver(database, clock, failing) == 0

    assert deliveries(api, "?status=pending") == []
    (dead,) = deliveries(api, "?status=dead")
    assert dead["attempts"] == MAX_ATTEMPTS and dead["last_status_code"] is None
    # Generic on purpose: the library's message would name the address and tell a closed
    # port ("refused") from a filtered one (see test_webhook_security.py).
    assert dead["last_error"] == "connection failed"

    r = api.post("admin", f"/api/v1/webhooks/deliveries/{dead['id']}/retry")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending" and r.json()["attempts"] == 0
    again = api.post("admin", f"/api/v1/webhooks/deliveries/{dead['id']}/retry")
    assert again.status_code == 409 and again.json()["code"] == "delivery-not-dead"
    assert again.headers["content-type"] == "application/problem+json"
    missing = api.post("admin", "/api/v1/webhooks/deliveries/" + "0" * 32 + "/retry")
    assert missing.status_code == 404
    audit = api.get(
        "admin", f"/api/v1/audit?entity=webhook_delivery&entity_id={dead['id']}"
    ).json()["items"]
    assert [e["action"] for e in audit] == ["webhook.delivery_retried"]
    assert audit[0]["before"]["status"] == "dead" and audit[0]["after"]["status"] == "pending"

    assert deliver(database, clock, Receiver()) == 1
    assert deliveries(api, "?status=delivered")[0]["id"] == dead["id"]


def test_deliveries_survive_a_restart(
    api: Api, database: Database, clock: FrozenClock, db_url: str
) -> None:
    subscribe(api)
    coi_mismatch(api)
    coi_mismatch(api, patient="MRN-0002")  # a second case, a second alert
    # A worker claims a delivery, then dies before it can record the result.
    crashed = Database(db_url, pool_size=1)
    with crashed.transaction() as session:
        claim = claim_next(session, now=clock())
    crashed.dispose()
    assert claim is not None

    restarted = Database(db_url, pool_size=2)
    try:
        receiver = Receiver()
        # The untouched delivery goes out at once; the crashed one waits for its lease.
        assert deliver(restarted, clock, receiver) == 1
        assert deliver(restarted, clock, receiver) == 0
        clock.advance(seconds=LEASE.total_seconds())
        assert deliver(restarted, clock, receiver) == 1
        sent = [r.headers["X-V2V-Delivery"] for r in receiver.requests]
        assert sent[1] == claim.delivery_id and len(set(sent)) == 2
        # The dead worker's late result is stale and changes nothing.
        with restarted.transaction() as session:
            stale = record_result(session, claim=claim, result=SendResult(500), now=clock())
        assert stale is None
        statuses = {d["id"]: (d["status"], d["attempts"]) for d in deliveries(api)}
        assert statuses[claim.delivery_id] == ("delivered", 2)
        assert all(s == "delivered" for s, _ in statuses.values())
    finally:
        restarted.dispose()


def test_attempts_that_never_report_back_still_end_dead(
    api: Api, database: Database, clock: FrozenClock
) -> None:
    subscribe(api)
    coi_mismatch(api)
    for _ in range(MAX_ATTEMPTS):  # every worker dies mid-attempt
        with database.transaction() as session:
            assert claim_next(session, now=clock()) is not None
        clock.advance(seconds=LEASE.total_seconds())
    receiver = Receiver()
    assert deliver(database, clock, receiver) == 0 and receiver.requests == []
    (dead,) = deliveries(api, "?status=dead")
    assert dead["attempts"] == MAX_ATTEMPTS and "no result" in dead["last_error"]


def test_a_deactivated_webhook_gets_nothing(
    api: Api, database: Database, clock: FrozenClock
) -> None:
    hook = subscribe(api)
    coi_mismatch(api)
    with database.transaction() as session:
        row = session.get(Webhook, hook["id"])
        assert row is not None
        row.active = False
        session.add(row)
    receiver = Receiver()
    assert deliver(database, clock, receiver) == 0 and receiver.requests == []
    (dead,) = deliveries(api, "?status=dead")
    assert dead["last_error"] == "webhook is inactive"
    coi_mismatch(api, patient="MRN-0002")  # no delivery is queued for it any more
    assert len(deliveries(api)) == 1


def test_only_subscribed_kinds_are_delivered(api: Api, database: Database) -> None:
    coi = subscribe(api, kinds=["coi_mismatch"])
    temperature = subscribe(api, kinds=["temperature_excursion", "loss_of_signal"])
    everything = subscribe(api, kinds=[])
    coi_mismatch(api)
    got = {d["webhook_id"] for d in deliveries(api)}
    assert got == {coi["id"], everything["id"]}
    assert deliveries(api, f"?webhook_id={temperature['id']}") == []
    listed = api.get("admin", "/api/v1/webhooks").json()
    assert listed["next_cursor"] is None
    assert {h["id"]: h["kinds"] for h in listed["items"]} == {
        coi["id"]: ["coi_mismatch"],
        temperature["id"]: ["loss_of_signal", "temperature_excursion"],
        everything["id"]: [],
    }
    assert SECRET not in json.dumps(listed)


def test_an_alert_refresh_is_sent_only_when_it_changes(
    api: Api, database: Database, clock: FrozenClock
) -> None:
    subscribe(api, kinds=["loss_of_signal"])

    def raise_(message: str) -> None:
        with database.transaction() as session:
            alerts.raise_alert(
                session,
                kind=AlertKind.loss_of_signal,
                severity=Severity.major,
                message=message,
                now=clock(),
                dedupe_key="los:test",
            )

    raise_("no reading for 31 min")
    clock.advance(minutes=1)
    raise_("no reading for 31 min")
    clock.advance(minutes=1)
    raise_("no reading for 45 min")
    events = [d["event"] for d in reversed(deliveries(api))]
    assert events == ["alert.opened", "alert.updated"]


def test_each_delivery_is_sent_once_under_concurrent_workers(
    api: Api, database: Database, clock: FrozenClock
) -> None:
    subscribe(api)
    subscribe(api, url="https://second.example/hook")
    with database.transaction() as session:
        for n in range(12):
            alerts.raise_alert(
                session,
                kind=AlertKind.delay_at_risk,
                severity=Severity.warning,
                message=f"case {n} at risk",
                now=clock(),
                dedupe_key=f"delay:{n}",
            )
    receiver = Receiver()
    counts: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with receiver.client() as client:
                counts.append(webhooks.deliver_due(database, client=client, now=clock()).attempted)
        except BaseException as exc:  # surfaced below; a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    sent = Counter(r.headers["X-V2V-Delivery"] for r in receiver.requests)
    assert len(sent) == 24 and set(sent.values()) == {1} and sum(counts) == 24
    with database.session() as session:
        rows = session.exec(select(WebhookDelivery)).all()
    assert {r.status for r in rows} == {"delivered"} and {r.attempts for r in rows} == {1}
