"""Alerts raised by the journey, the cold chain and the scheduler."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import StringConstraints
from sqlalchemy import JSON
from sqlmodel import Field, SQLModel

from models.base import RequestModel, ResponseModel, UTCDateTime, utcnow
from models.coldchain import Signature


class AlertKind(StrEnum):
    temperature_excursion = "temperature_excursion"
    loss_of_signal = "loss_of_signal"
    delay_at_risk = "delay_at_risk"
    delay_breached = "delay_breached"
    coi_mismatch = "coi_mismatch"
    hold_time_at_risk = "hold_time_at_risk"
    thaw_window = "thaw_window"
    slot_conflict = "slot_conflict"


class Severity(StrEnum):
    info = "info"
    warning = "warning"
    major = "major"
    critical = "critical"


class AlertStatus(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    resolved = "resolved"


class Alert(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32, index=True)
    severity: str = Field(max_length=16)
    status: str = Field(default=AlertStatus.open, max_length=16, index=True)
    case_id: str | None = Field(default=None, foreign_key="cases.id", max_length=32, index=True)
    shipment_id: str | None = Field(
        default=None, foreign_key="shipment.id", max_length=32, index=True
    )
    # Scopes which rule raised the alert, so a rule updates its alert instead of duplicating.
    dedupe_key: str | None = Field(default=None, max_length=200, index=True)
    message: str = Field(max_length=2000)
    data: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Its last change: a refresh that changes nothing (ingest re-raises with every batch) leaves it.
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    acknowledged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    acknowledged_by: str | None = Field(default=None, max_length=200)
    ack_note: str | None = Field(default=None, max_length=2000)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolved_by: str | None = Field(default=None, max_length=200)
    resolve_reason: str | None = Field(default=None, max_length=2000)
    # Structured form of ``message``: pages render code + params in the reader's language.
    code: str | None = Field(default=None, max_length=64)
    params: dict[str, Any] | None = Field(default=None, sa_type=JSON)


class AlertPublic(ResponseModel):
    id: int
    kind: str
    severity: str
    status: str
    case_id: str | None = None
    shipment_id: str | None = None
    message: str
    created_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolve_reason: str | None = None
    # The message's structured form (app/services/alerts/messages.py renders it per language).
    code: str | None = None
    params: dict[str, Any] | None = None


class AlertAck(RequestModel):
    note: Annotated[str, StringConstraints(max_length=2000)] | None = None


class AlertResolve(RequestModel):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    # Required to resolve a coi_mismatch (QA re-enters their own key, 21 CFR 11.200).
    signature: Signature | None = None


class AlertStatusFilter(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    resolved = "resolved"
    all = "all"
