"""The per-case turnaround row: what the metrics read, one narrow row per collected case."""

from __future__ import annotations

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

# The epoch-second columns of the journey's milestones, in journey order.
TIMES = (
    "collected_s",
    "received_at_manufacturing_s",
    "manufacturing_started_s",
    "qc_released_s",
    "received_at_site_s",
    "infused_s",
)
# Each leg's duration in seconds (end − start), and the whole vein to vein.
SPANS = {
    "collection_to_receipt_s": ("collected_s", "received_at_manufacturing_s"),
    "receipt_to_start_s": ("received_at_manufacturing_s", "manufacturing_started_s"),
    "start_to_release_s": ("manufacturing_started_s", "qc_released_s"),
    "release_to_site_s": ("qc_released_s", "received_at_site_s"),
    "site_to_infusion_s": ("received_at_site_s", "infused_s"),
    "vein_to_vein_s": ("collected_s", "infused_s"),
}

# What a summary reads besides the route (filters, flags and spans), in the covering index.
SUMMARY_COLUMNS = (
    "outcome",
    "shipped",
    "excursion",
    "collected_s",
    "infused_s",
    "site",
    "product",
    "manufacturing_site",
    *SPANS,
)


class CaseTurnaround(SQLModel, table=True):
    """One collected case as the turnaround metrics see it, kept by
    ``app.services.metrics.turnaround_rows.refresh`` in the transaction of every change to its
    inputs (milestones and their corrections, cancellation, recollection, shipments,
    excursions). A case whose current collection cycle has no valid collection has no row.

    Instants are UTC epoch seconds (double precision) and each leg's duration (``SPANS``)
    is kept beside them, computed once in Python, so both databases summarise the same
    numbers. ``month`` is the collection's calendar month at the collecting site (its time
    zone); ``outcome`` is ``infused`` or ``cancelled`` once the case ended so; route kind
    and factory are the route's when the row was written (``recompute_all`` after a
    reference change to either). No foreign key, as ``case_delay_check``: the rows are
    derived, rewritten by their keeper, and must never hold up a change to a case.
    """

    __tablename__ = "case_turnaround"
    # SQLite reads each route's percentiles of a span off these (LIMIT 2 OFFSET k in order),
    # and counts by route walking the last one, which holds every column a summary reads.
    __table_args__ = (
        *(Index(f"ix_case_turnaround_route_{span}", "route", span) for span in SPANS),
        Index("ix_case_turnaround_summary", "route", *SUMMARY_COLUMNS),
    )

    case_id: str = Field(primary_key=True, max_length=32)
    site: str = Field(max_length=32)
    route: str = Field(max_length=32)
    route_kind: str = Field(max_length=16)
    manufacturing_site: str = Field(max_length=32)
    product: str = Field(max_length=32)
    month: str = Field(max_length=7)
    collected_s: float
    received_at_manufacturing_s: float | None = None
    manufacturing_started_s: float | None = None
    qc_released_s: float | None = None
    received_at_site_s: float | None = None
    infused_s: float | None = None
    collection_to_receipt_s: float | None = None
    receipt_to_start_s: float | None = None
    start_to_release_s: float | None = None
    release_to_site_s: float | None = None
    site_to_infusion_s: float | None = None
    vein_to_vein_s: float | None = None
    shipped: bool = False
    excursion: bool = False
    outcome: str | None = Field(default=None, max_length=16)
