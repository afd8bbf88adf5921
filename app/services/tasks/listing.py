"""The task list use case: the window, the role's kinds, overdue steps, order and cap."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session

from app.errors import Forbidden, Invalid
from app.services.tasks import awaiting, journey
from app.services.tasks.rules import KINDS, TASK_READERS, Draft
from models.principal import Principal
from models.reference import Site
from models.tasks import SCHEDULED_KINDS, TaskItem, TaskKind, TaskList

DEFAULT_SPAN = timedelta(days=7)
MAX_SPAN = timedelta(days=92)  # a quarter: enough to plan, small enough to answer fast
YEARS = (2000, 2100)
CAP = 500


def _zone(session: Session, actor: Principal) -> ZoneInfo:
    """Where a bare date is a day: the caller's own site, else UTC."""
    site = session.get(Site, actor.site) if actor.site else None
    return ZoneInfo(site.timezone) if site is not None else ZoneInfo("UTC")


def _instant(value: date | datetime, zone: ZoneInfo, *, end: bool) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    # A date as ``to`` includes that whole day: the window ends at the next midnight.
    day = value + timedelta(days=1) if end else value
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def window(
    session: Session,
    *,
    actor: Principal,
    start: date | datetime | None,
    end: date | datetime | None,
    now: datetime,
) -> tuple[datetime, datetime]:
    """The window in UTC, range-checked (422 problems naming the parameter)."""
    for loc, value in (("query/from", start), ("query/to", end)):
        # Checked before any arithmetic: year 9999 plus a day is no date at all.
        if value is not None and not YEARS[0] <= value.year <= YEARS[1]:
            raise Invalid(
                f"dates must lie in the years {YEARS[0]}–{YEARS[1]}",
                errors=[{"loc": loc, "msg": "out of range"}],
            )
    zone = _zone(session, actor)
    lo = _instant(start, zone, end=False) if start is not None else now
    hi = _instant(end, zone, end=True) if end is not None else lo + DEFAULT_SPAN
    if hi <= lo:
        raise Invalid(
            "to must be after from (from defaults to now)",
            errors=[{"loc": "query/to", "msg": "not after from"}],
        )
    if hi - lo > MAX_SPAN:
        raise Invalid(
            f"the window may span at most {MAX_SPAN.days} days",
            errors=[{"loc": "query/to", "msg": "range too long"}],
        )
    return lo, hi


def tasks_for(
    session: Session,
    *,
    actor: Principal,
    window_from: date | datetime | None,
    window_to: date | datetime | None,
    now: datetime,
) -> TaskList:
    """The actor's tasks due in the window (default: the next 7 days), soonest first, plus
    every planned step already overdue (never lost because it fell before ``from``)."""
    if actor.role not in TASK_READERS:
        raise Forbidden("your role has no task list")
    lo, hi = window(session, actor=actor, start=window_from, end=window_to, now=now)
    kinds = KINDS[actor.role]
    drafts: list[Draft] = journey.derive(session, actor=actor, kinds=kinds, now=now)
    if TaskKind.alert in kinds:
        drafts.extend(awaiting.alerts(session, actor=actor, before=hi, limit=CAP + 1))
    if TaskKind.disposition in kinds:
        drafts.extend(awaiting.dispositions(session, actor=actor, before=hi, limit=CAP + 1))
    if TaskKind.hold_review in kinds:
        drafts.extend(awaiting.holds(session, actor=actor, before=hi, limit=CAP + 1))
    # In the window, or before it and still waiting (a missed step stays on the list).
    shown = [d for d in drafts if d.due_at < hi and (d.due_at >= lo or d.due_at < now)]
    shown.sort(key=lambda d: (d.due_at, d.kind.value, d.coi or "", d.shipment_id or ""))
    items = [
        TaskItem(
            kind=d.kind,
            due_at=d.due_at,
            overdue=d.kind in SCHEDULED_KINDS and d.due_at < now,
            case_id=d.case_id,
            shipment_id=d.shipment_id,
            coi=d.coi,
            title=d.title,
            params=d.params,
        )
        for d in shown[:CAP]
    ]
    return TaskList(items=items, window_from=lo, window_to=hi, truncated=len(shown) > CAP)
