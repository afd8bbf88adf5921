"""Notifications: each person's contact points and subscriptions, site on-call rotas, the
escalation state of critical alerts and the notification outbox."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field as PField
from pydantic import StringConstraints, model_validator
from sqlalchemy import JSON, Index, Text
from sqlmodel import Field, SQLModel

from models.alert import AlertKind, Severity
from models.base import RequestModel, ResponseModel, UTCDateTime, new_id, utcnow


class NotificationStatus(StrEnum):
    pending = "pending"
    sent = "sent"
    dead = "dead"
    # Not sent on purpose: the alert closed (or was acknowledged) before its turn came.
    skipped = "skipped"


class NotificationKind(StrEnum):
    alert = "alert"  # a subscribed alert was raised or became more severe
    escalation = "escalation"  # a critical alert went unacknowledged: the next on-call step
    digest = "digest"  # the daily summary


class NotificationPrefs(SQLModel, table=True):
    """One person's notification settings (a row only once they were set)."""

    __tablename__ = "notification_prefs"

    principal_id: str = Field(primary_key=True, foreign_key="principal.id", max_length=32)
    # Apprise URLs or e-mail addresses, as given: they may hold tokens, so the API masks them.
    contacts: list[str] = Field(default_factory=list, sa_type=JSON)
    # [{"kinds": [...], "min_severity": "major"}]; empty kinds means every kind.
    subscriptions: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    quiet_from: str | None = Field(default=None, max_length=5)  # "HH:MM", local time
    quiet_to: str | None = Field(default=None, max_length=5)
    language: str | None = Field(default=None, max_length=2)  # ja | en
    timezone: str | None = Field(default=None, max_length=64)
    digest: bool = False
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class OnCall(SQLModel, table=True):
    """A site's escalation rota for critical alerts on its cases."""

    __tablename__ = "on_call"

    site: str = Field(primary_key=True, foreign_key="site.code", max_length=32)
    # [{"principal_ids": [...], "after_min": 15}]
    steps: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_by: str = Field(max_length=200)


class AlertEscalation(SQLModel, table=True):
    """Where a critical alert stands on its site's rota: the step last notified and when the
    next one is due if nobody acknowledges it."""

    __tablename__ = "alert_escalation"
    __table_args__ = (Index(None, "next_at"),)

    alert_id: int = Field(primary_key=True, foreign_key="alert.id")
    site: str = Field(foreign_key="site.code", max_length=32)
    # Index of the rota step notified last; len(steps) means QA and admins were told.
    step: int = 0
    next_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    started_at: datetime = Field(sa_type=UTCDateTime)
    # Set when it stops: the alert was acknowledged or resolved, or the rota ran out.
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    end_reason: str | None = Field(default=None, max_length=32)


class Notification(SQLModel, table=True):
    """One message for one person at one contact point: the outbox row, written in the
    transaction that caused it."""

    __table_args__ = (Index(None, "status", "next_attempt_at"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    principal_id: str = Field(foreign_key="principal.id", max_length=32, index=True)
    kind: str = Field(max_length=16)  # NotificationKind
    alert_id: int | None = Field(default=None, foreign_key="alert.id", index=True)
    # Why: "raised", "escalated" (more severe), "step:<n>" of the rota, "qa_admin", "digest".
    reason: str = Field(max_length=32)
    # One row per event, person and contact point: a second enqueue of the same is a no-op.
    dedupe_key: str = Field(max_length=200, unique=True)
    target: str = Field(sa_type=Text)
    # What the message needs besides the alert (the digest's snapshot).
    payload: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    status: str = Field(default=NotificationStatus.pending, max_length=16)
    attempts: int = 0
    # Due time; quiet hours push it to their end; a running attempt's lease pushes it on.
    next_attempt_at: datetime = Field(sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


# ---- API schemas -----------------------------------------------------------------------------

HHMM = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
Target = Annotated[str, StringConstraints(min_length=3, max_length=1000)]
Fingerprint = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{12}$")]


class ContactIn(RequestModel):
    """A new contact point (``target``), or an existing one kept by its ``fingerprint``."""

    target: Target | None = PField(
        None, description="An e-mail address or an Apprise URL (mailto://, line://, …)."
    )
    fingerprint: Fingerprint | None = PField(
        None, description="Keep a contact already set (as listed) without re-sending it."
    )

    @model_validator(mode="after")
    def _one(self) -> ContactIn:
        if (self.target is None) == (self.fingerprint is None):
            raise ValueError("give either target or fingerprint")
        return self


class SubscriptionIn(RequestModel):
    kinds: Annotated[list[AlertKind], PField(max_length=len(AlertKind))] = PField(
        default_factory=list, description="Alert kinds; empty for every kind."
    )
    min_severity: Severity = Severity.warning


class QuietHours(RequestModel):
    from_: HHMM = PField(alias="from")
    to: HHMM

    model_config = {**RequestModel.model_config, "populate_by_name": True}


def _zone(value: str | None) -> str | None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if value is None:
        return None
    if not re.fullmatch(r"[A-Za-z0-9_+\-/]{1,64}", value):
        raise ValueError("unknown IANA time zone")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("unknown IANA time zone") from exc
    return value


class NotificationSettingsIn(RequestModel):
    contacts: Annotated[list[ContactIn], PField(max_length=10)] = PField(default_factory=list)
    subscriptions: Annotated[list[SubscriptionIn], PField(max_length=20)] = PField(
        default_factory=list
    )
    quiet_hours: QuietHours | None = None
    language: Literal["ja", "en"] | None = None
    timezone: Annotated[str, StringConstraints(max_length=64)] | None = PField(
        None, description="IANA zone; default: the person's site's zone, else Asia/Tokyo."
    )
    digest: bool = False

    @model_validator(mode="after")
    def _known_zone(self) -> NotificationSettingsIn:
        _zone(self.timezone)
        return self


class ContactPublic(ResponseModel):
    target: str = PField(description="Masked: the full target may hold a token.")
    fingerprint: str
    kind: str = PField(description="`email` or the Apprise scheme.")


class SubscriptionPublic(ResponseModel):
    kinds: list[str]
    min_severity: str


class QuietHoursPublic(ResponseModel):
    from_: str = PField(serialization_alias="from")
    to: str


class NotificationSettingsPublic(ResponseModel):
    principal_id: str
    contacts: list[ContactPublic]
    subscriptions: list[SubscriptionPublic]
    quiet_hours: QuietHoursPublic | None = None
    language: str
    timezone: str
    digest: bool


class OnCallStepIn(RequestModel):
    principal_ids: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=32)]],
        PField(min_length=1, max_length=20),
    ]
    after_min: Annotated[int, PField(ge=1, le=7 * 24 * 60)] = PField(
        description="Minutes this step has to acknowledge before the next step is told."
    )


class OnCallIn(RequestModel):
    steps: Annotated[list[OnCallStepIn], PField(max_length=10)]


class OnCallPublic(ResponseModel):
    site: str
    steps: list[dict[str, Any]]
    updated_at: datetime | None = None
    updated_by: str | None = None


class NotificationPublic(ResponseModel):
    id: str
    principal_id: str
    kind: str
    alert_id: int | None = None
    reason: str
    target: str = PField(description="Masked.")
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None = None
    created_at: datetime
    sent_at: datetime | None = None
