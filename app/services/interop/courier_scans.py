"""A courier feed's custody scans: finding the shipment a scan names and recording it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from app.errors import AppError
from app.services.shipments import lifecycle as shipments
from integrations.courier import parse_scan
from models.case import Case
from models.principal import Principal
from models.shipment import Shipment

MAX_ERROR_LENGTH = 500


def _find_shipment(session: Session, *, courier: str, ref: str) -> Shipment | str:
    """Our shipment id, or the container serial of this courier's one open shipment."""
    by_id = session.exec(
        select(Shipment)
        .where(Shipment.id == ref, Shipment.courier == courier)
        .with_for_update(key_share=True)
    ).first()
    if by_id is not None:
        return by_id
    matches = session.exec(
        select(Shipment)
        .where(
            Shipment.container_serial == ref,
            Shipment.courier == courier,
            col(Shipment.status).in_(shipments.ACTIVE),
        )
        .with_for_update(key_share=True)
    ).all()
    if len(matches) == 1:
        return matches[0]
    if not matches:
        return "unknown shipment_ref: no shipment of this courier with that id or open container"
    return "ambiguous shipment_ref: several open shipments use that container; send the id"


def apply_scan(
    session: Session,
    *,
    courier: str,
    actor: Principal,
    event: Any,
    now: datetime,
    future_tolerance_s: int,
) -> str | None:
    """Record one scan as custody; the reason it was refused, or None."""
    scan = parse_scan(event)
    if isinstance(scan, str):
        return scan
    shipment = _find_shipment(session, courier=courier, ref=scan.shipment_ref)
    if isinstance(shipment, str):
        return shipment
    case = session.exec(
        select(Case).where(Case.id == shipment.case_id).with_for_update(key_share=True)
    ).one()
    try:
        # A savepoint: a refused scan leaves nothing behind, the rest of the page goes on.
        with session.begin_nested():
            shipments.record_custody(
                session,
                shipment=shipment,
                case=case,
                actor=actor,
                action=scan.action,
                occurred_at=scan.ts,
                from_party=scan.from_party,
                to_party=scan.to_party,
                coi=scan.coi,
                lat=scan.lat,
                lon=scan.lon,
                now=now,
                future_tolerance_s=future_tolerance_s,
            )
    except AppError as exc:
        if exc.on_refusal is not None:
            # A COI mismatch still raises its critical alert and audit entry.
            exc.on_refusal(session)
        return short(f"{exc.code}: {exc.detail}")
    return None


def short(text: str) -> str:
    """An error or refusal cut to what a feed row keeps."""
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"
