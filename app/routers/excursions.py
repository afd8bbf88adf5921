"""Traces, excursions and QA dispositions of the cold chain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.deps import NowDep, ScopedShipment, SessionDep, SettingsDep, committing, require_roles
from app.errors import Invalid
from app.pagination import CursorQuery, IntId, LimitQuery
from app.services.access.scope import DISPOSITION_SIGNERS, SHIPMENT_READERS
from app.services.coldchain import disposition as excursions
from app.services.coldchain.trace_window import trace_window
from models.base import Page
from models.coldchain import DispositionPublic, DispositionRequest, ExcursionPublic
from models.principal import Principal

router = APIRouter(tags=["cold chain"])
Reader = Annotated[Principal, require_roles(*SHIPMENT_READERS)]
QA = Annotated[Principal, require_roles(*DISPOSITION_SIGNERS)]


@router.get("/shipments/{shipment_id}/readings")
def shipment_trace(
    shipment: ScopedShipment,
    _principal: Reader,
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
    return trace_window(
        session, shipment_id=shipment.id, from_at=from_, to_at=to, max_points=max_points
    )


@router.get("/excursions", response_model=Page[ExcursionPublic])
def list_excursions(
    principal: Reader,
    session: SessionDep,
    shipment_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(pattern="^(open|closed)$")] = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[ExcursionPublic]:
    """Temperature excursions on the shipments the caller may see, newest first."""
    return excursions.list_excursions(
        session,
        actor=principal,
        shipment_id=shipment_id,
        status=status,
        limit=limit,
        cursor=cursor,
    )


@router.post("/excursions/{excursion_id}/disposition", response_model=DispositionPublic)
def disposition(
    principal: QA,
    excursion_id: IntId,
    body: DispositionRequest,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
) -> DispositionPublic:
    """QA's signed decision on a closed excursion; reject or quarantine holds the product."""
    with committing(session):
        out = excursions.sign_disposition(
            session,
            actor=principal,
            excursion_id=excursion_id,
            request=body,
            secret_key=settings.secret_key.get_secret_value(),
            now=now,
        )
    return out
