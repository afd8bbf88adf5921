"""Changing a webhook: pause, resume, rescope, delete, rotate its secret (each audited, the secret
never), admins only; the guarded client."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from app.clock import FrozenClock
from app.db import Database
from app.jobs.webhooks import deliver_webhooks
from integrations.webhooks import default_client, verify
from models.webhook import Webhook
from tests.conftest import Api
from tests.webhooks.test_webhook_security import _hook
from tests.webhooks.test_webhooks import SECRET, Receiver, coi_mismatch, deliveries


def _patch(api: Api, hook_id: str, body: dict[str, Any]) -> Any:
    return api.client.patch(f"/api/v1/webhooks/{hook_id}", json=body, headers=api.headers("admin"))


def _audit(api: Api, hook_id: str) -> list[dict[str, Any]]:
    r = api.get("admin", f"/api/v1/audit?entity=webhook&entity_id={hook_id}")
    return list(r.json()["items"])


def test_patch_pauses_resumes_and_rescopes_and_is_audited(api: Api) -> None:
    hook = _hook(api, "https://p.example/h").json()
    r = _patch(api, hook["id"], {"active": False})
    assert r.status_code == 200 and r.json()["active"] is False
    coi_mismatch(api)
    assert deliveries(api) == []  # paused: nothing queued
    r = _patch(api, hook["id"], {"active": True, "kinds": ["coi_mismatch"], "sites": ["NCC-EAST"]})
    assert r.status_code == 200, r.text
    assert r.json()["kinds"] == ["coi_mismatch"] and r.json()["sites"] == ["NCC-EAST"]
    coi_mismatch(api, patient="MRN-0002")
    assert len(deliveries(api)) == 1
    assert _patch(api, hook["id"], {}).status_code == 422
    assert _patch(api, hook["id"], {"url": "http://127.0.0.1/"}).status_code == 422
    assert _patch(api, "0" * 32, {"active": False}).status_code == 404
    actions = [e["action"] for e in _audit(api, hook["id"])]
    assert actions.count("webhook.updated") == 2
    updated = [e for e in _audit(api, hook["id"]) if e["action"] == "webhook.updated"]
    assert {e["after"]["active"] for e in updated} == {False, True}
    assert SECRET not in json.dumps(_audit(api, hook["id"]))


def test_delete_stops_the_webhook_keeps_its_deliveries_and_is_audited(
    api: Api, database: Database, clock: FrozenClock
) -> None:
    hook = _hook(api, "https://d.example/h").json()
    coi_mismatch(api)
    (pending,) = deliveries(api, "?status=pending")
    r = api.client.delete(f"/api/v1/webhooks/{hook['id']}", headers=api.headers("admin"))
    assert r.status_code == 204, r.text
    assert api.get("admin", "/api/v1/webhooks").json()["items"] == []
    (dead,) = deliveries(api, "?status=dead")
    assert dead["id"] == pending["id"] and dead["last_error"] == "webhook deleted"
    receiver = Receiver()
    with receiver.client() as client:
        assert deliver_webhooks(database, now=clock(), client=client) == 0
    coi_mismatch(api, patient="MRN-0002")
    assert len(deliveries(api)) == 1
    with database.session() as session:
        row = session.get(Webhook, hook["id"])
        assert row is not None and row.secret == "" and row.active is False
    again = api.client.delete(f"/api/v1/webhooks/{hook['id']}", headers=api.headers("admin"))
    assert again.status_code == 404
    assert _patch(api, hook["id"], {"active": True}).status_code == 404
    (entry,) = [e for e in _audit(api, hook["id"]) if e["action"] == "webhook.deleted"]
    assert entry["after"]["pending_cancelled"] == 1 and SECRET not in json.dumps(entry)


def test_rotate_secret_returns_it_once_signs_with_it_and_audits_without_it(
    api: Api, database: Database, clock: FrozenClock
) -> None:
    hook = _hook(api, "https://r.example/h").json()
    url = f"/api/v1/webhooks/{hook['id']}/rotate-secret"
    r = api.post("admin", url, {})
    assert r.status_code == 200, r.text
    generated = r.json()["secret"]
    assert r.json()["id"] == hook["id"] and len(generated) >= 32
    assert generated not in json.dumps(api.get("admin", "/api/v1/webhooks").json())
    coi_mismatch(api)
    receiver = Receiver()
    with receiver.client() as client:
        assert deliver_webhooks(database, now=clock(), client=client) == 1
    (request,) = receiver.requests
    assert verify(generated, request.content, request.headers["X-V2V-Signature"])
    assert not verify(SECRET, request.content, request.headers["X-V2V-Signature"])

    chosen = "a-chosen-secret-of-the-admin"
    r = api.post("admin", url, {"secret": chosen})
    assert r.status_code == 200 and r.json()["secret"] == chosen
    assert api.post("admin", url, {"secret": "short"}).status_code == 422
    assert (
        api.post("admin", "/api/v1/webhooks/" + "0" * 32 + "/rotate-secret", {}).status_code == 404
    )
    rotations = [e for e in _audit(api, hook["id"]) if e["action"] == "webhook.secret_rotated"]
    assert [e["after"] for e in rotations] == [{"generated": True}, {"generated": False}]
    text = json.dumps(_audit(api, hook["id"]))
    assert generated not in text and chosen not in text and SECRET not in text


@pytest.mark.parametrize("persona", ["ncc", "kashiwa", "courier", "qa", "viewer"])
def test_only_admins_change_webhooks(api: Api, persona: str) -> None:
    hook = _hook(api, "https://o.example/h").json()
    base = f"/api/v1/webhooks/{hook['id']}"
    headers = api.headers(persona)
    assert api.client.patch(base, json={"active": False}, headers=headers).status_code == 403
    assert api.client.delete(base, headers=headers).status_code == 403
    assert api.post(persona, f"{base}/rotate-secret", {}).status_code == 403
    assert api.get("admin", "/api/v1/webhooks").json()["items"][0]["active"] is True


def test_the_guarded_client_refuses_a_name_resolving_to_loopback() -> None:
    with default_client() as client, pytest.raises(httpx.ConnectError):
        client.post("http://localhost:9/x", content=b"{}")
