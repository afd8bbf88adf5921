"""Excursion rows as ingest and replay write them: every create, change and removal audited,
each row's alert, and the hold that puts a product on hold while QA re-assesses a signed
excursion (see ``frozen`` for when each happens)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import func
from sqlmodel import Session, col, select

from app.services.alerts import lifecycle as alerts
from app.services.audit import chain as audit
from app.services.audit.chain import jsonable
from app.services.coldchain import alarms
from app.services.coldchain.detector import Exc, Rules
from app.services.journey import holds
from app.times import from_ms
from models.audit import AuditEntry
from models.case import Case, ProductHold
from models.coldchain import Excursion
from models.shipment import Shipment


class ShipmentKey(Protocol):
    """What an excursion's writes need of its shipment: a ``Shipment`` row or a
    ``ShipmentRef``."""

    @property
    def id(self) -> str: ...

    @property
    def case_id(self) -> str: ...

    @property
    def profile(self) -> str: ...


@dataclass(frozen=True)
class ShipmentRef:
    """A shipment as ingest's detector read it with its profile: enough for its excursions'
    writes, without loading the row."""

    id: str
    case_id: str
    profile: str


ACTOR = "system:coldchain"
FINDING = "excursion.late_readings"


def snapshot(row: Excursion) -> dict[str, Any]:
    """What an audit entry shows of an excursion row."""
    return {
        "shipment_id": row.shipment_id,
        "kind": row.kind,
        "status": row.status,
        "started_at": from_ms(row.started_ms),
        "last_at": from_ms(row.last_ms),
        "ended_at": from_ms(row.ended_ms) if row.ended_ms is not None else None,
        "peak_c": row.peak_c,
        "severity": row.severity,
        "out_of_spec": row.out_of_spec,
        "refers_to_id": row.refers_to_id,
    }


def assign(row: Excursion, exc: Exc) -> None:
    """Copy a detector excursion onto an unsigned row (its start is the row's key)."""
    if row.disposition is not None:
        raise RuntimeError(f"excursion {row.id} is signed and frozen")
    row.kind = exc.kind
    row.last_ms = exc.last_ms
    row.ended_ms = exc.ended_ms
    row.status = "closed" if exc.ended_ms is not None else "open"
    row.peak_c = exc.peak_c
    row.out_of_spec = exc.out_of_spec
    row.severity = exc.severity


def new_row(shipment_id: str, exc: Exc, started_ms: int) -> Excursion:
    row = Excursion(
        shipment_id=shipment_id,
        kind=exc.kind,
        started_ms=started_ms,
        last_ms=exc.last_ms,
        peak_c=exc.peak_c,
        severity=exc.severity,
    )
    assign(row, exc)
    return row


def record(
    session: Session,
    *,
    row: Excursion,
    before: dict[str, Any] | None,
    now: datetime,
    reason: str | None = None,
) -> bool:
    """Audit a written row's creation or change (flushed already); False if unchanged."""
    after = snapshot(row)
    if before == after:
        return False
    audit.append(
        session,
        actor=ACTOR,
        action="excursion.created" if before is None else "excursion.changed",
        entity="excursion",
        entity_id=str(row.id),
        at=now,
        before=before,
        after=after,
        reason=reason,
    )
    return True


def alert_key(shipment_id: str, started_ms: int) -> str:
    return f"excursion:{shipment_id}:{started_ms}"


def raise_alert(
    session: Session,
    *,
    shipment: ShipmentKey,
    profile: str,
    rules: Rules,
    exc: Exc,
    row: Excursion,
    referent: Excursion | None,
    resolve: bool,
    now: datetime,
) -> None:
    """Raise or refresh the alert of an excursion row: a referring one's always (QA must
    re-assess), an ordinary one's unless a short blip (then, if ``resolve``, close it)."""
    key = alert_key(shipment.id, row.started_ms)
    if referent is None:
        spec = alarms.excursion(
            shipment_id=shipment.id, case_id=shipment.case_id, profile=profile, rules=rules, exc=exc
        )
        if spec is not None:
            alarms.raise_spec(session, spec, now=now)
        elif resolve:  # a blip now: whatever it alarmed before is over
            alerts.resolve_key(session, dedupe_key=key, now=now)
        return
    alarms.raise_spec(
        session,
        alarms.reassessment(
            shipment_id=shipment.id,
            case_id=shipment.case_id,
            profile=profile,
            exc=exc,
            dedupe_key=key,
            signed_id=referent.id or 0,
            signed_peak_c=referent.peak_c,
            signed_severity=referent.severity,
        ),
        now=now,
    )


def hold_for_reassessment(
    session: Session, *, shipment: Shipment, signed: Excursion, reason: str, now: datetime
) -> None:
    """Hold the product until QA re-assesses, unless it is held for this since its release."""
    case = session.get(Case, shipment.case_id)
    if case is None:  # guaranteed by foreign keys
        raise RuntimeError("inconsistent data: case missing")
    source = f"reassess:{signed.id}"
    if case.hold_status == holds.ON_HOLD:
        released = session.exec(
            select(func.max(ProductHold.id)).where(
                ProductHold.case_id == case.id, ProductHold.action == "release"
            )
        ).one()
        placed = session.exec(
            select(ProductHold.id).where(
                ProductHold.case_id == case.id,
                ProductHold.action == "place",
                ProductHold.source == source,
                col(ProductHold.id) > (released or 0),
            )
        ).first()
        if placed is not None:
            return
    holds.place(
        session,
        case=case,
        by=ACTOR,
        reason=f"QA to re-assess: {reason}",
        source=source,
        meaning=None,
        now=now,
    )


def piece(exc: Exc) -> dict[str, Any]:
    return {
        "kind": exc.kind,
        "started_at": from_ms(exc.started_ms),
        "last_at": from_ms(exc.last_ms),
        "ended_at": from_ms(exc.ended_ms) if exc.ended_ms is not None else None,
        "peak_c": exc.peak_c,
        "severity": exc.severity,
    }


def finding(
    session: Session, *, signed: Excursion, start: int, pieces: list[Exc], now: datetime
) -> None:
    """Audit, once, late readings that show a signed excursion no worse than signed."""
    if len(pieces) == 1:
        (exc,) = pieces
        if (exc.started_ms, exc.last_ms, exc.ended_ms, exc.kind, exc.peak_c, exc.severity) == (
            start,
            signed.last_ms,
            signed.ended_ms,
            signed.kind,
            signed.peak_c,
            signed.severity,
        ):
            return
    after = jsonable({"recomputed": [piece(e) for e in pieces], "signed": snapshot(signed)})
    audit.seal(session)  # a finding recorded earlier in this transaction counts too
    last = session.exec(
        select(AuditEntry.after)
        .where(
            AuditEntry.entity == "excursion",
            AuditEntry.entity_id == str(signed.id),
            AuditEntry.action == FINDING,
        )
        .order_by(col(AuditEntry.seq).desc())
        .limit(1)
    ).first()
    if last == after:
        return
    audit.append(
        session,
        actor=ACTOR,
        action=FINDING,
        entity="excursion",
        entity_id=str(signed.id),
        at=now,
        before=None,
        after=after,
        reason=(
            f"late readings inside signed excursion {signed.id} show it no worse than signed "
            f"({len(pieces)} recomputed piece(s)); the signed record is kept"
        ),
    )
