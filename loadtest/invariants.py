"""What must hold in the database after a run, whatever crashed or raced during it.

- every acknowledged reading, journey event and custody scan is stored, exactly once;
- creating calls (cases, shipments) left at most one row per Idempotency-Key sent;
- the audit chain verifies, with one entry per journey event and custody scan;
- every case's status is what replaying its milestones through the state machine gives;
- at most one unresolved alert per dedupe key; no factory booked beyond its positions.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from app.db import Database
from app.services.audit.chain import verify_chain
from app.services.capacity import slots as capacity
from app.services.journey.events import TRANSITIONS
from app.services.shipments.lifecycle import _RULES as PICKUP_RULES
from loadtest.client import Ledger
from models.alert import Alert, AlertStatus
from models.audit import AuditEntry
from models.case import Case, CaseStatus, Milestone, Slot
from models.coldchain import Reading
from models.reference import Site
from models.shipment import CustodyAction, CustodyEvent, Shipment

S = CaseStatus
# A pickup scan records shipped_<direction>: the case's other transitions (shipments.py).
STEPS: dict[str, tuple[frozenset[CaseStatus], CaseStatus]] = {
    **TRANSITIONS,
    **{
        f"shipped_{direction.value}": (frozenset({pickup}), transit)
        for direction, (_, pickup, transit, _) in PICKUP_RULES.items()
    },
}


@dataclass
class Verdict:
    acknowledged: dict[str, int]
    lost: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    duplicated: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    audit_entries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            not self.problems and not any(self.lost.values()) and not any(self.duplicated.values())
        )


def replay(status_after_schedule: CaseStatus, types: list[str]) -> CaseStatus | str:
    """The status these milestones lead to, or why they cannot be replayed."""
    state = status_after_schedule
    for type_ in types:
        sources, target = STEPS[type_]
        if state not in sources:
            return f"{type_} cannot follow {state.value}"
        state = target
    return state


def check(db: Database, ledger: Ledger, *, baseline_cases: int = 0) -> Verdict:
    """Compare the database with the ledger; every discrepancy is counted or described."""
    verdict = Verdict(acknowledged=ledger.acknowledged())
    with db.session() as session:
        _readings(session, ledger, verdict)
        _journeys(session, ledger, verdict, baseline_cases)
        _audit(session, ledger, verdict)
        verdict.problems.extend(shared_state_problems(session))
    return verdict


def _readings(session: Session, ledger: Ledger, verdict: Verdict) -> None:
    for device, acked in ledger.readings.items():
        stored = Counter(session.exec(select(Reading.ts_ms).where(Reading.device_id == device)))
        verdict.lost["readings"] += len(acked - stored.keys())
        verdict.duplicated["readings"] += sum(n - 1 for n in stored.values() if n > 1)


def _journeys(session: Session, ledger: Ledger, verdict: Verdict, baseline_cases: int) -> None:
    run_cases = sorted(ledger.cases)
    events = Counter(
        (m.case_id, m.type, m.cycle)
        for m in session.exec(select(Milestone).where(col(Milestone.case_id).in_(run_cases)))
    )
    verdict.lost["events"] = sum(1 for e in ledger.events if e not in events)
    verdict.duplicated["events"] = sum(n - 1 for n in events.values())
    shipments = list(session.exec(select(Shipment.id).where(col(Shipment.case_id).in_(run_cases))))
    scans = Counter(
        session.exec(
            select(CustodyEvent.shipment_id, CustodyEvent.action).where(
                col(CustodyEvent.shipment_id).in_(shipments)
            )
        )
    )
    verdict.lost["custody scans"] = sum(1 for s in ledger.custody if s not in scans)
    verdict.duplicated["custody scans"] = sum(n - 1 for n in scans.values())
    # Creating calls: acknowledged ones present, and never more rows than keys sent.
    total_cases = session.exec(select(func.count()).select_from(Case)).one() - baseline_cases
    verdict.lost["cases"] = len(ledger.cases - set(session.exec(select(Case.id))))
    verdict.duplicated["cases"] = max(0, total_cases - len(ledger.attempted["register"]))
    verdict.lost["shipments"] = len(ledger.shipments - set(shipments))
    verdict.duplicated["shipments"] = max(0, len(shipments) - len(ledger.attempted["shipment"]))
    for case in session.exec(select(Case).where(col(Case.id).in_(run_cases))):
        types = list(
            session.exec(
                select(Milestone.type)
                .where(Milestone.case_id == case.id)
                .order_by(col(Milestone.id))  # the order they were applied in
            )
        )
        # Booking apheresis leaves no milestone, only the case's apheresis_at.
        booked = case.apheresis_at is not None
        outcome = replay(S.apheresis_scheduled if booked else S.registered, types)
        if outcome != CaseStatus(case.status):
            verdict.problems.append(
                f"case {case.id}: status {case.status}, milestones {types} give {outcome}"
            )


def _audit(session: Session, ledger: Ledger, verdict: Verdict) -> None:
    result = verify_chain(session)
    verdict.audit_entries = result.entries
    if not result.ok:
        verdict.problems.append(f"audit chain broken at {result.first_bad_seq}: {result.reason}")
    run_cases = sorted(ledger.cases)
    audited = Counter(
        session.exec(
            select(AuditEntry.entity_id, AuditEntry.action).where(
                col(AuditEntry.entity).in_(("case", "shipment"))
            )
        )
    )
    recorded = Counter(
        (case_id, f"case.{type_}")
        for case_id, type_ in session.exec(
            select(Milestone.case_id, Milestone.type).where(col(Milestone.case_id).in_(run_cases))
        )
        if type_ in TRANSITIONS  # shipped_* milestones are audited as custody scans
    )
    shipments = select(Shipment.id).where(col(Shipment.case_id).in_(run_cases))
    recorded.update(
        (shipment_id, f"shipment.{action}")
        for shipment_id, action in session.exec(
            select(CustodyEvent.shipment_id, CustodyEvent.action).where(
                col(CustodyEvent.shipment_id).in_(shipments)
            )
        )
    )
    subjects = set(run_cases) | set(session.exec(shipments))
    steps = {f"case.{t}" for t in TRANSITIONS} | {f"shipment.{a.value}" for a in CustodyAction}
    audited_steps = {k: n for k, n in audited.items() if k[0] in subjects and k[1] in steps}
    for key in sorted(set(recorded) | set(audited_steps)):
        if recorded[key] != audited_steps.get(key, 0):
            verdict.problems.append(
                f"{key}: {recorded[key]} rows but {audited_steps.get(key, 0)} audit entries"
            )


def shared_state_problems(session: Session) -> list[str]:
    """Duplicate open alerts and overbooked factories, at this instant."""
    problems = [
        f"{n} unresolved alerts share dedupe key {key}"
        for key, n in session.exec(
            select(Alert.dedupe_key, func.count())
            .where(col(Alert.dedupe_key).is_not(None), Alert.status != AlertStatus.resolved)
            .group_by(col(Alert.dedupe_key))
            .having(func.count() > 1)
        )
    ]
    slots = list(session.exec(select(Slot).where(Slot.status == "reserved")))
    per_case = Counter(s.case_id for s in slots)
    problems += [f"case {c} holds {n} reserved slots" for c, n in per_case.items() if n > 1]
    by_site: dict[str, list[Slot]] = defaultdict(list)
    for slot in slots:
        by_site[slot.site].append(slot)
    for code, booked in by_site.items():
        site = session.get(Site, code)
        positions = capacity.positions(site) if site else 0
        start: datetime = min(s.start_at for s in booked)
        end: datetime = max(s.end_at for s in booked)
        peak = capacity.peak_load(booked, start, end)
        if peak > positions:
            problems.append(f"factory {code}: {peak} positions booked at once, of {positions}")
    return problems


def peak_loads(db: Database) -> dict[str, tuple[int, int]]:
    """Per factory: the most positions reserved at any instant, and its positions."""
    with db.session() as session:
        slots = list(session.exec(select(Slot).where(Slot.status == "reserved")))
        out = {}
        for code in sorted({s.site for s in slots}):
            booked = [s for s in slots if s.site == code]
            site = session.get(Site, code)
            start, end = min(s.start_at for s in booked), max(s.end_at for s in booked)
            positions = capacity.positions(site) if site else 0
            out[code] = (capacity.peak_load(booked, start, end), positions)
    return out
