"""The courier tracking API's page and event shapes (see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints, ValidationError
from pydantic import Field as PField

from models.shipment import CustodyAction

MAX_CURSOR_LENGTH = 500
# One reading ingest batch (app.services.coldchain.ingest.MAX_BATCH), so a page's readings
# never need splitting.
MAX_EVENTS_PER_PAGE = 10_000


class CourierError(Exception):
    """A page could not be had; the feed's cursor stays where it is."""


class CourierUnavailable(CourierError):
    """Network errors, timeouts or 5xx answers, still failing after the retries."""


class CourierRefused(CourierError):
    """A 3xx or 4xx answer other than 429 (a wrong URL or token): not retried."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class CourierRateLimited(CourierError):
    """429 with a Retry-After longer than the poller waits: poll again after it."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class MalformedPage(CourierError):
    """The answer is not a page of the contract; nothing of it is stored."""


@dataclass(frozen=True)
class EventPage:
    # Raw events: each is checked when it is applied, so a bad one is rejected alone.
    events: list[Any]
    next_cursor: str | None


def parse_page(body: Any, *, sent_cursor: str | None) -> EventPage:
    """Check a page's envelope; any fault refuses the whole page (the cursor must not move)."""
    if not isinstance(body, dict):
        raise MalformedPage("malformed page: not a JSON object")
    events = body.get("events")
    if not isinstance(events, list):
        raise MalformedPage("malformed page: events must be a list")
    if len(events) > MAX_EVENTS_PER_PAGE:
        raise MalformedPage(f"malformed page: more than {MAX_EVENTS_PER_PAGE} events")
    if "next_cursor" not in body:
        raise MalformedPage("malformed page: next_cursor is required (null when nothing follows)")
    next_cursor = body["next_cursor"]
    if next_cursor is not None and (
        not isinstance(next_cursor, str) or not 0 < len(next_cursor) <= MAX_CURSOR_LENGTH
    ):
        raise MalformedPage(
            f"malformed page: next_cursor must be null or a string of 1 to {MAX_CURSOR_LENGTH}"
        )
    if events and next_cursor is None:
        # Keeping the old cursor would read these events again on the next poll.
        raise MalformedPage("malformed page: a page with events must give its next_cursor")
    if events and next_cursor == sent_cursor:
        raise MalformedPage("malformed page: next_cursor does not advance past its events")
    return EventPage(events=events, next_cursor=next_cursor)


def event_type(event: Any) -> str | None:
    if not isinstance(event, dict):
        return None
    kind = event.get("type")
    return kind if isinstance(kind, str) else None


Text200 = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class ScanEvent(BaseModel):
    """A custody scan. Unknown fields are ignored, so couriers may add their own."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, str_strip_whitespace=True)

    type: Literal["scan"]
    shipment_ref: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    action: CustodyAction
    ts: AwareDatetime
    coi: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    from_party: Text200
    to_party: Text200
    lat: Annotated[float, PField(ge=-90, le=90)] | None = None
    lon: Annotated[float, PField(ge=-180, le=180)] | None = None


def parse_scan(event: Any) -> ScanEvent | str:
    """The scan, or why it is refused (the first problem, with its field)."""
    try:
        return ScanEvent.model_validate(event)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = "/".join(str(part) for part in first.get("loc", ()))
        return f"{loc}: {first.get('msg', 'invalid')}" if loc else str(first.get("msg"))
