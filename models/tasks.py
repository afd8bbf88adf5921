"""The caller's task list (``GET /tasks``): what is due, derived from what is recorded."""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, PlainValidator, TypeAdapter, WithJsonSchema
from pydantic import Field as PField

from models.base import ResponseModel


class TaskKind(StrEnum):
    """What a task asks for. Stable snake_case values (clients may switch on them)."""

    apheresis = "apheresis"  # a booked apheresis not yet recorded as collected
    pickup = "pickup"  # material or product waiting for its courier (or for a shipment)
    arrival = "arrival"  # a shipment in transit expected at its destination
    manufacturing_start = "manufacturing_start"  # the factory's predicted or booked start
    qc_release = "qc_release"  # the predicted QC release of a batch in manufacturing
    thaw = "thaw"  # thaw before the planned infusion (the product's thaw lead)
    infusion = "infusion"  # the planned infusion, or the thawed product's start window
    alert = "alert"  # an open (unacknowledged) alert for the caller's role
    disposition = "disposition"  # a closed excursion awaiting QA's signed disposition
    hold_review = "hold_review"  # a product on hold awaiting QA's assessment


# Kinds with a planned or predicted time: flagged ``overdue`` once that time has passed.
# The others wait for someone since ``due_at`` and are never "late" in that sense.
SCHEDULED_KINDS = frozenset(
    {
        TaskKind.apheresis,
        TaskKind.pickup,
        TaskKind.arrival,
        TaskKind.manufacturing_start,
        TaskKind.qc_release,
        TaskKind.thaw,
        TaskKind.infusion,
    }
)

KIND_HELP = (
    "`apheresis` (a booked collection), `pickup` (a shipment awaiting its courier, or a case "
    "whose shipment is still to be created), `arrival` (a shipment in transit at its "
    "ETA), `manufacturing_start` (predicted from the material's arrival and the booked "
    "slot), `qc_release` (predicted from the start and the process time), `thaw` and "
    "`infusion` (planned), `alert` (open, unacknowledged), `disposition` (a closed "
    "excursion awaiting QA's signature), `hold_review` (a product on hold for QA)"
)

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_AWARE: TypeAdapter[datetime] = TypeAdapter(AwareDatetime)


def _bound(value: Any) -> date | datetime:
    """A calendar date (``2026-11-27``) or an instant with its offset; a naive time is
    refused, even at midnight (it would be read in an unknown zone)."""
    if isinstance(value, str) and _DATE.fullmatch(value):
        return date.fromisoformat(value)
    return _AWARE.validate_python(value)


WindowBound = Annotated[
    date | datetime,
    PlainValidator(_bound),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date"},
                {"type": "string", "format": "date-time"},
            ]
        }
    ),
]


class TaskItem(ResponseModel):
    kind: TaskKind = PField(description=KIND_HELP)
    due_at: datetime = PField(
        description="When it is planned or predicted; for alerts, dispositions and holds, "
        "since when it has been waiting."
    )
    overdue: bool = PField(
        description="A planned or predicted step whose time has passed and is still not done."
    )
    case_id: str | None = None
    shipment_id: str | None = None
    coi: str | None = PField(None, description="The case's COI (never a patient reference).")
    title: str = PField(description="A short English sentence naming the COI.")
    params: dict[str, Any] = PField(
        default_factory=dict,
        description="What the title is made of (site codes, direction, alert id, kind and "
        "severity, excursion id), so a client can word it in its own language.",
    )


class TaskList(ResponseModel):
    items: list[TaskItem]
    window_from: datetime
    window_to: datetime
    truncated: bool = PField(
        description="More tasks were due than the list holds; the soonest are given."
    )
