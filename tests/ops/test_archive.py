"""``v2v readings archive --before YYYY-MM`` (PostgreSQL): settled months go to a file per
month and are detached; a case dossier exported afterwards takes its readings from the file
and verifies; an open shipment, or one reaching past the cut-off, blocks the run; a dry run
changes nothing; SQLite is told it does not apply."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from sqlalchemy import text
from typer.testing import CliRunner

from app.cli import cli
from app.config import get_settings
from app.db import Database
from app.errors import Conflict
from app.services.audit import manifest
from app.services.coldchain import archive, partitions
from app.services.coldchain.archive_file import ARCHIVED
from app.services.identity.coi import Keyring
from tests.coldchain.test_readings import in_transit, post, readings
from tests.conftest import Api, pg_copy

runner = CliRunner()


@pytest.fixture
def db_url(pg_template: str) -> Iterator[str]:
    with pg_copy(pg_template) as url:
        yield url


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, api: Api) -> Iterator[Api]:
    monkeypatch.setenv("V2V_DATABASE_URL", api.database.engine.url.render_as_string(False))
    get_settings.cache_clear()
    yield api
    get_settings.cache_clear()


def _trip(api: Api, patient: str, *, deliver: bool) -> tuple[str, dict[str, Any], str]:
    """A case whose shipment carried readings (delivered or not); its month's partition."""
    j, ship, t0 = in_transit(api, patient)
    post(api, "courier", readings(ship["device_ids"][0], t0, [5.0, 5.25, 9.5, 9.0, 5.5]))
    if deliver:
        j.custody(ship, "delivered")
    with api.database.transaction() as session:  # its month, created late: rows leave DEFAULT
        partitions.create_month(session, year=t0.year, month=t0.month)
    return j.case["id"], ship, partitions.name_of(t0.year, t0.month)


def _before(name: str) -> str:
    month = partitions.month_of(name)
    assert month is not None
    year, m = partitions.next_month(*month)
    return f"{year:04d}-{m:02d}"


def _attached(api: Api) -> set[str]:
    with api.database.session() as session:
        return {p.name for p in partitions.list_partitions(session)}


def _count(api: Api, sql: str, **params: Any) -> int:
    with api.database.engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


def _export(case_id: str, out: Path, *options: str) -> Any:
    return runner.invoke(cli, ["export", "case", case_id, "--out", str(out), *options])


def _readings_digest(path: Path) -> Any:
    (row,) = sqlite_utils.Database(path)["dossier_manifest"].rows
    return json.loads(row["manifest"])["tables"]["readings"]


@pytest.mark.postgres
def test_an_archived_cases_dossier_reads_the_file_and_still_verifies(
    env: Api, tmp_path: Path
) -> None:
    case_id, ship, name = _trip(env, "MRN-ARCH-1", deliver=True)
    earlier = tmp_path / "before.db"
    assert _export(case_id, earlier).exit_code == 0

    out = tmp_path / "archive"
    result = runner.invoke(
        cli, ["readings", "archive", "--before", _before(name), "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["archived"] and [m["partition"] for m in report["months"]] == [name]
    assert report["months"][0]["rows"] == 5
    assert name not in _attached(env)  # detached, but kept in the database
    assert _count(env, "SELECT count(*) FROM reading WHERE shipment_id = :s", s=ship["id"]) == 0
    assert _count(env, f"SELECT count(*) FROM {name}") == 5  # noqa: S608
    sidecar = json.loads((out / f"{name}.manifest.json").read_text())
    assert sidecar["shipments"][ship["id"]]["rows"] == 5

    # Without the archive the export refuses rather than leave the readings out.
    refused = _export(case_id, tmp_path / "missing.db")
    assert refused.exit_code == 2 and "--archive" in refused.output
    later = tmp_path / "after.db"
    exported = _export(case_id, later, "--archive", str(out))
    assert exported.exit_code == 0, exported.output
    verified = runner.invoke(cli, ["export", "verify", str(later)])
    assert verified.exit_code == 0, verified.output
    # The same readings as before the archive run, to the byte of their digest.
    assert _readings_digest(later) == _readings_digest(earlier)
    with sqlite_utils.Database(later) as db:
        archived = [e for e in db["audit_entries"].rows if e["action"] == ARCHIVED]
    assert [e["entity_id"] for e in archived] == [ship["id"]]

    # Edited and re-signed with the service's own key, it still fails: the readings of an
    # archived shipment are checked against the digest audited when they were archived.
    settings = get_settings()
    keyring = Keyring(settings.coi_signing_keys.get_secret_value(), settings.coi_verify_keys)
    with sqlite_utils.Database(later) as db:
        with db.conn:
            db.execute("UPDATE readings SET temp_c = 4.0 WHERE temp_c = 5.0")
            db.execute("DELETE FROM dossier_manifest")
        manifest.sign(db, keyring=keyring, subject={"case_id": case_id, "exported_at": "now"})
    resigned = runner.invoke(cli, ["export", "verify", str(later)])
    assert resigned.exit_code == 1
    assert f"readings of shipment {ship['id']} are not those audited" in " ".join(
        resigned.output.split()
    )

    # An archive file altered afterwards is refused, naming it.
    path = out / f"{name}.jsonl.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    lines[0] = lines[0].replace('"temp_c":5.0', '"temp_c":4.0')
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    tampered = _export(case_id, tmp_path / "tampered.db", "--archive", str(out))
    assert tampered.exit_code == 2 and f"{name}.jsonl.gz" in tampered.output


@pytest.mark.postgres
def test_an_open_shipment_blocks_its_month_and_nothing_changes(env: Api, tmp_path: Path) -> None:
    _trip(env, "MRN-ARCH-2", deliver=True)
    _, open_ship, name = _trip(env, "MRN-ARCH-3", deliver=False)
    entries = _count(env, "SELECT count(*) FROM audit_log")
    out = tmp_path / "archive"
    result = runner.invoke(
        cli, ["readings", "archive", "--before", _before(name), "--out", str(out)]
    )
    assert result.exit_code == 1, result.output
    assert f"shipment {open_ship['id']} is in_transit: still open" in " ".join(
        result.output.split()
    )
    assert name in _attached(env)
    assert not out.exists() or not any(out.iterdir())
    assert _count(env, "SELECT count(*) FROM audit_log") == entries


@pytest.mark.postgres
def test_a_shipment_reaching_past_the_cut_off_blocks_the_month(env: Api) -> None:
    _, ship, name = _trip(env, "MRN-ARCH-4", deliver=True)
    month = partitions.month_of(name)
    assert month is not None
    later = partitions.next_month(*month)
    with env.database.engine.begin() as conn:  # one reading dated in the next month
        conn.execute(
            text(
                "INSERT INTO reading (shipment_id, device_id, ts_ms, temp_c, received_ms) "
                "VALUES (:s, 'T-LATE', :t, 5, 0)"
            ),
            {"s": ship["id"], "t": partitions.month_ms(*later) + 1000},
        )
    with env.database.session() as session:
        (planned,) = archive.plan(
            session,
            before=later,
            now=datetime(2030, 1, 1, tzinfo=UTC),
            late_bound_ms=72 * 3_600_000,
        )
        assert planned.partition.name == name
        assert planned.blockers == [
            f"shipment {ship['id']} also has readings in {partitions.DEFAULT}, which this run "
            "keeps (a shipment is archived whole: choose a later --before)"
        ]


@pytest.mark.postgres
def test_a_dry_run_says_what_it_would_archive_and_changes_nothing(env: Api, tmp_path: Path) -> None:
    _, ship, name = _trip(env, "MRN-ARCH-5", deliver=True)
    entries = _count(env, "SELECT count(*) FROM audit_log")
    out = tmp_path / "archive"
    result = runner.invoke(
        cli,
        [
            "readings",
            "archive",
            "--before",
            _before(name),
            "--out",
            str(out),
            "--dry-run",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dry_run"] and not report["archived"]
    (month,) = report["months"]
    assert (month["partition"], month["rows"], month["blockers"]) == (name, 5, [])
    assert name in _attached(env)
    assert not out.exists()
    assert _count(env, "SELECT count(*) FROM audit_log") == entries
    assert _count(env, "SELECT count(*) FROM reading WHERE shipment_id = :s", s=ship["id"]) == 5


def test_on_sqlite_the_command_says_it_applies_to_postgresql(
    sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "plain.sqlite3"
    shutil.copy(sqlite_template, path)
    monkeypatch.setenv("V2V_DATABASE_URL", f"sqlite:///{path}")
    get_settings.cache_clear()
    try:
        for args in (["archive", "--before", "2026-01"], ["partitions"]):
            result = runner.invoke(cli, ["readings", *args])
            assert result.exit_code == 2
            assert "PostgreSQL" in result.output
    finally:
        get_settings.cache_clear()
    db = Database(f"sqlite:///{path}", pool_size=1)
    try:
        with db.session() as session, pytest.raises(Conflict):
            archive.plan(
                session, before=(2026, 1), now=datetime(2026, 2, 1, tzinfo=UTC), late_bound_ms=0
            )
    finally:
        db.dispose()
