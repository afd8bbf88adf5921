"""Webhook site scope (empty: every site) and soft deletion.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 13:46:43.445458
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate renders its types)
from alembic import op

import models.base  # noqa: F401  (autogenerate renders UTCDateTime)

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sites", sa.JSON(), server_default="[]", nullable=False))
        batch_op.add_column(
            sa.Column("deleted_at", models.base.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook", schema=None) as batch_op:
        batch_op.drop_column("deleted_at")
        batch_op.drop_column("sites")
