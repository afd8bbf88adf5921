"""Cold chain: devices (loggers), readings, per-shipment detector state and excursions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import StringConstraints
from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String
from sqlmodel import Field, SQLModel

from models.base import RequestModel, ResponseModel, UTCDateTime, utcnow


class Device(SQLModel, table=True):
    """A data logger, owned by a courier organisation."""

    id: str = Field(primary_key=True, max_length=200)
    courier: str = Field(foreign_key="courier.code", max_length=32, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Reading(SQLModel, table=True):
    """One sensor reading. Written only through bulk statements (services/coldchain/store.py).

    Timestamps are integer epoch milliseconds (UTC): cheaper to bind than datetimes, exact
    to compare, and what loggers send. ``(device_id, ts_ms)`` is unique: a resend is a
    duplicate, never a second row.
    """

    __table_args__ = (
        Index("uq_reading_device_id_ts_ms", "device_id", "ts_ms", unique=True),
        # Covering index for traces and re-evaluation: no table lookups.
        Index("ix_reading_shipment_id_ts_ms_temp_c", "shipment_id", "ts_ms", "temp_c"),
    )

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    )
    shipment_id: str = Field(
        sa_column=Column(String(32), ForeignKey("shipment.id"), nullable=False)
    )
    device_id: str = Field(max_length=200)
    ts_ms: int = Field(sa_type=BigInteger)
    temp_c: float
    lat: float | None = None
    lon: float | None = None
    humidity_pct: float | None = None
    shock_g: float | None = None
    light_lux: float | None = None
    battery_pct: float | None = None
    received_ms: int = Field(sa_type=BigInteger)


class ShipmentState(SQLModel, table=True):
    """The excursion detector's state for one shipment, so a batch costs O(batch).

    The table of ``detector.State``: read and written only by ``coldchain.store``
    (``lock_state``, ``save_state``); this model serves migrations and queries.
    """

    __tablename__ = "shipment_state"

    shipment_id: str = Field(primary_key=True, foreign_key="shipment.id", max_length=32)
    n: int = 0
    last_ts_ms: int | None = Field(default=None, sa_type=BigInteger)
    last_temp_c: float | None = None
    last_lat: float | None = None
    last_lon: float | None = None
    # Newest reading seen, in or out of order (the watermark above may lag while marked).
    newest_ts_ms: int | None = Field(default=None, sa_type=BigInteger)
    # Mean kinetic temperature sums: Σ w and Σ w·exp(−ΔH/(R·T)), w in milliseconds.
    mkt_w: float = 0.0
    mkt_wexp: float = 0.0
    # Out-of-range time of closed excursions (ms); the open one adds its own.
    oor_closed_ms: int = Field(default=0, sa_type=BigInteger)
    open_excursion_id: int | None = None
    needs_reeval: bool = Field(default=False, index=True)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ExcursionKind(StrEnum):
    high = "high"
    low = "low"
    critical_high = "critical_high"
    critical_low = "critical_low"


class Excursion(SQLModel, table=True):
    __table_args__ = (
        Index("uq_excursion_shipment_id_started_ms", "shipment_id", "started_ms", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    shipment_id: str = Field(foreign_key="shipment.id", max_length=32)
    kind: str = Field(max_length=16)
    status: str = Field(default="open", max_length=16, index=True)  # open | closed
    started_ms: int = Field(sa_type=BigInteger)
    last_ms: int = Field(sa_type=BigInteger)  # latest out-of-range reading
    ended_ms: int | None = Field(default=None, sa_type=BigInteger)  # first in-range reading
    peak_c: float
    # Whether the excursion left the specified range (a warning band alone does not).
    out_of_spec: bool = True
    severity: str = Field(max_length=16)
    disposition: str | None = Field(default=None, max_length=16)
    disposition_reason: str | None = Field(default=None, max_length=2000)
    signed_by: str | None = Field(default=None, max_length=200)
    signed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    signature_meaning: str | None = Field(default=None, max_length=200)
    # A signed excursion is frozen: later readings inside it open a new excursion that
    # refers to the signed one here, for QA to review.
    refers_to_id: int | None = Field(default=None)


# ---- API schemas -------------------------------------------------------------------------


class IngestResponse(ResponseModel):
    accepted: int
    duplicates: int
    rejected: list[dict[str, object]]


class ExcursionPublic(ResponseModel):
    id: int
    shipment_id: str
    kind: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    duration_min: float
    peak_c: float
    severity: str
    disposition: str | None = None
    disposition_reason: str | None = None
    signed_by: str | None = None
    signed_at: datetime | None = None
    signature_meaning: str | None = None
    # A newer excursion that late readings opened inside a signed (frozen) one refers to it.
    refers_to_id: int | None = None


class DispositionPublic(ExcursionPublic):
    """The signed excursion, with what QA should know before relying on the decision."""

    warnings: list[str] = []


class Signature(RequestModel):
    password_or_key: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    meaning: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class DispositionRequest(RequestModel):
    decision: Annotated[str, StringConstraints(pattern="^(accept|reject|quarantine)$")]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    signature: Signature
