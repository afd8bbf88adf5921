"""Read models of cases for the workspace pages: one case in scope, cases per stage."""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, true
from sqlmodel import Session, col, select

from app.errors import NotFound
from app.services.access.scope import case_scope
from models.case import Case, CaseStatus
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
