"""Cases (one patient's journey), their milestones and the COI sequence counter."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    StringConstraints,
    model_validator,
)
from pydantic import Field as PField
from sqlalchemy import JSON, Index, text
from sqlmodel import Field, SQLModel

from models.base import RequestModel, ResponseModel, UTCDateTime, new_id, utcnow
from models.coldchain import Signature
from models.jsonbounds import EVENT_DATA_MAX_BYTES, EVENT_DATA_MAX_DEPTH, check_bounded


class CaseStatus(StrEnum):
    registered = "registered"
    apheresis_scheduled = "apheresis_scheduled"
    collected = "collected"
    in_transit_to_manufacturing = "in_transit_to_manufacturing"
    at_manufacturing = "at_manufacturing"
    in_manufacturing = "in_manufacturing"
    released = "released"
    in_transit_to_site = "in_transit_to_site"
    at_site = "at_site"
    thawed = "thawed"
    infused = "infused"
    cancelled = "cancelled"
    failed = "failed"


class Case(SQLModel, table=True):
    __tablename__ = "cases"  # "case" is an SQL keyword
    __table_args__ = (
        # One open case per patient and product. Closed cases (infused, cancelled) are kept
        # forever and do not block a new one. A partial index keeps this atomic under races.
        Index(
            "uq_case_open_patient_product",
            "patient_hash",
            "product",
            unique=True,
            sqlite_where=text("closed_at IS NULL"),
            postgresql_where=text("closed_at IS NULL"),
        ),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    coi: str = Field(max_length=15, unique=True)
    coi_check: str = Field(max_length=1)
    coi_token: str
    site: str = Field(foreign_key="site.code", max_length=32, index=True)
    route: str = Field(foreign_key="route.code", max_length=32, index=True)
    product: str = Field(foreign_key="product.code", max_length=32)
    # HMAC-SHA256 of the hospital's patient reference under a server secret; never the MRN.
    patient_hash: str = Field(max_length=64)
    status: str = Field(max_length=32, index=True)
    cycle: int = 1  # collection cycle; a recollection after a failure starts the next
    apheresis_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    planned_infusion_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The product hold in force: "on_hold" refuses thaw and infusion until a signed release.
    # The history of holds is the ``product_hold`` table; this column is its latest state.
    hold_status: str | None = Field(default=None, max_length=16)


class ProductHold(SQLModel, table=True):
    """One hold action on a case's product: placed or released, signed, never changed."""

    __tablename__ = "product_hold"

    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(foreign_key="cases.id", max_length=32, index=True)
    action: str = Field(max_length=16)  # place | release
    reason: str = Field(max_length=2000)
    # What placed it: "manual", "excursion:<id>" (a reject/quarantine disposition) or
    # "reassess:<id>" (late readings would change a signed excursion).
    source: str = Field(default="manual", max_length=64)
    by: str = Field(max_length=200)
    by_id: str | None = Field(default=None, max_length=32)
    signature_meaning: str | None = Field(default=None, max_length=200)
    at: datetime = Field(sa_type=UTCDateTime)


class Milestone(SQLModel, table=True):
    # Covering index for the per-case pivot of turnaround metrics and predictions.
    __table_args__ = (
        Index(
            "ix_milestone_case_id_cycle_type_occurred_at", "case_id", "cycle", "type", "occurred_at"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(foreign_key="cases.id", max_length=32, index=True)
    type: str = Field(max_length=40)
    cycle: int = 1
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    recorded_at: datetime = Field(sa_type=UTCDateTime)
    site: str | None = Field(default=None, foreign_key="site.code", max_length=32)
    actor: str = Field(max_length=200)
    actor_id: str | None = Field(default=None, max_length=32)
    note: str | None = Field(default=None, max_length=2000)
    data: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    # valid | amended | voided. An amended milestone's row holds the corrected value; every
    # earlier value is kept in ``milestone_correction``. Voided milestones count for nothing.
    status: str = Field(
        default="valid", max_length=16, sa_column_kwargs={"server_default": "valid"}
    )


class MilestoneCorrection(SQLModel, table=True):
    """One amendment or voiding of a milestone, with the value it replaced (never deleted)."""

    __tablename__ = "milestone_correction"

    id: int | None = Field(default=None, primary_key=True)
    milestone_id: int = Field(foreign_key="milestone.id", index=True)
    case_id: str = Field(foreign_key="cases.id", max_length=32, index=True)
    action: str = Field(max_length=16)  # amend | void
    old_occurred_at: datetime = Field(sa_type=UTCDateTime)
    new_occurred_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    old_note: str | None = Field(default=None, max_length=2000)
    new_note: str | None = Field(default=None, max_length=2000)
    reason: str = Field(max_length=2000)
    by: str = Field(max_length=200)
    by_id: str | None = Field(default=None, max_length=32)
    signature_meaning: str = Field(max_length=200)
    changed_at: datetime = Field(sa_type=UTCDateTime)


class Slot(SQLModel, table=True):
    """A manufacturing position reserved for a case (capacity rules come with scheduling)."""

    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(foreign_key="cases.id", max_length=32, index=True)
    site: str = Field(foreign_key="site.code", max_length=32, index=True)
    start_at: datetime = Field(sa_type=UTCDateTime)
    end_at: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(default="reserved", max_length=16)  # reserved | released
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CoiSequence(SQLModel, table=True):
    __tablename__ = "coi_sequence"

    fin: str = Field(primary_key=True, max_length=5)
    year: int = Field(primary_key=True)
    last_seq: int = 0


# ---- API schemas -------------------------------------------------------------------------

EventType = Literal[
    "collected",
    "received_at_manufacturing",
    "manufacturing_started",
    "qc_released",
    "manufacturing_failed",
    "received_at_site",
    "thawed",
    "infused",
    "cancelled",
    "recollection",
]

Code = Annotated[str, StringConstraints(min_length=1, max_length=32)]


class CaseCreate(RequestModel):
    site: Code
    route: Code
    product: Code
    patient_ref: Annotated[str, StringConstraints(min_length=1, max_length=128)] = PField(
        description="The hospital's patient reference (MRN). Stored only as a keyed hash; "
        "never returned or logged."
    )
    planned_infusion_at: AwareDatetime | None = None


class CaseListQuery(BaseModel):
    """The worklist's filters (query parameters of ``GET /cases``)."""

    model_config = ConfigDict(populate_by_name=True)

    site: Code | None = None
    status: CaseStatus | None = None
    route: Code | None = None
    q: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = PField(
        None,
        description="A COI as scanned or typed (`&/`, check character, spaces or a compound "
        "message), or 3 to 15 of its letters and digits.",
    )
    patient_ref: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = PField(
        None, description="The hospital's patient reference, compared as its keyed hash."
    )
    created_from: AwareDatetime | None = PField(
        None, alias="from", description="Registered at or after."
    )
    created_to: AwareDatetime | None = PField(None, alias="to", description="Registered before.")


class CaseCreated(ResponseModel):
    id: str
    coi: str
    coi_display: str
    coi_token: str
    status: str
    site: str
    route: str
    product: str
    created_at: datetime
    planned_infusion_at: datetime | None = None


class ScheduleRequest(RequestModel):
    apheresis_at: AwareDatetime


class SlotPublic(ResponseModel):
    site: str
    start_at: datetime
    end_at: datetime


class ScheduleResponse(ResponseModel):
    case_id: str
    status: str
    apheresis_at: datetime
    slot: SlotPublic


class EventCreate(RequestModel):
    type: EventType
    occurred_at: AwareDatetime
    site: Code
    coi: Annotated[str, StringConstraints(max_length=64)] | None = PField(
        None, description="The COI scanned from the label; required on identity-bearing steps."
    )
    note: Annotated[str, StringConstraints(max_length=2000)] | None = None
    # Stored, audited and sent on: bounded so no reader recurses or copies without limit.
    data: (
        Annotated[
            dict[str, Any],
            AfterValidator(
                lambda v: check_bounded(
                    v, max_depth=EVENT_DATA_MAX_DEPTH, max_bytes=EVENT_DATA_MAX_BYTES
                )
            ),
        ]
        | None
    ) = PField(
        None,
        description=f"Structured details; at most {EVENT_DATA_MAX_BYTES} bytes as JSON, "
        f"nested at most {EVENT_DATA_MAX_DEPTH} deep.",
    )


class MilestoneHistory(ResponseModel):
    """A value a milestone held before a correction, and who changed it when and why."""

    occurred_at: datetime
    note: str | None = None
    changed_at: datetime
    by: str
    reason: str
    action: str


class MilestonePublic(ResponseModel):
    id: int
    type: str
    occurred_at: datetime
    recorded_at: datetime
    site: str | None
    actor: str
    cycle: int
    note: str | None = None
    status: str = PField("valid", description="valid | amended | voided")
    history: list[MilestoneHistory] | None = PField(
        None, description="Earlier values of a corrected milestone, oldest first."
    )


class EventPublic(MilestonePublic):
    id: int
    case_id: str
    case_status: str
    data: dict[str, Any] | None = None


class HoldRequest(RequestModel):
    action: Literal["place", "release"]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    signature: Signature


class CaseHold(ResponseModel):
    """The product hold in force (``on_hold``) or the last one lifted (``released``)."""

    status: Literal["on_hold", "released"]
    reason: str
    since: datetime
    by: str
    # "manual", "excursion:<id>" (a reject/quarantine disposition) or "reassess:<id>".
    source: str


class CaseSummary(ResponseModel):
    id: str
    coi: str
    coi_display: str
    status: str
    site: str
    route: str
    product: str
    cycle: int
    apheresis_at: datetime | None
    planned_infusion_at: datetime | None
    created_at: datetime
    updated_at: datetime
    hold_status: Literal["on_hold", "released"] | None = None


class CaseShipment(ResponseModel):
    id: str
    direction: str
    status: str
    origin: str
    destination: str
    picked_up_at: datetime | None
    delivered_at: datetime | None


class CaseAlert(ResponseModel):
    id: int
    kind: str
    severity: str
    status: str
    message: str
    created_at: datetime


class CaseDetail(CaseSummary):
    coi_token: str
    closed_at: datetime | None
    milestones: list[MilestonePublic]
    shipments: list[CaseShipment]
    alerts: list[CaseAlert]
    durations: dict[str, float] = PField(
        description="Durations so far, of the latest collection cycle: collection_to_receipt_h "
        "(collected → received_at_manufacturing), receipt_to_start_h, start_to_release_d "
        "(manufacturing_started → qc_released), release_to_site_h (qc_released → "
        "received_at_site), site_to_infusion_d, thaw_to_infusion_h, vein_to_vein_d "
        "(infused − collected); first_collection_to_infusion_d across recollections; "
        "since_collection_d while not yet infused."
    )
    slot: SlotPublic | None
    hold: CaseHold | None = PField(
        None, description="The product hold: while on_hold, thaw and infusion are refused."
    )


# ---- Corrections (21 CFR 11.10(e): a change never obscures what was recorded) ------------


class CorrectionRequest(RequestModel):
    action: Literal["amend", "void"]
    occurred_at: AwareDatetime | None = PField(None, description="amend: the corrected time")
    note: Annotated[str, StringConstraints(max_length=2000)] | None = PField(
        None, description="amend: the corrected note"
    )
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    signature: Signature

    @model_validator(mode="after")
    def _values_fit_the_action(self) -> CorrectionRequest:
        if self.action == "amend" and self.occurred_at is None and self.note is None:
            raise ValueError("an amendment needs occurred_at and/or note")
        if self.action == "void" and (self.occurred_at is not None or self.note is not None):
            raise ValueError("a void changes no value: leave out occurred_at and note")
        return self


class MilestoneCorrected(MilestonePublic):
    case_id: str
    case_status: str
