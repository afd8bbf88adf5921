"""Read models of cases for the workspace pages: one case in scope, cases per stage, the
worklist."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, true
from sqlmodel import Session, col, select

from app.errors import NotFound
from app.pagination import page_of, time_cursor
from app.services.access.scope import case_scope
from app.services.identity.coi import display
from app.services.journey import holds, reads
from models.case import Case, CaseListQuery, CaseStatus
from models.principal import Principal, Role


def visible_case(session: Session, *, actor: Principal, case_id: str) -> Case:
    """The case if it is in the actor's scope; 404 otherwise, as in the API."""
    case = session.exec(select(Case).where(Case.id == case_id, case_scope(actor))).first()
    if case is None:
        raise NotFound("no such case")
    return case


def aggregate_scope(actor: Principal) -> ColumnElement[bool]:
    """Cases counted in aggregates: the case scope, and every case for a viewer.

    A viewer's metrics cover every site (``/metrics/turnaround`` does not filter them), so
    the counts a viewer sees do not either; they never list a case.
    """
    if actor.role == Role.viewer:
        return true()
    return case_scope(actor)


def stage_counts(session: Session, *, actor: Principal) -> list[tuple[str, int]]:
    """Cases per journey stage, in the journey's order (aggregates only)."""
    counts = dict(
        session.exec(
            select(Case.status, func.count())
            .where(aggregate_scope(actor))
            .group_by(col(Case.status))
        ).all()
    )
    return [(s.value, int(counts.get(s.value, 0))) for s in CaseStatus]


# ---- The worklist: the API's case list, shaped as a board ------------------------------

# What a case waits for next, by its state (None: the journey is over).
NEXT_MILESTONE: dict[str, str | None] = {
    CaseStatus.registered: "collected",
    CaseStatus.apheresis_scheduled: "collected",
    CaseStatus.collected: "shipped_to_manufacturing",
    CaseStatus.in_transit_to_manufacturing: "received_at_manufacturing",
    CaseStatus.at_manufacturing: "manufacturing_started",
    CaseStatus.in_manufacturing: "qc_released",
    CaseStatus.released: "shipped_to_site",
    CaseStatus.in_transit_to_site: "received_at_site",
    CaseStatus.at_site: "thawed",
    CaseStatus.thawed: "infused",
    CaseStatus.infused: None,
    CaseStatus.cancelled: None,
    CaseStatus.failed: None,
}


@dataclass(frozen=True)
class WorkRow:
    """One case on the worklist: never its patient reference (only its hash is stored)."""

    id: str
    coi_display: str
    status: str
    route: str
    site: str
    product: str
    created_at: datetime
    on_hold: bool
    next_milestone: str | None
    next_at: datetime | None  # the booked apheresis or the planned infusion, when known


@dataclass(frozen=True)
class WorkPage:
    rows: list[WorkRow]
    next_cursor: str | None


def _row(case: Case) -> WorkRow:
    upcoming = NEXT_MILESTONE.get(case.status)
    when = None
    if upcoming == "collected":
        when = case.apheresis_at
    elif upcoming in ("thawed", "infused"):
        when = case.planned_infusion_at
    return WorkRow(
        id=case.id,
        coi_display=display(case.coi),
        status=case.status,
        route=case.route,
        site=case.site,
        product=case.product,
        created_at=case.created_at,
        on_hold=case.hold_status == holds.ON_HOLD,
        next_milestone=upcoming,
        next_at=when,
    )


def worklist(
    session: Session,
    *,
    actor: Principal,
    where: CaseListQuery,
    patient_key: str,
    cursor: str | None,
    limit: int,
) -> WorkPage:
    """The cases ``GET /cases`` lists for the actor, with the same filters and keyset."""
    found = reads.list_cases(
        session,
        principal=actor,
        where=where,
        patient_key=patient_key,
        after=time_cursor(cursor),
        limit=limit,
    )
    items, next_cursor = page_of(found, limit, lambda c: (c.created_at.isoformat(), c.id))
    return WorkPage([_row(c) for c in items], next_cursor)
