"""The per-case rows behind the turnaround metrics, from one set query per call.

A row holds a collected case's attributes, the epoch seconds of each milestone of its current
collection cycle (None when missing; voided milestones count for nothing, amended ones at
their corrected time) and whether it shipped and had a major or critical
excursion. Summaries (app/services/metrics.py) work on these rows as plain tuples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import Double, Table, and_, bindparam, cast, exists, extract, func
from sqlalchemy import select as select_columns
from sqlmodel import Session

from app.raw import Compiled, Raw
from app.times import as_utc
from models.case import Case, Milestone, MilestoneCorrection
from models.coldchain import Excursion
from models.reference import Route, Site
from models.shipment import Shipment

CASES: Table = Case.__table__  # type: ignore[attr-defined]
MILESTONE_TABLE: Table = Milestone.__table__  # type: ignore[attr-defined]
MILESTONE_CORRECTIONS: Table = MilestoneCorrection.__table__  # type: ignore[attr-defined]
ROUTES: Table = Route.__table__  # type: ignore[attr-defined]
SITES: Table = Site.__table__  # type: ignore[attr-defined]
SHIPMENTS: Table = Shipment.__table__  # type: ignore[attr-defined]
EXCURSIONS: Table = Excursion.__table__  # type: ignore[attr-defined]
GROUPINGS = ("route", "route_kind", "manufacturing_site", "site", "product", "month")
MILESTONES = (
    "collected",
    "received_at_manufacturing",
    "manufacturing_started",
    "qc_released",
    "received_at_site",
    "infused",
)

# A case's excursion flag: one of its shipments had an excursion this severe.
FLAGGING_SEVERITIES = ("major", "critical")


class CaseRow(NamedTuple):
    """One collected case: attributes, epoch seconds of each milestone (or None), flags."""

    id: str
    site: str
    route: str
    route_kind: str
    manufacturing_site: str
    product: str
    status: str
    timezone: str
    collected: float | None
    received_at_manufacturing: float | None
    manufacturing_started: float | None
    qc_released: float | None
    received_at_site: float | None
    infused: float | None
    shipped: bool
    excursion: bool

    @property
    def epoch(self) -> dict[str, float]:
        at = (
            self.collected,
            self.received_at_manufacturing,
            self.manufacturing_started,
            self.qc_released,
            self.received_at_site,
            self.infused,
        )
        return {k: v for k, v in zip(MILESTONES, at, strict=True) if v is not None}

    @property
    def times(self) -> dict[str, datetime]:
        return {k: datetime.fromtimestamp(v, UTC) for k, v in self.epoch.items()}

    def hours(self, start: str, end: str) -> float | None:
        epoch = self.epoch
        if start in epoch and end in epoch:
            return (epoch[end] - epoch[start]) / 3600
        return None

    def key(self, group_by: str) -> str:
        return group_key(self, group_by)


# Positions in a fetched row (CaseRow's field order); the summaries work on plain tuples.
FIRST = CaseRow._fields.index("collected")
SHIPPED = CaseRow._fields.index("shipped")
EXCURSION = SHIPPED + 1
STATUS, ROUTE, TIMEZONE = (CaseRow._fields.index(f) for f in ("status", "route", "timezone"))
AT = {name: FIRST + i for i, name in enumerate(MILESTONES)}
COLUMN = {name: CaseRow._fields.index(name) for name in GROUPINGS if name != "month"}


def group_key(row: Sequence[Any], group_by: str) -> str:
    """The group a case falls in; months are the collecting site's local calendar month."""
    if group_by == "month":
        local = datetime.fromtimestamp(row[FIRST], ZoneInfo(row[TIMEZONE]))
        return local.strftime("%Y-%m")
    return str(row[COLUMN[group_by]])


def epoch_seconds(postgresql: bool, column: Any) -> Any:
    """Epoch seconds (double precision) of a timestamp expression, computed by the database."""
    if postgresql:
        return cast(extract("epoch", column), Double)
    return (func.julianday(column) - 2440587.5) * 86400.0


def fetch_rows(
    session: Session,
    *,
    site: str | None = None,
    routes: Sequence[str] | None = None,
    manufacturing_site: str | None = None,
    product: str | None = None,
    collected_from: datetime | None = None,
    collected_to: datetime | None = None,
) -> list[Sequence[Any]]:
    """Collected cases as plain rows in CaseRow's layout, from one set query (one case's:
    ``one_case_query`` and ``one_case_rows``)."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    stmt = _statement(
        postgresql,
        site=site,
        routes=routes,
        manufacturing_site=manufacturing_site,
        product=product,
    )
    found = _driver_rows(session, stmt)
    low = collected_from.timestamp() if collected_from else -math.inf
    high = collected_to.timestamp() if collected_to else math.inf
    return [
        row
        for row in _without_voided(session, found)
        if row[FIRST] is not None and low <= row[FIRST] < high
    ]


def _statement(
    postgresql: bool,
    *,
    site: str | None = None,
    routes: Sequence[str] | None = None,
    manufacturing_site: str | None = None,
    product: str | None = None,
    case_id: Any = None,
) -> Any:
    """The set query behind ``fetch_rows`` (``case_id`` may be a bound parameter)."""
    c, r, st, m = CASES.c, ROUTES.c, SITES.c, MILESTONE_TABLE.c
    sh, ex = SHIPMENTS.c, EXCURSIONS.c

    def scoped(stmt: Any, cases: Any) -> Any:
        if site:
            stmt = stmt.where(cases.site == site)
        if routes:
            stmt = stmt.where(cases.route.in_(list(routes)))
        if product is not None:
            stmt = stmt.where(cases.product == product)
        if case_id is not None:
            stmt = stmt.where(cases.id == case_id)
        if manufacturing_site is not None:
            stmt = stmt.where(
                cases.route.in_(
                    select_columns(r.code).where(r.manufacturing_site == manufacturing_site)
                )
            )
        return stmt

    if postgresql:
        # A hash aggregate over the milestones beats one index probe per case and milestone.
        inner = CASES.alias("current")
        pivot = scoped(
            select_columns(
                m.case_id,
                *(
                    epoch_seconds(True, func.max(m.occurred_at).filter(m.type == name)).label(name)
                    for name in MILESTONES
                ),
            )
            .join(inner, and_(inner.c.id == m.case_id, inner.c.cycle == m.cycle))
            .where(m.type.in_(MILESTONES))
            .group_by(m.case_id),
            inner.c,
        ).subquery("times")
        times = [pivot.c[name] for name in MILESTONES]
    else:
        # SQLite: one probe of the covering index per case and milestone (a pivot over all
        # milestone rows costs more in CASE evaluations than the probes).
        pivot = None
        times = [
            epoch_seconds(
                False,
                select_columns(func.max(m.occurred_at))
                .where(m.case_id == c.id, m.cycle == c.cycle, m.type == name)
                .scalar_subquery(),
            ).label(name)
            for name in MILESTONES
        ]
    shipped = exists().where(sh.case_id == c.id)
    excursion = exists(
        select_columns(ex.id)
        .join(SHIPMENTS, sh.id == ex.shipment_id)
        .where(sh.case_id == c.id, ex.severity.in_(FLAGGING_SEVERITIES))
    )
    stmt = (
        select_columns(
            c.id,
            c.site,
            c.route,
            r.kind,
            r.manufacturing_site,
            c.product,
            c.status,
            st.timezone,
            *times,
            shipped.label("shipped"),
            excursion.label("excursion"),
        )
        .join(ROUTES, r.code == c.route)
        .join(SITES, st.code == c.site)
    )
    if pivot is not None:
        stmt = stmt.join(pivot, pivot.c.case_id == c.id)
    return scoped(stmt, c)


_ONE_CASE: dict[str, Any] = {}  # dialect+driver -> the compiled one-case statement


def one_case_query(session: Session, case_id: str) -> tuple[Compiled, Any]:
    """The set query for one case, as driver SQL and its arguments (for ``Raw``'s
    ``pipelined``); ``one_case_rows`` makes its result what ``fetch_rows`` gives.

    Compiling the set query costs several times what running it for one case does, and every
    journey write refreshes its case's row, so the compiled form is kept and only the case id
    is bound per call.
    """
    dialect = session.get_bind().dialect
    key = f"{dialect.name}+{dialect.driver}"
    cached = _ONE_CASE.get(key)
    if cached is None:
        stmt = _statement(dialect.name == "postgresql", case_id=bindparam("one_case_id", value=""))
        compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
        cached = (Compiled(str(compiled)), compiled.positiontup, compiled.construct_params())
        _ONE_CASE[key] = cached
    sql, positions, defaults = cached
    params = {**defaults, "one_case_id": case_id}
    return sql, params if positions is None else [params[k] for k in positions]


def one_case_rows(
    session: Session, found: list[tuple[Any, ...]], case_id: str, *, voided: bool
) -> list[Sequence[Any]]:
    """``fetch_rows``' rows for one case from ``one_case_query``'s (``voided``: whether the
    case has a voided milestone, read by the caller)."""
    known = {case_id} if voided else set()
    return [row for row in _without_voided(session, found, known) if row[FIRST] is not None]


_VOIDED = (
    select_columns(MILESTONE_CORRECTIONS.c.case_id)
    .where(MILESTONE_CORRECTIONS.c.action == "void")
    .distinct()
)
# Whether one case has a voided milestone (a row when it has): every journey write's refresh
# asks it (``turnaround_rows`` inside its read of the stored row).
VOIDED_ONE = "SELECT 1 FROM milestone_correction WHERE action = 'void' AND case_id = ? LIMIT 1"


def _without_voided(
    session: Session, rows: list[tuple[Any, ...]], voided: set[str] | None = None
) -> list[tuple[Any, ...]]:
    """The rows with the times of the cases that have a voided milestone taken again from
    their valid and amended milestones only.

    Voids are rare and kept in the small ``milestone_correction`` table, so the set query
    above stays on its covering index (which has no status) and only these cases are redone.
    """
    if voided is None:  # else the caller read them (a journey write's refresh, its case's)
        voided = set(session.execute(_VOIDED).scalars().all())
    redo = [row for row in rows if row[0] in voided]
    if not redo:
        return rows
    c, m = CASES.c, MILESTONE_TABLE.c
    times: dict[str, dict[str, float]] = {row[0]: {} for row in redo}
    ids = list(times)
    for start in range(0, len(ids), 900):
        for case_id, name, at in session.execute(
            select_columns(m.case_id, m.type, func.max(m.occurred_at))
            .join(CASES, and_(c.id == m.case_id, c.cycle == m.cycle))
            .where(
                m.case_id.in_(ids[start : start + 900]),
                m.type.in_(MILESTONES),
                m.status != "voided",
            )
            .group_by(m.case_id, m.type)
        ):
            times[case_id][name] = as_utc(at).timestamp()
    return [
        (*row[:FIRST], *(times[row[0]].get(n) for n in MILESTONES), *row[FIRST + len(MILESTONES) :])
        if row[0] in times
        else row
        for row in rows
    ]


def _driver_rows(session: Session, stmt: Any, *, binary: bool = False) -> list[tuple[Any, ...]]:
    """All rows of a Core statement as the driver's tuples, in the session's transaction
    (``binary``: in PostgreSQL's binary format, for bytea columns: half the bytes of hex)."""
    # Every column and parameter is a plain number or string, so no type processing is lost;
    # skipping SQLAlchemy's Row objects saves about a tenth of a 100,000-case turnaround.
    compiled = stmt.compile(
        dialect=session.get_bind().dialect, compile_kwargs={"render_postcompile": True}
    )
    params = compiled.construct_params()
    return _run_sql(session, str(compiled), compiled.positiontup, params, binary=binary)


def _run_sql(
    session: Session,
    sql: str,
    positions: Sequence[str] | None,
    params: dict[str, Any],
    *,
    binary: bool = False,
) -> list[tuple[Any, ...]]:
    """Compiled SQL run on the session's own driver connection; the driver's tuples."""
    args: Any = params if positions is None else [params[k] for k in positions]
    return Raw.of(session).compiled(sql, args, binary=binary)


def fetch(
    session: Session,
    *,
    site: str | None = None,
    routes: Sequence[str] | None = None,
    product: str | None = None,
    collected_from: datetime | None = None,
    collected_to: datetime | None = None,
) -> list[CaseRow]:
    """One CaseRow per collected case: its journey times and flags."""
    found = fetch_rows(
        session,
        site=site,
        routes=routes,
        product=product,
        collected_from=collected_from,
        collected_to=collected_to,
    )
    return [CaseRow._make((*r[:SHIPPED], bool(r[SHIPPED]), bool(r[EXCURSION]))) for r in found]
