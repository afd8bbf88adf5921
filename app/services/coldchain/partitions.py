"""Monthly partitions of ``reading`` on PostgreSQL: created ahead, listed, detached.

``reading`` is ``PARTITION BY RANGE (ts_ms)`` (migration 0014): one partition per UTC month,
``reading_yYYYYmMM``, bounds in epoch milliseconds at month starts, and a DEFAULT partition
that takes whatever no month holds, so no reading is ever refused. The scheduled
``partitions`` job keeps the current month and the next ones created ahead.

A month created after some of its readings landed in DEFAULT (a logger with a clock in the
future, a job that did not run) cannot simply be created: PostgreSQL refuses a partition
whose range has rows in DEFAULT. So a month is always made as a standalone table, those
rows are moved into it, and it is attached, in one transaction, with DEFAULT locked against
inserts meanwhile. Attaching needs only SHARE UPDATE EXCLUSIVE on ``reading``: ingest and
traces go on. On SQLite every function here is a no-op (there is no partitioning).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import text
from sqlmodel import Session

from app.errors import Conflict

PARENT = "reading"
DEFAULT = "reading_default"
COLUMNS = (
    "id, shipment_id, device_id, ts_ms, temp_c, lat, lon, humidity_pct, shock_g, light_lux, "
    "battery_pct, received_ms"
)
# Partition maintenance (creating ahead, archiving) runs one at a time.
MAINTENANCE_LOCK_KEY = 0x5632_5650_4152  # "V2VPAR"
_MONTH_NAME = re.compile(r"^reading_y([0-9]{4})m([0-9]{2})$")
_BOUNDS = re.compile(r"FROM \('?(-?[0-9]+)'?\) TO \('?(-?[0-9]+)'?\)")


@dataclass(frozen=True)
class Partition:
    """One attached partition: a month ``[from_ms, until_ms)``, or DEFAULT (no bounds)."""

    name: str
    from_ms: int | None
    until_ms: int | None
    rows: int  # the planner's estimate (exact after VACUUM/ANALYZE); -1 if never analysed
    bytes: int

    @property
    def is_default(self) -> bool:
        return self.from_ms is None


def postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def month_ms(year: int, month: int) -> int:
    """Epoch milliseconds of the UTC start of a month."""
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)


def next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def name_of(year: int, month: int) -> str:
    return f"reading_y{year:04d}m{month:02d}"


def month_of(name: str) -> tuple[int, int] | None:
    found = _MONTH_NAME.match(name)
    return (int(found[1]), int(found[2])) if found else None


def list_partitions(session: Session) -> list[Partition]:
    """The attached partitions of ``reading``, months in order, DEFAULT last."""
    if not postgres(session):
        return []
    rows = session.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), c.reltuples::bigint, "
            "pg_total_relation_size(c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'reading'::regclass"
        )
    ).all()
    parts = []
    for name, bound, tuples, size in rows:
        found = _BOUNDS.search(str(bound))
        low, high = (int(found[1]), int(found[2])) if found else (None, None)
        parts.append(Partition(str(name), low, high, int(tuples), int(size)))
    return sorted(parts, key=lambda p: (p.from_ms is None, p.from_ms or 0))


def lock_maintenance(session: Session) -> None:
    """One partition maintenance (creating ahead, archiving) at a time, for this transaction."""
    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MAINTENANCE_LOCK_KEY})


def create_month(session: Session, *, year: int, month: int) -> int | None:
    """Create and attach one month's partition, moving its rows out of DEFAULT; the number
    of rows moved, or None if the month already has its partition."""
    name = name_of(year, month)
    low, high = month_ms(year, month), month_ms(*next_month(year, month))
    for part in list_partitions(session):
        if part.from_ms is not None and part.until_ms is not None:
            if part.from_ms == low and part.until_ms == high:
                return None
            if part.from_ms < high and low < part.until_ms:
                raise Conflict(f"partition {part.name} overlaps {name}")
    if session.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is not None:
        raise Conflict(
            f"a table {name} exists but is not a partition of reading "
            "(a partition detached by an archive run?): drop or rename it first"
        )
    # Nothing may enter DEFAULT for this month between the move and the attach.
    session.execute(text(f"LOCK TABLE {DEFAULT} IN SHARE ROW EXCLUSIVE MODE"))
    session.execute(text(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS)"))
    # A CHECK matching the bounds lets ATTACH skip its validation scan of the new table.
    session.execute(
        text(
            f"ALTER TABLE {name} ADD CONSTRAINT {name}_bounds "
            f"CHECK (ts_ms >= {low} AND ts_ms < {high})"
        )
    )
    moved = session.execute(
        text(
            f"WITH moved AS (DELETE FROM {DEFAULT} WHERE ts_ms >= :low AND ts_ms < :high "  # noqa: S608
            f"RETURNING {COLUMNS}), kept AS (INSERT INTO {name} ({COLUMNS}) "
            f"SELECT {COLUMNS} FROM moved RETURNING 1) SELECT count(*) FROM kept"
        ),
        {"low": low, "high": high},
    ).scalar_one()
    session.execute(
        text(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM ({low}) TO ({high})")
    )
    session.execute(text(f"ALTER TABLE {name} DROP CONSTRAINT {name}_bounds"))
    return int(moved or 0)


def ensure_ahead(session: Session, *, now: datetime, months: int = 3) -> dict[str, int]:
    """Make sure the current month and the next ``months`` have partitions; idempotent.
    Returns the partitions created, each with the rows moved into it from DEFAULT."""
    if not postgres(session):
        return {}
    lock_maintenance(session)
    created: dict[str, int] = {}
    year, month = now.astimezone(UTC).year, now.astimezone(UTC).month
    for _ in range(months + 1):
        moved = create_month(session, year=year, month=month)
        if moved is not None:
            created[name_of(year, month)] = moved
        year, month = next_month(year, month)
    return created


def detach(session: Session, *, name: str) -> None:
    """Detach one month's partition from ``reading``: its rows leave every query, the table
    stays (dropping it is the operator's decision, after the archive is safe)."""
    if not postgres(session):
        raise Conflict("partitions exist only on PostgreSQL")
    if month_of(name) is None:
        raise Conflict(f"{name} is not a month partition of reading")
    if name not in {p.name for p in list_partitions(session)}:
        raise Conflict(f"{name} is not attached to reading")
    # DETACH waits for ACCESS EXCLUSIVE on reading, and every ingest and trace queues behind
    # it meanwhile: give up (the caller's transaction rolls back) rather than stall them.
    session.execute(text("SET LOCAL lock_timeout = '10s'"))
    session.execute(text(f"ALTER TABLE {PARENT} DETACH PARTITION {name}"))
