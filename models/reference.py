"""Reference data: sites, courier organisations, temperature profiles, products and routes.

Loaded from ``seeds/`` by natural keys; an admin may add more.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from pydantic import AfterValidator, StringConstraints, model_validator
from pydantic import Field as PField
from sqlalchemy import JSON
from sqlmodel import Field, SQLModel

from models.base import RequestModel


class SiteKind(StrEnum):
    apheresis_center = "apheresis_center"
    treatment_center = "treatment_center"
    manufacturing = "manufacturing"
    airport = "airport"
    courier_hub = "courier_hub"


class RouteKind(StrEnum):
    local = "local"
    overseas = "overseas"


class LegMode(StrEnum):
    ground = "ground"
    air = "air"


class SiteBase(SQLModel):
    code: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=32)  # SiteKind
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    timezone: str = Field(max_length=64)
    country: str = Field(min_length=2, max_length=2)


class Site(SiteBase, table=True):
    # ISBT 128 facility identification number used in COIs issued for this site's cases.
    fin: str | None = Field(default=None, max_length=5)
    address: str | None = Field(default=None, max_length=300)
    # Manufacturing sites: Cell Shuttles installed and batches each runs in parallel.
    shuttles: int | None = Field(default=None, ge=0)
    positions_per_shuttle: int | None = Field(default=None, ge=1)
    # Treatment sites: thaw and infusion must carry a second person's key (data.verified_by).
    require_second_verifier: bool = Field(
        default=False, sa_column_kwargs={"server_default": sa.false()}
    )


class SitePublic(SiteBase):
    pass


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("unknown IANA time zone") from exc
    return value


class SiteCreate(RequestModel):
    code: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{1,31}$")]
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    kind: SiteKind
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_zone)]
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
    address: Annotated[str, StringConstraints(min_length=3, max_length=300)] | None = None
    lat: Annotated[float, PField(ge=-90, le=90)] | None = None
    lon: Annotated[float, PField(ge=-180, le=180)] | None = None
    fin: (
        Annotated[str, StringConstraints(pattern=r"^[A-NP-Z1-9][A-NP-Z0-9]{2}[0-9]{2}$")] | None
    ) = None
    shuttles: Annotated[int, PField(ge=0, le=1000)] | None = None
    positions_per_shuttle: Annotated[int, PField(ge=1, le=1000)] | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> SiteCreate:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both lat and lon, or neither")
        return self


class Courier(SQLModel, table=True):
    code: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=200)


class ProfileBase(SQLModel):
    code: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    min_c: float | None = None
    max_c: float
    alarm_after_min: float
    cumulative_budget_min: float | None = None
    critical_below_c: float | None = None
    critical_above_c: float | None = None
    warn_above_c: float | None = None
    max_gap_min: float = 30.0
    mkt_limit_c: float | None = None
    # Severity when MKT exceeds mkt_limit_c.
    mkt_severity: str = Field(
        default="major", max_length=16, sa_column_kwargs={"server_default": "major"}
    )
    max_trip_h: float | None = None
    hold_time_h: float | None = None
    cryogenic: bool = False


class Profile(ProfileBase, table=True):
    pass


class ProductBase(SQLModel):
    code: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    thaw_to_infusion_start_min: float
    thaw_expiry_min: float
    fresh_max_h: float | None = None
    process_h: float = 24.0 * 7


class Product(ProductBase, table=True):
    pass


class Route(SQLModel, table=True):
    code: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=16)  # RouteKind
    manufacturing_site: str = Field(foreign_key="site.code", max_length=32)
    inbound_profile: str = Field(foreign_key="profile.code", max_length=32)
    outbound_profile: str = Field(foreign_key="profile.code", max_length=32)
    targets: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    # Typical non-transit durations used by predictions (see seeds/routes.yaml).
    expected: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    cost_per_case: float | None = None
    currency: str | None = Field(default=None, max_length=3)


class RouteLeg(SQLModel, table=True):
    __tablename__ = "route_leg"

    id: int | None = Field(default=None, primary_key=True)
    route_code: str = Field(foreign_key="route.code", max_length=32, index=True)
    direction: str = Field(max_length=16)  # inbound (to the factory) | outbound (to the site)
    seq: int
    from_site: str = Field(foreign_key="site.code", max_length=32)
    to_site: str = Field(foreign_key="site.code", max_length=32)
    mode: str = Field(max_length=16)  # LegMode
    customs: bool = False
    handling_h: float = 0.0
    customs_h: float = 0.0
    expected_h: float


class LegPublic(SQLModel):
    from_site: str
    to_site: str
    mode: LegMode
    customs: bool
    expected_h: float
    direction: str


class RoutePublic(SQLModel):
    code: str
    name: str
    kind: RouteKind
    manufacturing_site: str
    inbound_profile: str
    outbound_profile: str
    legs: list[LegPublic]
    targets: dict[str, Any]
    expected: dict[str, Any] = {}
    cost_per_case: float | None = None
    currency: str | None = None
