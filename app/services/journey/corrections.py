"""Corrections of recorded milestones: amend or void, signed, with every earlier value kept.

21 CFR 11.10(e): a change must not obscure what was recorded. An amended milestone's row
holds the corrected value and a ``milestone_correction`` row keeps the value it replaced; a
voided one stays, marked ``voided``, and counts for nothing (state, durations, metrics,
predictions). The physical order still holds afterwards: recorded milestones were accepted
in order, so a milestone's neighbours are the valid ones recorded just before and after it.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from app.errors import Conflict, Forbidden, Invalid, NotFound
from app.services.access import principals
from app.services.audit import chain as audit
from app.services.capacity import slots as capacity
from app.services.delays import checks as delay_checks
from app.services.journey.events import (
    EVENT_ROLES,
    IDENTITY_BEARING,
    TERMINAL,
    TRANSITIONS,
    check_instant,
    snapshot,
)
from app.services.metrics import turnaround_rows
from app.times import as_utc, iso_z
from models.case import (
    Case,
    CaseStatus,
    CorrectionRequest,
    MilestoneCorrected,
    MilestoneCorrection,
    MilestoneHistory,
    MilestonePublic,
)
from models.case import Milestone as Row
from models.principal import Principal, Role

S = CaseStatus
VOIDED, AMENDED = "voided", "amended"
IDENTITY_CORRECTORS = frozenset({Role.qa, Role.admin})
# The state each milestone leads to, custody pickups included: what a case goes back to when
# the milestone after it is voided.
LEADS_TO: dict[str, CaseStatus] = {
    **{event: target for event, (_, target) in TRANSITIONS.items()},
    "shipped_to_manufacturing": S.in_transit_to_manufacturing,
    "shipped_to_site": S.in_transit_to_site,
}
# States that hold a manufacturing position (a voided cancellation or failure gives it back).
SLOTTED = frozenset(
    {
        S.apheresis_scheduled,
        S.collected,
        S.in_transit_to_manufacturing,
        S.at_manufacturing,
        S.in_manufacturing,
    }
)


def correct(
    session: Session,
    *,
    case: Case,
    actor: Principal,
    milestone_id: int,
    request: CorrectionRequest,
    secret_key: str,
    now: datetime,
    future_tolerance_s: int,
) -> MilestoneCorrected:
    """Amend or void one milestone of the case, signed; refuse and change nothing otherwise."""
    milestone = session.exec(
        select(Row).where(Row.id == milestone_id, Row.case_id == case.id).with_for_update()
    ).first()
    if milestone is None:
        raise NotFound("no such milestone in this case")
    _authorise(actor, milestone)
    # 21 CFR 11.200: the corrector re-enters their credential for each signing.
    principals.verify_signature(
        session,
        actor=actor,
        credential=request.signature.password_or_key,
        secret_key=secret_key,
        now=now,
    )
    if milestone.status == VOIDED:
        raise Conflict(
            f"milestone {milestone.id} ({milestone.type}) is voided; record the event again",
            code="milestone-voided",
        )
    case_before = snapshot(case)
    old_at, old_note = milestone.occurred_at, milestone.note
    if request.action == "amend":
        new_at = as_utc(request.occurred_at) if request.occurred_at else old_at
        new_note = request.note if request.note is not None else old_note
        _check_amendment(session, milestone, new_at, new_note, now, future_tolerance_s)
        milestone.occurred_at, milestone.note, milestone.status = new_at, new_note, AMENDED
    else:
        new_at, new_note = None, None
        _void(session, case=case, milestone=milestone, now=now)
    session.add(
        MilestoneCorrection(
            milestone_id=milestone.id or 0,
            case_id=case.id,
            action=request.action,
            old_occurred_at=old_at,
            new_occurred_at=new_at,
            old_note=old_note,
            new_note=new_note,
            reason=request.reason,
            by=actor.name,
            by_id=actor.id,
            signature_meaning=request.signature.meaning,
            changed_at=now,
        )
    )
    session.add(milestone)
    case.updated_at = now
    session.add(case)
    session.flush()
    if milestone.type == "received_at_manufacturing" and request.action == "amend":
        capacity.follow_receipt(session, case=case, received_at=milestone.occurred_at, now=now)
    # The delay sweep's stored check cannot see a changed time or status: make the case due.
    delay_checks.forget(session, case_id=case.id)
    turnaround_rows.refresh(session, case_id=case.id)
    audit.append(
        session,
        actor=actor,
        action=f"case.milestone.{request.action}",
        entity="case",
        entity_id=case.id,
        at=now,
        before={
            **case_before,
            "milestone_id": milestone.id,
            "type": milestone.type,
            "occurred_at": old_at,
            "note": old_note,
        },
        after={
            **snapshot(case),
            "milestone_id": milestone.id,
            "milestone_status": milestone.status,
            "occurred_at": milestone.occurred_at,
            "note": milestone.note,
            "signature_meaning": request.signature.meaning,
        },
        reason=request.reason,
    )
    return MilestoneCorrected.model_validate(
        {
            **public(milestone, history_of(session, case_id=case.id)).model_dump(),
            "case_id": case.id,
            "case_status": case.status,
        }
    )


def _authorise(actor: Principal, milestone: Row) -> None:
    role = Role(actor.role)
    if milestone.type not in TRANSITIONS:
        raise Conflict(
            f"{milestone.type} is recorded by the shipment's custody chain, not corrected here",
            code="not-correctable",
        )
    if milestone.type in IDENTITY_BEARING:
        if role not in IDENTITY_CORRECTORS:
            raise Forbidden(
                f"{milestone.type} is an identity-bearing step: only QA or an admin corrects it"
            )
    elif role not in EVENT_ROLES[milestone.type]:
        raise Forbidden(f"role {actor.role} may not correct {milestone.type}")


def _neighbours(session: Session, milestone: Row) -> tuple[Row | None, Row | None]:
    """The valid physical milestones recorded just before and after it. Every event was
    accepted in physical order across the whole case, so a recollection's neighbour is the
    failure of the cycle before it."""
    same = (Row.case_id == milestone.case_id, Row.status != VOIDED)
    before = session.exec(
        select(Row).where(*same, col(Row.id) < milestone.id).order_by(col(Row.id).desc())
    ).first()
    after = session.exec(
        select(Row).where(*same, col(Row.id) > milestone.id).order_by(col(Row.id))
    ).first()
    return before, after


def _check_amendment(
    session: Session,
    milestone: Row,
    new_at: datetime,
    new_note: str | None,
    now: datetime,
    future_tolerance_s: int,
) -> None:
    if new_at == milestone.occurred_at and new_note == milestone.note:
        raise Invalid(
            "the amendment changes nothing: occurred_at and note are as recorded",
            errors=[{"loc": "body", "msg": "no change"}],
        )
    check_instant(occurred_at=new_at, now=now, future_tolerance_s=future_tolerance_s)
    before, after = _neighbours(session, milestone)
    if before is not None and new_at < before.occurred_at:
        raise Conflict(
            f"{iso_z(new_at)} would precede the previous milestone, {before.type} "
            f"(id {before.id}) at {iso_z(before.occurred_at)}; the physical order must hold",
            code="out-of-order",
            extra={"neighbour": _ref(before)},
        )
    if after is not None and new_at > after.occurred_at:
        raise Conflict(
            f"{iso_z(new_at)} would follow the next milestone, {after.type} "
            f"(id {after.id}) at {iso_z(after.occurred_at)}; the physical order must hold",
            code="out-of-order",
            extra={"neighbour": _ref(after)},
        )


def _ref(row: Row) -> dict[str, Any]:
    return {"id": row.id, "type": row.type, "occurred_at": iso_z(row.occurred_at)}


def _void(session: Session, *, case: Case, milestone: Row, now: datetime) -> None:
    """Void the case's latest valid milestone; the case goes back to the state before it."""
    latest = session.exec(
        select(Row)
        .where(Row.case_id == case.id, Row.status != VOIDED)
        .order_by(col(Row.id).desc())
        .limit(1)
    ).one()
    if latest.id != milestone.id:
        raise Conflict(
            f"only the latest milestone can be voided; {latest.type} (id {latest.id}) at "
            f"{iso_z(latest.occurred_at)} came after it: void the later milestones first",
            code="not-latest",
            extra={"latest": _ref(latest)},
        )
    if milestone.type == "recollection":
        raise Conflict(
            "a recollection opened a new collection cycle and cannot be voided; amend its time "
            "or note, or cancel the case",
            code="not-voidable",
        )
    sources, target = TRANSITIONS[milestone.type]
    if case.status != target:
        raise Conflict(
            f"the case is {case.status}, not {target.value} as {milestone.type} left it",
            code="state-moved-on",
            extra={"current_status": case.status},
        )
    restored = _status_before(session, case=case, milestone=milestone, sources=sources)
    if target in TERMINAL:
        _reopen(session, case=case)
    case.status = restored.value
    milestone.status = VOIDED
    session.add(milestone)
    session.add(case)
    session.flush()
    if target in (S.cancelled, S.failed) and restored in SLOTTED:
        capacity.reinstate(session, case=case, now=now)


def _status_before(
    session: Session, *, case: Case, milestone: Row, sources: frozenset[CaseStatus]
) -> CaseStatus:
    """The state the milestone was recorded in: its transition's only source, or (for a
    cancellation, allowed from many) the state the previous valid milestone led to."""
    if len(sources) == 1:
        return next(iter(sources))
    previous = session.exec(
        select(Row)
        .where(Row.case_id == case.id, Row.status != VOIDED, col(Row.id) < milestone.id)
        .order_by(col(Row.id).desc())
        .limit(1)
    ).first()
    if previous is not None and previous.type in LEADS_TO:
        return LEADS_TO[previous.type]
    return S.apheresis_scheduled if case.apheresis_at is not None else S.registered


def _reopen(session: Session, *, case: Case) -> None:
    """A voided infusion or cancellation reopens the case, unless another one is open."""
    other = session.exec(
        select(Case.id).where(
            Case.patient_hash == case.patient_hash,
            Case.product == case.product,
            col(Case.closed_at).is_(None),
            Case.id != case.id,
        )
    ).first()
    if other is not None:
        raise Conflict(
            f"case {other} is open for the same patient and product; this case cannot reopen",
            code="duplicate-case",
            extra={"case_id": other},
        )
    case.closed_at = None


def history_of(session: Session, *, case_id: str) -> dict[int, list[MilestoneHistory]]:
    """Per milestone of the case, the values it held before each correction, oldest first."""
    out: dict[int, list[MilestoneHistory]] = defaultdict(list)
    for c in session.exec(
        select(MilestoneCorrection)
        .where(MilestoneCorrection.case_id == case_id)
        .order_by(col(MilestoneCorrection.id))
    ):
        out[c.milestone_id].append(
            MilestoneHistory(
                occurred_at=c.old_occurred_at,
                note=c.old_note,
                changed_at=c.changed_at,
                by=c.by,
                reason=c.reason,
                action=c.action,
            )
        )
    return out


def public(milestone: Row, history: dict[int, list[MilestoneHistory]]) -> MilestonePublic:
    """The milestone as the case shows it, with its earlier values when it was corrected."""
    earlier = history.get(milestone.id or 0)
    return MilestonePublic.model_validate({**milestone.model_dump(), "history": earlier or None})


def may_correct(actor: Principal, milestone: Row) -> bool:
    """Whether the actor may correct this milestone at all (pages offer the form only then)."""
    if milestone.status == VOIDED:
        return False
    try:
        _authorise(actor, milestone)
    except (Conflict, Forbidden):
        return False
    return True
