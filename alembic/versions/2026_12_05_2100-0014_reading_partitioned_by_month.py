"""reading partitioned by month (PostgreSQL)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 21:00:00.000000

PostgreSQL only; on SQLite this revision changes nothing (one file, one table).

``reading`` becomes ``PARTITION BY RANGE (ts_ms)`` with one partition per UTC month
(``reading_yYYYYmMM``, bounds in epoch milliseconds at month starts) and a DEFAULT
partition, so no reading is ever refused for lack of a partition. The table keeps its name,
columns, index names and id sequence, so every statement that writes or reads it (COPY,
``INSERT … ON CONFLICT (device_id, ts_ms)``) works unchanged. The primary key becomes
``(id, ts_ms)``: PostgreSQL wants the partition key in every unique constraint (the dedup
key ``(device_id, ts_ms)`` already holds it); ids stay unique, they come from one sequence.

Converting an existing table, in the migration's one transaction: the old table is renamed,
the new one created with a partition for every month that holds readings plus the current
month and the next three, the rows are copied (``INSERT … SELECT``, ids kept), the indexes
built after the copy (faster than maintaining them row by row), the sequence handed over,
the old table dropped. The month arithmetic is written out here, not imported: a migration
must do what it did on the day it was written. Later months are created by the scheduled
``partitions`` job (``app/services/coldchain/partitions.py``).

Downgrade copies every attached partition (DEFAULT included) back into a plain table.
Partitions detached by ``v2v readings archive`` are not part of ``reading`` any more and
are left as they are.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

# Renumbering at a merge is this one line (and the file name).
REVISION = "0014"
revision: str = REVISION
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    "id, shipment_id, device_id, ts_ms, temp_c, lat, lon, humidity_pct, shock_g, light_lux, "
    "battery_pct, received_ms"
)
AHEAD = 3

_TABLE = """
CREATE TABLE {name} (
    id BIGINT NOT NULL DEFAULT nextval('reading_id_seq'),
    shipment_id VARCHAR(32) NOT NULL,
    device_id VARCHAR(200) NOT NULL,
    ts_ms BIGINT NOT NULL,
    temp_c FLOAT NOT NULL,
    lat FLOAT,
    lon FLOAT,
    humidity_pct FLOAT,
    shock_g FLOAT,
    light_lux FLOAT,
    battery_pct FLOAT,
    received_ms BIGINT NOT NULL,
    CONSTRAINT pk_reading PRIMARY KEY ({pk}),
    CONSTRAINT fk_reading_shipment_id_shipment FOREIGN KEY (shipment_id) REFERENCES shipment (id)
){partitioning}
"""
_INDEXES = (
    "CREATE UNIQUE INDEX uq_reading_device_id_ts_ms ON reading (device_id, ts_ms)",
    "CREATE INDEX ix_reading_shipment_id_ts_ms_temp_c ON reading (shipment_id, ts_ms, temp_c)",
)
_RENAME_OLD = (
    "ALTER TABLE reading RENAME TO reading_old",
    "ALTER TABLE reading_old RENAME CONSTRAINT pk_reading TO pk_reading_old",
    "ALTER TABLE reading_old RENAME CONSTRAINT fk_reading_shipment_id_shipment "
    "TO fk_reading_old_shipment_id_shipment",
    "ALTER INDEX uq_reading_device_id_ts_ms RENAME TO uq_reading_old_device_id_ts_ms",
    "ALTER INDEX ix_reading_shipment_id_ts_ms_temp_c RENAME TO ix_reading_old_shipment_ts",
    # The sequence outlives the old table: the new one keeps drawing ids from it.
    "ALTER SEQUENCE reading_id_seq OWNED BY NONE",
)


def _month_ms(year: int, month: int) -> int:
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)


def _next(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _months(conn: sa.Connection) -> list[tuple[int, int]]:
    """Every month holding a reading, and the current month and the next AHEAD."""
    rows = conn.execute(
        sa.text(
            "SELECT DISTINCT EXTRACT(YEAR FROM m)::int, EXTRACT(MONTH FROM m)::int FROM ("
            "SELECT date_trunc('month', to_timestamp(ts_ms / 1000.0) AT TIME ZONE 'UTC') AS m "
            "FROM reading_old) AS months"
        )
    ).all()
    months = {(int(y), int(m)) for y, m in rows}
    now = datetime.now(UTC)
    current = (now.year, now.month)
    for _ in range(AHEAD + 1):
        months.add(current)
        current = _next(*current)
    return sorted(months)


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    for statement in _RENAME_OLD:
        op.execute(statement)
    op.execute(
        _TABLE.format(name="reading", pk="id, ts_ms", partitioning=" PARTITION BY RANGE (ts_ms)")
    )
    op.execute("ALTER SEQUENCE reading_id_seq OWNED BY reading.id")
    op.execute("CREATE TABLE reading_default PARTITION OF reading DEFAULT")
    for year, month in _months(conn):
        low, high = _month_ms(year, month), _month_ms(*_next(year, month))
        op.execute(
            f"CREATE TABLE reading_y{year:04d}m{month:02d} PARTITION OF reading "
            f"FOR VALUES FROM ({low}) TO ({high})"
        )
    op.execute(f"INSERT INTO reading ({COLUMNS}) SELECT {COLUMNS} FROM reading_old")  # noqa: S608
    op.execute("DROP TABLE reading_old")
    for statement in _INDEXES:
        op.execute(statement)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    op.execute("ALTER SEQUENCE reading_id_seq OWNED BY NONE")
    op.execute("ALTER TABLE reading RENAME TO reading_parted")
    op.execute("ALTER TABLE reading_parted RENAME CONSTRAINT pk_reading TO pk_reading_parted")
    op.execute(
        "ALTER TABLE reading_parted RENAME CONSTRAINT fk_reading_shipment_id_shipment "
        "TO fk_reading_parted_shipment_id_shipment"
    )
    op.execute("ALTER INDEX uq_reading_device_id_ts_ms RENAME TO uq_reading_parted_device_ts")
    op.execute("ALTER INDEX ix_reading_shipment_id_ts_ms_temp_c RENAME TO ix_reading_parted_ts")
    op.execute(_TABLE.format(name="reading", pk="id", partitioning=""))
    op.execute("ALTER SEQUENCE reading_id_seq OWNED BY reading.id")
    op.execute(f"INSERT INTO reading ({COLUMNS}) SELECT {COLUMNS} FROM reading_parted")  # noqa: S608
    op.execute("DROP TABLE reading_parted")  # its attached partitions with it
    for statement in _INDEXES:
        op.execute(statement)
