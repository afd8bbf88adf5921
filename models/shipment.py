"""Shipments between sites, their custody chain and the devices (loggers) riding in them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, StringConstraints, field_validator
from pydantic import Field as PField
from sqlalchemy import JSON
from sqlmodel import Field, SQLModel

from models.base import RequestModel, ResponseModel, UTCDateTime, new_id, utcnow


class Direction(StrEnum):
    to_manufacturing = "to_manufacturing"
    to_site = "to_site"


class ShipmentStatus(StrEnum):
    created = "created"
    in_transit = "in_transit"
    delivered = "delivered"
    cancelled = "cancelled"


class CustodyAction(StrEnum):
    picked_up = "picked_up"
    handoff = "handoff"
    delivered = "delivered"


class Shipment(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    case_id: str = Field(foreign_key="cases.id", max_length=32, index=True)
    direction: str = Field(max_length=20)
    origin: str = Field(foreign_key="site.code", max_length=32)
    destination: str = Field(foreign_key="site.code", max_length=32)
    profile: str = Field(foreign_key="profile.code", max_length=32)
    courier: str = Field(foreign_key="courier.code", max_length=32, index=True)
    container_serial: str = Field(max_length=64)
    container_kind: str = Field(max_length=64)
    hold_time_h: float | None = None
    device_ids: list[str] = Field(default_factory=list, sa_type=JSON)
    status: str = Field(default=ShipmentStatus.created, max_length=16, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    picked_up_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_by: str | None = Field(default=None, max_length=32)
    cancelled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancel_reason: str | None = Field(default=None, max_length=2000)


class CustodyEvent(SQLModel, table=True):
    __tablename__ = "custody_event"

    id: int | None = Field(default=None, primary_key=True)
    shipment_id: str = Field(foreign_key="shipment.id", max_length=32, index=True)
    action: str = Field(max_length=16)
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    recorded_at: datetime = Field(sa_type=UTCDateTime)
    from_party: str = Field(max_length=200)
    to_party: str = Field(max_length=200)
    lat: float | None = None
    lon: float | None = None
    actor: str = Field(max_length=200)
    actor_id: str | None = Field(default=None, max_length=32)
    data: dict[str, Any] | None = Field(default=None, sa_type=JSON)


class DeviceAssignment(SQLModel, table=True):
    """A logger riding in a shipment from pickup to delivery.

    Intervals, not a flag: a logger reused on a later shipment attaches each reading to the
    shipment it was in at the reading's timestamp.
    """

    __tablename__ = "device_assignment"

    id: int | None = Field(default=None, primary_key=True)
    device_id: str = Field(max_length=200, index=True)
    shipment_id: str = Field(foreign_key="shipment.id", max_length=32, index=True)
    assigned_from: datetime = Field(sa_type=UTCDateTime)
    assigned_until: datetime | None = Field(default=None, sa_type=UTCDateTime)


# ---- API schemas -------------------------------------------------------------------------

Code = Annotated[str, StringConstraints(min_length=1, max_length=32)]
DeviceId = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class ContainerIn(RequestModel):
    serial: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    kind: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    hold_time_h: Annotated[float, PField(gt=0, le=24 * 60)] | None = None


class ShipmentCreate(RequestModel):
    case_id: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    direction: Direction
    origin: Code
    destination: Code
    profile: Code
    courier: Code
    container: ContainerIn
    device_ids: Annotated[list[DeviceId], PField(max_length=16)] = []
    coi: Annotated[str, StringConstraints(min_length=1, max_length=64)]

    @field_validator("device_ids")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("device ids must be unique")
        return value


class CustodyCreate(RequestModel):
    action: CustodyAction
    occurred_at: AwareDatetime
    from_party: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    to_party: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    coi: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    lat: Annotated[float, PField(ge=-90, le=90)] | None = None
    lon: Annotated[float, PField(ge=-180, le=180)] | None = None


class CustodyPublic(ResponseModel):
    id: int
    action: str
    occurred_at: datetime
    recorded_at: datetime
    from_party: str
    to_party: str
    lat: float | None = None
    lon: float | None = None
    actor: str


class ContainerPublic(ResponseModel):
    serial: str
    kind: str
    hold_time_h: float | None = None


class ExcursionSummary(ResponseModel):
    count: int = 0
    open: int = 0
    out_of_range_min: float = 0.0
    peak_c: float | None = None
    mkt_c: float | None = None


class ShipmentPublic(ResponseModel):
    id: str
    case_id: str
    coi: str
    status: str
    direction: str
    origin: str
    destination: str
    profile: str
    courier: str
    container: ContainerPublic
    device_ids: list[str]
    created_at: datetime
    picked_up_at: datetime | None
    delivered_at: datetime | None
    eta: datetime | None = None
    custody: list[CustodyPublic]
    last_reading: dict[str, Any] | None = None
    excursion_summary: ExcursionSummary
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None


class ShipmentSummary(ResponseModel):
    """A shipment in a list: where it goes, who carries it, where it stands."""

    id: str
    case_id: str
    coi: str
    status: str
    direction: str
    origin: str
    destination: str
    courier: str
    created_at: datetime
    picked_up_at: datetime | None
    delivered_at: datetime | None
    cancelled_at: datetime | None = None


class ShipmentCancel(RequestModel):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class DeviceCreate(RequestModel):
    """A logger registered by its courier organisation (an admin names the courier)."""

    device_id: DeviceId
    courier: Code | None = None


class DevicePublic(ResponseModel):
    id: str
    courier: str
    created_at: datetime
