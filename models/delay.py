"""What the delay sweep last saw of each active case, and when its rules can next act."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel

from models.base import UTCDateTime


class CaseDelayCheck(SQLModel, table=True):
    """A cache kept by the delay sweep alone: a row stands while its inputs are unchanged.

    The inputs are fingerprinted (the case's route, product, cycle and apheresis time; count
    and highest id of its current-cycle milestones, reserved slots and open delay alerts;
    a digest of the route and product parameters), so a backdated milestone, a cancelled slot
    or an alert resolved by hand all show as a change. No foreign key: the sweep rewrites or
    ignores rows itself, and nothing else may be held up by them.
    """

    __tablename__ = "case_delay_check"

    case_id: str = Field(primary_key=True, max_length=32)
    # Epoch microseconds (exact, and compared the same way on SQLite and PostgreSQL).
    checked_us: int = Field(sa_type=BigInteger)
    next_us: int | None = Field(default=None, sa_type=BigInteger)
    parameters: str = Field(max_length=64)
    route: str = Field(max_length=32)
    product: str = Field(max_length=32)
    cycle: int
    apheresis_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    milestones: int
    milestone_top: int
    slots: int
    slot_top: int
    alerts: int
    alert_top: int
