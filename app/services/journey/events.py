"""The vein-to-vein state machine: transitions, who may record them, and physical order."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session

from app.errors import Forbidden, IllegalTransition, Invalid
from app.raw import Raw, TableInsert
from app.services.audit import chain as audit
from app.services.capacity import slots as capacity
from app.services.identity.scan import require_coi
from app.services.journey import bedside
from app.services.metrics import turnaround_rows
from app.services.shipments import delivery
from app.services.webhooks import outbox as webhook_outbox
from app.times import as_utc, iso_z
from models.case import Case, CaseStatus, Milestone, ScheduleResponse, SlotPublic
from models.principal import Principal, Role
from models.reference import Site

S = CaseStatus
TERMINAL = frozenset({S.infused, S.cancelled})
NON_TERMINAL = frozenset(S) - TERMINAL

# event type -> (states it may follow, state it leads to). DESIGN.md's diagram, exactly.
TRANSITIONS: dict[str, tuple[frozenset[CaseStatus], CaseStatus]] = {
    "collected": (frozenset({S.apheresis_scheduled}), S.collected),
    "received_at_manufacturing": (frozenset({S.in_transit_to_manufacturing}), S.at_manufacturing),
    "manufacturing_started": (frozenset({S.at_manufacturing}), S.in_manufacturing),
    "qc_released": (frozenset({S.in_manufacturing}), S.released),
    "manufacturing_failed": (frozenset({S.in_manufacturing}), S.failed),
    "received_at_site": (frozenset({S.in_transit_to_site}), S.at_site),
    "thawed": (frozenset({S.at_site}), S.thawed),
    "infused": (frozenset({S.thawed}), S.infused),
    "cancelled": (NON_TERMINAL, S.cancelled),
    "recollection": (frozenset({S.failed}), S.apheresis_scheduled),
}
EVENT_TYPES = tuple(TRANSITIONS)

# Steps where the material changes hands or enters a patient: the label must be scanned.
IDENTITY_BEARING = frozenset(
    {"collected", "received_at_manufacturing", "received_at_site", "thawed", "infused"}
)
MANUFACTURING_EVENTS = frozenset(
    {"received_at_manufacturing", "manufacturing_started", "qc_released", "manufacturing_failed"}
)
EVENT_ROLES: dict[str, frozenset[Role]] = {
    t: frozenset({Role.admin, Role.manufacturer})
    if t in MANUFACTURING_EVENTS
    else frozenset({Role.admin, Role.coordinator})
    for t in EVENT_TYPES
}


def check_instant(*, occurred_at: datetime, now: datetime, future_tolerance_s: int) -> None:
    if occurred_at.tzinfo is None:
        raise Invalid(
            "occurred_at needs a UTC offset",
            errors=[{"loc": "body/occurred_at", "msg": "naive time"}],
        )
    if occurred_at > now + timedelta(seconds=future_tolerance_s):
        raise Invalid(
            f"occurred_at is more than {future_tolerance_s // 60} minutes in the future",
            code="future-time",
            errors=[{"loc": "body/occurred_at", "msg": "in the future"}],
        )


def last_physical_at(session: Session, case_id: str) -> datetime | None:
    """The latest physical milestone of the case: journey events and custody scans."""
    session.flush()  # the driver's statement below sees only what was written
    row = Raw.of(session).one(_LAST_PHYSICAL, (case_id, case_id))
    return None if row is None or row[0] is None else as_utc(row[0])


# Every journey event and custody scan checks it: one statement on the driver's connection
# (through SQLAlchemy's ORM it cost about 20 times the statement itself). Aggregates bypass
# column types: SQLite gives the stored UTC text, which ``as_utc`` reads.
_LAST_PHYSICAL = """
SELECT max(at) FROM (
    SELECT max(occurred_at) AS at FROM milestone WHERE case_id = ? AND status <> 'voided'
    UNION ALL
    SELECT max(custody_event.occurred_at) AS at FROM custody_event
    JOIN shipment ON shipment.id = custody_event.shipment_id WHERE shipment.case_id = ?
) AS physical"""


def check_physical_order(session: Session, *, case: Case, occurred_at: datetime) -> None:
    require_physical_order(last_physical_at(session, case.id), occurred_at=occurred_at)


def require_physical_order(latest: datetime | None, *, occurred_at: datetime) -> None:
    """Refuse a step dated before the latest physical milestone (``latest``)."""
    if latest is not None and occurred_at < latest:
        raise Invalid(
            "occurred_at precedes the previous physical milestone "
            f"({iso_z(latest)}); the physical order must hold",
            code="out-of-order",
            errors=[{"loc": "body/occurred_at", "msg": "before the previous milestone"}],
        )


# Every event reads its route's factory, the case's latest physical milestone and whether
# any webhook is active: one statement on the driver's connection (see _LAST_PHYSICAL), one
# round trip.
_FACTORY_AND_LAST = f"""
SELECT (SELECT manufacturing_site FROM route WHERE code = ?),
       ({_LAST_PHYSICAL.strip()}),
       {webhook_outbox.ANY_ACTIVE}"""  # noqa: S608 - constant text, no input


def snapshot(case: Case) -> dict[str, Any]:
    return {
        "status": case.status,
        "cycle": case.cycle,
        "apheresis_at": case.apheresis_at,
        "closed_at": case.closed_at,
    }


def record_event(
    session: Session,
    *,
    case: Case,
    actor: Principal,
    event_type: str,
    occurred_at: datetime,
    site: str,
    coi: str | None,
    note: str | None,
    data: dict[str, Any] | None,
    now: datetime,
    future_tolerance_s: int,
    secret_key: str,
) -> Milestone:
    """Apply one journey event to a case, or refuse it and change nothing."""
    if Role(actor.role) not in EVENT_ROLES[event_type]:
        raise Forbidden(f"role {actor.role} may not record {event_type}")
    sources, target = TRANSITIONS[event_type]
    if CaseStatus(case.status) not in sources:
        raise IllegalTransition(
            f"{event_type} is not allowed while the case is {case.status}",
            extra={"current_status": case.status},
        )
    check_instant(occurred_at=occurred_at, now=now, future_tolerance_s=future_tolerance_s)
    session.flush()  # the driver's statement below sees only what was written
    found = Raw.of(session).one(_FACTORY_AND_LAST, (case.route, case.id, case.id))
    if found is None or found[0] is None:  # guaranteed by foreign keys and state
        raise RuntimeError("inconsistent data: route missing")
    manufacturing_site = str(found[0])
    latest_physical = None if found[1] is None else as_utc(found[1])
    any_webhook = bool(found[2])
    expected_site = manufacturing_site if event_type in MANUFACTURING_EVENTS else case.site
    if site != expected_site:  # the expected site exists (foreign keys): only others are read
        if session.get(Site, site) is None:
            raise Invalid(f"unknown site {site!r}", errors=[{"loc": "body/site", "msg": "unknown"}])
        raise Invalid(
            f"{event_type} happens at {expected_site}, not {site}",
            code="site-mismatch",
            errors=[{"loc": "body/site", "msg": f"expected {expected_site}"}],
        )
    if event_type in IDENTITY_BEARING or coi:
        require_coi(case=case, scanned=coi, step=event_type, actor=actor, now=now)
    require_physical_order(latest_physical, occurred_at=occurred_at)
    data = bedside.check(
        session,
        case=case,
        actor=actor,
        event_type=event_type,
        occurred_at=occurred_at,
        data=data,
        secret_key=secret_key,
        now=now,
    )

    before = snapshot(case)
    if event_type == "recollection":
        case.cycle += 1
        capacity.release_slots(session, case=case)
        apheresis_at = (data or {}).get("apheresis_at")
        if apheresis_at is not None:
            when = _parse_instant(apheresis_at, "body/data/apheresis_at")
            case.apheresis_at = when
            capacity.reserve_slot(session, case=case, apheresis_at=when)
    if target in TERMINAL:
        case.closed_at = now
    if target in (S.cancelled, S.failed):
        capacity.release_slots(session, case=case)
    milestone = Milestone(
        case_id=case.id,
        type=event_type,
        cycle=case.cycle,
        occurred_at=occurred_at,
        recorded_at=now,
        site=site,
        actor=actor.name,
        actor_id=actor.id,
        note=note,
        data=audit.jsonable(data) if data else None,
    )
    _store(session, case=case, milestone=milestone, status=target.value, now=now)
    if event_type == "received_at_manufacturing":
        capacity.follow_receipt(session, case=case, received_at=occurred_at, now=now)
    turnaround_rows.refresh(session, case_id=case.id)
    audit.append(
        session,
        actor=actor,
        action=f"case.{event_type}",
        entity="case",
        entity_id=case.id,
        at=now,
        before=before,
        after={**snapshot(case), "occurred_at": occurred_at, "site": site},
        reason=note,
    )
    webhook_outbox.enqueue_for_milestone(
        session, case=case, milestone=milestone, now=now, any_active=any_webhook
    )
    delivery.on_receipt(
        session, case=case, actor=actor, event_type=event_type, occurred_at=occurred_at, now=now
    )
    return milestone


_SET_STATUS = "UPDATE cases SET status = ?, updated_at = ? WHERE id = ?"
_INSERT_MILESTONE = TableInsert(Milestone.__table__, skip=("id",), returning="id")  # type: ignore[attr-defined]


def _store(
    session: Session, *, case: Case, milestone: Milestone, status: str, now: datetime
) -> None:
    """Write the case's new status and its new milestone: the driver's two statements, in one
    round trip on PostgreSQL (the ORM's flush of the same two rows was a tenth of an event's
    CPU). The loaded case is brought in step as if flushed; the milestone gets its id and
    stays out of the session (nothing in it is pending)."""
    session.flush()  # what the steps above changed through the ORM is written first
    raw = Raw.of(session)
    _, inserted = raw.pipelined(
        [
            (_SET_STATUS, [status, raw.stamp(now), case.id]),
            (_INSERT_MILESTONE.sql, _INSERT_MILESTONE.values_of(raw, milestone)),
        ]
    )
    set_committed_value(case, "status", status)
    set_committed_value(case, "updated_at", now)
    milestone.id = int(inserted[0][0])


def _parse_instant(value: Any, loc: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise Invalid(
            f"{loc} is not an RFC 3339 time", errors=[{"loc": loc, "msg": "bad time"}]
        ) from exc
    if parsed.tzinfo is None:
        raise Invalid(f"{loc} needs a UTC offset", errors=[{"loc": loc, "msg": "naive time"}])
    return parsed


def schedule(
    session: Session, *, case: Case, actor: Principal, apheresis_at: datetime, now: datetime
) -> ScheduleResponse:
    """Book apheresis: registered -> apheresis_scheduled, or move an existing booking."""
    if case.status not in (S.registered, S.apheresis_scheduled):
        raise IllegalTransition(
            f"apheresis can only be scheduled for a registered case, not one {case.status}",
            extra={"current_status": case.status},
        )
    before = snapshot(case)
    capacity.release_slots(session, case=case)
    slot = capacity.reserve_slot(session, case=case, apheresis_at=apheresis_at)
    case.apheresis_at = apheresis_at
    case.status = S.apheresis_scheduled.value
    case.updated_at = now
    session.add(case)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="case.scheduled",
        entity="case",
        entity_id=case.id,
        at=now,
        before=before,
        after=snapshot(case),
    )
    return ScheduleResponse(
        case_id=case.id,
        status=case.status,
        apheresis_at=apheresis_at,
        slot=SlotPublic.model_validate(slot),
    )
