"""Webhook administration: bad input, auditing without the secret, admins only, signatures, the
delivery list's cursor."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from app.clock import FrozenClock
from app.db import Database
from app.services.alerts import lifecycle as alerts
from integrations.webhooks import sign, verify
from models.alert import AlertKind, Severity
from models.audit import AuditEntry
from models.webhook import Webhook
from tests.conftest import Api
from tests.webhooks.test_webhooks import (
    HOOK_URL,
    SECRET,
    subscribe,
)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"url": "ftp://receiver.example/x", "secret": SECRET}, "body/url"),
        ({"url": "receiver.example/x", "secret": SECRET}, "body/url"),
        ({"url": HOOK_URL, "secret": SECRET, "kinds": ["earthquake"]}, "body/kinds/0"),
        ({"url": HOOK_URL, "secret": "too-short"}, "body/secret"),
        ({"url": HOOK_URL}, "body/secret"),
        ({"url": HOOK_URL, "secret": SECRET, "active": False}, "body/active"),
    ],
    ids=["ftp-url", "no-scheme", "unknown-kind", "short-secret", "no-secret", "extra-field"],
)
def test_bad_input_is_a_422_problem_and_writes_nothing(
    api: Api, database: Database, body: dict[str, Any], loc: str
) -> None:
    with database.session() as session:
        audit_before = len(session.exec(select(AuditEntry.seq)).all())
    r = api.post("admin", "/api/v1/webhooks", body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == 422 and loc in [e["loc"] for e in problem["errors"]]
    assert SECRET not in r.text
    with database.session() as session:
        assert session.exec(select(Webhook)).all() == []
        assert len(session.exec(select(AuditEntry.seq)).all()) == audit_before


def test_subscribing_is_audited_without_the_secret(api: Api, database: Database) -> None:
    hook = subscribe(api, kinds=["coi_mismatch", "coi_mismatch"])
    assert hook["kinds"] == ["coi_mismatch"] and hook["created_by"] == "admin"
    audit = api.get("admin", f"/api/v1/audit?entity=webhook&entity_id={hook['id']}").json()
    (entry,) = audit["items"]
    assert entry["action"] == "webhook.created" and entry["after"]["url"] == HOOK_URL
    assert SECRET not in json.dumps(entry)
    with database.session() as session:
        stored = session.exec(select(Webhook).where(col(Webhook.id) == hook["id"])).one()
    assert stored.secret == SECRET  # kept as given: every delivery is signed with it


@pytest.mark.parametrize(
    "persona", ["ncc", "kashiwa", "courier", "qa", "viewer"], ids=lambda p: str(p)
)
def test_only_admins_manage_webhooks(api: Api, persona: str) -> None:
    body = {"url": HOOK_URL, "secret": SECRET}
    assert api.post(persona, "/api/v1/webhooks", body).status_code == 403
    assert api.get(persona, "/api/v1/webhooks").status_code == 403
    assert api.get(persona, "/api/v1/webhooks/deliveries?status=dead").status_code == 403
    retry = api.post(persona, "/api/v1/webhooks/deliveries/" + "0" * 32 + "/retry")
    assert retry.status_code == 403
    assert api.client.get("/api/v1/webhooks").status_code == 401
    assert api.get("admin", "/api/v1/webhooks").json()["items"] == []


def test_signature_helpers_agree_with_a_plain_hmac() -> None:
    body = b'{"event":"alert.opened"}'
    digest = hmac.new(b"k" * 16, body, hashlib.sha256).hexdigest()
    assert sign("k" * 16, body) == f"sha256={digest}"
    assert verify("k" * 16, body, f"sha256={digest}")
    assert not verify("k" * 16, body + b" ", f"sha256={digest}")


def test_delivery_list_pages_with_a_cursor(
    api: Api, database: Database, clock: FrozenClock
) -> None:
    subscribe(api)
    with database.transaction() as session:
        for n in range(5):
            alerts.raise_alert(
                session,
                kind=AlertKind.slot_conflict,
                severity=Severity.warning,
                message=f"slot {n}",
                now=clock() + timedelta(seconds=n % 2),
                dedupe_key=f"slot:{n}",
            )
    seen: list[str] = []
    cursor = ""
    while True:
        r = api.get("admin", f"/api/v1/webhooks/deliveries?limit=2{cursor}")
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [d["id"] for d in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert len(seen) == len(set(seen)) == 5
    bad = api.get("admin", "/api/v1/webhooks/deliveries?cursor=bm9wZQ")
    assert bad.status_code == 422
