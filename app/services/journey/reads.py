"""Reading cases back: the caller's list and one case's detail."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement
from sqlmodel import Session, col, or_, select

from app.errors import Invalid
from app.services.access.scope import case_scope
from app.services.capacity import slots as capacity
from app.services.identity.coi import CoiFormatError, display, parse_scan
from app.services.journey import cases, corrections, holds
from models.alert import Alert
from models.case import Case, CaseDetail, CaseListQuery, CaseSummary, SlotPublic
from models.principal import Principal, Role
from models.shipment import Shipment


def summary(case: Case) -> CaseSummary:
    """The case as listed: its fields and the eye-readable COI."""
    return CaseSummary.model_validate({**case.model_dump(), "coi_display": display(case.coi)})


def coi_condition(q: str) -> ColumnElement[bool]:
    """A COI in any scanned form (``&/``, check character, spaces, compound message) finds
    its case exactly; 3 to 15 letters and digits find the cases whose COI contains them."""
    try:
        return col(Case.coi) == parse_scan(q).coi
    except CoiFormatError:
        pass
    fragment = "".join(ch for ch in q.upper() if ch.isalnum())
    if not 3 <= len(fragment) <= 15:
        raise Invalid(
            "q must be a chain-of-identity code (any scanned form) or 3 to 15 of its "
            "letters and digits",
            errors=[{"loc": "query/q", "msg": "not a COI or a part of one"}],
        )
    return col(Case.coi).contains(fragment, autoescape=True)


def _patient_condition(
    session: Session, *, principal: Principal, site: str | None, patient_ref: str, key: str
) -> ColumnElement[bool]:
    """Matches the keyed hash of the reference at each site it could have been issued by
    (MRNs are per hospital): the caller's site, the filtered site, or every site in scope."""
    if principal.site and principal.role == Role.coordinator:
        sites = [principal.site]
    elif site:
        sites = [site]
    else:
        sites = list(session.exec(select(Case.site).where(case_scope(principal)).distinct()))
    digests = [cases.patient_hash(key=key, site=s, patient_ref=patient_ref) for s in sites]
    return col(Case.patient_hash).in_(digests)


def list_cases(
    session: Session,
    *,
    principal: Principal,
    where: CaseListQuery,
    patient_key: str,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Case]:
    """The cases the caller may see, newest first, after a keyset; one row beyond ``limit``
    tells the caller that another page follows."""
    stmt = select(Case).where(case_scope(principal))
    if where.site:
        stmt = stmt.where(Case.site == where.site)
    if where.status:
        stmt = stmt.where(Case.status == where.status.value)
    if where.route:
        stmt = stmt.where(Case.route == where.route)
    if where.q:
        stmt = stmt.where(coi_condition(where.q))
    if where.patient_ref:
        stmt = stmt.where(
            _patient_condition(
                session,
                principal=principal,
                site=where.site,
                patient_ref=where.patient_ref,
                key=patient_key,
            )
        )
    if where.created_from is not None:
        stmt = stmt.where(col(Case.created_at) >= where.created_from)
    if where.created_to is not None:
        stmt = stmt.where(col(Case.created_at) < where.created_to)
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
    history = corrections.history_of(session, case_id=case.id)
    return CaseDetail.model_validate(
        {
            **case.model_dump(),
            "coi_display": display(case.coi),
            "milestones": [corrections.public(m, history) for m in milestones],
            "shipments": shipments,
            "alerts": alerts,
            "durations": cases.durations(milestones, now=now),
            "slot": SlotPublic.model_validate(slot) if slot else None,
            "hold": holds.state(session, case=case),
        }
    )
