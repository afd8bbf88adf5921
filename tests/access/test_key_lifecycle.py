"""Key lifecycle: an admin revokes or rotates a key (API and CLI), every act audited.

Each test replays the attack from the caller's side: a leaked key must stop working at its
next call, including when the server has it cached from earlier calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlmodel import col, select
from typer.testing import CliRunner

from app.cli import cli
from app.clock import FrozenClock
from app.config import get_settings
from models.audit import AuditEntry
from models.principal import Principal, Role
from tests.conftest import Api


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _principal_id(api: Api, persona: str) -> str:
    return str(api.get(persona, "/api/v1/me").json()["id"])


def _audit(api: Api, action: str) -> list[AuditEntry]:
    with api.database.session() as session:
        stmt = select(AuditEntry).where(AuditEntry.action == action).order_by(col(AuditEntry.seq))
        return list(session.exec(stmt))


def test_a_revoked_key_is_401_at_its_next_call_even_when_cached(api: Api) -> None:
    key = api.key("leaky", Role.coordinator, site="NCC-EAST")
    pid = _principal_id(api, "leaky")
    for _ in range(3):  # warm every per-process cache of the key
        assert api.get("leaky", "/api/v1/cases").status_code == 200
    r = api.post("admin", f"/api/v1/principals/{pid}/revoke")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == pid and body["revoked_at"] is not None
    assert "api_key" not in body and "key_hash" not in body
    assert api.client.get("/api/v1/me", headers=_bearer(key)).status_code == 401
    assert api.client.get("/api/v1/cases", headers=_bearer(key)).status_code == 401
    # Revoking twice is a conflict; an unknown principal is 404; only admins revoke.
    again = api.post("admin", f"/api/v1/principals/{pid}/revoke")
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    assert api.post("admin", "/api/v1/principals/" + "0" * 32 + "/revoke").status_code == 404
    other = _principal_id(api, "kyoto")
    for persona in ("ncc", "qa", "kashiwa", "courier", "viewer"):
        assert api.post(persona, f"/api/v1/principals/{other}/revoke").status_code == 403
    entries = _audit(api, "principal.revoked")
    assert [(e.entity_id, e.actor) for e in entries] == [(pid, "admin")]
    assert key not in str(entries[0].before) + str(entries[0].after)


def test_rotation_shows_the_new_key_once_and_the_old_one_stops(api: Api) -> None:
    old = api.key("rotating", Role.manufacturer, site="CELLARES-KASHIWA")
    pid = _principal_id(api, "rotating")
    assert api.client.get("/api/v1/me", headers=_bearer(old)).status_code == 200
    r = api.post("admin", f"/api/v1/principals/{pid}/rotate-key")
    assert r.status_code == 201, r.text
    new = r.json()["api_key"]
    assert new != old and r.json()["id"] == pid and r.json()["revoked_at"] is None
    assert api.client.get("/api/v1/me", headers=_bearer(old)).status_code == 401
    me = api.client.get("/api/v1/me", headers=_bearer(new))
    assert me.status_code == 200 and me.json()["id"] == pid and me.json()["role"] == "manufacturer"
    # The key is shown once: never in listings, never in the audit trail.
    assert new not in api.get("admin", "/api/v1/principals").text
    entries = _audit(api, "principal.key_rotated")
    assert len(entries) == 1 and entries[0].entity_id == pid
    trail = str(entries[0].before) + str(entries[0].after)
    assert new not in trail and old not in trail
    assert new.split("_")[1] in trail  # the prefix identifies which key replaced which
    assert api.post("ncc", f"/api/v1/principals/{pid}/rotate-key").status_code == 403
    assert api.post("admin", "/api/v1/principals/" + "0" * 32 + "/rotate-key").status_code == 404
    api.post("admin", f"/api/v1/principals/{pid}/revoke")
    assert api.post("admin", f"/api/v1/principals/{pid}/rotate-key").status_code == 409


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, api: Api) -> Iterator[Api]:
    monkeypatch.setenv("V2V_DATABASE_URL", api.database.engine.url.render_as_string(False))
    get_settings.cache_clear()
    yield api
    get_settings.cache_clear()


def test_cli_revokes_and_rotates_with_the_same_rules(env: Api, clock: FrozenClock) -> None:
    key = env.key("cli-target", Role.courier, courier="KASHIWA-COLD")
    pid = _principal_id(env, "cli-target")
    out = CliRunner().invoke(cli, ["principal", "rotate", pid])
    assert out.exit_code == 0, out.output
    new = out.stdout.strip().splitlines()[-1]
    assert env.client.get("/api/v1/me", headers=_bearer(key)).status_code == 401
    assert env.client.get("/api/v1/me", headers=_bearer(new)).status_code == 200
    out = CliRunner().invoke(cli, ["principal", "revoke", pid, "--reason", "left the company"])
    assert out.exit_code == 0, out.output
    clock.set(datetime.now(UTC))  # the command stamps the wall clock; the app's was frozen
    assert env.client.get("/api/v1/me", headers=_bearer(new)).status_code == 401
    again = CliRunner().invoke(cli, ["principal", "revoke", pid])
    assert again.exit_code == 2 and "already revoked" in again.output
    missing = CliRunner().invoke(cli, ["principal", "revoke", "0" * 32])
    assert missing.exit_code == 2 and "no such principal" in missing.output
    with env.database.session() as session:
        row = session.get(Principal, pid)
        assert row is not None and row.revoked_at is not None
    assert _audit(env, "principal.revoked")[0].reason == "left the company"
    actors = {(e.action, e.actor) for e in _audit(env, "principal.revoked")}
    actors |= {(e.action, e.actor) for e in _audit(env, "principal.key_rotated")}
    assert actors == {("principal.revoked", "cli"), ("principal.key_rotated", "cli")}
