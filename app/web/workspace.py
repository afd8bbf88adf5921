"""The workspace's shared pieces: the steps a person records, local times, scans, refusals.

The forms (``forms.py``, ``calendar.py``) and their actions (``step_actions.py``) call the
same use cases as the API; this module only turns form fields into their arguments and a
refusal into what the person at the bench or bedside must see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Form

from app.errors import AppError, CoiMismatch
from app.services.identity.coi import CoiFormatError, display, parse_scan
from app.services.journey.events import EVENT_ROLES, IDENTITY_BEARING, MANUFACTURING_EVENTS
from app.services.shipments.lifecycle import SENDERS
from app.web import auth
from app.web.i18n import N_, Lang
from models.case import Case, CaseStatus
from models.principal import Principal, Role
from models.shipment import Direction

Csrf = Annotated[str, Form(alias=auth.CSRF_FIELD, max_length=100)]
Field = Annotated[str, Form(max_length=200)]
Text = Annotated[str, Form(max_length=2000)]
Key = Annotated[str, Form(max_length=500)]

# The steps a person records on a form, in journey order, with the state each needs.
STEPS: dict[str, str] = {
    "collected": N_("Record the collection"),
    "received_at_manufacturing": N_("Receive at the factory"),
    "manufacturing_started": N_("Start manufacturing"),
    "qc_released": N_("QC release"),
    "manufacturing_failed": N_("Record a manufacturing failure"),
    "received_at_site": N_("Receive at the hospital"),
    "thawed": N_("Record the thaw"),
    "infused": N_("Record the infusion"),
}
STEP_FROM: dict[str, str] = {
    "collected": CaseStatus.apheresis_scheduled.value,
    "received_at_manufacturing": CaseStatus.in_transit_to_manufacturing.value,
    "manufacturing_started": CaseStatus.at_manufacturing.value,
    "qc_released": CaseStatus.in_manufacturing.value,
    "manufacturing_failed": CaseStatus.in_manufacturing.value,
    "received_at_site": CaseStatus.in_transit_to_site.value,
    "thawed": CaseStatus.at_site.value,
    "infused": CaseStatus.thawed.value,
}
BEDSIDE = frozenset({"thawed", "infused"})
# Refusals that stop the person: they are shown full-screen, never as a line on the form.
STOP_CODES = frozenset({"coi-mismatch", "product-on-hold", "thaw-expired"})
SHIPMENT_FROM: dict[str, frozenset[str]] = {
    Direction.to_manufacturing.value: frozenset(
        {CaseStatus.apheresis_scheduled.value, CaseStatus.collected.value}
    ),
    Direction.to_site.value: frozenset(
        {CaseStatus.in_manufacturing.value, CaseStatus.released.value}
    ),
}


def may_record(principal: Principal, step: str) -> bool:
    return Role(principal.role) in EVENT_ROLES[step]


def may_send(principal: Principal, direction: str) -> bool:
    return Role(principal.role) in SENDERS[Direction(direction)]


def step_site(case: Case, factory: str, step: str) -> str:
    """Where the step happens: the factory for manufacturing steps, else the case's site."""
    return factory if step in MANUFACTURING_EVENTS else case.site


@dataclass(frozen=True)
class Action:
    href: str
    text: str
    primary: bool = True


def next_actions(principal: Principal, case: Case, *, has_slot: bool) -> list[Action]:
    """The forms this person may open now for this case, in the order they would use them."""
    out: list[Action] = []
    role = Role(principal.role)
    if case.status in (CaseStatus.registered.value, CaseStatus.apheresis_scheduled.value) and (
        role in (Role.admin, Role.coordinator)
    ):
        text = N_("Move the apheresis booking") if has_slot else N_("Schedule apheresis")
        out.append(Action(f"/cases/{case.id}/schedule", text, not has_slot))
    for step, state in STEP_FROM.items():
        if case.status == state and may_record(principal, step):
            out.append(Action(f"/cases/{case.id}/steps/{step}", STEPS[step]))
    for direction, states in SHIPMENT_FROM.items():
        if case.status in states and may_send(principal, direction):
            text = (
                N_("Create the shipment to the factory")
                if direction == Direction.to_manufacturing.value
                else N_("Create the shipment to the hospital")
            )
            out.append(Action(f"/cases/{case.id}/shipments/new?direction={direction}", text))
    return out


# ---- times typed into a form: wall-clock time in a named zone ----


def local_input(value: datetime, zone: ZoneInfo) -> str:
    """A ``datetime-local`` value (seconds kept, so "now" never precedes the last step)."""
    return value.astimezone(zone).replace(tzinfo=None, microsecond=0).isoformat()


def parse_local(value: str, zone: ZoneInfo) -> datetime | None:
    """A ``datetime-local`` value read in ``zone``; ``None`` when empty or malformed."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        return parsed
    return parsed.replace(tzinfo=zone)


def parse_day_time(day: str, clock: str, zone: ZoneInfo) -> datetime | None:
    try:
        return datetime.combine(date.fromisoformat(day), time.fromisoformat(clock), zone)
    except ValueError:
        return None


# ---- scans and refusals ----


def coi_parts(coi: str) -> tuple[str, str]:
    """The eye-readable code and its check character, apart."""
    code, check = display(coi).rsplit(" ", 1)
    return code, check


def scanned_display(text: str) -> str:
    """What the scanner read, eye-readable when it is a COI at all."""
    try:
        return display(parse_scan(text).coi)
    except CoiFormatError:
        return text.strip()[:64]


@dataclass(frozen=True)
class Stop:
    """A refusal the person must not click past: wrong label, product on hold, expired thaw."""

    code: str
    title: str
    detail: str
    todo: list[str]
    scanned: str | None
    expected: str


def stop_of(exc: AppError, *, case: Case, scanned: str, lang: Lang) -> Stop | None:
    """The stop screen for a refusal, or ``None`` when a message on the form will do."""
    _ = lang.gettext
    if exc.code not in STOP_CODES:
        return None
    expected = display(case.coi)
    if isinstance(exc, CoiMismatch):
        return Stop(
            exc.code,
            _("STOP — this label does not belong to this case"),
            _("Nothing was recorded. The scan has been reported to QA as a critical alert."),
            [
                _("Do not use this material for this case."),
                _("Put it in quarantine where it is, with its label."),
                _("Call QA and your supervisor; check both labels against the case records."),
            ],
            scanned_display(scanned),
            expected,
        )
    if exc.code == "product-on-hold":
        return Stop(
            exc.code,
            _("STOP — this product is on hold"),
            _("QA has placed the product on hold: it must not be thawed or infused."),
            [
                _("Keep the product in its container; do not thaw it."),
                _("Call QA: only a signed release lifts the hold."),
            ],
            None,
            expected,
        )
    return Stop(
        exc.code,
        _("STOP — the thawed product has expired"),
        _("The time allowed between thaw and infusion has passed: do not infuse."),
        [
            _("Do not infuse this product."),
            _("Keep it for QA and call the manufacturer and QA."),
        ],
        None,
        expected,
    )


def message_of(exc: AppError, lang: Lang) -> str:
    """A refusal as one line on the form: the service's own words, after a short reason."""
    _ = lang.gettext
    lead = {
        "illegal-transition": _("Not possible in the case's current state."),
        "out-of-order": _("The time is before the previous step."),
        "future-time": _("The time is in the future."),
        "bad-verifier": _("The second person's verification failed."),
        "factory-full": _("The factory is full when this material would arrive."),
        "duplicate-case": _("This patient already has an open case for this product."),
        "route-mismatch": _("The shipment does not follow the case's route."),
        "device-in-use": _("A logger is already riding in another open shipment."),
        "shipment-exists": _("The case already has an open shipment in this direction."),
    }.get(exc.code, _("Not recorded."))
    return f"{lead} ({exc.detail})"


def form_values(**values: Any) -> dict[str, Any]:
    """What to put back in the form after a refusal (never a key: callers leave it out)."""
    return {k: v for k, v in values.items() if "key" not in k}


__all__ = [
    "BEDSIDE",
    "IDENTITY_BEARING",
    "STEPS",
    "Action",
    "Stop",
    "coi_parts",
    "local_input",
    "message_of",
    "next_actions",
    "parse_day_time",
    "parse_local",
    "stop_of",
]
