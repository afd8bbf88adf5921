"""Signed excursions are frozen, and every excursion change by ingest or replay is audited.

DESIGN.md, "Records stay true": a dispositioned (signed) excursion never changes. Ingest
(``engine.persist``) and replay (``engine.reevaluate`` → ``reconcile``) never update or
delete a signed row. The replay recomputes the shipment's excursions from its stored readings
and holds each recomputed excursion against the signed ones it overlaps (same shipment, the
out-of-range spans ``[started, last]`` intersect):

- **None overlapped**: an ordinary excursion. Its row is the one starting at the same instant;
  it is created, updated, or — when no recomputed excursion starts there any more (it moved
  or vanished) — removed. A removed excursion's alert, and the alert of one that became a
  short blip, is resolved: no alert stays open for an excursion that no longer exists.
- **Covered by a signed one**: same side, within its span, peak no further out, not critical
  or out of spec unless it was, severity no higher. Late readings can then only show the
  signed excursion shorter, milder, or split into pieces by in-range readings (a backfill):
  nothing QA signed could turn out worse. The signed record stays as it is; no row, alert or
  hold. The difference is recorded once (``excursion.late_readings`` on the signed excursion,
  with the recomputed pieces), so a laundering backfill is visible in the audit trail.
- **Otherwise** — it starts earlier or ends later (longer, or merged with a neighbour), its
  peak is hotter/colder, it is more severe, it became critical, or it lies on the other side
  (a low reading inside a high excursion splits it) — the outcome QA signed may be wrong. A new
  excursion row with ``refers_to_id`` = the earliest signed excursion it overlaps records the
  recomputed excursion, with its own alert (``alarms.reassessment``), and the case's product is
  put on hold (source ``reassess:<signed id>``) unless it is on hold for that reason since
  its last release. Its start is the recomputed start, unless a signed row already starts
  there (``(shipment_id, started_ms)`` is unique): then the first reading inside it that
  arrived after the signature (the first one QA never saw), or failing that (a profile edit,
  a second logger at the same instant) the next free millisecond; the true start is in the
  alert data and the audit entry. Later replays find that row again by what it refers to and
  overlaps, so replaying twice changes nothing. Once QA signs it, it is frozen in turn and
  covers what it recorded from the true start of the excursion it refers to.

Audit entries (actor ``system:coldchain``, entity ``excursion``): ``excursion.created``,
``excursion.changed``, ``excursion.removed`` with before/after snapshots (kind, status,
started/last/ended, peak, severity, out of spec, refers_to_id), and the finding above. Only
rows that change are audited; the quiet ingest path touches no excursion and audits nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from app.services.alerts import lifecycle as alerts
from app.services.audit import chain as audit
from app.services.coldchain import excursion_rows as written
from app.services.coldchain.detector import SEVERITY_RANK, Exc, Rules
from app.times import from_ms, to_ms
from models.coldchain import Excursion, Reading
from models.shipment import Shipment

# ---- replay -------------------------------------------------------------------------------


def _side(row: Excursion) -> str:
    return "high" if row.kind.endswith("high") else "low"


def _overlaps(start: int, last: int, exc: Exc) -> bool:
    return exc.started_ms <= last and start <= exc.last_ms


def _covers(signed: Excursion, start: int, exc: Exc) -> bool:
    """Whether the signed excursion already says everything ``exc`` says, or worse."""
    side = _side(signed)
    if exc.side != side or exc.started_ms < start or exc.last_ms > signed.last_ms:
        return False
    if signed.ended_ms is not None and (exc.ended_ms is None or exc.ended_ms > signed.ended_ms):
        return False
    hotter = exc.peak_c > signed.peak_c if side == "high" else exc.peak_c < signed.peak_c
    return not (
        hotter
        or (exc.critical and not signed.kind.startswith("critical"))
        or (exc.out_of_spec and not signed.out_of_spec)
        or SEVERITY_RANK[exc.severity] > SEVERITY_RANK[signed.severity]
    )


@dataclass
class _Plan:
    """One recomputed excursion to write: its row (matched or new) and the signed ones it
    would change (empty for an ordinary excursion)."""

    exc: Exc
    refers: list[Excursion]
    row: Excursion | None = None
    key: int | None = None  # the row's start, when it is the recomputed one


def reconcile(
    session: Session,
    *,
    shipment: Shipment,
    profile: str,
    rules: Rules,
    fresh: list[Exc],
    now: datetime,
) -> None:
    """Write a replay's recomputed excursions beside the stored ones (flushes): the module's
    rules. Sets each excursion's ``db_id`` to the row that stands for it."""
    rows = list(
        session.exec(
            select(Excursion)
            .where(Excursion.shipment_id == shipment.id)
            .order_by(col(Excursion.started_ms))
        )
    )
    signed = [r for r in rows if r.disposition is not None]
    by_id = {r.id: r for r in signed}
    unsigned = {r.started_ms: r for r in rows if r.disposition is None}
    signed_starts = {r.started_ms for r in signed}

    def span_start(row: Excursion) -> int:
        # A referring row may start late (its key); what it records starts with its referent.
        referent = by_id.get(row.refers_to_id) if row.refers_to_id is not None else None
        return min(row.started_ms, referent.started_ms) if referent else row.started_ms

    plans: list[_Plan] = []
    findings: dict[int, list[Exc]] = defaultdict(list)  # covered pieces by signed id
    for exc in fresh:
        over = [s for s in signed if _overlaps(span_start(s), s.last_ms, exc)]
        cover = next((s for s in over if _covers(s, span_start(s), exc)), None)
        if cover is not None:
            findings[cover.id or 0].append(exc)
            exc.db_id = cover.id
            continue
        plans.append(
            _Plan(exc, over, key=None if exc.started_ms in signed_starts else exc.started_ms)
        )

    matched: set[int] = set()
    # Rows at their recomputed start first, so a referring excursion found again by overlap
    # never takes a row another excursion starts at.
    for plan in sorted(plans, key=lambda p: p.key is None):
        if plan.key is not None:
            row = unsigned.get(plan.key)
        else:  # found again by what it refers to: its key was chosen when it was created
            referents = {s.id for s in plan.refers}
            row = next(
                (
                    u
                    for u in unsigned.values()
                    if u.id not in matched
                    and u.refers_to_id in referents
                    and _overlaps(u.started_ms, u.last_ms, plan.exc)
                ),
                None,
            )
        if row is not None and row.id not in matched:
            matched.add(row.id or 0)
            plan.row = row
    for stale in unsigned.values():
        if stale.id not in matched:
            _remove(session, row=stale, now=now)
    session.flush()

    taken = (
        signed_starts
        | {p.row.started_ms for p in plans if p.row}
        | {p.key for p in plans if p.key is not None}
    )
    for plan in plans:
        _write(
            session,
            shipment=shipment,
            profile=profile,
            rules=rules,
            plan=plan,
            taken=taken,
            now=now,
        )
    for signed_id, pieces in findings.items():
        written.finding(
            session,
            signed=by_id[signed_id],
            start=span_start(by_id[signed_id]),
            pieces=pieces,
            now=now,
        )


def _remove(session: Session, *, row: Excursion, now: datetime) -> None:
    audit.append(
        session,
        actor=written.ACTOR,
        action="excursion.removed",
        entity="excursion",
        entity_id=str(row.id),
        at=now,
        before=written.snapshot(row),
        after=None,
        reason="replay of the shipment's readings: no excursion starts there any more",
    )
    alerts.resolve_key(
        session, dedupe_key=written.alert_key(row.shipment_id, row.started_ms), now=now
    )
    session.delete(row)


def _first_unseen(
    session: Session, *, shipment_id: str, exc: Exc, since: datetime | None
) -> int | None:
    """The first reading inside ``exc`` (after its start) stored after ``since``."""
    stmt = select_columns(func.min(col(Reading.ts_ms))).where(
        col(Reading.shipment_id) == shipment_id,
        col(Reading.ts_ms) > exc.started_ms,
        col(Reading.ts_ms) <= (exc.ended_ms if exc.ended_ms is not None else exc.last_ms),
    )
    if since is not None:
        stmt = stmt.where(col(Reading.received_ms) > to_ms(since))
    found = session.execute(stmt).scalar()
    return int(found) if found is not None else None


def _write(
    session: Session,
    *,
    shipment: Shipment,
    profile: str,
    rules: Rules,
    plan: _Plan,
    taken: set[int],
    now: datetime,
) -> None:
    exc, row = plan.exc, plan.row
    referent = plan.refers[0] if plan.refers else None
    before = written.snapshot(row) if row is not None else None
    if row is None:
        key = plan.key
        if key is None:  # a signed row starts where the recomputed excursion does
            key = _first_unseen(
                session,
                shipment_id=shipment.id,
                exc=exc,
                since=referent.signed_at if referent else None,
            )
            key = exc.started_ms + 1 if key is None else key
            while key in taken:
                key += 1
            taken.add(key)
        row = written.new_row(shipment.id, exc, key)
    else:
        written.assign(row, exc)
    row.refers_to_id = referent.id if referent else None
    session.add(row)
    session.flush()
    exc.db_id = row.id
    reason = None
    if referent is not None:
        reason = (
            f"late readings would change signed excursion {referent.id}"
            + (f" (and {', '.join(str(s.id) for s in plan.refers[1:])})" if plan.refers[1:] else "")
            + f"; recomputed start {from_ms(exc.started_ms).isoformat()}"
        )
    changed = written.record(session, row=row, before=before, now=now, reason=reason)
    written.raise_alert(
        session,
        shipment=shipment,
        profile=profile,
        rules=rules,
        exc=exc,
        row=row,
        referent=referent,
        resolve=before is not None,
        now=now,
    )
    if referent is not None and changed:
        written.hold_for_reassessment(
            session, shipment=shipment, signed=referent, reason=reason or "", now=now
        )
