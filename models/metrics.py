"""The per-case turnaround row: what the metrics read, one narrow row per collected case; and
the per-cell totals summaries without a time window add up, with the log of cells to redo."""

from __future__ import annotations

from sqlalchemy import Column, Index, LargeBinary
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
# A cell: the cases sharing every attribute a summary groups or filters by (not the time).
CELL = ("route", "route_kind", "manufacturing_site", "site", "product", "month")


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
    # A summary with a time window walks the covering "summary" index, which holds every
    # column it reads (summaries without one read ``case_turnaround_cell``).
    __table_args__ = (
        Index("ix_case_turnaround_summary", "route", *SUMMARY_COLUMNS),
        # A cell's rows, read to recompute a cell (``cells.fold``, and readers of dirty cells).
        Index("ix_case_turnaround_cell", "route", "site", "product", "month"),
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


class TurnaroundCell(SQLModel, table=True):
    """The totals of one cell of ``case_turnaround`` (the cases of one route, route kind,
    factory, collecting site, product and month) as of its last fold
    (``app.services.metrics.cells``); a cell without cases has no row. A cache: while a cell
    has entries in ``case_turnaround_cell_dirty`` readers recompute it from its rows instead.

    Besides counts, each span (``SPANS``) has the cell's values in seconds, sorted, packed as
    little-endian doubles, and their sum: a summary without a time window merges its cells'
    sorted values to read each percentile off them instead of sorting every case's.
    """

    __tablename__ = "case_turnaround_cell"

    route: str = Field(primary_key=True, max_length=32)
    route_kind: str = Field(primary_key=True, max_length=16)
    manufacturing_site: str = Field(primary_key=True, max_length=32)
    site: str = Field(primary_key=True, max_length=32)
    product: str = Field(primary_key=True, max_length=32)
    month: str = Field(primary_key=True, max_length=7)
    n: int
    cancelled: int
    closed: int
    shipped: int
    excursions: int
    collection_to_receipt_s: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    receipt_to_start_s: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    start_to_release_s: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    release_to_site_s: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    site_to_infusion_s: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    vein_to_vein_s: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    collection_to_receipt_sum: float
    receipt_to_start_sum: float
    start_to_release_sum: float
    release_to_site_sum: float
    site_to_infusion_sum: float
    vein_to_vein_sum: float


class TurnaroundCellDirty(SQLModel, table=True):
    """One cell whose rows changed since its stored totals were written: appended by
    ``turnaround_rows.refresh`` in the writer's transaction, for the cell its case leaves and
    the one it enters; deleted, by id, by the fold that rewrites the cell. A plain append
    (no unique key), so no writer ever waits on another's uncommitted entry.
    """

    __tablename__ = "case_turnaround_cell_dirty"
    # Readers look each stored cell up here (is it logged?): a handful of entries, or a
    # few thousand between folds on a busy day.
    __table_args__ = (Index("ix_case_turnaround_cell_dirty", "route", "site", "product", "month"),)

    id: int | None = Field(default=None, primary_key=True)
    route: str = Field(max_length=32)
    route_kind: str = Field(max_length=16)
    manufacturing_site: str = Field(max_length=32)
    site: str = Field(max_length=32)
    product: str = Field(max_length=32)
    month: str = Field(max_length=7)
