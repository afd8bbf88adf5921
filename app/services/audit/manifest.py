"""The signed manifest of a case dossier: every table's rows hashed, the whole signed.

A dossier is a plain SQLite file, so anyone can edit it. Its ``dossier_manifest`` table
holds one row: the manifest (canonical JSON naming each table with its row count and the
SHA-256 of its rows), the key id, and an Ed25519 signature over the manifest made with the
service's key (verifiable with its JWKS). A verifier recomputes each table's digest from the
file, so an edited, added or removed row, and an added or dropped table, is named.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import sqlite_utils

from app.services.audit.signing import MANIFEST_CONTEXT, PublicKeys, b64e, canonical_json
from app.services.identity.coi import Keyring

MANIFEST_TABLE = "dossier_manifest"
FORMAT = "v2v-dossier-manifest/1"


def _cell(value: Any) -> Any:
    return {"$bytes": value.hex()} if isinstance(value, bytes) else value


def canonical_row(row: dict[str, Any]) -> str:
    """One row as canonical JSON: column names sorted, compact, UTF-8 kept."""
    return json.dumps(
        {k: _cell(v) for k, v in row.items()},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def lines_digest(lines: list[str]) -> dict[str, Any]:
    """Row count and SHA-256 of canonical rows, sorted, so the order they came in is moot."""
    lines = sorted(lines)
    digest = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
    return {"rows": len(lines), "sha256": digest}


def table_digest(db: sqlite_utils.Database, table: str) -> dict[str, Any]:
    """Row count and SHA-256 of a table's rows as stored: each row as canonical JSON (column
    names and values), sorted, so the digest depends on the content, not on the row order.
    An archive of readings (``coldchain/archive.py``) hashes each shipment's rows this way."""
    return lines_digest([canonical_row(row) for row in db.table(table).rows])


def _tables(db: sqlite_utils.Database) -> list[str]:
    return sorted(
        t for t in db.table_names() if t != MANIFEST_TABLE and not t.startswith("sqlite_")
    )


def sign(db: sqlite_utils.Database, *, keyring: Keyring, subject: dict[str, Any]) -> dict[str, Any]:
    """Hash every table already written, sign the manifest and store it in the file."""
    manifest = {
        "format": FORMAT,
        **subject,
        "tables": {name: table_digest(db, name) for name in _tables(db)},
    }
    text = canonical_json(manifest).decode("utf-8")
    kid, signature = keyring.sign_detached(MANIFEST_CONTEXT + text.encode("utf-8"))
    db.table(MANIFEST_TABLE).insert({"manifest": text, "kid": kid, "signature": b64e(signature)})
    return manifest


def verify(db: sqlite_utils.Database, *, public_keys: PublicKeys) -> tuple[bool, str]:
    """The manifest's signature, then every table's digest against it."""
    if MANIFEST_TABLE not in db.table_names():
        return False, "no signed manifest: the file is not a signed case dossier"
    rows = list(db.table(MANIFEST_TABLE).rows)
    if len(rows) != 1:
        return False, f"table {MANIFEST_TABLE} must hold exactly one manifest"
    row = rows[0]
    text, kid, signature = (str(row.get(k) or "") for k in ("manifest", "kid", "signature"))
    if not (text and kid and signature):
        return False, f"table {MANIFEST_TABLE} is malformed"
    problem = public_keys.verify(
        kid=kid, data=MANIFEST_CONTEXT + text.encode("utf-8"), signature=signature
    )
    if problem is not None:
        return False, f"manifest: {problem} (forged or altered)"
    manifest = json.loads(text)
    signed: dict[str, dict[str, Any]] = manifest.get("tables", {})
    present = set(_tables(db))
    for name in sorted(signed):
        if name not in present:
            return False, f"table {name} is missing"
        actual = table_digest(db, name)
        if actual != signed[name]:
            return False, (
                f"table {name} does not match the signed manifest ({actual['rows']} rows, "
                f"{signed[name]['rows']} signed): rows were edited, added or removed"
            )
    extra = sorted(present - set(signed))
    if extra:
        return False, f"table {extra[0]} is not in the signed manifest"
    return True, f"signature ({kid}) and {len(signed)} tables verified"
