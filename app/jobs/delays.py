"""Delay sweep: milestones predicted past their targets, targets passed, slots missed.

One read query (app/services/delays.py) finds the active cases whose stored next check has
come or whose inputs changed since it was stored; a write transaction opens only for those,
reads what they need in a few set-based queries, predicts their milestones with the route
model, raises or resolves alerts by dedupe key and stores each case's next check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Table
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from app.db import Database
from app.jobs.sweeps import resolve
from app.services.alerts import lifecycle as alerts
from app.services.delays import checks as delays
from app.services.delays import routes
from app.services.delays.checks import ACTIVE, SLOT_GRACE, at_risk_key, breached_key, slot_key
from models.alert import AlertKind, Severity
from models.case import Case, Slot

CASES: Table = Case.__table__  # type: ignore[attr-defined]
CHUNK = delays.CHUNK


@dataclass
class Outcome:
    """What a pass of the exact rules did to some cases, and when each can next need one."""

    raised: int = 0
    checks: dict[str, datetime | None] = field(default_factory=dict)
    opened: list[tuple[str, int]] = field(default_factory=list)  # (case id, alert id)
    closed: set[str] = field(default_factory=set)  # dedupe keys resolved

    def open_after(
        self, before: Sequence[tuple[str | None, int, str]]
    ) -> list[tuple[str | None, int, str]]:
        """The open delay alerts once this pass is done, from those it started with."""
        kept = [row for row in before if row[2] not in self.closed]
        return kept + [(case_id, alert_id, "") for case_id, alert_id in self.opened]


def _fmt(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC")


def delay_sweep(db: Database, *, now: datetime) -> int:
    """Raise delay_at_risk / delay_breached / slot_conflict; resolve them once done."""
    with db.session() as session:
        parameters = delays.digest(routes.load_models(session), routes.process_hours(session))
        found = delays.due(session, parameters=parameters, now=now)
    if not found:
        return 0
    changed = 0
    ids = sorted(found)
    with db.transaction() as session:
        models = routes.load_models(session)
        process = routes.process_hours(session)
        parameters = delays.digest(models, process)
        # Read before the rules read: a change committed in between then shows next time.
        open_alerts = delays.open_alerts(session)
        open_keys = {key for _, _, key in open_alerts}
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            rows = delays.inputs(session, chunk)
            outcome = _sweep_cases(session, chunk, models, process, open_keys, now)
            # Our own raises and resolves, not a re-read: a hand resolution committed meanwhile
            # must still show as a change next time.
            delays.count_alerts(rows, outcome.open_after(open_alerts))
            for case_id, row in rows.items():
                at = outcome.checks.get(case_id)
                row["next_us"] = None if at is None else delays.micros(at)
            delays.record(session, chunk, rows.values(), parameters=parameters, now=now)
            changed += outcome.raised
    return changed


def _sweep_cases(
    session: Session,
    ids: Sequence[str],
    models: dict[str, routes.RouteModel],
    process: dict[str, float],
    open_keys: set[str],
    now: datetime,
) -> Outcome:
    """The exact rules for some cases (those still active)."""
    out = Outcome()
    t = CASES.c
    cases = session.execute(
        select_columns(t.id, t.route, t.product, t.coi, t.apheresis_at).where(
            t.status.in_([s.value for s in ACTIVE]), t.id.in_(list(ids))
        )
    ).all()
    times = routes.milestone_times(session, [c[0] for c in cases])
    slots = dict(
        session.exec(
            select(Slot.case_id, Slot.start_at).where(
                Slot.status == "reserved", col(Slot.case_id).in_([c[0] for c in cases])
            )
        ).all()
    )
    for case_id, route_code, product, coi, apheresis_at in cases:
        model = models[route_code]
        actual = times.get(case_id, {})
        slot_at, process_h = slots.get(case_id), process.get(product, 168.0)
        predicted = routes.predict(
            model,
            actual,
            now=now,
            apheresis_at=apheresis_at,
            slot_start_at=slot_at,
            process_h=process_h,
        )
        out.checks[case_id] = delays.next_check(
            model,
            actual,
            now=now,
            apheresis_at=apheresis_at,
            slot_start_at=slot_at,
            process_h=process_h,
        )
        for name, start, end, _ in routes.TARGETS:
            limit = model.target(name)
            at_risk, breached = at_risk_key(case_id, name), breached_key(case_id, name)
            if end in actual:
                for key in (at_risk, breached):
                    if key in open_keys:
                        resolve(session, dedupe_key=key, now=now)
                        out.closed.add(key)
                continue
            if limit is None or start not in actual:
                continue
            target_at = actual[start] + limit
            if now > target_at:
                if breached not in open_keys:
                    alert = alerts.raise_alert(
                        session,
                        kind=AlertKind.delay_breached,
                        severity=Severity.major,
                        message=f"case {coi}: {end.replace('_', ' ')} was due by "
                        f"{_fmt(target_at)} ({name} target) and has not happened",
                        now=now,
                        case_id=case_id,
                        dedupe_key=breached,
                        data={"target": name, "target_at": target_at.isoformat()},
                    )
                    out.opened.append((case_id, alert.id or 0))
            elif predicted[end] > target_at and at_risk not in open_keys:
                alert = alerts.raise_alert(
                    session,
                    kind=AlertKind.delay_at_risk,
                    severity=Severity.warning,
                    message=f"case {coi}: {end.replace('_', ' ')} predicted "
                    f"{_fmt(predicted[end])}, after its {name} target {_fmt(target_at)}",
                    now=now,
                    case_id=case_id,
                    dedupe_key=at_risk,
                    data={
                        "target": name,
                        "target_at": target_at.isoformat(),
                        "predicted_at": predicted[end].isoformat(),
                    },
                )
                out.opened.append((case_id, alert.id or 0))
        _slot_conflict(session, case_id, coi, actual, predicted, slot_at, open_keys, now, out)
    out.raised = len(out.opened)
    return out


def _slot_conflict(
    session: Session,
    case_id: str,
    coi: str,
    actual: dict[str, datetime],
    predicted: dict[str, datetime],
    slot_start: datetime | None,
    open_keys: set[str],
    now: datetime,
    out: Outcome,
) -> None:
    key = slot_key(case_id)
    if "received_at_manufacturing" in actual or slot_start is None:
        if key in open_keys:
            resolve(session, dedupe_key=key, now=now)
            out.closed.add(key)
        return
    arrival = predicted["received_at_manufacturing"]
    if arrival > slot_start + SLOT_GRACE and key not in open_keys:
        alert = alerts.raise_alert(
            session,
            kind=AlertKind.slot_conflict,
            severity=Severity.major,
            message=f"case {coi}: material predicted at the factory {_fmt(arrival)}, "
            f"its manufacturing slot opens {_fmt(slot_start)}",
            now=now,
            case_id=case_id,
            dedupe_key=key,
        )
        out.opened.append((case_id, alert.id or 0))


def _open_delay_keys(session: Session) -> set[str]:
    return {key for _, _, key in delays.open_alerts(session)}
