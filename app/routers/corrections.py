"""Records stay true: corrections of recorded milestones (amend or void, signed, nothing
overwritten) and product holds (QA stops thaw and infusion until a signed release)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse

from app.deps import (
    IdempotencyDep,
    NowDep,
    ScopedCase,
    SessionDep,
    SettingsDep,
    committing,
    created_once,
    require_roles,
)
from app.pagination import IntId
from app.services.journey import corrections, holds, reads
from models.case import CaseDetail, CorrectionRequest, HoldRequest, MilestoneCorrected
from models.principal import Principal, Role

router = APIRouter(prefix="/cases", tags=["cases"])

# Who may correct which milestone type is the service's rule; these roles may ask at all.
HoldSigner = Annotated[Principal, require_roles(*holds.HOLD_SIGNERS)]
Corrector = Annotated[
    Principal, require_roles(Role.admin, Role.coordinator, Role.manufacturer, Role.qa)
]


@router.post(
    "/{case_id}/milestones/{milestone_id}/corrections",
    status_code=status.HTTP_201_CREATED,
    response_model=MilestoneCorrected,
)
def correct_milestone(
    case: ScopedCase,
    principal: Corrector,
    milestone_id: IntId,
    body: CorrectionRequest,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    idem: IdempotencyDep,
) -> MilestoneCorrected | JSONResponse:
    """Amend or void a milestone with a reason and the corrector's signature."""

    def correct() -> MilestoneCorrected:
        return corrections.correct(
            session,
            case=case,
            actor=principal,
            milestone_id=milestone_id,
            request=body,
            secret_key=settings.secret_key.get_secret_value(),
            now=now,
            future_tolerance_s=settings.future_tolerance_s,
        )

    return created_once(session, idem, correct)


@router.post("/{case_id}/hold", response_model=CaseDetail)
def hold_case(
    case: ScopedCase,
    principal: HoldSigner,
    body: HoldRequest,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
) -> CaseDetail:
    """Place or release a product hold (QA, signed): on hold, thaw and infusion are refused."""
    with committing(session):
        holds.act(
            session,
            actor=principal,
            case=case,
            request=body,
            secret_key=settings.secret_key.get_secret_value(),
            now=now,
        )
    return reads.case_detail(session, case=case, now=now)
