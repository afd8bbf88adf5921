"""Reading cases back: the caller's list and one case's detail."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, or_, select

from app.services.access.scope import case_scope
from app.services.capacity import slots as capacity
from app.services.identity.coi import display
from app.services.journey import cases, holds
from models.alert import Alert
from models.case import Case, CaseDetail, CaseStatus, CaseSummary, MilestonePublic, SlotPublic
from models.principal import Principal
from models.shipment import Shipment


def summary(case: Case) -> CaseSummary:
    """The case as listed: its fields and the eye-readable COI."""
    return CaseSummary.model_validate({**case.model_dump(), "coi_display": display(case.coi)})


def list_cases(
    session: Session,
    *,
    principal: Principal,
    site: str | None,
    status: CaseStatus | None,
    route: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Case]:
    """The cases the caller may see, newest first, after a keyset; one row beyond ``limit``
    tells the caller that another page follows."""
    stmt = select(Case).where(case_scope(principal))
    if site:
        stmt = stmt.where(Case.site == site)
    if status:
        stmt = stmt.where(Case.status == status.value)
    if route:
        stmt = stmt.where(Case.route == route)
    if after is not None:
        created_at, case_id = after
        stmt = stmt.where(
            or_(
                col(Case.created_at) < created_at,
                (col(Case.created_at) == created_at) & (col(Case.id) < case_id),
            )
        )
    order = (col(Case.created_at).desc(), col(Case.id).desc())
    return list(session.exec(stmt.order_by(*order).limit(limit + 1)))


def case_detail(session: Session, *, case: Case, now: datetime) -> CaseDetail:
    """One case with its milestones, shipments, alerts, durations so far, slot and hold."""
    milestones = cases.milestones(session, case_id=case.id)
    shipments = session.exec(
        select(Shipment).where(Shipment.case_id == case.id).order_by(col(Shipment.created_at))
    ).all()
    alerts = session.exec(
        select(Alert).where(Alert.case_id == case.id).order_by(col(Alert.id))
    ).all()
    slot = capacity.current_slot(session, case_id=case.id)
    return CaseDetail.model_validate(
        {
            **case.model_dump(),
            "coi_display": display(case.coi),
            "milestones": [MilestonePublic.model_validate(m) for m in milestones],
            "shipments": shipments,
            "alerts": alerts,
            "durations": cases.durations(milestones, now=now),
            "slot": SlotPublic.model_validate(slot) if slot else None,
            "hold": holds.state(session, case=case),
        }
    )
