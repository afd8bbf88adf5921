"""Principals (API keys with a role and a scope) and idempotency records."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field as PField
from pydantic import StringConstraints
from sqlmodel import Field, SQLModel

from models.base import RequestModel, ResponseModel, UTCDateTime, new_id, utcnow


class Role(StrEnum):
    admin = "admin"
    coordinator = "coordinator"
    courier = "courier"
    manufacturer = "manufacturer"
    qa = "qa"
    viewer = "viewer"
    device = "device"


class Principal(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    role: str = Field(max_length=16)  # Role
    # Coordinator: its hospital; manufacturer: its factory.
    site: str | None = Field(default=None, foreign_key="site.code", max_length=32)
    courier: str | None = Field(default=None, foreign_key="courier.code", max_length=32)
    # Device keys (a logger's own credential) publish readings for that device only.
    device_id: str | None = Field(default=None, max_length=200)
    # The key is shown once; only a keyed hash is kept. The prefix finds the row.
    key_prefix: str = Field(max_length=16, unique=True)
    key_hash: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class WebSession(SQLModel, table=True):
    """A dashboard session, kept on the server so that logging out or revoking ends it.

    The browser's signed cookie holds a random token; only its SHA-256 is stored here, so
    someone who reads this table cannot open a session with what they read.
    """

    __tablename__ = "web_session"

    id: str = Field(primary_key=True, max_length=64)  # sha256 hex of the cookie's token
    principal_id: str = Field(foreign_key="principal.id", max_length=32, index=True)
    created_at: datetime = Field(sa_type=UTCDateTime)
    last_seen_at: datetime = Field(sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # logout | revoked | key_rotated
    end_reason: str | None = Field(default=None, max_length=16)


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_record"

    principal_id: str = Field(primary_key=True, foreign_key="principal.id", max_length=32)
    key: str = Field(primary_key=True, max_length=200)
    request_hash: str = Field(max_length=64)
    status_code: int
    response_body: str
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PrincipalCreate(RequestModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    role: Role
    site: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    courier: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    device_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


class PrincipalPublic(ResponseModel):
    id: str
    name: str
    role: str
    site: str | None = None
    courier: str | None = None
    device_id: str | None = None
    key_prefix: str
    created_at: datetime
    revoked_at: datetime | None = None


class PrincipalCreated(PrincipalPublic):
    api_key: str = PField(description="Shown once; only a keyed hash is stored.")


class KeyChange(RequestModel):
    """Optional body of a revocation or rotation: why (kept in the audit trail)."""

    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None
