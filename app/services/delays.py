"""The cases a delay sweep must look at, found by one conservative query in the database.

routes.predict is a chain of additions and maxima, so a pending milestone ``e`` is predicted at

    max(last actual milestone before e + the expected steps from it to e,
        reserved slot start + the steps from manufacturing_started to e,
        now + the steps from the first pending milestone to e)

where the slot term applies only when manufacturing_started is pending on the way to ``e``
and the now term only when no milestone is missing before the last actual one. The query
evaluates that expression with both terms always included (an upper bound), per active case,
and keeps the cases where a target has passed, could be predicted passed, or a slot could be
missed. The sweep applies its exact rules (app/jobs/delays.py) to those cases and to the cases
with open delay alerts; every other case needs no action, so the sweep may skip it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import TextClause, text
from sqlmodel import Session

from app.services import routes
from models.case import CaseStatus

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
# Epoch seconds from julianday() are exact to ~50 µs and steps to 1 µs: never leave a case
# out over rounding.
MARGIN_S = 1.0
SEQUENCE = routes.SEQUENCE
INDEX = {name: k for k, name in enumerate(SEQUENCE)}
STARTED = INDEX["manufacturing_started"]
RECEIVED = INDEX["received_at_manufacturing"]


def parameters(
    models: dict[str, routes.RouteModel], process: dict[str, float]
) -> list[tuple[Any, ...]]:
    """Per (route, product): cumulative expected seconds to each milestone, target seconds."""
    out = []
    for code, model in sorted(models.items()):
        limits = [model.target(name) for name, *_ in routes.TARGETS]
        for product, process_h in sorted(process.items()):
            steps = routes.step_times(model, process_h)
            total, cumulative = 0.0, []
            for name in SEQUENCE:
                total += steps[name].total_seconds()
                cumulative.append(total)
            seconds = [None if limit is None else limit.total_seconds() for limit in limits]
            out.append((code, product, *cumulative, *seconds))
    return out


def _epoch(postgresql: bool, column: str) -> str:
    if postgresql:
        return f"extract(epoch from {column})::float8"
    return f"(julianday({column}) - 2440587.5) * 86400.0"


def at_risk_key(case_id: str, target: str) -> str:
    return f"delay_at_risk:{case_id}:{target}"


def breached_key(case_id: str, target: str) -> str:
    return f"delay_breached:{case_id}:{target}"


def slot_key(case_id: str) -> str:
    return f"slot:{case_id}"


KINDS = ("delay_at_risk", "delay_breached", "slot_conflict")


@cache
def _statement(postgresql: bool, n_parameters: int) -> TextClause:
    """The candidate query for a dialect and a number of (route, product) rows."""
    greatest = "greatest" if postgresql else "max"
    active = ", ".join(f"'{s.value}'" for s in ACTIVE)
    kinds = ", ".join(f"'{kind}'" for kind in KINDS)
    width = len(SEQUENCE)
    cast = ["varchar(32)", "varchar(32)"] + ["double precision"] * (width + len(routes.TARGETS))
    names = ["route", "product"] + [f"c{k}" for k in range(width)]
    names += [f"l{i}" for i in range(len(routes.TARGETS))]
    rows = ", ".join(
        "(" + ", ".join(f"CAST(:p{r}_{i} AS {t})" for i, t in enumerate(cast)) + ")"
        for r in range(n_parameters)
    )
    pivot = ", ".join(
        _epoch(postgresql, f"max(m.occurred_at) FILTER (WHERE m.type = '{name}')") + f" AS m{k}"
        for k, name in enumerate(SEQUENCE)
    )
    # The cumulative steps up to the first pending milestone (the now term's origin).
    first = " ".join(f"WHEN g.m{k} IS NULL THEN p.c{k}" for k in range(width))

    def open_key(key: str) -> str:
        # o is built once per statement: a set lookup per rule that would act.
        return f"{key} IN (SELECT open_key FROM o)"  # noqa: S608 - constant SQL

    def bound(e: int) -> str:
        # Predicted time of pending milestone e, bounded above (see the module docstring).
        last = ", ".join(f"g.m{k} - p.c{k}" for k in reversed(range(e)))
        terms = [f"coalesce({last + ', ' if last else ''}g.start, :now) + p.c{e}"]
        terms.append(f"(:now + p.c{e} - (CASE {first} ELSE p.c{e} END))")
        if e >= STARTED:
            terms.append(f"coalesce(g.slot_max + p.c{e} - p.c{STARTED}, :now)")
        return f"{greatest}({', '.join(terms)})"

    checks = ["p.route IS NULL"]
    for i, (name, start, end, _) in enumerate(routes.TARGETS):
        s, e = INDEX[start], INDEX[end]
        due = f"(g.m{s} + p.l{i})"
        # ("\\:" keeps text() from reading the literal's colon as a bind parameter.)
        risk, late = (f"'{kind}:' || g.id || '\\:{name}'" for kind in KINDS[:2])
        checks.append(f"(g.m{e} IS NOT NULL AND ({open_key(risk)} OR {open_key(late)}))")
        pending = f"g.m{s} IS NOT NULL AND g.m{e} IS NULL AND p.l{i} IS NOT NULL"
        checks.append(f"({pending} AND :now > {due} - {MARGIN_S} AND NOT {open_key(late)})")
        checks.append(
            f"({pending} AND :now <= {due} + {MARGIN_S} AND {bound(e)} > {due} - {MARGIN_S}"
            f" AND NOT {open_key(risk)})"
        )
    key = "'slot:' || g.id"
    earliest = "g.slot_min"
    grace = SLOT_GRACE.total_seconds() - MARGIN_S
    checks.append(f"((g.m{RECEIVED} IS NOT NULL OR {earliest} IS NULL) AND {open_key(key)})")
    checks.append(
        f"(g.m{RECEIVED} IS NULL AND {bound(RECEIVED)} > {earliest} + {grace}"
        f" AND NOT {open_key(key)})"
    )
    # Only constants of this module are spliced in; every value is a bound parameter.
    return text(
        f"WITH p({', '.join(names)}) AS (VALUES {rows}), "  # noqa: S608
        f"o AS (SELECT dedupe_key AS open_key FROM alert"
        f" WHERE kind IN ({kinds}) AND status <> 'resolved' AND dedupe_key IS NOT NULL), "
        f"g AS (SELECT c.id AS id, c.route AS route, c.product AS product, "
        f"{_epoch(postgresql, 'c.apheresis_at')} AS start, {pivot}, "
        f"{_epoch(postgresql, 'min(sl.start_at)')} AS slot_min, "
        f"{_epoch(postgresql, 'max(sl.start_at)')} AS slot_max "
        # Rows repeat when a case holds several reserved slots; maxima and minima do not mind.
        f"FROM cases c LEFT JOIN slot sl ON sl.case_id = c.id AND sl.status = 'reserved' "
        f"LEFT JOIN milestone m ON m.case_id = c.id AND m.cycle = c.cycle "
        f"WHERE c.status IN ({active}) GROUP BY c.id) "
        f"SELECT g.id FROM g LEFT JOIN p ON p.route = g.route AND p.product = g.product "
        f"WHERE {' OR '.join(checks)}"
    )


def candidates(
    session: Session,
    *,
    models: dict[str, routes.RouteModel],
    process: dict[str, float],
    now: datetime,
) -> set[str]:
    """Active cases whose delay or slot alerts may have to be raised at ``now``."""
    rows: Sequence[tuple[Any, ...]] = parameters(models, process)
    if not rows:
        rows = [(None,) * (2 + len(SEQUENCE) + len(routes.TARGETS))]  # no route: all candidates
    postgresql = session.get_bind().dialect.name == "postgresql"
    binds: dict[str, Any] = {"now": now.timestamp()}
    for r, row in enumerate(rows):
        binds.update({f"p{r}_{i}": value for i, value in enumerate(row)})
    result = session.execute(_statement(postgresql, len(rows)), binds)
    return {case_id for (case_id,) in result}
