"""The append-only, hash-chained audit trail (21 CFR Part 11 / EU GMP Annex 11)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field as Check
from sqlalchemy import JSON, Index
from sqlmodel import Field, SQLModel

from models.base import ResponseModel, UTCDateTime

GENESIS_HASH = "0" * 64


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity_entity_id", "entity", "entity_id"),)

    # Assigned by the writer under a lock (not autoincrement) so the chain has no gaps.
    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: datetime = Field(sa_type=UTCDateTime)
    actor: str = Field(max_length=200)
    actor_id: str | None = Field(default=None, max_length=32)
    action: str = Field(max_length=64)
    entity: str = Field(max_length=32)
    entity_id: str = Field(max_length=64)
    before: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    after: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    reason: str | None = Field(default=None, max_length=2000)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)
    # Which audit key (V2V_AUDIT_KEYS) keyed this entry's HMAC; rotation keeps old ones.
    kid: str = Field(default="", max_length=64, sa_column_kwargs={"server_default": ""})


class AuditPublic(ResponseModel):
    seq: int
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    reason: str | None = None
    hash: str
    prev_hash: str
    kid: str


class AuditVerify(ResponseModel):
    ok: bool
    entries: int
    first_bad_seq: int | None = None
    reason: str | None = None


class AuditCheckpoint(ResponseModel):
    """The chain's head at ``seq`` signed (Ed25519, key ``kid`` of the COI JWKS) at ``at``."""

    seq: int = Check(ge=0)
    hash: str = Check(min_length=64, max_length=64, pattern="^[0-9a-f]{64}$")
    at: datetime
    kid: str = Check(min_length=1, max_length=64)
    signature: str = Check(min_length=1, max_length=200)


class CheckpointVerifyRequest(ResponseModel):
    checkpoint: AuditCheckpoint
