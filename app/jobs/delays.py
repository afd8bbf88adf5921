"""Delay sweep: milestones predicted past their targets, targets passed, slots missed.

One read query (app/services/delays.py) finds the active cases where a rule could act; a write
transaction opens only for those, reads what they need in a few set-based queries, predicts
their milestones with the route model and raises or resolves alerts by dedupe key.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Table
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from app.db import Database
from app.jobs.sweeps import resolve
from app.services import alerts, routes
from app.services.delays import (
    ACTIVE,
    SLOT_GRACE,
    at_risk_key,
    breached_key,
    candidates,
    slot_key,
)
from models.alert import Alert, AlertKind, AlertStatus, Severity
from models.case import Case, Slot

CASES: Table = Case.__table__  # type: ignore[attr-defined]
CHUNK = 900  # bound parameters per IN list (SQLite's historical limit is 999)


def _fmt(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC")


def delay_sweep(db: Database, *, now: datetime) -> int:
    """Raise delay_at_risk / delay_breached / slot_conflict; resolve them once done."""
    with db.session() as session:
        due = candidates(
            session,
            models=routes.load_models(session),
            process=routes.process_hours(session),
            now=now,
        )
    if not due:
        return 0
    changed = 0
    ids = sorted(due)
    with db.transaction() as session:
        models = routes.load_models(session)
        process = routes.process_hours(session)
        open_keys = _open_delay_keys(session)
        for start in range(0, len(ids), CHUNK):
            changed += _sweep_cases(
                session, ids[start : start + CHUNK], models, process, open_keys, now
            )
    return changed


def _sweep_cases(
    session: Session,
    ids: Sequence[str],
    models: dict[str, routes.RouteModel],
    process: dict[str, float],
    open_keys: set[str],
    now: datetime,
) -> int:
    """The exact rules for some cases (those still active)."""
    changed = 0
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
        predicted = routes.predict(
            model,
            actual,
            now=now,
            apheresis_at=apheresis_at,
            slot_start_at=slots.get(case_id),
            process_h=process.get(product, 168.0),
        )
        for name, start, end, _ in routes.TARGETS:
            limit = model.target(name)
            at_risk, breached = at_risk_key(case_id, name), breached_key(case_id, name)
            if end in actual:
                for key in (at_risk, breached):
                    if key in open_keys:
                        resolve(session, dedupe_key=key, now=now)
                continue
            if limit is None or start not in actual:
                continue
            target_at = actual[start] + limit
            if now > target_at:
                if breached not in open_keys:
                    alerts.raise_alert(
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
                    changed += 1
            elif predicted[end] > target_at and at_risk not in open_keys:
                alerts.raise_alert(
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
                changed += 1
        changed += _slot_conflict(
            session, case_id, coi, actual, predicted, slots.get(case_id), open_keys, now
        )
    return changed


def _slot_conflict(
    session: Session,
    case_id: str,
    coi: str,
    actual: dict[str, datetime],
    predicted: dict[str, datetime],
    slot_start: datetime | None,
    open_keys: set[str],
    now: datetime,
) -> int:
    key = slot_key(case_id)
    if "received_at_manufacturing" in actual or slot_start is None:
        if key in open_keys:
            resolve(session, dedupe_key=key, now=now)
        return 0
    arrival = predicted["received_at_manufacturing"]
    if arrival > slot_start + SLOT_GRACE and key not in open_keys:
        alerts.raise_alert(
            session,
            kind=AlertKind.slot_conflict,
            severity=Severity.major,
            message=f"case {coi}: material predicted at the factory {_fmt(arrival)}, "
            f"its manufacturing slot opens {_fmt(slot_start)}",
            now=now,
            case_id=case_id,
            dedupe_key=key,
        )
        return 1
    return 0


def _open_delay_keys(session: Session) -> set[str]:
    rows = session.exec(
        select(Alert.dedupe_key).where(
            col(Alert.kind).in_(
                [AlertKind.delay_at_risk, AlertKind.delay_breached, AlertKind.slot_conflict]
            ),
            col(Alert.status) != AlertStatus.resolved,
        )
    )
    return {k for k in rows if k}
