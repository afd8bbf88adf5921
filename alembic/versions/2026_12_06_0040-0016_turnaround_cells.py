"""turnaround cells: each cell's totals and sorted spans, kept in step by the services

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 00:40:00.000000

Creates ``case_turnaround_cell`` and the index ``refresh`` reads a cell's rows by, and fills
the cells from ``case_turnaround`` by the rule the services keep them with
(``turnaround_rows.rebuild_cells``, imported, not copied).
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


def upgrade() -> None:
    op.create_table(
        "case_turnaround_cell",
        sa.Column("route", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("route_kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column(
            "manufacturing_site", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False
        ),
        sa.Column("site", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("product", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("month", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
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
    op.create_index(
        "ix_case_turnaround_cell", "case_turnaround", ["route", "site", "product", "month"]
    )
    from sqlmodel import Session

    from app.services.metrics.turnaround_rows import rebuild_cells

    with Session(bind=op.get_bind()) as session:
        rebuild_cells(session)
        session.flush()


def downgrade() -> None:
    op.drop_index("ix_case_turnaround_cell", table_name="case_turnaround")
    op.drop_table("case_turnaround_cell")
