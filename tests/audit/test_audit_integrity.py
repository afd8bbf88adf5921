"""The audit trail proves its own completeness (DESIGN "Records stay true").

Each attack is played as someone with write access to the database but not to the server's
secrets: the append-only triggers dropped with raw SQL, rows deleted or rewritten and every
later hash recomputed. Keyed hashes find a rewrite; a signed checkpoint finds a deleted tail.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import text
from typer.testing import CliRunner

from app.cli import cli
from app.config import DEV_AUDIT_KEYS, Settings, get_settings
from app.db import Database
from app.jobs.audit import write_checkpoint
from app.services.audit import chain
from app.services.audit.keys import AuditKeys
from app.services.audit.signing import b64d
from app.services.identity.coi import Keyring, generate_signing_entry
from tests.conftest import NOW, Api
from tests.helpers import Journey

NEW_KEY = "audit-2027:a-second-audit-key-of-at-least-32-characters"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, api: Api) -> Any:
    """The CLI's settings point at the test database."""
    monkeypatch.setenv("V2V_DATABASE_URL", api.database.engine.url.render_as_string(False))
    get_settings.cache_clear()
    yield api
    get_settings.cache_clear()


def _journey(api: Api) -> Journey:
    j = Journey(api)
    j.schedule()
    j.step("collected")
    shipment = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(shipment, "picked_up")
    Journey(api, patient="MRN-SECOND").schedule()
    return j


def _head(database: Database) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(text("SELECT max(seq) FROM audit_log")).scalar_one())


def _drop_append_only(database: Database) -> None:
    """What an attacker with database access does first."""
    with database.engine.begin() as conn:
        if database.dialect == "sqlite":
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
            conn.execute(text("DROP TRIGGER audit_log_no_delete"))
        else:
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update"))


def _checkpoint(api: Api) -> dict[str, Any]:
    r = api.get("qa", "/api/v1/audit/checkpoint")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _verify(api: Api, checkpoint: dict[str, Any]) -> dict[str, Any]:
    r = api.post("admin", "/api/v1/audit/verify", {"checkpoint": checkpoint})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _cli(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def test_a_keyed_chain_passes_and_its_checkpoint_verifies(env: Api, tmp_path: Path) -> None:
    _journey(env)
    cp = _checkpoint(env)
    assert set(cp) == {"seq", "hash", "at", "kid", "signature"}
    assert cp["seq"] == _head(env.database) and cp["kid"] == "dev-2026"
    assert _verify(env, cp)["ok"] is True and _verify(env, cp)["entries"] == cp["seq"]
    assert env.get("admin", "/api/v1/audit/verify").json()["ok"] is True
    entries = env.get("qa", "/api/v1/audit?limit=500").json()["items"]
    assert {e["kid"] for e in entries} == {DEV_AUDIT_KEYS.split(":")[0]}
    # The same, offline against the database.
    file = tmp_path / "checkpoints.jsonl"
    file.write_text(json.dumps(cp) + "\n")
    out = _cli("audit", "verify", "--checkpoint", str(file))
    assert out.exit_code == 0, out.output
    assert "intact" in out.output


def test_checkpoint_signature_verifies_with_the_published_jwks(api: Api) -> None:
    _journey(api)
    cp = _checkpoint(api)
    jwks = api.client.get("/api/v1/coi/jwks").json()
    (jwk,) = [k for k in jwks["keys"] if k["kid"] == cp["kid"]]
    key = Ed25519PublicKey.from_public_bytes(b64d(jwk["x"]))
    body = {k: cp[k] for k in ("seq", "hash", "at", "kid")}
    signed = (
        b"v2v-audit-checkpoint/1\n"
        + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    )
    key.verify(b64d(cp["signature"]), signed)  # raises InvalidSignature if not


def test_deleting_the_last_four_entries_is_found_against_a_checkpoint(
    env: Api, tmp_path: Path
) -> None:
    _journey(env)
    cp = _checkpoint(env)
    head = cp["seq"]
    assert head >= 6
    _drop_append_only(env.database)
    with env.database.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq > :s"), {"s": head - 4})
    # The attack as reported: what is left is still a consistent chain.
    after = env.get("admin", "/api/v1/audit/verify").json()
    assert after["ok"] is True and after["entries"] == head - 4
    result = _verify(env, cp)
    assert result["ok"] is False
    assert result["first_bad_seq"] == head - 3
    assert f"entries {head - 3} to {head} are missing" in result["reason"]
    file = tmp_path / "cp.jsonl"
    file.write_text(json.dumps(cp) + "\n")
    out = _cli("audit", "verify", "--checkpoint", str(file))
    assert out.exit_code == 1
    assert f"broken at seq {head - 3}" in out.output


def test_a_deleted_tail_covered_by_new_entries_is_found_at_the_checkpoint_seq(api: Api) -> None:
    _journey(api)
    cp = _checkpoint(api)
    _drop_append_only(api.database)
    with api.database.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq > :s"), {"s": cp["seq"] - 2})
    Journey(api, patient="MRN-AFTER").schedule()  # the service goes on appending
    assert _head(api.database) >= cp["seq"]
    assert api.get("admin", "/api/v1/audit/verify").json()["ok"] is True
    result = _verify(api, cp)
    assert result["ok"] is False and result["first_bad_seq"] == cp["seq"]
    assert "rewritten" in result["reason"]


def _sha256_rewrite(database: Database, seq: int) -> None:
    """Rewrite entry ``seq`` and recompute it and every later link with plain SHA-256."""
    with database.session() as session:
        rows = list(
            session.exec(
                chain.select(chain.AuditEntry)
                .where(chain.col(chain.AuditEntry.seq) >= seq)
                .order_by(chain.col(chain.AuditEntry.seq))
            )
        )
        prev = chain.hash_at(session, seq - 1)
    assert prev is not None
    with database.engine.begin() as conn:
        for row in rows:
            actor = "mallory" if row.seq == seq else row.actor
            content = {**chain._content(row), "actor": actor, "prev_hash": prev}
            new = hashlib.sha256(chain.canonical(**content)).hexdigest()
            conn.execute(
                text("UPDATE audit_log SET actor = :a, prev_hash = :p, hash = :h WHERE seq = :s"),
                {"a": actor, "p": prev, "h": new, "s": row.seq},
            )
            prev = new


def test_a_rewrite_with_recomputed_sha256_hashes_is_found(env: Api, tmp_path: Path) -> None:
    _journey(env)
    cp = _checkpoint(env)
    seq = cp["seq"] - 3
    _drop_append_only(env.database)
    _sha256_rewrite(env.database, seq)
    assert env.get("admin", "/api/v1/audit/verify").json() == {
        "ok": False,
        "entries": seq,
        "first_bad_seq": seq,
        "reason": "entry content does not match its hash",
    }
    result = _verify(env, cp)
    assert result["ok"] is False and result["first_bad_seq"] == seq
    out = _cli("audit", "verify")
    assert out.exit_code == 1 and f"broken at seq {seq}" in out.output
    # A broken chain is never signed.
    refused = env.get("admin", "/api/v1/audit/checkpoint")
    assert refused.status_code == 409
    assert f"broken at seq {seq}" in refused.json()["detail"]


def test_a_forged_checkpoint_is_refused(api: Api) -> None:
    _journey(api)
    cp = _checkpoint(api)
    for forged in (
        {**cp, "seq": cp["seq"] - 1},
        {**cp, "hash": "f" * 64},
        {**cp, "kid": "someone-else"},
    ):
        result = _verify(api, forged)
        assert result["ok"] is False and "checkpoint at seq" in result["reason"]
    # Signed by another key under our key id.
    impostor = Keyring("dev-2026:" + generate_signing_entry("x").split(":", 1)[1])
    from app.services.audit.checkpoint import Checkpoint
    from app.services.audit.signing import b64e

    fake = Checkpoint.parse({**cp, "signature": "x"})
    _, signature = impostor.sign_detached(fake.signing_input())
    result = _verify(api, {**cp, "signature": b64e(signature)})
    assert result == {
        "ok": False,
        "entries": 0,
        "first_bad_seq": None,
        "reason": f"checkpoint at seq {cp['seq']}: signature does not verify with key 'dev-2026'",
    }
    assert api.post("admin", "/api/v1/audit/verify", {"checkpoint": {"seq": 1}}).status_code == 422


def test_entries_under_the_old_and_the_new_key_both_verify(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    Journey(api).schedule()
    before = _head(api.database)
    monkeypatch.setenv("V2V_AUDIT_KEYS", f"{NEW_KEY},{DEV_AUDIT_KEYS}")
    get_settings.cache_clear()
    try:
        Journey(api, patient="MRN-ROTATED").schedule()
        entries = api.get("qa", "/api/v1/audit?limit=500").json()["items"]
        kids = {e["seq"]: e["kid"] for e in entries}
        assert kids[before] == "dev-audit-2026" and kids[before + 1] == "audit-2027"
        assert api.get("admin", "/api/v1/audit/verify").json()["ok"] is True
        assert _verify(api, _checkpoint(api))["ok"] is True
        # A verifier that lost the new key cannot vouch for its entries.
        with api.database.session() as session:
            old_only = chain.verify_chain(session, keys=AuditKeys(DEV_AUDIT_KEYS))
        assert old_only.ok is False and old_only.first_bad_seq == before + 1
        assert "unknown audit key 'audit-2027'" in (old_only.reason or "")
    finally:
        get_settings.cache_clear()


def test_the_scheduled_job_appends_a_checkpoint_when_the_head_moves(
    env: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "worm" / "audit-checkpoints.jsonl"
    settings = Settings(audit_checkpoint_file=file)
    _journey(env)
    assert write_checkpoint(env.database, now=NOW, settings=settings) == 1
    assert write_checkpoint(env.database, now=NOW, settings=settings) == 0  # idempotent
    Journey(env, patient="MRN-LATER").schedule()
    assert write_checkpoint(env.database, now=NOW, settings=settings) == 1
    lines = [json.loads(line) for line in file.read_text().splitlines()]
    assert [c["seq"] for c in lines] == sorted({c["seq"] for c in lines}) and len(lines) == 2
    assert lines[-1]["seq"] == _head(env.database)
    ok = _cli("audit", "verify", "--checkpoint", str(file))
    assert ok.exit_code == 0, ok.output
    # Truncated behind the file's back: the next run refuses to sign over it.
    _drop_append_only(env.database)
    with env.database.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq > :s"), {"s": lines[-1]["seq"] - 4})
    from app.errors import Conflict

    with pytest.raises(Conflict, match="no longer matches"):
        write_checkpoint(env.database, now=NOW, settings=settings)
    bad = _cli("audit", "verify", "--checkpoint", str(file))
    assert bad.exit_code == 1 and f"broken at seq {lines[-1]['seq'] - 3}" in bad.output
    # Registered with the scheduler only when a file is configured.
    import httpx

    from app.scheduler import default_jobs

    with httpx.Client() as client:
        assert "audit_checkpoint" not in default_jobs(client)
        monkeypatch.setenv("V2V_AUDIT_CHECKPOINT_FILE", str(file))
        get_settings.cache_clear()
        assert default_jobs(client)["audit_checkpoint"][1] == 3600


def test_cli_checkpoint_prints_one_or_appends_it(env: Api, tmp_path: Path) -> None:
    _journey(env)
    printed = _cli("audit", "checkpoint")
    assert printed.exit_code == 0, printed.output
    cp = json.loads(printed.stdout.strip().splitlines()[-1])
    assert cp["seq"] == _head(env.database)
    file = tmp_path / "cp.jsonl"
    assert _cli("audit", "checkpoint", "--out", str(file)).exit_code == 0
    assert _cli("audit", "checkpoint", "--out", str(file)).exit_code == 0
    assert len(file.read_text().splitlines()) == 1
    jwks = tmp_path / "jwks.json"
    jwks.write_text(env.client.get("/api/v1/coi/jwks").text)
    out = _cli("audit", "verify", "--checkpoint", str(file), "--jwks", str(jwks))
    assert out.exit_code == 0, out.output
    stranger = Keyring(generate_signing_entry("dev-2026"))
    other = tmp_path / "other.json"
    other.write_text(json.dumps(stranger.jwks()))
    out = _cli("audit", "verify", "--checkpoint", str(file), "--jwks", str(other))
    assert out.exit_code == 1 and "signature does not verify" in out.output
