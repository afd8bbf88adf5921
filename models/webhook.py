"""Webhook subscriptions and their delivery outbox."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field as PField
from pydantic import HttpUrl, StringConstraints
from sqlalchemy import JSON, Index, Text
from sqlmodel import Field, SQLModel

from models.base import RequestModel, ResponseModel, UTCDateTime, new_id, utcnow


class DeliveryStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    dead = "dead"


class WebhookEvent(StrEnum):
    alert_opened = "alert.opened"
    alert_updated = "alert.updated"
    alert_acknowledged = "alert.acknowledged"
    alert_resolved = "alert.resolved"
    case_hold = "case.hold"
    milestone_recorded = "milestone.recorded"


class WebhookKind(StrEnum):
    """What a subscriber may ask for: every alert kind (``AlertKind``) and case events."""

    temperature_excursion = "temperature_excursion"
    loss_of_signal = "loss_of_signal"
    delay_at_risk = "delay_at_risk"
    delay_breached = "delay_breached"
    coi_mismatch = "coi_mismatch"
    hold_time_at_risk = "hold_time_at_risk"
    thaw_window = "thaw_window"
    slot_conflict = "slot_conflict"
    case_hold = "case.hold"
    milestone_recorded = "milestone.recorded"


class Webhook(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    url: str = Field(max_length=2083)
    # Alert kinds and case events (WebhookKind) this subscriber wants; empty means all.
    kinds: list[str] = Field(default_factory=list, sa_type=JSON)
    # Kept as given because every delivery is signed with it; the API never returns it.
    secret: str = Field(max_length=200)
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: str = Field(max_length=200)


class WebhookDelivery(SQLModel, table=True):
    """One event for one subscriber: the outbox row, written in the transaction that caused it."""

    __tablename__ = "webhook_delivery"
    # The sender's claim query: pending rows whose next attempt is due.
    __table_args__ = (Index(None, "status", "next_attempt_at"),)

    # A UUID rather than a row number: receivers de-duplicate on it, so it must never be reused.
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    webhook_id: str = Field(foreign_key="webhook.id", max_length=32, index=True)
    event: str = Field(max_length=64)  # WebhookEvent
    alert_id: int | None = Field(default=None, foreign_key="alert.id")
    # The exact body sent, so the signature covers what the receiver gets, on every retry.
    payload: str = Field(sa_type=Text)
    status: str = Field(default=DeliveryStatus.pending, max_length=16)
    # Attempts started; counted when a row is claimed, so a crashed attempt counts too.
    attempts: int = 0
    # When the row is next due; while an attempt runs, the end of that attempt's lease.
    next_attempt_at: datetime = Field(sa_type=UTCDateTime)
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class WebhookCreate(RequestModel):
    url: HttpUrl
    kinds: list[WebhookKind] = PField(
        default_factory=list,
        max_length=len(WebhookKind),
        description="Alert kinds and case events (case.hold, milestone.recorded) to receive; "
        "empty for everything.",
    )
    # Not stripped: the subscriber signs with exactly the secret it sent.
    secret: Annotated[
        str, StringConstraints(min_length=16, max_length=200, strip_whitespace=False)
    ] = PField(description="HMAC-SHA256 key for X-V2V-Signature; never returned.")


class WebhookPublic(ResponseModel):
    id: str
    url: str
    kinds: list[str]
    active: bool
    created_at: datetime
    created_by: str


class DeliveryPublic(ResponseModel):
    id: str
    webhook_id: str
    event: str
    alert_id: int | None = None
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime
    delivered_at: datetime | None = None
