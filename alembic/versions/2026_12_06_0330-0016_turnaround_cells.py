"""turnaround cells: each cell's totals and sorted spans, and the log of cells to redo

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 03:30:00.000000

Creates ``case_turnaround_cell`` (a cache of each cell's totals, rewritten by folds),
``case_turnaround_cell_dirty`` (the cells whose rows changed since, appended to by writers)
and the index a cell's rows are read by, drops the six (route, span) indexes of
``case_turnaround`` (an earlier SQLite percentile walk read them; nothing does now, and every
row change wrote them), and fills the cells from ``case_turnaround`` by the
rule the services keep them with (``cells.rebuild``, imported, not copied).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate renders its types)
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SPANS = (
    "collection_to_receipt",
    "receipt_to_start",
    "start_to_release",
    "release_to_site",
    "site_to_infusion",
    "vein_to_vein",
)


def _key() -> list[sa.Column]:  # type: ignore[type-arg]
    string = sqlmodel.sql.sqltypes.AutoString
    return [
        sa.Column("route", string(length=32), nullable=False),
        sa.Column("route_kind", string(length=16), nullable=False),
        sa.Column("manufacturing_site", string(length=32), nullable=False),
        sa.Column("site", string(length=32), nullable=False),
        sa.Column("product", string(length=32), nullable=False),
        sa.Column("month", string(length=7), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "case_turnaround_cell",
        *_key(),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("cancelled", sa.Integer(), nullable=False),
        sa.Column("closed", sa.Integer(), nullable=False),
        sa.Column("shipped", sa.Integer(), nullable=False),
        sa.Column("excursions", sa.Integer(), nullable=False),
        *(sa.Column(f"{span}_s", sa.LargeBinary(), nullable=False) for span in SPANS),
        *(sa.Column(f"{span}_sum", sa.Float(), nullable=False) for span in SPANS),
        sa.PrimaryKeyConstraint(
            "route",
            "route_kind",
            "manufacturing_site",
            "site",
            "product",
            "month",
            name=op.f("pk_case_turnaround_cell"),
        ),
    )
    op.create_table(
        "case_turnaround_cell_dirty",
        sa.Column("id", sa.Integer(), nullable=False),
        *_key(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_turnaround_cell_dirty")),
    )
    op.create_index(
        "ix_case_turnaround_cell_dirty",
        "case_turnaround_cell_dirty",
        ["route", "site", "product", "month"],
    )
    op.create_index(
        "ix_case_turnaround_cell", "case_turnaround", ["route", "site", "product", "month"]
    )
    for span in SPANS:
        op.drop_index(f"ix_case_turnaround_route_{span}_s", table_name="case_turnaround")
    from sqlmodel import Session

    from app.services.metrics.cells import rebuild

    with Session(bind=op.get_bind()) as session:
        rebuild(session)
        session.flush()


def downgrade() -> None:
    for span in SPANS:
        op.create_index(
            f"ix_case_turnaround_route_{span}_s", "case_turnaround", ["route", f"{span}_s"]
        )
    op.drop_index("ix_case_turnaround_cell", table_name="case_turnaround")
    op.drop_index("ix_case_turnaround_cell_dirty", table_name="case_turnaround_cell_dirty")
    op.drop_table("case_turnaround_cell_dirty")
    op.drop_table("case_turnaround_cell")
