"""When a case's delay rules can next act, kept per case by the delay sweep (case_delay_check).

routes.predict is a chain of additions and maxima in ``now``, so each milestone is predicted
at ``max(A, now + B)`` with A and B fixed by the case's milestones, slot and route (either may
be absent). Every raise rule therefore holds on an interval of time that starts at a fixed
instant: delay_at_risk once ``max(A, now + B)`` passes the due time (up to the due time),
delay_breached after the due time, slot_conflict once the predicted arrival passes the slot
plus its grace. After the sweep has applied the exact rules (sweep.py) to a case at ``s``,
nothing can be left to raise there until the next such start after ``s``, and nothing to
resolve until a milestone, a slot or an alert changes. The sweep stores that next start
with a fingerprint of those inputs, and later looks only at cases whose start has come, whose
fingerprint differs, or whose row was written at a later instant than the sweep's own.

Two inputs escape the fingerprint. A shipment in transit is predicted from its live position,
which moves with every reading: such a case is looked at again within LIVE_RECHECK. A
corrected milestone keeps its id: the correction deletes the case's row (forget), so the
next sweep redoes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import TextClause, delete, func, insert, text
from sqlalchemy import select as select_columns
from sqlmodel import Session, col

from app.services.delays import routes
from app.services.delays.targets import TARGETS
from app.times import to_micros
from models.alert import Alert
from models.case import Case, CaseStatus, Milestone, Slot
from models.delay import CaseDelayCheck

ACTIVE = (
    CaseStatus.collected,
    CaseStatus.in_transit_to_manufacturing,
    CaseStatus.at_manufacturing,
    CaseStatus.in_manufacturing,
    CaseStatus.released,
    CaseStatus.in_transit_to_site,
    CaseStatus.at_site,
    CaseStatus.thawed,
)
SLOT_GRACE = timedelta(hours=12)  # arrival this much after the slot opens misses it
# How stale a prediction from a shipment's live position may get: a logger reports every
# 5–10 min, and each reading may move the ETA.
LIVE_RECHECK = timedelta(minutes=30)
KINDS = ("delay_at_risk", "delay_breached", "slot_conflict")
# Bump when the rules or this module's reading of them change: every stored row is redone.
RULES_VERSION = 1
# A rule holds strictly after its start (``>`` in the rules); rows keep starts this close
# before the sweep's instant so a start exactly at it is still awaited.
MARGIN = timedelta(milliseconds=1)
# Two instants far enough out that max(A, t + B) shows A at the first and t + B at the second.
FAR_PAST = datetime(1000, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(9000, 1, 1, tzinfo=UTC)
CHUNK = 900  # bound parameters per IN list (SQLite's historical limit is 999)


def at_risk_key(case_id: str, target: str) -> str:
    return f"delay_at_risk:{case_id}:{target}"


def breached_key(case_id: str, target: str) -> str:
    return f"delay_breached:{case_id}:{target}"


def slot_key(case_id: str) -> str:
    return f"slot:{case_id}"


def receipt_slot_key(case_id: str) -> str:
    """The slot_conflict of a slot moved to the actual receipt into a full factory; the sweep
    closes ``slot_key`` at receipt, so this one has a key of its own."""
    return f"slot_full:{case_id}"


def digest(models: dict[str, routes.RouteModel], process: dict[str, float]) -> str:
    """A fingerprint of everything the rules read besides the case: steps and targets."""
    hours = sorted(process.items()) + [("", 168.0)]  # an unknown product takes 168 h
    parts: list[Any] = [RULES_VERSION, SLOT_GRACE, hours]
    for code, model in sorted(models.items()):
        limits = [model.target(name) for name, *_ in TARGETS]
        steps = [sorted(routes.step_times(model, h).items()) for _, h in hours]
        parts.append((code, limits, steps))
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _lines(predict: Callable[[datetime], dict[str, datetime]]) -> dict[str, tuple[Any, Any]]:
    """Per milestone, (A, B) of its prediction max(A, now + B); None where a term is absent."""
    early, late = predict(FAR_PAST), predict(FAR_FUTURE)
    return {
        name: (
            early[name] if early[name].year > 1500 else None,
            late[name] - FAR_FUTURE if late[name].year > 5000 else None,
        )
        for name in routes.SEQUENCE
    }


def next_check(
    model: routes.RouteModel,
    actual: dict[str, datetime],
    *,
    apheresis_at: datetime | None,
    slot_start_at: datetime | None,
    process_h: float,
    now: datetime,
    eta: dict[str, datetime] | None = None,
) -> datetime | None:
    """The first instant after ``now`` at which a raise rule can start to hold (None: never).

    A shipment in transit (``eta``) moves with every reading, which the stored inputs do not
    see: such a case is looked at again within LIVE_RECHECK.
    """
    lines = _lines(
        lambda t: routes.predict(
            model,
            actual,
            now=t,
            apheresis_at=apheresis_at,
            slot_start_at=slot_start_at,
            process_h=process_h,
            eta=eta,
        )
    )

    def crossing(name: str, threshold: datetime) -> datetime | None:
        # The start of {t : max(A, t + B) > threshold}; FAR_PAST when it holds at any t.
        a, b = lines[name]
        if a is not None and a > threshold:
            return FAR_PAST
        return None if b is None else threshold - b

    starts: list[datetime] = []
    for name, start, end, _ in TARGETS:
        limit = model.target(name)
        if limit is None or start not in actual or end in actual:
            continue
        due = actual[start] + limit
        starts.append(due)  # breached from just after it
        risk = crossing(end, due)
        if risk is not None and risk <= due:  # at risk only until it is due
            starts.append(risk)
    if slot_start_at is not None and "received_at_manufacturing" not in actual:
        conflict = crossing("received_at_manufacturing", slot_start_at + SLOT_GRACE)
        if conflict is not None:
            starts.append(conflict)
    if eta:
        starts.append(now + LIVE_RECHECK)
    # A start at or before ``now`` was in force at ``now``: the rules have just dealt with it.
    return min((t for t in starts if t >= now - MARGIN), default=None)


@cache
def _statement(postgresql: bool) -> TextClause:
    """Active cases whose row is missing, stale or due, for a dialect."""
    active = ", ".join(f"'{s.value}'" for s in ACTIVE)
    kinds = ", ".join(f"'{kind}'" for kind in KINDS)
    # Per case, the count and highest id of each set: a row joins a set with a new id, and
    # leaves it with a lower count.
    sets = {
        "milestone": "x.case_id = c.id AND x.cycle = c.cycle",
        "slot": "x.case_id = c.id AND x.status = 'reserved'",
        "alert": f"x.case_id = c.id AND x.kind IN ({kinds}) AND x.status <> 'resolved'",
    }
    checks = [
        "k.case_id IS NULL",
        "k.next_us <= :now",
        "k.checked_us > :now",  # a row written at a later instant says nothing about now
        "k.parameters <> :parameters",
        "k.route <> c.route",
        "k.product <> c.product",
        "k.cycle <> c.cycle",
        f"k.apheresis_at {'IS DISTINCT FROM' if postgresql else 'IS NOT'} c.apheresis_at",
    ]
    joins = ""
    for table, where in sets.items():
        if postgresql:
            # PostgreSQL runs a correlated subquery as one index scan per case: join the set
            # grouped once instead.
            joins += (
                f"LEFT JOIN (SELECT c.id AS case_id, count(*) AS n, max(x.id) AS top "  # noqa: S608
                f"FROM cases c JOIN {table} x ON {where} WHERE c.status IN ({active}) "
                f"GROUP BY c.id) {table}_ ON {table}_.case_id = c.id "
            )
            checks.append(
                f"(k.{table}s, k.{table}_top) <> "
                f"(coalesce({table}_.n, 0), coalesce({table}_.top, 0))"
            )
        else:
            # SQLite answers each through the case_id index, and only until a check holds.
            checks.append(
                f"(k.{table}s, k.{table}_top) <> "  # noqa: S608
                f"(SELECT count(*), coalesce(max(x.id), 0) FROM {table} x WHERE {where})"
            )
    # Only constants of this module are spliced in; every value is a bound parameter.
    return text(
        "SELECT c.id FROM cases c LEFT JOIN case_delay_check k ON k.case_id = c.id "  # noqa: S608
        f"{joins}WHERE c.status IN ({active}) AND ({' OR '.join(checks)})"
    )


def forget(session: Session, *, case_id: str) -> None:
    """Drop a case's stored check, so the next sweep applies the rules to it again."""
    table = CaseDelayCheck.__table__  # type: ignore[attr-defined]
    session.execute(delete(table).where(table.c.case_id == case_id))


def due(session: Session, *, parameters: str, now: datetime) -> set[str]:
    """Active cases where a delay rule may act at ``now``, or whose row must be redone."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    result = session.execute(
        _statement(postgresql), {"now": to_micros(now), "parameters": parameters}
    )
    return {case_id for (case_id,) in result}


def open_alerts(session: Session) -> list[tuple[str | None, int, str]]:
    """(case id, alert id, dedupe key) of every unresolved delay alert."""
    rows = session.execute(
        select_columns(col(Alert.case_id), col(Alert.id), col(Alert.dedupe_key)).where(
            col(Alert.kind).in_(KINDS), col(Alert.status) != "resolved"
        )
    )
    return [(case_id, alert_id, key) for case_id, alert_id, key in rows if key]


def inputs(session: Session, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The fingerprint of each active case among ``ids`` as the due query computes it, less
    its alerts (count_alerts)."""
    c, m, s = Case.__table__.c, Milestone.__table__.c, Slot.__table__.c  # type: ignore[attr-defined]
    out: dict[str, dict[str, Any]] = {}
    for case_id, route, product, cycle, apheresis_at in session.execute(
        select_columns(c.id, c.route, c.product, c.cycle, c.apheresis_at).where(
            c.id.in_(list(ids)), c.status.in_([status.value for status in ACTIVE])
        )
    ):
        out[case_id] = {
            "case_id": case_id,
            "route": route,
            "product": product,
            "cycle": cycle,
            "apheresis_at": apheresis_at,
            **dict.fromkeys(("milestones", "milestone_top", "slots", "slot_top"), 0),
        }
    present = list(out)
    for case_id, n, top in session.execute(
        select_columns(m.case_id, func.count(m.id), func.max(m.id))
        .join(Case.__table__, (c.id == m.case_id) & (c.cycle == m.cycle))  # type: ignore[attr-defined]
        .where(m.case_id.in_(present))
        .group_by(m.case_id)
    ):
        out[case_id].update(milestones=n, milestone_top=top)
    for case_id, n, top in session.execute(
        select_columns(s.case_id, func.count(s.id), func.max(s.id))
        .where(s.case_id.in_(present), s.status == "reserved")
        .group_by(s.case_id)
    ):
        out[case_id].update(slots=n, slot_top=top)
    return out


def count_alerts(
    rows: dict[str, dict[str, Any]], alerts: Iterable[tuple[str | None, int, str]]
) -> None:
    """Complete the fingerprints with the count and highest id of each case's open alerts."""
    for row in rows.values():
        row.update(alerts=0, alert_top=0)
    for case_id, alert_id, _ in alerts:
        if case_id in rows:
            row = rows[case_id]
            row.update(alerts=row["alerts"] + 1, alert_top=max(row["alert_top"], alert_id))


def record(
    session: Session,
    ids: Sequence[str],
    rows: Iterable[dict[str, Any]],
    *,
    parameters: str,
    now: datetime,
) -> None:
    """Replace the rows of ``ids`` (a case no longer active keeps none)."""
    table = CaseDelayCheck.__table__  # type: ignore[attr-defined]
    session.execute(delete(table).where(table.c.case_id.in_(list(ids))))
    values = [{**row, "parameters": parameters, "checked_us": to_micros(now)} for row in rows]
    if values:
        session.execute(insert(table), values)
