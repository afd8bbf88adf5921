"""Webhook subscriptions and their delivery outbox."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field as PField
from pydantic import HttpUrl, StringConstraints, field_validator, model_validator
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
    # Site codes whose cases this subscriber receives; empty means every site.
    sites: list[str] = Field(
        default_factory=list, sa_type=JSON, sa_column_kwargs={"server_default": "[]"}
    )
    # Deleted webhooks stay (inactive, secret wiped) so their deliveries remain on record.
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


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


MAX_SITES = 200
SiteCode = Annotated[str, StringConstraints(min_length=1, max_length=32)]
# Not stripped: the subscriber signs with exactly the secret it sent.
Secret = Annotated[str, StringConstraints(min_length=16, max_length=200, strip_whitespace=False)]


class WebhookCreate(RequestModel):
    url: HttpUrl = PField(
        description="http(s) URL of a public host; no credentials in it (send them as the "
        "signature secret instead)."
    )
    kinds: list[WebhookKind] = PField(
        default_factory=list,
        max_length=len(WebhookKind),
        description="Alert kinds and case events (case.hold, milestone.recorded) to receive; "
        "empty for everything.",
    )
    secret: Secret = PField(description="HMAC-SHA256 key for X-V2V-Signature; never returned.")
    sites: list[SiteCode] = PField(
        default_factory=list,
        max_length=MAX_SITES,
        description="Only cases at these sites (alerts and events); empty for every site.",
    )

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, url: HttpUrl) -> HttpUrl:
        # Refused before anything is stored, logged or audited (the message omits the URL).
        if url.username or url.password:
            raise ValueError("credentials are not allowed in a webhook URL")
        return url


class WebhookUpdate(RequestModel):
    active: bool | None = None
    kinds: list[WebhookKind] | None = PField(
        None, max_length=len(WebhookKind), description="Replaces the kinds; empty for all."
    )
    sites: list[SiteCode] | None = PField(
        None, max_length=MAX_SITES, description="Replaces the sites; empty for every site."
    )

    @model_validator(mode="after")
    def _something(self) -> WebhookUpdate:
        if self.active is None and self.kinds is None and self.sites is None:
            raise ValueError("give at least one of active, kinds, sites")
        return self


class SecretRotation(RequestModel):
    secret: Secret | None = PField(
        None, description="The new HMAC key; leave out to have one generated."
    )


class WebhookSecret(ResponseModel):
    """The new signing secret, shown this once."""

    id: str
    secret: str


class WebhookPublic(ResponseModel):
    id: str
    url: str
    kinds: list[str]
    sites: list[str] = PField(default_factory=list, description="Empty: every site.")
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
