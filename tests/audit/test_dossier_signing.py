"""The case dossier is signed: a manifest hashes every table (readings and milestones too)
and is signed with the service's Ed25519 key; an edited or forged file fails, naming the
table, against the JWKS from ``/api/v1/coi/jwks`` or a public key given by hand."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from typer.testing import CliRunner

from app.cli import cli
from app.config import get_settings
from app.services.audit import manifest
from app.services.audit.dossier import verify_dossier
from app.services.audit.keys import current_keys
from app.services.audit.signing import PublicKeys
from app.services.identity.coi import Keyring, generate_signing_entry
from tests.coldchain.test_readings import in_transit, post, readings
from tests.conftest import Api


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, api: Api) -> Any:
    monkeypatch.setenv("V2V_DATABASE_URL", api.database.engine.url.render_as_string(False))
    get_settings.cache_clear()
    yield api
    get_settings.cache_clear()


@pytest.fixture
def dossier(env: Api, tmp_path: Path) -> Path:
    j, ship, t0 = in_transit(env, "MRN-SIGNED")
    post(env, "courier", readings(ship["device_ids"][0], t0, [5, 9, 9.5, 5.25]))
    out = tmp_path / "dossier.db"
    result = CliRunner().invoke(cli, ["export", "case", j.case["id"], "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def jwks(env: Api, tmp_path: Path) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(env.client.get("/api/v1/coi/jwks").text)
    return path


def _verify(path: Path, *options: str) -> Any:
    return CliRunner().invoke(cli, ["export", "verify", str(path), *options])


def _signed_tables(path: Path) -> dict[str, Any]:
    (row,) = sqlite_utils.Database(path)["dossier_manifest"].rows
    return dict(json.loads(row["manifest"])["tables"])


def test_a_genuine_dossier_verifies_with_the_jwks_or_the_public_key(
    dossier: Path, jwks: Path
) -> None:
    tables = _signed_tables(dossier)
    assert {"readings", "milestones", "cases", "audit_entries", "export_meta"} <= set(tables)
    assert tables["readings"]["rows"] == 4 and tables["milestones"]["rows"] == 2
    ok = _verify(dossier, "--jwks", str(jwks))
    assert ok.exit_code == 0, ok.output
    assert "dev-2026" in ok.output
    x = json.loads(jwks.read_text())["keys"][0]["x"]
    assert _verify(dossier, "--public-key", x).exit_code == 0
    # With the server's audit key at hand, each entry's keyed hash is recomputed too.
    good, message = verify_dossier(
        dossier,
        public_keys=PublicKeys.from_jwks(json.loads(jwks.read_text())),
        audit_keys=current_keys(),
    )
    assert good, message


@pytest.mark.parametrize(
    ("table", "sql"),
    [
        ("readings", "UPDATE readings SET temp_c = 5.0 WHERE temp_c = 9.5"),
        ("readings", "DELETE FROM readings WHERE temp_c = 9"),
        ("milestones", "UPDATE milestones SET occurred_at = '2026-01-01T00:00:00+00:00'"),
        ("excursions", "UPDATE excursions SET peak_c = 7.9"),
        ("cases", "UPDATE cases SET coi = 'CHV00026999999'"),
        ("audit_entries", "DELETE FROM audit_entries WHERE action = 'case.scheduled'"),
        ("export_meta", "UPDATE export_meta SET exported_by = 'someone else'"),
    ],
)
def test_an_edited_dossier_fails_naming_the_table(
    dossier: Path, jwks: Path, table: str, sql: str
) -> None:
    with sqlite3.connect(dossier) as conn:
        assert conn.execute(sql).rowcount >= 1
    bad = _verify(dossier, "--jwks", str(jwks))
    assert bad.exit_code == 1
    assert f"table {table} does not match the signed manifest" in " ".join(bad.output.split())


def test_added_and_dropped_tables_are_named(dossier: Path, jwks: Path) -> None:
    with sqlite3.connect(dossier) as conn:
        conn.execute("CREATE TABLE errata (note TEXT)")
    out = " ".join(_verify(dossier, "--jwks", str(jwks)).output.split())
    assert "table errata is not in the signed manifest" in out
    with sqlite3.connect(dossier) as conn:
        conn.execute("DROP TABLE excursions")
    assert "table excursions is missing" in _verify(dossier, "--jwks", str(jwks)).output


def _forge(path: Path, signer: Keyring) -> None:
    """Edit a reading, then rebuild the manifest as a forger would: digests recomputed,
    signed with a key of their own under the service's key id."""
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE readings SET temp_c = 5.0 WHERE temp_c = 9.5")
        conn.execute("DROP TABLE dossier_manifest")
    db = sqlite_utils.Database(path)
    manifest.sign(db, keyring=signer, subject={"case_id": "forged"})
    db.close()


def test_a_forged_dossier_fails_on_its_signature(dossier: Path, jwks: Path) -> None:
    impostor = Keyring("dev-2026:" + generate_signing_entry("x").split(":", 1)[1])
    _forge(dossier, impostor)
    bad = _verify(dossier, "--jwks", str(jwks))
    assert bad.exit_code == 1
    assert "signature does not verify with key 'dev-2026'" in " ".join(bad.output.split())


def test_recomputed_digests_under_the_old_signature_fail(dossier: Path, jwks: Path) -> None:
    (row,) = sqlite_utils.Database(dossier)["dossier_manifest"].rows
    with sqlite3.connect(dossier) as conn:
        conn.execute("UPDATE readings SET temp_c = 5.0 WHERE temp_c = 9.5")
    tables = json.loads(row["manifest"])
    tables["tables"]["readings"] = manifest.table_digest(sqlite_utils.Database(dossier), "readings")
    text = json.dumps(tables, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    with sqlite3.connect(dossier) as conn:
        conn.execute("UPDATE dossier_manifest SET manifest = ?", (text,))
    out = " ".join(_verify(dossier, "--jwks", str(jwks)).output.split())
    assert "manifest: signature does not verify" in out


def test_a_dossier_signed_by_an_unknown_key_or_unsigned_fails(
    dossier: Path, jwks: Path, tmp_path: Path
) -> None:
    other = Keyring(generate_signing_entry("2019-elsewhere"))
    stranger = tmp_path / "stranger.json"
    stranger.write_text(json.dumps(other.jwks()))
    out = " ".join(_verify(dossier, "--jwks", str(stranger)).output.split())
    assert "signed with key 'dev-2026', which is not among the trusted public keys" in out
    with sqlite3.connect(dossier) as conn:
        conn.execute("DROP TABLE dossier_manifest")
    assert "no signed manifest" in _verify(dossier, "--jwks", str(jwks)).output
