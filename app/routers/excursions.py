"""Traces, excursions and QA dispositions of the cold chain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlmodel import col, select

from app.deps import NowDep, ScopedShipment, SessionDep, SettingsDep, committing, require_roles
from app.errors import Conflict, Forbidden, Invalid, NotFound
from app.routers.pagination import CursorQuery, IntId, LimitQuery, cursor_int, encode_cursor
from app.services.access import principals
from app.services.access.scope import SHIPMENT_READERS, shipment_scope
from app.services.alerts import lifecycle as alerts
from app.services.audit import chain as audit
from app.services.coldchain import traces
from app.services.coldchain.engine import ms_to_dt
from models.alert import Alert, AlertStatus
from models.base import Page
from models.coldchain import DispositionRequest, Excursion, ExcursionPublic
from models.principal import Principal, Role
from models.shipment import Shipment

router = APIRouter(tags=["cold chain"])
Reader = Annotated[Principal, require_roles(*SHIPMENT_READERS)]
QA = Annotated[Principal, require_roles(Role.qa)]


@router.get("/shipments/{shipment_id}/readings")
def shipment_trace(
    _principal: Reader,
    shipment: ScopedShipment,
    session: SessionDep,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    max_points: Annotated[int, Query(ge=2, le=10_000)] = 500,
) -> dict[str, Any]:
    """The temperature trace, downsampled in SQL; every bucket keeps its min and max."""
    for name, value in (("from", from_), ("to", to)):
        if value is not None and value.tzinfo is None:
            raise Invalid(
                f"{name} needs a UTC offset", errors=[{"loc": f"query/{name}", "msg": "naive"}]
            )
    bounds = traces.bounds(session, shipment.id)
    if bounds is None:
        return {"points": [], "bucket_s": 0}
    low = int(from_.timestamp() * 1000) if from_ else bounds[0]
    high = int(to.timestamp() * 1000) if to else bounds[1]
    if high < low:
        raise Invalid("to is before from", errors=[{"loc": "query/to", "msg": "before from"}])
    return traces.trace(session, shipment.id, low=low, high=high, max_points=max_points)


def _public(e: Excursion) -> ExcursionPublic:
    return ExcursionPublic(
        id=e.id or 0,
        shipment_id=e.shipment_id,
        kind=e.kind,
        status=e.status,
        started_at=ms_to_dt(e.started_ms),
        ended_at=ms_to_dt(e.ended_ms) if e.ended_ms is not None else None,
        duration_min=round(((e.ended_ms or e.last_ms) - e.started_ms) / 60_000, 3),
        peak_c=e.peak_c,
        severity=e.severity,
        disposition=e.disposition,
        disposition_reason=e.disposition_reason,
        signed_by=e.signed_by,
        signed_at=e.signed_at,
        signature_meaning=e.signature_meaning,
    )


@router.get("/excursions", response_model=Page[ExcursionPublic])
def list_excursions(
    principal: Reader,
    session: SessionDep,
    shipment_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(pattern="^(open|closed)$")] = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Any:
    """Temperature excursions on the shipments the caller may see, newest first."""
    visible = select(Shipment.id).where(shipment_scope(principal))
    stmt = select(Excursion).where(col(Excursion.shipment_id).in_(visible))
    if shipment_id:
        stmt = stmt.where(Excursion.shipment_id == shipment_id)
    if status:
        stmt = stmt.where(Excursion.status == status)
    if cursor:
        stmt = stmt.where(col(Excursion.id) < cursor_int(cursor))
    rows = list(session.exec(stmt.order_by(col(Excursion.id).desc()).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return {"items": [_public(e) for e in rows[:limit]], "next_cursor": next_cursor}


@router.post("/excursions/{excursion_id}/disposition", response_model=ExcursionPublic)
def disposition(
    principal: QA,
    excursion_id: IntId,
    body: DispositionRequest,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
) -> Any:
    """QA's signed decision on an excursion: accept, reject or quarantine the material."""
    with committing(session):
        visible = select(Shipment.id).where(shipment_scope(principal))
        exc = session.exec(
            select(Excursion)
            .where(Excursion.id == excursion_id, col(Excursion.shipment_id).in_(visible))
            .with_for_update(key_share=True)
        ).first()
        if exc is None:
            raise NotFound("no such excursion")
        # 21 CFR 11.200: the signer re-enters their credential for each signing.
        signer = principals.authenticate(
            session,
            api_key=body.signature.password_or_key,
            secret_key=settings.secret_key.get_secret_value(),
            now=now,
        )
        if signer is None or signer.id != principal.id:
            raise Forbidden("the signature credential is not the signer's own key")
        if exc.disposition is not None:
            raise Conflict(
                f"already dispositioned: {exc.disposition}", code="already-dispositioned"
            )
        before = {"disposition": None, "severity": exc.severity}
        exc.disposition = body.decision
        exc.disposition_reason = body.reason
        exc.signed_by = principal.name
        exc.signed_at = now
        exc.signature_meaning = body.signature.meaning
        session.add(exc)
        for alert in session.exec(
            select(Alert).where(
                Alert.dedupe_key == f"excursion:{exc.shipment_id}:{exc.started_ms}",
                col(Alert.status) != AlertStatus.resolved,
            )
        ):
            alerts.resolve(session, alert=alert, now=now)
        session.flush()
        audit.append(
            session,
            actor=principal,
            action="excursion.disposition",
            entity="excursion",
            entity_id=str(exc.id),
            at=now,
            before=before,
            after={
                "disposition": body.decision,
                "signed_by": principal.name,
                "signed_at": now,
                "meaning": body.signature.meaning,
            },
            reason=body.reason,
        )
        out = _public(exc)
    return out
