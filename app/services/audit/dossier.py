"""Portable exports with sqlite-utils: a case dossier and a pseudonymised analytics set.

The dossier holds one case's whole record for an auditor or a tech transfer, including its
audit entries with their hashes and the chain's hash skeleton, and a manifest hashing every
table's rows signed with the service's Ed25519 key (``manifest.py``). ``verify_dossier``
checks it offline with the JWKS: the signature, every table, the chain's links, and each
entry's place in the chain (and each entry's keyed hash where the audit keys are at hand).
The analytics set holds no COI, no patient reference and no internal id: cases get a keyed
pseudonym.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlalchemy import Table, or_
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from app import __version__
from app.errors import NotFound
from app.services.audit import chain as audit
from app.services.audit import manifest
from app.services.audit.keys import AuditKeys
from app.services.audit.signing import PublicKeys
from app.services.coldchain import archive_file as archive
from app.services.identity.coi import Keyring
from app.services.metrics import turnaround as metrics
from models.alert import Alert
from models.audit import GENESIS_HASH, AuditEntry
from models.case import Case, Milestone, Slot
from models.coldchain import Excursion, Reading
from models.shipment import CustodyEvent, DeviceAssignment, Shipment

READINGS: Table = Reading.__table__  # type: ignore[attr-defined]
COI_PATTERN = re.compile(r"CH[A-NP-Z1-9][A-NP-Z0-9]{2}[0-9]{4}[A-Z0-9]{6}")


def _plain(row: Any, drop: Iterable[str] = ()) -> dict[str, Any]:
    data = audit.jsonable(row.model_dump())
    for name in drop:
        data.pop(name, None)
    return {
        k: (v if not isinstance(v, dict | list) else __import__("json").dumps(v))
        for k, v in data.items()
    }


def _fresh(path: Path) -> sqlite_utils.Database:
    if path.exists():
        path.unlink()
    return sqlite_utils.Database(path)


def export_case(
    session: Session,
    *,
    case_id: str,
    out: Path,
    actor: str,
    now: datetime,
    keyring: Keyring,
    archive_dir: Path | None = None,
) -> dict[str, int]:
    """Write one case's complete record into a standalone SQLite file, with its signed
    manifest; return row counts. Readings archived off the database (``v2v readings
    archive``) are read from their files in ``archive_dir``, checked against the audit."""
    case = session.get(Case, case_id)
    if case is None:
        raise NotFound("no such case")
    db = _fresh(out)
    shipments = list(session.exec(select(Shipment).where(Shipment.case_id == case_id)))
    ship_ids = [s.id for s in shipments]
    counts: dict[str, int] = {}

    def put(table: str, rows: list[dict[str, Any]], pk: str | None = "id") -> None:
        counts[table] = len(rows)
        if rows:
            db.table(table).insert_all(rows, pk=pk)

    put("cases", [_plain(case, drop=["patient_hash"])])
    put(
        "milestones",
        [
            _plain(m)
            for m in session.exec(
                select(Milestone)
                .where(Milestone.case_id == case_id)
                .order_by(col(Milestone.occurred_at))
            )
        ],
    )
    put("slots", [_plain(s) for s in session.exec(select(Slot).where(Slot.case_id == case_id))])
    put("shipments", [_plain(s) for s in shipments])
    put(
        "custody",
        [
            _plain(c)
            for c in session.exec(
                select(CustodyEvent).where(col(CustodyEvent.shipment_id).in_(ship_ids))
            )
        ],
    )
    put(
        "device_assignments",
        [
            _plain(d)
            for d in session.exec(
                select(DeviceAssignment).where(col(DeviceAssignment.shipment_id).in_(ship_ids))
            )
        ],
    )
    r = READINGS.c
    readings = [
        archive.dossier_row(row)
        for row in session.execute(
            select_columns(*(r[name] for name in archive.FIELDS))
            .where(r.shipment_id.in_(ship_ids))
            .order_by(r.shipment_id, r.ts_ms)
        )
    ]
    # A partition re-attached after its archive run holds the same readings: kept once.
    stored = {(row["device_id"], row["ts_ms"]) for row in readings}
    readings += [
        row
        for row in archive.archived_readings(
            session, shipment_ids=ship_ids, archive_dir=archive_dir
        )
        if (row["device_id"], row["ts_ms"]) not in stored
    ]
    if readings:
        db.table("readings").create(archive.TYPES)
    put("readings", readings, pk=None)
    excursions = list(
        session.exec(select(Excursion).where(col(Excursion.shipment_id).in_(ship_ids)))
    )
    put("excursions", [_plain(e) for e in excursions])
    alerts = list(
        session.exec(
            select(Alert).where(
                or_(col(Alert.case_id) == case_id, col(Alert.shipment_id).in_(ship_ids))
            )
        )
    )
    put("alerts", [_plain(a) for a in alerts])
    entity_ids = [
        case_id,
        *ship_ids,
        *(str(e.id) for e in excursions),
        *(str(a.id) for a in alerts),
    ]
    audit.seal(session)  # what this transaction recorded is part of the chain read
    entries = list(
        session.exec(
            select(AuditEntry)
            .where(col(AuditEntry.entity_id).in_(entity_ids))
            .order_by(col(AuditEntry.seq))
        )
    )
    put("audit_entries", [_plain(e) for e in entries], pk="seq")
    skeleton = [
        {"seq": s, "prev_hash": p, "hash": h}
        for s, p, h in session.execute(
            select_columns(
                col(AuditEntry.seq), col(AuditEntry.prev_hash), col(AuditEntry.hash)
            ).order_by(col(AuditEntry.seq))
        )
    ]
    put("audit_chain", skeleton, pk="seq")
    head = skeleton[-1] if skeleton else {"seq": 0, "hash": GENESIS_HASH}
    db.table("export_meta").insert(
        {
            "kind": "case-dossier",
            "case_id": case_id,
            "coi": case.coi,
            "exported_at": now.isoformat(),
            "exported_by": actor,
            "app_version": __version__,
            "chain_head_seq": head["seq"],
            "chain_head_hash": head["hash"],
        }
    )
    manifest.sign(db, keyring=keyring, subject={"case_id": case_id, "exported_at": now.isoformat()})
    return counts


def verify_dossier(
    path: Path, *, public_keys: PublicKeys, audit_keys: AuditKeys | None = None
) -> tuple[bool, str]:
    """Re-check a dossier offline: the signed manifest and every table against it, the chain
    skeleton's links, each entry's place in it, and (given the audit keys) its keyed hash."""
    if not path.is_file():
        return False, f"{path} is not a file"
    db = sqlite_utils.Database(path)
    ok, signed = manifest.verify(db, public_keys=public_keys)
    if not ok:
        return False, signed
    chain = {row["seq"]: row for row in db.table("audit_chain").rows}
    previous = GENESIS_HASH
    for expected, seq in enumerate(sorted(chain), start=1):
        if seq != expected:
            return False, f"the chain skeleton has a gap before seq {seq}"
        if chain[seq]["prev_hash"] != previous:
            return False, f"the chain skeleton breaks at seq {seq}"
        previous = chain[seq]["hash"]
    entries = list(db.table("audit_entries").rows) if "audit_entries" in db.table_names() else []
    for row in entries:
        if chain.get(row["seq"], {}).get("hash") != row["hash"]:
            return False, f"audit entry {row['seq']} is not the chain's entry at that place"
        key = audit_keys.secret(row["kid"]) if audit_keys is not None else None
        if audit_keys is not None and key is None:
            return False, f"audit entry {row['seq']} was keyed with an unknown key"
        if (
            key is not None
            and audit.entry_hash(key=key, kid=row["kid"], **_content(row)) != row["hash"]
        ):
            return False, f"audit entry {row['seq']} does not match its hash"
    problem = _archived_match(db, entries)
    if problem is not None:
        return False, problem
    return True, f"{signed}; {len(entries)} entries placed in a chain of {len(chain)}"


def _archived_match(db: sqlite_utils.Database, entries: list[dict[str, Any]]) -> str | None:
    """A shipment's readings archived off the database must be, in the dossier, the very
    rows whose digest was audited when their month was archived."""
    for row in entries:
        if row["action"] != archive.ARCHIVED:
            continue
        after = json.loads(row["after"])
        rows = (
            db.table("readings").rows_where(
                "shipment_id = ? AND ts_ms >= ? AND ts_ms < ?",
                [row["entity_id"], after["from_ms"], after["until_ms"]],
            )
            if "readings" in db.table_names()
            else []
        )
        got = manifest.lines_digest([manifest.canonical_row(r) for r in rows])
        if got != {"rows": after["rows"], "sha256": after["sha256"]}:
            return (
                f"readings of shipment {row['entity_id']} are not those audited when "
                f"{after['partition']} was archived"
            )
    return None


def _content(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "seq": row["seq"],
        "at": datetime.fromisoformat(row["at"].replace("Z", "+00:00")),
        "actor": row["actor"],
        "actor_id": row["actor_id"],
        "action": row["action"],
        "entity": row["entity"],
        "entity_id": row["entity_id"],
        "before": json.loads(row["before"]) if row["before"] else None,
        "after": json.loads(row["after"]) if row["after"] else None,
        "reason": row["reason"],
        "prev_hash": row["prev_hash"],
    }


def export_analytics(session: Session, *, out: Path, key: str, now: datetime) -> dict[str, int]:
    """A pseudonymised dataset of cases, legs and excursions, with full-text search on alerts."""

    def pseudo(value: str) -> str:
        return hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()[:16]

    db = _fresh(out)
    rows = metrics.fetch(session)
    cases, legs = [], []
    for row in rows:
        pid = pseudo(row.id)
        v2v = row.hours("collected", "infused")
        cases.append(
            {
                "case": pid,
                "site": row.site,
                "route": row.route,
                "route_kind": row.route_kind,
                "manufacturing_site": row.manufacturing_site,
                "product": row.product,
                "status": row.status,
                "collected_month": row.key("month"),
                "vein_to_vein_d": None if v2v is None else round(v2v / 24, 4),
                "had_major_excursion": row.excursion,
            }
        )
        for name, start, end, per in metrics.LEGS:
            hours = row.hours(start, end)
            if hours is not None:
                legs.append(
                    {
                        "case": pid,
                        "leg": name,
                        "value": round(hours / per, 4),
                        "unit": "d" if per == 24 else "h",
                    }
                )
    db.table("cases").insert_all(cases, pk="case")
    db.table("legs").insert_all(legs)
    shipments = {s.id: s.case_id for s in session.exec(select(Shipment))}
    excursions = [
        {
            "case": pseudo(shipments[e.shipment_id]),
            "shipment": pseudo(e.shipment_id),
            "kind": e.kind,
            "severity": e.severity,
            "peak_c": e.peak_c,
            "duration_min": round(((e.ended_ms or e.last_ms) - e.started_ms) / 60_000, 3),
            "disposition": e.disposition,
        }
        for e in session.exec(select(Excursion))
    ]
    db.table("excursions").insert_all(excursions)
    alerts = [
        {
            "case": pseudo(a.case_id) if a.case_id else None,
            "kind": a.kind,
            "severity": a.severity,
            "status": a.status,
            "created_month": a.created_at.strftime("%Y-%m"),
            "message": _scrub(a.message),
        }
        for a in session.exec(select(Alert))
    ]
    db.table("alerts").insert_all(alerts)
    if alerts:
        db.table("alerts").enable_fts(["message"], create_triggers=True)
    db.table("export_meta").insert(
        {
            "kind": "analytics",
            "exported_at": now.isoformat(),
            "app_version": __version__,
        }
    )
    return {
        "cases": len(cases),
        "legs": len(legs),
        "excursions": len(excursions),
        "alerts": len(alerts),
    }


def _scrub(message: str) -> str:
    """No COI and no internal shipment id prefixes leave in analytics text."""
    message = COI_PATTERN.sub("[COI]", message)
    return re.sub(r"shipment [0-9a-f]{8}", "shipment [id]", message)
