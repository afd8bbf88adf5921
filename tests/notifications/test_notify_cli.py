"""``v2v notify show|set|outbox`` on a real migrated database: the API's rules, the API's
audit, refusals that change nothing, and contact tokens that never reach the terminal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from app.cli import cli
from app.config import get_settings
from app.db import Database
from models.notification import Notification
from models.principal import Principal, Role
from tests.conftest import NOW, Api
from tests.notifications.flows import principal_id

TOKEN = "LINETOKENs3cr3t0123456789"
LINE = f"line://{TOKEN}/"
OTHER_TOKEN = "SECONDlinetokenXYZ987654321"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, api: Api) -> Iterator[Api]:
    monkeypatch.setenv("V2V_DATABASE_URL", api.database.engine.url.render_as_string(False))
    get_settings.cache_clear()
    yield api
    get_settings.cache_clear()


def v2v(*args: str, **kw: Any) -> Any:
    return CliRunner().invoke(cli, list(args), **kw)


def settings_of(api: Api, pid: str) -> dict[str, Any]:
    r = api.get("admin", f"/api/v1/principals/{pid}/notifications")
    assert r.status_code == 200, r.text
    return dict(r.json())


def audit_of(api: Api, pid: str) -> list[dict[str, Any]]:
    r = api.get("admin", "/api/v1/audit", params={"entity": "principal", "entity_id": pid})
    assert r.status_code == 200, r.text
    return [e for e in r.json()["items"] if e["action"] == "principal.notifications_set"]


def test_set_then_show_round_trips_through_the_api_with_tokens_masked(env: Api) -> None:
    pid = principal_id(env, "ncc")
    done = v2v(
        "notify", "set", pid,
        "--contact", "coordinator@ncc.example.jp",
        "--contact", "-",
        "--kinds", "coi_mismatch,loss_of_signal",
        "--min-severity", "major",
        "--quiet", "22:00-07:00",
        "--language", "en",
        "--timezone", "Asia/Tokyo",
        "--digest",
        input=LINE + "\n",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert TOKEN not in done.output
    got = settings_of(env, pid)
    assert [c["kind"] for c in got["contacts"]] == ["email", "line"]
    assert got["subscriptions"] == [
        {"kinds": ["coi_mismatch", "loss_of_signal"], "min_severity": "major"}
    ]
    assert got["quiet_hours"] == {"from": "22:00", "to": "07:00"}
    assert (got["language"], got["timezone"], got["digest"]) == ("en", "Asia/Tokyo", True)
    # Audited as the operator's command line, never as the person whose settings changed.
    (entry,) = audit_of(env, pid)
    assert entry["actor"] == "cli" and TOKEN not in json.dumps(entry)

    shown = v2v("notify", "show", pid, "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == got
    plain = v2v("notify", "show", pid)
    assert plain.exit_code == 0, plain.output
    assert "contact\tc…@ncc.example.jp (email, " in plain.stdout
    assert "quiet hours\t22:00-07:00" in plain.stdout
    assert "subscription\tcoi_mismatch, loss_of_signal at major and above" in plain.stdout
    assert TOKEN not in plain.output + shown.output

    # A new zone, the LINE contact kept by its fingerprint (never re-sent), the e-mail dropped.
    line_print = got["contacts"][1]["fingerprint"]
    again = v2v("notify", "set", pid, "--keep", line_print, "--timezone", "Europe/London")
    assert again.exit_code == 0, again.output
    after = settings_of(env, pid)
    assert [c["fingerprint"] for c in after["contacts"]] == [line_print]
    assert (after["subscriptions"], after["digest"], after["timezone"]) == (
        [],
        False,
        "Europe/London",
    )


def test_a_contact_from_the_environment_is_never_printed(env: Api) -> None:
    pid = principal_id(env, "kashiwa")
    done = v2v(
        "notify", "set", pid, "--min-severity", "critical", "--json",
        env={"V2V_NOTIFY_CONTACTS": f"qa@kashiwa.example line://{OTHER_TOKEN}/"},
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert OTHER_TOKEN not in done.output
    body = json.loads(done.stdout)
    assert [c["kind"] for c in body["contacts"]] == ["email", "line"]
    assert body["subscriptions"] == [{"kinds": [], "min_severity": "critical"}]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--min-severity", "dire"], "min_severity"),
        (["--kinds", "loss_of_signal,meteor_strike"], "kinds"),
        (["--quiet", "22:00"], "--quiet must look like 22:00-07:00"),
        (["--quiet", "25:00-07:00"], "quiet_hours.from"),
        (["--timezone", "Asia/Atlantis"], "unknown IANA time zone"),
        (["--language", "fr"], "language"),
        (["--contact", f"file:///etc/{TOKEN}"], "scheme file:// is not allowed"),
        (["--contact", f"{TOKEN} not a url"], "contacts.0.target"),
        (["--keep", "0123456789ab"], "no such contact"),
    ],
)
def test_bad_input_exits_2_says_why_and_changes_nothing(
    env: Api, args: list[str], says: str
) -> None:
    pid = principal_id(env, "ncc")
    first = v2v("notify", "set", pid, "--contact", LINE, "--kinds", "coi_mismatch")
    assert first.exit_code == 0, first.output
    before = settings_of(env, pid)
    refused = v2v("notify", "set", pid, *args)
    assert refused.exit_code == 2, refused.output
    assert says in refused.output, refused.output
    assert "error" in refused.output and "Traceback" not in refused.output
    assert TOKEN not in refused.output
    assert settings_of(env, pid) == before
    assert len(audit_of(env, pid)) == 1


def test_an_unknown_principal_or_a_device_is_refused(env: Api, database: Database) -> None:
    env.key("logger", Role.device, courier="KASHIWA-COLD", device_id="D-1")
    with database.session() as session:
        device = session.exec(select(Principal.id).where(Principal.name == "logger")).one()
    for pid in ("no-such-person", device):
        shown = v2v("notify", "show", pid)
        assert shown.exit_code == 2 and "no such principal" in shown.output
        refused = v2v("notify", "set", pid, "--contact", LINE)
        assert refused.exit_code == 2 and "no such principal" in refused.output
        assert TOKEN not in refused.output


def _delivery(database: Database, pid: str, status: str, target: str, minutes: int) -> None:
    with database.transaction() as session:
        session.add(
            Notification(
                principal_id=pid,
                kind="alert",
                reason="raised",
                dedupe_key=f"test:{status}:{minutes}",
                target=target,
                status=status,
                attempts=8 if status == "dead" else 1,
                next_attempt_at=NOW,
                last_error="the target refused the message or was unreachable"
                if status == "dead"
                else None,
                created_at=NOW + timedelta(minutes=minutes),
            )
        )


def test_the_outbox_lists_dead_letters_masked(env: Api, database: Database) -> None:
    pid = principal_id(env, "ncc")
    _delivery(database, pid, "sent", "coordinator@ncc.example.jp", 1)
    _delivery(database, pid, "dead", LINE, 2)
    _delivery(database, pid, "pending", LINE, 3)

    dead = v2v("notify", "outbox", "--status", "dead", "--json")
    assert dead.exit_code == 0, dead.output
    (row,) = json.loads(dead.stdout)
    assert (row["status"], row["principal_id"], row["attempts"]) == ("dead", pid, 8)
    assert row["target"].startswith("line://…") and row["last_error"]
    everything = v2v("notify", "outbox")
    assert everything.exit_code == 0, everything.output
    lines = everything.stdout.splitlines()
    assert [line.split("\t")[1] for line in lines] == ["pending", "dead", "sent"]
    assert "c…@ncc.example.jp" in everything.stdout
    assert TOKEN not in everything.stdout + dead.stdout
    assert v2v("notify", "outbox", "--status", "sent", "--limit", "5", "--json").exit_code == 0
    assert json.loads(v2v("notify", "outbox", "--status", "skipped", "--json").stdout) == []
    empty = v2v("notify", "outbox", "--status", "skipped")
    assert empty.stdout.strip() == "no notifications"
    bad = v2v("notify", "outbox", "--status", "lost")
    assert bad.exit_code == 2 and "lost" in bad.output


def test_help_lists_the_notify_commands(env: Api) -> None:
    out = v2v("--help", env={"COLUMNS": "200"})
    assert out.exit_code == 0
    for command in ("v2v notify show", "v2v notify set", "v2v notify outbox"):
        line = next(x for x in out.output.splitlines() if command + " " in x)
        assert len(line.split(command, 1)[1].strip(" │")) > 10, line


def test_a_target_apprise_cannot_parse_is_not_logged(
    env: Api, caplog: pytest.LogCaptureFixture
) -> None:
    # Apprise logs an unparseable URL whole; a mistyped token must not reach the logs.
    pid = principal_id(env, "ncc")
    secret = "teamsSECRETabc"  # Apprise masks long path parts, not short ones
    with caplog.at_level("DEBUG"):
        refused = v2v("notify", "set", pid, "--contact", f"msteams://team/{secret}/")
    assert refused.exit_code == 2 and "Microsoft retired Teams connectors" in refused.output
    assert secret not in refused.output
    assert secret not in caplog.text
