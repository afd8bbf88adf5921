"""The caller's task list: what is due, soonest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import NowDep, SessionDep, require_roles
from app.services import tasks
from app.services.tasks.rules import TASK_READERS
from models.principal import Principal
from models.tasks import KIND_HELP, TaskList, WindowBound

router = APIRouter(prefix="/tasks", tags=["tasks"])
Worker = Annotated[Principal, require_roles(*TASK_READERS)]
BOUND = (
    "An instant with its offset (RFC 3339) or a date (a day in the caller's site zone, else "
    "UTC; as `to` the whole day is included); years 2000–2100."
)


@router.get(
    "",
    response_model=TaskList,
    description=(
        "The caller's work in a window (default: now to now + 7 days, at most 92 days), "
        "soonest first, then by kind; planned steps already past and not done are included "
        "with `overdue: true` even before `from`. Kinds: "
        + KIND_HELP
        + ". Coordinators get their site's cases; factories their factory's; couriers "
        "their shipments; QA dispositions, holds, critical alerts and releases; admins "
        "everything. At most 500 items (`truncated: true` when more were due)."
    ),
)
def list_tasks(
    session: SessionDep,
    principal: Worker,
    now: NowDep,
    from_: Annotated[WindowBound | None, Query(alias="from", description=BOUND)] = None,
    to: Annotated[WindowBound | None, Query(description=BOUND)] = None,
) -> TaskList:
    """The caller's tasks: apheresis, pickups, arrivals, starts, releases, thaws, infusions,
    alerts, dispositions and holds."""
    return tasks.tasks_for(session, actor=principal, window_from=from_, window_to=to, now=now)
