"""Cases: registration, scheduling and journey events."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from fastapi.responses import JSONResponse
from sqlmodel import Session, col, or_, select

from app.deps import (
    IdempotencyDep,
    KeyringDep,
    NowDep,
    ScopedCase,
    SessionDep,
    SettingsDep,
    committing,
    replay_response,
    require_roles,
)
from app.errors import Invalid
from app.routers.pagination import CursorQuery, LimitQuery, decode_cursor, encode_cursor
from app.services.access.scope import CASE_READERS, case_scope
from app.services.capacity import slots as capacity
from app.services.identity.coi import display
from app.services.journey import cases
from app.services.journey import events as journey
from models.alert import Alert
from models.base import Page
from models.case import (
    Case,
    CaseCreate,
    CaseCreated,
    CaseDetail,
    CaseStatus,
    CaseSummary,
    EventCreate,
    EventPublic,
    MilestonePublic,
    ScheduleRequest,
    ScheduleResponse,
    SlotPublic,
)
from models.principal import Principal, Role
from models.shipment import Shipment

router = APIRouter(prefix="/cases", tags=["cases"])

Registrar = Annotated[Principal, require_roles(Role.admin, Role.coordinator)]
Reader = Annotated[Principal, require_roles(*CASE_READERS)]
Scheduler = Annotated[Principal, require_roles(Role.admin, Role.coordinator)]
EventRecorder = Annotated[Principal, require_roles(Role.admin, Role.coordinator, Role.manufacturer)]


def _summary(case: Case) -> dict[str, Any]:
    return {**case.model_dump(), "coi_display": display(case.coi)}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CaseCreated)
def register_case(
    body: CaseCreate,
    session: SessionDep,
    principal: Registrar,
    settings: SettingsDep,
    keyring: KeyringDep,
    now: NowDep,
    idem: IdempotencyDep,
) -> Any:
    """Register a case: issue its chain-of-identity code and signed token."""
    with committing(session):
        if (stored := idem.begin(session)) is not None:
            return replay_response(stored)
        case = cases.register(
            session,
            actor=principal,
            site=body.site,
            route=body.route,
            product=body.product,
            patient_ref=body.patient_ref,
            planned_infusion_at=body.planned_infusion_at,
            now=now,
            keyring=keyring,
            patient_key=settings.patient_hash_key.get_secret_value(),
            default_fin=settings.coi_fin,
        )
        out = CaseCreated.model_validate(_summary(case))
        idem.finish(session, status_code=201, body=out.model_dump(mode="json"))
    return out


@router.get("", response_model=Page[CaseSummary])
def list_cases(
    session: SessionDep,
    principal: Reader,
    site: Annotated[str | None, Query(max_length=32)] = None,
    status_: Annotated[CaseStatus | None, Query(alias="status")] = None,
    route: Annotated[str | None, Query(max_length=32)] = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Any:
    """List the cases the caller may see, newest first."""
    stmt = select(Case).where(case_scope(principal))
    if site:
        stmt = stmt.where(Case.site == site)
    if status_:
        stmt = stmt.where(Case.status == status_.value)
    if route:
        stmt = stmt.where(Case.route == route)
    if cursor:
        created, case_id = decode_cursor(cursor, 2)
        try:
            created_at = datetime.fromisoformat(str(created))
        except ValueError as exc:
            raise Invalid(
                "malformed cursor", errors=[{"loc": "query/cursor", "msg": "bad"}]
            ) from exc
        stmt = stmt.where(
            or_(
                col(Case.created_at) < created_at,
                (col(Case.created_at) == created_at) & (col(Case.id) < str(case_id)),
            )
        )
    rows = list(
        session.exec(
            stmt.order_by(col(Case.created_at).desc(), col(Case.id).desc()).limit(limit + 1)
        )
    )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor(last.created_at.isoformat(), last.id)
    return {"items": [_summary(c) for c in rows], "next_cursor": next_cursor}


def _detail(session: Session, case: Case, now: datetime) -> dict[str, Any]:
    milestones = cases.milestones(session, case_id=case.id)
    shipments = session.exec(
        select(Shipment).where(Shipment.case_id == case.id).order_by(col(Shipment.created_at))
    ).all()
    alerts = session.exec(
        select(Alert).where(Alert.case_id == case.id).order_by(col(Alert.id))
    ).all()
    slot = capacity.current_slot(session, case_id=case.id)
    return {
        **_summary(case),
        "milestones": [MilestonePublic.model_validate(m) for m in milestones],
        "shipments": shipments,
        "alerts": alerts,
        "durations": cases.durations(milestones, now=now),
        "slot": SlotPublic.model_validate(slot) if slot else None,
    }


@router.get("/{case_id}", response_model=CaseDetail)
def get_case(_principal: Reader, case: ScopedCase, session: SessionDep, now: NowDep) -> Any:
    """One case with its milestones, shipments, alerts, durations so far and slot."""
    return _detail(session, case, now)


@router.post("/{case_id}/schedule", response_model=ScheduleResponse)
def schedule_case(
    principal: Scheduler,
    body: ScheduleRequest,
    case: ScopedCase,
    session: SessionDep,
    now: NowDep,
) -> Any:
    """Book apheresis and reserve the manufacturing slot the material will need."""
    with committing(session):
        journey.schedule(
            session, case=case, actor=principal, apheresis_at=body.apheresis_at, now=now
        )
        slot = capacity.current_slot(session, case_id=case.id)
        if slot is None or case.apheresis_at is None:  # guaranteed by foreign keys and state
            raise RuntimeError("inconsistent data: slot, case.apheresis_at missing")
        out = ScheduleResponse(
            case_id=case.id,
            status=case.status,
            apheresis_at=case.apheresis_at,
            slot=SlotPublic.model_validate(slot),
        )
    return out


@router.post("/{case_id}/events", status_code=status.HTTP_201_CREATED, response_model=EventPublic)
def record_event(
    principal: EventRecorder,
    body: EventCreate,
    case: ScopedCase,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    idem: IdempotencyDep,
) -> Any:
    """Record a journey milestone; identity-bearing steps must present the scanned COI."""
    with committing(session):
        if (stored := idem.begin(session)) is not None:
            return replay_response(stored)
        milestone = journey.record_event(
            session,
            case=case,
            actor=principal,
            event_type=body.type,
            occurred_at=body.occurred_at,
            site=body.site,
            coi=body.coi,
            note=body.note,
            data=body.data,
            now=now,
            future_tolerance_s=settings.future_tolerance_s,
        )
        out = EventPublic.model_validate({**milestone.model_dump(), "case_status": case.status})
        idem.finish(session, status_code=201, body=out.model_dump(mode="json"))
    return out


__all__ = ["router", "JSONResponse"]
