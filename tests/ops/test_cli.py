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


def test_audit_verify_json_is_machine_readable(env: Api) -> None:
    import json

    out = CliRunner().invoke(cli, ["audit", "verify", "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["ok"] is True and result["entries"] >= 0
    assert set(result) == {"ok", "entries", "first_bad_seq", "reason"}


@pytest.mark.parametrize(
    "args",
    [["seed"], ["audit", "verify"], ["db", "upgrade"], ["courier", "feed", "list"]],
    ids=lambda a: " ".join(a),
)
def test_no_progress_bar_garbage_when_not_a_tty(env: Api, args: list[str]) -> None:
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    text = out.output
    assert "\x1b[" not in text and "\r" not in text  # no cursor control, no redraws
    assert "━" not in text and "⠋" not in text  # no bar, no spinner


def test_help_lists_every_command_with_its_help(env: Api) -> None:
    out = CliRunner().invoke(cli, ["--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0
    for command in (
        "v2v seed",
        "v2v demo",
        "v2v db upgrade",
        "v2v principal create",
        "v2v audit verify",
        "v2v export case",
        "v2v courier feed add",
        "v2v courier feed list",
        "v2v courier feed pause",
    ):
        line = next(x for x in out.output.splitlines() if command + " " in x)
        assert len(line.split(command, 1)[1].strip(" │")) > 10, line
