"""The audit trail: every change recorded, append-only in the database, hash-chained."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError
from typer.testing import CliRunner

from app.db import Database
from tests.conftest import Api
from tests.helpers import Journey


def _entries(api: Api, entity_id: str) -> list[dict]:  # type: ignore[type-arg]
    r = api.get("qa", f"/api/v1/audit?entity=case&entity_id={entity_id}&limit=500")
    assert r.status_code == 200
    return list(r.json()["items"])


def test_each_state_change_is_audited_with_who_what_before_and_after(api: Api) -> None:
    j = Journey(api)
    j.schedule()
    j.step("collected")
    entries = _entries(api, j.case["id"])
    assert [e["action"] for e in entries] == ["case.registered", "case.scheduled", "case.collected"]
    collected = entries[-1]
    assert collected["actor"] == "ncc"
    assert collected["before"]["status"] == "apheresis_scheduled"
    assert collected["after"]["status"] == "collected"
    assert collected["prev_hash"] == entries[-2]["hash"]
    assert api.get("admin", "/api/v1/audit/verify").json()["ok"] is True


def _first_seq(database: Database) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(text("SELECT min(seq) FROM audit_log")).scalar_one())


def test_update_and_delete_on_audit_rows_are_refused(api: Api, database: Database) -> None:
    Journey(api).schedule()
    seq = _first_seq(database)
    for sql in (
        f"UPDATE audit_log SET actor = 'mallory' WHERE seq = {seq}",
        f"DELETE FROM audit_log WHERE seq = {seq}",
    ):
        with pytest.raises(DatabaseError, match="append-only"), database.engine.begin() as conn:
            conn.execute(text(sql))
    assert api.get("admin", "/api/v1/audit/verify").json()["ok"] is True


def test_verify_finds_a_row_altered_with_triggers_disabled(
    api: Api, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    j = Journey(api)
    j.schedule()
    j.step("collected")
    seq = _first_seq(database) + 1
    with database.engine.begin() as conn:
        if database.dialect == "sqlite":
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
            conn.execute(text(f"UPDATE audit_log SET actor = 'mallory' WHERE seq = {seq}"))
        else:
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update"))
            conn.execute(text(f"UPDATE audit_log SET actor = 'mallory' WHERE seq = {seq}"))
            conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update"))
    result = api.get("admin", "/api/v1/audit/verify").json()
    assert result == {
        "ok": False,
        "entries": result["entries"],
        "first_bad_seq": seq,
        "reason": "entry content does not match its hash",
    }

    from app.cli import cli
    from app.config import get_settings

    monkeypatch.setenv("V2V_DATABASE_URL", str(database.engine.url.render_as_string(False)))
    get_settings.cache_clear()
    try:
        out = CliRunner().invoke(cli, ["audit", "verify"])
    finally:
        get_settings.cache_clear()
    assert out.exit_code == 1
    assert f"broken at seq {seq}" in out.output


def test_removed_entry_breaks_the_chain(api: Api, database: Database) -> None:
    j = Journey(api)
    j.schedule()
    j.step("collected")
    seq = _first_seq(database) + 1
    with database.engine.begin() as conn:
        if database.dialect == "sqlite":
            conn.execute(text("DROP TRIGGER audit_log_no_delete"))
        else:
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update"))
        conn.execute(text(f"DELETE FROM audit_log WHERE seq = {seq}"))
    result = api.get("qa", "/api/v1/audit/verify").json()
    assert result["ok"] is False and result["first_bad_seq"] == seq
