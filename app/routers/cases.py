"""Cases: registration, scheduling and journey events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.responses import JSONResponse

from app.deps import (
    IdempotencyDep,
    KeyringDep,
    NowDep,
    ScopedCase,
    SessionDep,
    SettingsDep,
    answer,
    committing,
    created_once,
    require_roles,
)
from app.pagination import CursorQuery, LimitQuery, page_of, time_cursor
from app.services.access.scope import CASE_READERS
from app.services.identity.coi import display
from app.services.journey import cases, events, reads
from models.base import Page
from models.case import (
    CaseCreate,
    CaseCreated,
    CaseDetail,
    CaseListQuery,
    CaseSummary,
    EventCreate,
    EventPublic,
    ScheduleRequest,
    ScheduleResponse,
)
from models.principal import Principal, Role

router = APIRouter(prefix="/cases", tags=["cases"])

Coordinator = Annotated[Principal, require_roles(Role.admin, Role.coordinator)]
Reader = Annotated[Principal, require_roles(*CASE_READERS)]
EventRecorder = Annotated[Principal, require_roles(Role.admin, Role.coordinator, Role.manufacturer)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CaseCreated)
def register_case(
    body: CaseCreate,
    session: SessionDep,
    principal: Coordinator,
    settings: SettingsDep,
    keyring: KeyringDep,
    now: NowDep,
    idem: IdempotencyDep,
) -> CaseCreated | JSONResponse:
    """Register a case: issue its chain-of-identity code and signed token."""

    def register() -> CaseCreated:
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
        return CaseCreated.model_validate({**case.model_dump(), "coi_display": display(case.coi)})

    return created_once(session, idem, register)


@router.get("", response_model=Page[CaseSummary])
def list_cases(
    session: SessionDep,
    principal: Reader,
    settings: SettingsDep,
    where: Annotated[CaseListQuery, Query()],
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[CaseSummary]:
    """List the cases the caller may see, newest first; find one by COI or patient reference."""
    key = settings.patient_hash_key.get_secret_value()
    after = time_cursor(cursor)
    rows = reads.list_cases(
        session, principal=principal, where=where, patient_key=key, after=after, limit=limit
    )
    items, next_at = page_of(rows, limit, lambda c: (c.created_at.isoformat(), c.id))
    return Page(items=[reads.summary(c) for c in items], next_cursor=next_at)


@router.get("/{case_id}", response_model=CaseDetail)
def get_case(case: ScopedCase, _principal: Reader, session: SessionDep, now: NowDep) -> CaseDetail:
    """One case with its milestones, shipments, alerts, durations so far, slot and hold."""
    return reads.case_detail(session, case=case, now=now)


@router.post("/{case_id}/schedule", response_model=ScheduleResponse)
def schedule_case(
    case: ScopedCase,
    principal: Coordinator,
    body: ScheduleRequest,
    session: SessionDep,
    now: NowDep,
) -> JSONResponse:
    """Book apheresis and reserve the manufacturing slot the material will need."""
    with committing(session):
        out = events.schedule(
            session, case=case, actor=principal, apheresis_at=body.apheresis_at, now=now
        )
    return answer(out)


@router.post("/{case_id}/events", status_code=status.HTTP_201_CREATED, response_model=EventPublic)
def record_event(
    case: ScopedCase,
    principal: EventRecorder,
    body: EventCreate,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    idem: IdempotencyDep,
) -> EventPublic | JSONResponse:
    """Record a journey milestone; identity-bearing steps must present the scanned COI."""

    def record() -> EventPublic:
        milestone = events.record_event(
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
            secret_key=settings.secret_key.get_secret_value(),
        )
        return EventPublic.model_validate({**milestone.model_dump(), "case_status": case.status})

    return created_once(session, idem, record)
