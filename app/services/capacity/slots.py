"""Factory capacity: manufacturing positions reserved for cases, booked atomically.

A factory runs ``shuttles × positions_per_shuttle`` batches at once (a Cell Shuttle runs 16).
A case reserves a position from its material's predicted arrival (apheresis + the route's
inbound legs) for the product's process time. Booking locks the factory row (PostgreSQL) or
holds SQLite's single writer lock, so concurrent bookings never exceed the positions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from app.errors import Conflict, Invalid
from app.raw import Raw
from app.services.alerts import lifecycle as alerts
from app.services.delays.checks import receipt_slot_key
from app.times import iso_z
from models.alert import AlertKind, Severity
from models.case import Case, Slot
from models.reference import Route, Site

SEARCH_HORIZON = timedelta(days=180)


def positions(site: Site) -> int:
    return _positions(site.shuttles, site.positions_per_shuttle)


def _positions(shuttles: int | None, per_shuttle: int | None) -> int:
    return (shuttles or 0) * (per_shuttle or 16)


# A route's inbound hours: how long after apheresis its material reaches the factory.
_INBOUND_H = (
    "SELECT coalesce(sum(expected_h), 0) FROM route_leg "
    "WHERE route_code = ? AND direction = 'inbound'"
)


def inbound_hours(session: Session, *, route: Route) -> float:
    row = Raw.of(session).one(_INBOUND_H, (route.code,))
    return float(row[0]) if row is not None else 0.0


# Statements every schedule, event or receipt asks, built once: built per call, a statement
# and its cache key cost about as much CPU as running it.
_RESERVED = select(Slot).where(
    Slot.site == bindparam("site"),
    Slot.status == "reserved",
    col(Slot.start_at) < bindparam("end"),
    col(Slot.end_at) > bindparam("start"),
)
_CASE_RESERVED = select(Slot).where(Slot.case_id == bindparam("case_id"), Slot.status == "reserved")
_CURRENT = _CASE_RESERVED.order_by(col(Slot.id).desc())
_SITE_FOR_WRITE = select(Site).where(Site.code == bindparam("site")).with_for_update(key_share=True)


def _reserved(session: Session, site: str, start: datetime, end: datetime) -> list[Slot]:
    return list(session.exec(_RESERVED, params={"site": site, "start": start, "end": end}))


def peak_load(slots: Iterable[Slot], start: datetime, end: datetime) -> int:
    """The most positions in use at any instant of [start, end)."""
    events: list[tuple[datetime, int]] = []
    for s in slots:
        events.append((max(s.start_at, start), 1))
        events.append((min(s.end_at, end), -1))
    load = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):  # ends before starts
        load += delta
        peak = max(peak, load)
    return peak


def first_fit(session: Session, site: Site, start: datetime, length: timedelta) -> datetime | None:
    return _first_fit(session, site.code, positions(site), start, length)


def _first_fit(
    session: Session, site: str, capacity: int, start: datetime, length: timedelta
) -> datetime | None:
    horizon = start + SEARCH_HORIZON
    slots = _reserved(session, site, start, horizon + length)
    candidates = sorted({start, *(s.end_at for s in slots if s.end_at > start)})
    for candidate in candidates:
        window = [s for s in slots if s.start_at < candidate + length and s.end_at > candidate]
        if peak_load(window, candidate, candidate + length) < capacity:
            return candidate
    return None


@dataclass(frozen=True)
class Plan:
    site: str
    capacity: int
    start_at: datetime
    end_at: datetime


# A case's factory (its row locked: bookings at one factory are serialised; SQLite has one
# writer), its positions, the product's process time and the route's inbound hours, in one
# statement (five round trips on PostgreSQL before).
_PLAN = f"""
SELECT site.code, site.shuttles, site.positions_per_shuttle, product.process_h, ({_INBOUND_H})
FROM route JOIN site ON site.code = route.manufacturing_site JOIN product ON product.code = ?
WHERE route.code = ?
"""  # noqa: S608 - constant text, no input
_PLAN_LOCKED = {False: _PLAN, True: _PLAN + "FOR NO KEY UPDATE OF site"}


def _plan_locked(session: Session, *, case: Case, apheresis_at: datetime) -> Plan:
    raw = Raw.of(session)
    row = raw.one(_PLAN_LOCKED[raw.postgres], (case.route, case.product, case.route))
    if row is None:  # guaranteed by foreign keys and state
        raise RuntimeError(f"inconsistent data: route {case.route} or product {case.product}")
    site, shuttles, per_shuttle, process_h, inbound_h = row
    start = apheresis_at + timedelta(hours=float(inbound_h))
    return Plan(site, _positions(shuttles, per_shuttle), start, start + timedelta(hours=process_h))


def reserve_slot(session: Session, *, case: Case, apheresis_at: datetime) -> Slot:
    """Reserve a position at the case's factory, or refuse with the next time that fits."""
    p = _plan_locked(session, case=case, apheresis_at=apheresis_at)
    if p.capacity <= 0:
        raise Invalid(f"factory {p.site} has no manufacturing positions configured")
    length = p.end_at - p.start_at
    if peak_load(_reserved(session, p.site, p.start_at, p.end_at), p.start_at, p.end_at) >= (
        p.capacity
    ):
        fit = _first_fit(session, p.site, p.capacity, p.start_at, length)
        lead = p.start_at - apheresis_at
        extra = {"factory": p.site, "requested_slot_start_at": p.start_at.isoformat()}
        if fit is not None:
            extra["next_available_at"] = (fit - lead).isoformat().replace("+00:00", "Z")
            extra["next_slot_start_at"] = fit.isoformat().replace("+00:00", "Z")
        raise Conflict(
            f"factory {p.site} is full when this material would arrive; "
            + (
                "schedule apheresis at or after next_available_at"
                if fit
                else "no free position within 180 days"
            ),
            code="factory-full",
            extra=extra,
        )
    slot = Slot(case_id=case.id, site=p.site, start_at=p.start_at, end_at=p.end_at)
    session.add(slot)
    session.flush()
    return slot


def release_slots(session: Session, *, case: Case) -> None:
    for slot in session.exec(_CASE_RESERVED, params={"case_id": case.id}):
        slot.status = "released"
        session.add(slot)
    session.flush()


def follow_receipt(
    session: Session, *, case: Case, received_at: datetime, now: datetime
) -> Slot | None:
    """Move the case's reserved slot to start when its material was actually received.

    The slot keeps its length. The material is there, so the move stands even when the
    factory has no free position then; a ``slot_conflict`` alert asks a planner to resolve it.
    """
    slot = current_slot(session, case_id=case.id)
    if slot is None:
        return None
    length = slot.end_at - slot.start_at
    if (slot.start_at, slot.end_at) != (received_at, received_at + length):
        slot.start_at, slot.end_at = received_at, received_at + length
        session.add(slot)
        session.flush()
    _check_fit(session, case=case, slot=slot, now=now, why=f"received {iso_z(received_at)}")
    return slot


def reinstate(session: Session, *, case: Case, now: datetime) -> Slot | None:
    """Reserve again the slot a voided cancellation or failure released (conflict if full)."""
    if current_slot(session, case_id=case.id) is not None:
        return None
    slot = session.exec(
        select(Slot)
        .where(Slot.case_id == case.id, Slot.status == "released")
        .order_by(col(Slot.id).desc())
    ).first()
    if slot is None:
        return None
    slot.status = "reserved"
    session.add(slot)
    session.flush()
    _check_fit(session, case=case, slot=slot, now=now, why="slot reinstated")
    return slot


def _check_fit(session: Session, *, case: Case, slot: Slot, now: datetime, why: str) -> None:
    """Raise (or, once it fits again, resolve) the case's slot_conflict for an imposed slot."""
    site = session.exec(_SITE_FOR_WRITE, params={"site": slot.site}).one()
    others = [
        s for s in _reserved(session, site.code, slot.start_at, slot.end_at) if s.id != slot.id
    ]
    key = receipt_slot_key(case.id)
    if peak_load(others, slot.start_at, slot.end_at) < positions(site):
        alerts.resolve_key(session, dedupe_key=key, now=now)
        return
    alerts.raise_alert(
        session,
        kind=AlertKind.slot_conflict,
        severity=Severity.major,
        message=f"case {case.coi}: {why}; factory {site.code} has no free position for its "
        f"slot {iso_z(slot.start_at)} - {iso_z(slot.end_at)}",
        now=now,
        case_id=case.id,
        dedupe_key=key,
        data={
            "factory": site.code,
            "start_at": iso_z(slot.start_at),
            "end_at": iso_z(slot.end_at),
        },
    )


def current_slot(session: Session, *, case_id: str) -> Slot | None:
    return session.exec(_CURRENT, params={"case_id": case_id}).first()


def availability(
    session: Session, *, site: Site, start: date, end: date
) -> list[dict[str, object]]:
    """Per local calendar day: capacity, peak positions booked, and free positions."""
    zone = ZoneInfo(site.timezone)
    capacity = positions(site)
    day_start = datetime.combine(start, time(), zone)
    day_end = datetime.combine(end + timedelta(days=1), time(), zone)
    slots = _reserved(session, site.code, day_start, day_end)
    days = []
    current = start
    while current <= end:
        lo = datetime.combine(current, time(), zone)
        hi = datetime.combine(current + timedelta(days=1), time(), zone)
        window = [s for s in slots if s.start_at < hi and s.end_at > lo]
        booked = peak_load(window, lo, hi)
        days.append(
            {
                "date": current.isoformat(),
                "capacity": capacity,
                "booked": booked,
                "free": max(0, capacity - booked),
            }
        )
        current += timedelta(days=1)
    return days
