"""Excursions as the API shows them, and QA's signed disposition of one."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement
from sqlmodel import Session, col, select

from app.errors import Conflict, NotFound
from app.pagination import cursor_int, encode_cursor
from app.services.access import principals
from app.services.access.scope import shipment_scope
from app.services.alerts import lifecycle as alerts
from app.services.audit import chain as audit
from app.services.journey import holds
from app.times import from_ms
from models.base import Page
from models.case import Case
from models.coldchain import (
    DispositionPublic,
    DispositionRequest,
    Excursion,
    ExcursionPublic,
    Reading,
)
from models.principal import Principal
from models.shipment import Shipment, ShipmentStatus

# Decisions that keep the material from the patient until QA releases the hold.
HOLDING_DECISIONS = {"reject": "rejected", "quarantine": "quarantined"}


def public(e: Excursion) -> ExcursionPublic:
    """The public shape of an excursion: instants, duration in minutes, the signature."""
    return ExcursionPublic(
        id=e.id or 0,
        shipment_id=e.shipment_id,
        kind=e.kind,
        status=e.status,
        started_at=from_ms(e.started_ms),
        ended_at=from_ms(e.ended_ms) if e.ended_ms is not None else None,
        duration_min=round(((e.ended_ms or e.last_ms) - e.started_ms) / 60_000, 3),
        peak_c=e.peak_c,
        severity=e.severity,
        disposition=e.disposition,
        disposition_reason=e.disposition_reason,
        signed_by=e.signed_by,
        signed_at=e.signed_at,
        signature_meaning=e.signature_meaning,
        refers_to_id=e.refers_to_id,
    )


def _visible(actor: Principal) -> ColumnElement[bool]:
    return col(Excursion.shipment_id).in_(select(Shipment.id).where(shipment_scope(actor)))


def list_excursions(
    session: Session,
    *,
    actor: Principal,
    shipment_id: str | None,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> Page[ExcursionPublic]:
    """Temperature excursions on the shipments the actor may see, newest first, one page."""
    stmt = select(Excursion).where(_visible(actor))
    if shipment_id:
        stmt = stmt.where(Excursion.shipment_id == shipment_id)
    if status:
        stmt = stmt.where(Excursion.status == status)
    if cursor:
        stmt = stmt.where(col(Excursion.id) < cursor_int(cursor))
    rows = list(session.exec(stmt.order_by(col(Excursion.id).desc()).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return Page[ExcursionPublic](items=[public(e) for e in rows[:limit]], next_cursor=next_cursor)


def of_shipment(session: Session, *, shipment_id: str) -> list[ExcursionPublic]:
    """Every excursion of one shipment (already in the caller's scope), oldest first."""
    rows = session.exec(
        select(Excursion)
        .where(Excursion.shipment_id == shipment_id)
        .order_by(col(Excursion.started_ms))
    )
    return [public(e) for e in rows]


def sign_disposition(
    session: Session,
    *,
    actor: Principal,
    excursion_id: int,
    request: DispositionRequest,
    secret_key: str,
    now: datetime,
) -> DispositionPublic:
    """Record QA's signed decision on a closed excursion, resolve its alert and audit it.

    ``reject`` and ``quarantine`` put the case's product on hold in the same transaction.
    """
    exc = session.exec(
        select(Excursion)
        .where(Excursion.id == excursion_id, _visible(actor))
        .with_for_update(key_share=True)
    ).first()
    if exc is None:
        raise NotFound("no such excursion")
    # 21 CFR 11.200: the signer re-enters their credential for each signing.
    principals.verify_signature(
        session,
        actor=actor,
        credential=request.signature.password_or_key,
        secret_key=secret_key,
        now=now,
    )
    if exc.disposition is not None:
        raise Conflict(f"already dispositioned: {exc.disposition}", code="already-dispositioned")
    if exc.status != "closed":
        # Its duration and peak are still growing: a signature would cover an unknown.
        raise Conflict(
            "only a closed excursion can be signed; this one is still open (no in-range "
            "reading after it yet)",
            code="excursion-open",
        )
    before = {"disposition": None, "severity": exc.severity}
    exc.disposition = request.decision
    exc.disposition_reason = request.reason
    exc.signed_by = actor.name
    exc.signed_at = now
    exc.signature_meaning = request.signature.meaning
    session.add(exc)
    alerts.resolve_key(
        session,
        dedupe_key=f"excursion:{exc.shipment_id}:{exc.started_ms}",
        now=now,
        by=actor,
        reason=f"dispositioned {request.decision}: {request.reason}",
    )
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="excursion.disposition",
        entity="excursion",
        entity_id=str(exc.id),
        at=now,
        before=before,
        after={
            "disposition": request.decision,
            "signed_by": actor.name,
            "signed_at": now,
            "meaning": request.signature.meaning,
        },
        reason=request.reason,
    )
    shipment = session.get(Shipment, exc.shipment_id)
    if shipment is None:  # guaranteed by the foreign key
        raise RuntimeError("inconsistent data: shipment missing")
    if request.decision in HOLDING_DECISIONS:
        _hold_product(session, actor=actor, exc=exc, shipment=shipment, request=request, now=now)
    return DispositionPublic(
        **public(exc).model_dump(), warnings=_data_warnings(session, shipment=shipment)
    )


def _hold_product(
    session: Session,
    *,
    actor: Principal,
    exc: Excursion,
    shipment: Shipment,
    request: DispositionRequest,
    now: datetime,
) -> None:
    case = session.exec(
        select(Case).where(Case.id == shipment.case_id).with_for_update(key_share=True)
    ).one()
    reason = f"excursion {exc.id} {HOLDING_DECISIONS[request.decision]}: {request.reason}"
    holds.place(
        session,
        case=case,
        by=actor,
        reason=reason[:2000],
        source=f"excursion:{exc.id}",
        meaning=request.signature.meaning,
        now=now,
    )


def _data_warnings(session: Session, *, shipment: Shipment) -> list[str]:
    """Tell the signer when the shipment's loggers may not have uploaded everything yet."""
    if not shipment.device_ids or shipment.status == ShipmentStatus.cancelled:
        return []
    if shipment.delivered_at is None:
        return ["loggers may still hold data: the shipment is not delivered yet"]
    # A reading at the delivery instant or later shows the loggers' data reached the end of
    # the trip (a device's readings attach to its shipment up to and including delivery).
    delivered_ms = int(shipment.delivered_at.timestamp() * 1000)
    later = session.exec(
        select(Reading.id)
        .where(
            col(Reading.device_id).in_(shipment.device_ids),
            col(Reading.ts_ms) >= delivered_ms,
        )
        .limit(1)
    ).first()
    if later is None:
        return ["loggers may still hold data: no reading after delivery yet"]
    return []
