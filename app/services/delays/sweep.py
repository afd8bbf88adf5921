"""The delay sweep: milestones predicted past their targets, targets passed, slots missed.

One read query (checks.due) finds the active cases whose stored next check has come or whose
inputs changed since it was stored; a write transaction opens only for those (``run``),
reads what they need in a few set-based queries, predicts their milestones with the route
model, raises or resolves alerts by dedupe key and stores each case's next check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from app.services.alerts import lifecycle as alerts
from app.services.alerts import messages
from app.services.delays import checks, routes
from app.services.delays.checks import ACTIVE, SLOT_GRACE, at_risk_key, breached_key, slot_key
from app.services.delays.targets import TARGETS
from app.times import to_micros
from models.alert import Alert, AlertKind, AlertStatus, Severity
from models.case import Case, Slot

CASES: Table = Case.__table__  # type: ignore[attr-defined]


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


def candidates(session: Session, *, now: datetime) -> list[str]:
    """The cases a delay rule may act on at ``now``, or whose stored check must be redone."""
    parameters = checks.digest(routes.load_models(session), routes.process_hours(session))
    return sorted(checks.due(session, parameters=parameters, now=now) | ended(session))


def ended(session: Session) -> set[str]:
    """Cases no longer in progress (infused, cancelled, failed, ...) with an unresolved
    at-risk or slot alert: a prediction about a journey that stopped is moot."""
    a = Alert.__table__.c  # type: ignore[attr-defined]
    rows = session.execute(
        select_columns(a.case_id)
        .join(CASES, CASES.c.id == a.case_id)
        .where(
            a.kind.in_([AlertKind.delay_at_risk.value, AlertKind.slot_conflict.value]),
            a.status != AlertStatus.resolved.value,
            CASES.c.status.not_in([s.value for s in ACTIVE]),
        )
        .distinct()
    )
    return {case_id for (case_id,) in rows}


def run(session: Session, *, case_ids: Sequence[str], now: datetime) -> int:
    """Apply the delay rules to some cases and store their next checks; returns alerts raised."""
    models = routes.load_models(session)
    process = routes.process_hours(session)
    parameters = checks.digest(models, process)
    # Read before the rules read: a change committed in between then shows next time.
    open_alerts = checks.open_alerts(session)
    open_keys = {key for _, _, key in open_alerts}
    raised = 0
    for start in range(0, len(case_ids), checks.CHUNK):
        chunk = case_ids[start : start + checks.CHUNK]
        rows = checks.inputs(session, chunk)
        outcome = apply_rules(
            session, case_ids=chunk, models=models, process=process, open_keys=open_keys, now=now
        )
        # Our own raises and resolves, not a re-read: a hand resolution committed meanwhile
        # must still show as a change next time.
        checks.count_alerts(rows, outcome.open_after(open_alerts))
        for case_id, row in rows.items():
            at = outcome.checks.get(case_id)
            row["next_us"] = None if at is None else to_micros(at)
        checks.record(session, chunk, rows.values(), parameters=parameters, now=now)
        raised += outcome.raised
    return raised


def apply_rules(
    session: Session,
    *,
    case_ids: Sequence[str],
    models: dict[str, routes.RouteModel],
    process: dict[str, float],
    open_keys: set[str],
    now: datetime,
) -> Outcome:
    """The exact rules for some cases (those still active), whatever their stored checks."""
    out = Outcome()
    t = CASES.c
    found = session.execute(
        select_columns(t.id, t.route, t.product, t.coi, t.apheresis_at, t.status).where(
            t.id.in_(list(case_ids))
        )
    ).all()
    active = [s.value for s in ACTIVE]
    cases = [row[:5] for row in found if row[5] in active]
    for case_id, *_, status in found:
        if status not in active:
            for name, *_ in TARGETS:
                key = at_risk_key(case_id, name)
                _close(session, out, key=key, open_keys=open_keys, now=now, why=f"case {status}")
            _close(
                session,
                out,
                key=slot_key(case_id),
                open_keys=open_keys,
                now=now,
                why=f"case {status}",
            )
    times = routes.milestone_times(session, [c[0] for c in cases])
    # A shipment in transit predicts its arrival as its ETA does (from the live position).
    etas = routes.live_etas(session, {c[0]: models[c[1]] for c in cases})
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
        inputs: dict[str, Any] = {
            "now": now,
            "apheresis_at": apheresis_at,
            "slot_start_at": slot_at,
            "process_h": process_h,
            "eta": etas.get(case_id),
        }
        predicted = routes.predict(model, actual, **inputs)
        out.checks[case_id] = checks.next_check(model, actual, **inputs)
        for name, start, end, _ in TARGETS:
            limit = model.target(name)
            keys = (at_risk_key(case_id, name), breached_key(case_id, name))
            if end in actual:
                # The prediction is moot; a missed target stays open for a person to close.
                _close(
                    session, out, key=keys[0], open_keys=open_keys, now=now, why=f"{end} recorded"
                )
                continue
            if limit is None or start not in actual:
                continue
            target_at = actual[start] + limit
            breached = now > target_at
            key = keys[1] if breached else keys[0]
            if key in open_keys or not (breached or predicted[end] > target_at):
                continue
            late = {"target": name, "target_at": target_at.isoformat()}
            params = {
                "coi": coi,
                "milestone": end,
                "target": name,
                "target_at": messages.instant(target_at),
            }
            if breached:
                kind, severity, code = AlertKind.delay_breached, Severity.major, "delay.breached"
            else:
                kind, severity, code = AlertKind.delay_at_risk, Severity.warning, "delay.at_risk"
                late["predicted_at"] = predicted[end].isoformat()
                params["predicted_at"] = messages.instant(predicted[end])
            _open(
                session,
                out,
                kind=kind,
                severity=severity,
                code=code,
                params=params,
                case_id=case_id,
                key=key,
                now=now,
                data=late,
            )
        _slot_conflict(session, out, case_id, coi, actual, predicted, slot_at, open_keys, now)
    out.raised = len(out.opened)
    return out


def _slot_conflict(
    session: Session,
    out: Outcome,
    case_id: str,
    coi: str,
    actual: dict[str, datetime],
    predicted: dict[str, datetime],
    slot_start: datetime | None,
    open_keys: set[str],
    now: datetime,
) -> None:
    key = slot_key(case_id)
    if "received_at_manufacturing" in actual or slot_start is None:
        why = "material received" if slot_start is not None else "no slot reserved"
        _close(session, out, key=key, open_keys=open_keys, now=now, why=why)
        return
    arrival = predicted["received_at_manufacturing"]
    if arrival > slot_start + SLOT_GRACE and key not in open_keys:
        _open(
            session,
            out,
            kind=AlertKind.slot_conflict,
            severity=Severity.major,
            code="delay.slot_conflict",
            params={
                "coi": coi,
                "predicted_at": messages.instant(arrival),
                "slot_start_at": messages.instant(slot_start),
            },
            case_id=case_id,
            key=key,
            now=now,
        )


def _open(
    session: Session,
    out: Outcome,
    *,
    kind: AlertKind,
    severity: Severity,
    code: str,
    params: dict[str, Any],
    case_id: str,
    key: str,
    now: datetime,
    data: dict[str, Any] | None = None,
) -> None:
    alert = alerts.raise_alert(
        session,
        kind=kind,
        severity=severity,
        code=code,
        params=params,
        now=now,
        case_id=case_id,
        dedupe_key=key,
        data=data,
    )
    out.opened.append((case_id, alert.id or 0))


def _close(
    session: Session, out: Outcome, *, key: str, open_keys: set[str], now: datetime, why: str
) -> None:
    if key in open_keys:
        _resolve(session, dedupe_key=key, now=now, reason=why)
        out.closed.add(key)


def _resolve(session: Session, *, dedupe_key: str, now: datetime, reason: str) -> None:
    for alert in session.exec(
        select(Alert).where(
            Alert.dedupe_key == dedupe_key, col(Alert.status) != AlertStatus.resolved
        )
    ):
        alerts.resolve(session, alert=alert, now=now, reason=reason)
