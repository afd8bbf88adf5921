"""The archive file of a month of readings, and reading it back for a case dossier.

``reading_yYYYYmMM.jsonl.gz``: one reading per line in the case dossier's canonical form
(the dossier's ``readings`` row as ``manifest.canonical_row`` writes it), by shipment and
time, gzip with a fixed header. ``reading_yYYYYmMM.manifest.json`` beside it: each shipment's
row count and SHA-256 (``manifest.lines_digest``, as a dossier hashes a table) and the file's
SHA-256. Written by ``coldchain/archive.py``; read by ``audit/dossier.py`` through
``archived_readings``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from app.errors import Conflict
from app.services.audit import chain as audit
from app.services.audit.manifest import lines_digest
from app.services.coldchain import store as reading_store
from app.times import from_ms
from models.audit import AuditEntry

FORMAT = "v2v-reading-archive/1"
ARCHIVED = "readings.archived"
# The reading columns a dossier keeps: all of ``reading`` but its arrival time.
FIELDS = tuple(c for c in reading_store.COLUMNS if c != "received_ms")
# Column types of a dossier's ``readings`` table: declared, not guessed from the first rows,
# so a value reads back exactly as it was hashed (a guessed TEXT column would turn 35.6 into
# '35.6').
TYPES: dict[str, type] = {
    "shipment_id": str,
    "device_id": str,
    "ts_ms": int,
    "temp_c": float,
    **dict.fromkeys(("lat", "lon", "humidity_pct", "shock_g", "light_lux", "battery_pct"), float),
    "ts": str,
}


def dossier_row(values: Any) -> dict[str, Any]:
    """A reading as a case dossier stores it: FIELDS plus ``ts`` in RFC 3339."""
    row = dict(zip(FIELDS, values, strict=True))
    row["ts"] = from_ms(int(row["ts_ms"])).isoformat()
    return row


def read_file(path: Path, wanted: set[str] | None = None) -> tuple[str, dict[str, list[str]]]:
    """An archive file's SHA-256 and its canonical lines by shipment (``wanted`` only)."""
    sha = hashlib.sha256()
    with path.open("rb") as raw:
        for chunk in iter(lambda: raw.read(1 << 20), b""):
            sha.update(chunk)
    lines: dict[str, list[str]] = defaultdict(list)
    with gzip.open(path, "rt", encoding="utf-8") as text_in:
        for line in text_in:
            line = line.rstrip("\n")
            sid = str(json.loads(line)["shipment_id"])
            if wanted is None or sid in wanted:
                lines[sid].append(line)
    return sha.hexdigest(), lines


def sync_replace(tmp: Path, path: Path) -> None:
    """Move a written and synced file into place, and sync the directory entry."""
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def archived_readings(
    session: Session, *, shipment_ids: list[str], archive_dir: Path | None
) -> list[dict[str, Any]]:
    """The archived readings of these shipments, in dossier form, read from the archive files
    and checked against the SHA-256 and digests audited when they were archived."""
    audit.seal(session)  # what this transaction recorded is part of the chain read
    entries = list(
        session.exec(
            select(AuditEntry)
            .where(
                AuditEntry.action == ARCHIVED,
                AuditEntry.entity == "shipment",
                col(AuditEntry.entity_id).in_(shipment_ids),
            )
            .order_by(col(AuditEntry.seq))
        )
    )
    if not entries:
        return []
    by_file: dict[str, list[AuditEntry]] = defaultdict(list)
    for entry in entries:
        by_file[str((entry.after or {})["file"])].append(entry)
    if archive_dir is None:
        first = entries[0]
        raise Conflict(
            f"readings of shipment {first.entity_id} were archived to "
            f"{', '.join(sorted(by_file))}: give the directory holding it (--archive DIR)"
        )
    rows: list[dict[str, Any]] = []
    for name, group in sorted(by_file.items()):
        path = archive_dir / name
        if not path.is_file():
            raise Conflict(f"{name} is not in {archive_dir}; it holds archived readings")
        sha, lines = read_file(path, {e.entity_id for e in group})
        for entry in group:
            after = entry.after or {}
            if sha != after["file_sha256"]:
                raise Conflict(f"{name} is not the file archived (its SHA-256 differs)")
            got = lines_digest(lines.get(entry.entity_id, []))
            if got != {"rows": after["rows"], "sha256": after["sha256"]}:
                raise Conflict(f"{name}: shipment {entry.entity_id}'s readings differ")
            rows += [json.loads(line) for line in lines.get(entry.entity_id, [])]
    return rows
