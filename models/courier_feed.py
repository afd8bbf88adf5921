"""Courier tracking feeds: where each courier organisation's event API is, and how far we read.

One row per courier organisation. The poller (``app/jobs/courier.py``) stores each page's
readings and custody scans and moves ``cursor`` in one transaction, so a restart neither
skips nor repeats events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field as PField
from pydantic import StringConstraints
from sqlalchemy import JSON
from sqlmodel import Field, SQLModel

from models.base import RequestModel, ResponseModel, UTCDateTime, utcnow

# Rejected events kept on the feed row for operators (the most recent ones).
MAX_RECENT_REJECTIONS = 100


class CourierFeed(SQLModel, table=True):
    __tablename__ = "courier_feed"

    courier: str = Field(primary_key=True, foreign_key="courier.code", max_length=32)
    base_url: str = Field(max_length=2083)
    # Sent as a bearer token to the courier, so kept usable (like a webhook's signing secret);
    # never returned by the API, never logged, and left out of this object's repr.
    auth_token: str = Field(max_length=500, repr=False)
    enabled: bool = True
    # Opaque position in the courier's stream: the next_cursor of the last page stored.
    cursor: str | None = Field(default=None, max_length=500)
    last_polled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_success_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, max_length=500)
    # Not polled before this instant (a 429 whose Retry-After is longer than a poller waits).
    next_poll_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The courier-role principal the feed's readings and scans are recorded as.
    principal_id: str | None = Field(default=None, foreign_key="principal.id", max_length=32)
    events_processed: int = 0
    events_rejected: int = 0
    # [{cursor, index, type, reason, at}], newest last, at most MAX_RECENT_REJECTIONS.
    recent_rejections: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CourierFeedCreate(RequestModel):
    courier: Annotated[str, StringConstraints(min_length=1, max_length=32)] = PField(
        description="The courier organisation's code (one feed per courier)."
    )
    base_url: Annotated[str, StringConstraints(min_length=1, max_length=2083)] = PField(
        description="Where its event API is: we GET {base_url}/events?cursor=&limit=."
    )
    # Not stripped: sent exactly as given. Never returned, logged or audited.
    auth_token: Annotated[
        str, StringConstraints(min_length=1, max_length=500, strip_whitespace=False)
    ] = PField(description="The bearer token we present to the courier; never returned.")
    active: bool = True


class CourierFeedUpdate(RequestModel):
    active: bool = PField(description="false pauses polling (the cursor stays); true resumes.")


class CourierFeedPublic(ResponseModel):
    courier: str
    base_url: str
    active: bool
    cursor: str | None
    newest_event_at: datetime | None
    lag_s: float | None = PField(description="Now minus the newest event seen, in seconds.")
    last_polled_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    next_poll_at: datetime | None
    events_processed: int
    events_rejected: int
    created_at: datetime
    updated_at: datetime
