"""Which tasks each role is given, and a task before it is placed in the caller's window."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.services.journey.holds import ON_HOLD
from models.principal import Role
from models.shipment import Direction
from models.tasks import TaskKind

K = TaskKind
# Viewers read aggregates and device keys ingest readings: neither has tasks (403).
TASK_READERS = (Role.admin, Role.coordinator, Role.manufacturer, Role.courier, Role.qa)

KINDS: dict[str, frozenset[TaskKind]] = {
    # The hospital: its patients' collection, the material leaving, the product arriving,
    # the bedside steps, and its site's alerts.
    Role.coordinator: frozenset({K.apheresis, K.pickup, K.arrival, K.thaw, K.infusion, K.alert}),
    # The factory: material coming in, its starts and releases, the product leaving.
    Role.manufacturer: frozenset(
        {K.pickup, K.arrival, K.manufacturing_start, K.qc_release, K.alert}
    ),
    # The courier: its shipments' pickups and deliveries, and their alerts (signal, hold time).
    Role.courier: frozenset({K.pickup, K.arrival, K.alert}),
    # QA: signatures awaited, holds to assess, critical alerts, releases coming up.
    Role.qa: frozenset({K.disposition, K.hold_review, K.alert, K.qc_release}),
    Role.admin: frozenset(TaskKind),
}

BOTH = frozenset({Direction.to_manufacturing.value, Direction.to_site.value})
# The shipments whose pickup (at their origin) and arrival (at their destination) are a
# role's work: a hospital sends material and receives the product, a factory the reverse.
PICKUPS: dict[str, frozenset[str]] = {
    Role.coordinator: frozenset({Direction.to_manufacturing.value}),
    Role.manufacturer: frozenset({Direction.to_site.value}),
    Role.courier: BOTH,
    Role.admin: BOTH,
}
ARRIVALS: dict[str, frozenset[str]] = {
    Role.coordinator: frozenset({Direction.to_site.value}),
    Role.manufacturer: frozenset({Direction.to_manufacturing.value}),
    Role.courier: BOTH,
    Role.admin: BOTH,
}
# QA looks at the alerts nobody else may close, or that put a patient's product at stake.
QA_ALERT_SEVERITIES = ("critical",)


HOLD_NOTE = " (product on hold: do not thaw or infuse)"


def held(hold_status: str | None) -> dict[str, Any]:
    """The mark every task of a product on hold carries: nobody thaws or infuses it."""
    return {"on_hold": True} if hold_status == ON_HOLD else {}


def titled(title: str, hold_status: str | None) -> str:
    return title + HOLD_NOTE if hold_status == ON_HOLD else title


@dataclass(frozen=True)
class Draft:
    """A task before the window decides whether it is shown and whether it is overdue."""

    kind: TaskKind
    due_at: datetime
    title: str
    case_id: str | None = None
    shipment_id: str | None = None
    coi: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
