"""Archiving old months of readings (PostgreSQL): export each month to a file, then detach it.

A month is archived only when every shipment with readings in it is settled — delivered
longer ago than the late-data bound (``V2V_READING_LATE_BOUND_H``: no late reading can still
attach to it) or cancelled as long ago with its loggers freed — and has no reading in a
partition this run leaves attached (a later month, or DEFAULT). So a shipment's readings
are either all in the database or all archived: a trace or a replay never sees half a trip.
A shipment that crosses the cut-off blocks the month; a later ``--before`` takes both months.
A run is all or nothing: one blocked month refuses the run and changes nothing.

Each month goes to ``reading_yYYYYmMM.jsonl.gz`` with a manifest beside it
(``archive_file.py``: the dossier's canonical rows, each shipment's digest as a dossier
hashes a table, the file's SHA-256). The file is written, synced and read back (every
shipment's digest recomputed from disk) before the partition is detached.

Each archived shipment gets an audit entry (``readings.archived``: partition, file, file
SHA-256, rows, digest). A case dossier exported later reads its archived readings from the
file (``export case --archive DIR``), refuses a file whose SHA-256 or digests differ from the
audited ones, and carries those audit entries, so ``export verify`` checks the dossier's
readings of each archived shipment against the digest audited when it was archived. A
dossier exported before the archive run holds its readings already and verifies as before.

Detaching takes ACCESS EXCLUSIVE on ``reading`` for an instant at the end; the table stays
in the database (not part of ``reading`` any more) until the operator drops it.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

from app.errors import Conflict, Invalid
from app.raw import utc_ms
from app.services.audit import chain as audit
from app.services.audit.manifest import canonical_row, lines_digest
from app.services.coldchain import archive_file as af
from app.services.coldchain import partitions
from app.times import from_ms

Progress = Callable[[int], None]


def parse_month(value: str) -> tuple[int, int]:
    """``YYYY-MM`` to (year, month)."""
    try:
        at = datetime.strptime(value, "%Y-%m")
    except ValueError as exc:
        raise Invalid(f"{value!r} is not a month in the form YYYY-MM") from exc
    return at.year, at.month


@dataclass
class Month:
    """One partition a run would archive: rows per shipment, and what blocks it."""

    partition: partitions.Partition
    shipments: dict[str, int] = field(default_factory=dict)
    blockers: list[str] = field(default_factory=list)
    file: str | None = None
    sha256: str | None = None

    @property
    def rows(self) -> int:
        return sum(self.shipments.values())

    def public(self) -> dict[str, Any]:
        p = self.partition
        return {
            "partition": p.name,
            "from": from_ms(p.from_ms or 0).isoformat(),
            "until": from_ms(p.until_ms or 0).isoformat(),
            "rows": self.rows,
            "shipments": len(self.shipments),
            "blockers": self.blockers,
            "file": self.file,
            "sha256": self.sha256,
        }


class Blocked(Conflict):
    """A run refused: some month holds readings of a shipment that is not settled."""

    def __init__(self, months: list[Month]) -> None:
        reasons = [f"{m.partition.name}: {b}" for m in months for b in m.blockers]
        super().__init__("nothing archived: " + "; ".join(reasons))
        self.months = months


def _settled(
    session: Session, ids: list[str], *, now: datetime, late_bound_ms: int
) -> dict[str, str]:
    """Why each unsettled shipment among ``ids`` may still take readings."""
    rows = session.execute(
        text(
            "SELECT s.id, s.status, s.delivered_at, s.cancelled_at, (SELECT max(c.recorded_at) "
            "FROM custody_event c WHERE c.shipment_id = s.id AND c.action = 'delivered'), "
            "(SELECT count(*) FROM device_assignment a WHERE a.shipment_id = s.id "
            "AND a.assigned_until IS NULL) FROM shipment s WHERE s.id = ANY(:ids)"
        ),
        {"ids": ids},
    ).all()
    hours = f"{late_bound_ms / 3_600_000:g} h"
    why: dict[str, str] = {}
    for sid, status, delivered, cancelled, recorded, riding in rows:
        ended = {"delivered": delivered, "cancelled": cancelled}.get(status)
        if ended is None:
            why[sid] = f"shipment {sid} is {status}: still open"
            continue
        last = max(utc_ms(ended), utc_ms(recorded) if recorded is not None else 0)
        if utc_ms(now) <= last + late_bound_ms or riding:
            why[sid] = f"shipment {sid} was {status} less than {hours} ago: readings may still come"
    return why


def plan(
    session: Session, *, before: tuple[int, int], now: datetime, late_bound_ms: int
) -> list[Month]:
    """The months wholly before ``before`` and, for each, its shipments and any blockers."""
    if not partitions.postgres(session):
        raise Conflict("reading partitions and their archive exist only on PostgreSQL")
    cutoff = partitions.month_ms(*before)
    if cutoff > partitions.month_ms(now.year, now.month):
        raise Conflict("only months before the current one can be archived")
    months = [
        Month(p)
        for p in partitions.list_partitions(session)
        if p.until_ms is not None and p.until_ms <= cutoff
    ]
    for month in months:
        counted = session.execute(
            text(f"SELECT shipment_id, count(*) FROM {month.partition.name} GROUP BY 1")  # noqa: S608
        ).all()
        month.shipments = {str(s): int(n) for s, n in sorted(counted)}
    ids = sorted({s for m in months for s in m.shipments})
    if not ids:
        return months
    why = _settled(session, ids, now=now, late_bound_ms=late_bound_ms)
    elsewhere: dict[str, list[str]] = defaultdict(list)
    for sid, where in session.execute(
        text(
            "SELECT r.shipment_id, r.tableoid::regclass::text FROM reading r "
            "WHERE r.shipment_id = ANY(:ids) AND r.tableoid::regclass::text <> ALL(:names) "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        {"ids": ids, "names": [m.partition.name for m in months]},
    ):
        elsewhere[str(sid)].append(str(where))
    for month in months:
        for sid in month.shipments:
            if sid in why:
                month.blockers.append(why[sid])
            if sid in elsewhere:
                month.blockers.append(
                    f"shipment {sid} also has readings in {', '.join(elsewhere[sid])}, which "
                    "this run keeps (a shipment is archived whole: choose a later --before)"
                )
    return months


def _lines(session: Session, name: str) -> Iterator[tuple[str, str]]:
    """(shipment id, canonical line) of every reading of a partition, by shipment and time."""
    # Per statement: a Connection's own execution_options would stay set on it (2.x).
    result = session.execute(
        text(
            f"SELECT {', '.join(af.FIELDS)} FROM {name} "  # noqa: S608
            "ORDER BY shipment_id, ts_ms, device_id"
        ),
        execution_options={"stream_results": True, "yield_per": 5_000},
    )
    for values in result:
        yield str(values[0]), canonical_row(af.dossier_row(values))


def _export(session: Session, month: Month, out_dir: Path, advance: Progress) -> dict[str, Any]:
    """Write, sync and read back one month's file and manifest; the per-shipment digests."""
    name = month.partition.name
    path, tmp = out_dir / f"{name}.jsonl.gz", out_dir / f".{name}.jsonl.gz.partial"
    digests: dict[str, dict[str, Any]] = {}
    current: str | None = None
    batch: list[str] = []
    with tmp.open("wb") as raw:
        with gzip.GzipFile(filename=f"{name}.jsonl", mode="wb", fileobj=raw, mtime=0) as gz:
            for sid, line in _lines(session, name):
                if sid != current:
                    if current is not None:
                        digests[current] = lines_digest(batch)
                        advance(len(batch))
                    current, batch = sid, []
                batch.append(line)
                gz.write(line.encode("utf-8") + b"\n")
            if current is not None:
                digests[current] = lines_digest(batch)
                advance(len(batch))
        raw.flush()
        os.fsync(raw.fileno())
    af.sync_replace(tmp, path)
    sha, lines = af.read_file(path)
    if {sid: lines_digest(rows) for sid, rows in lines.items()} != digests:
        raise Conflict(f"{path} does not read back as written: nothing archived")
    if {sid: d["rows"] for sid, d in digests.items()} != month.shipments:
        raise Conflict(f"{name} changed while it was exported: nothing archived")
    p = month.partition
    manifest = {
        "format": af.FORMAT,
        "partition": name,
        "from_ms": p.from_ms,
        "until_ms": p.until_ms,
        "file": path.name,
        "sha256": sha,
        "rows": month.rows,
        "shipments": digests,
    }
    side = out_dir / f"{name}.manifest.json"
    side_tmp = out_dir / f".{name}.manifest.json.partial"
    with side_tmp.open("w", encoding="utf-8") as out:
        json.dump(manifest, out, indent=1, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    af.sync_replace(side_tmp, side)
    month.file, month.sha256 = path.name, sha
    return digests


def archive(
    session: Session,
    *,
    before: tuple[int, int],
    now: datetime,
    late_bound_ms: int,
    out_dir: Path,
    actor: str,
    advance: Progress = lambda _n: None,
    dry_run: bool = False,
) -> list[Month]:
    """Export and detach every month wholly before ``before``, or nothing (``Blocked``)."""
    if not partitions.postgres(session):
        raise Conflict("reading partitions and their archive exist only on PostgreSQL")
    if not dry_run:
        partitions.lock_maintenance(session)
        cutoff = partitions.month_ms(*before)
        for p in partitions.list_partitions(session):
            if p.until_ms is not None and p.until_ms <= cutoff:
                # No write may reach a month between its check and its detach.
                session.execute(text(f"LOCK TABLE {p.name} IN SHARE MODE"))
    months = plan(session, before=before, now=now, late_bound_ms=late_bound_ms)
    if any(m.blockers for m in months):
        raise Blocked(months)
    if dry_run:
        return months
    out_dir.mkdir(parents=True, exist_ok=True)
    exported = [(m, _export(session, m, out_dir, advance)) for m in months]
    # The audit chain's lock is held from the first entry to the commit: entries come last.
    for month, digests in exported:
        p = month.partition
        for sid, digest in digests.items():
            audit.append(
                session,
                actor=actor,
                action=af.ARCHIVED,
                entity="shipment",
                entity_id=sid,
                at=now,
                after={
                    "partition": p.name,
                    "from_ms": p.from_ms,
                    "until_ms": p.until_ms,
                    "file": month.file,
                    "file_sha256": month.sha256,
                    **digest,
                },
            )
        partitions.detach(session, name=p.name)
    return months
