"""The ``v2v`` command against a real database."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.config import get_settings
from tests.conftest import Api


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, api: Api) -> Api:
    monkeypatch.setenv("V2V_DATABASE_URL", api.database.engine.url.render_as_string(False))
    get_settings.cache_clear()
    yield api  # type: ignore[misc]
    get_settings.cache_clear()


def test_principal_create_prints_a_working_key_once(env: Api) -> None:
    out = CliRunner().invoke(
        cli,
        [
            "principal",
            "create",
            "--role",
            "coordinator",
            "--site",
            "KYOTO-UNIV-HOSP",
            "--name",
            "Kyoto coordinator",
        ],
    )
    assert out.exit_code == 0, out.output
    key = out.stdout.strip().splitlines()[-1]
    me = env.client.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"}).json()
    assert me["site"] == "KYOTO-UNIV-HOSP" and me["name"] == "Kyoto coordinator"
    assert key not in str(env.get("admin", "/api/v1/principals").json())


def test_principal_create_refuses_a_scope_that_does_not_fit(env: Api) -> None:
    out = CliRunner().invoke(
        cli, ["principal", "create", "--role", "manufacturer", "--site", "NCC-EAST", "--name", "x"]
    )
    assert out.exit_code == 2 and "not a known manufacturing site" in out.output


def test_audit_verify_on_an_intact_chain(env: Api) -> None:
    out = CliRunner().invoke(cli, ["audit", "verify"])
    assert out.exit_code == 0 and "intact" in out.output


def test_principal_create_makes_a_device_key(env: Api) -> None:
    out = CliRunner().invoke(
        cli,
        [
            "principal",
            "create",
            "--role",
            "device",
            "--courier",
            "KASHIWA-COLD",
            "--device",
            "LOG-CLI-1",
            "--name",
            "logger 1",
        ],
    )
    assert out.exit_code == 0, out.output
    key = out.stdout.strip().splitlines()[-1]
    # A device key reaches ingest only (even /me is 403): it works where it is meant to.
    auth = {"Authorization": f"Bearer {key}"}
    assert (
        env.client.post("/api/v1/readings", json={"readings": []}, headers=auth).status_code == 200
    )
    assert env.client.get("/api/v1/me", headers=auth).status_code == 403
    listed = env.get("admin", "/api/v1/principals").json()["items"]
    row = next(p for p in listed if p["key_prefix"] == key.split("_")[1])
    assert row["role"] == "device" and row["device_id"] == "LOG-CLI-1"
