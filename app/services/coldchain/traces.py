"""A shipment's downsampled temperature trace: min, max, mean and count per time bucket.

Everything is computed by the database from the covering index (shipment_id, ts_ms, temp_c):
the bounds are two index probes, and only the buckets cross into Python. On SQLite a GROUP BY
on the computed bucket sorts all the readings although the index already yields them in time
order, so for up to COMPOUND_LIMIT buckets each bucket is one aggregate over its own index
range (a UNION ALL, prepared once per bucket count and then served from the statement cache).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

from app.times import from_ms

COMPOUND_LIMIT = 500  # SQLite's default SQLITE_MAX_COMPOUND_SELECT
BOUNDS = text(
    "SELECT (SELECT min(ts_ms) FROM reading WHERE shipment_id = :s),"
    " (SELECT max(ts_ms) FROM reading WHERE shipment_id = :s)"
)
GROUPED = text(
    "SELECT (ts_ms - :low) / :bucket AS b, min(temp_c), max(temp_c), avg(temp_c), count(*) "
    "FROM reading WHERE shipment_id = :s AND ts_ms BETWEEN :low AND :high "
    "GROUP BY b ORDER BY b"
)


@cache
def _per_bucket(n: int) -> str:
    """One aggregate per bucket over its index range, for n buckets (SQLite)."""
    # Kept in SQLite's own :name style and run as driver SQL: each name binds once, where a
    # statement rewritten to positional parameters would bind ~2,000 values. Every bucket but
    # the last ends at or before :high (n = ceil((high - low + 1) / bucket)), so only the last
    # one tests :high.
    arms = [
        f"SELECT {i}, min(temp_c), max(temp_c), avg(temp_c), count(*) FROM reading "  # noqa: S608
        f"WHERE shipment_id = :s AND ts_ms >= :low + {i} * :bucket AND "
        + (f"ts_ms < :low + {i + 1} * :bucket" if i < n - 1 else "ts_ms <= :high")
        for i in range(n)
    ]
    return " UNION ALL ".join(arms)


def bounds(session: Session, shipment_id: str) -> tuple[int, int] | None:
    """The first and last reading times (epoch ms) of a shipment, or None without readings."""
    low, high = session.execute(BOUNDS, {"s": shipment_id}).one()
    return None if low is None else (int(low), int(high))


def trace(
    session: Session, shipment_id: str, *, low: int, high: int, max_points: int
) -> dict[str, Any]:
    """At most max_points buckets over [low, high] ms; empty buckets are left out."""
    bucket_ms = max(1000, -(-(high - low + 1) // max_points))
    n = -(-(high - low + 1) // bucket_ms)
    params = {"s": shipment_id, "low": low, "high": high, "bucket": bucket_ms}
    rows: Iterable[Sequence[Any]]
    if session.get_bind().dialect.name == "sqlite" and n <= COMPOUND_LIMIT:
        rows = session.connection().exec_driver_sql(_per_bucket(n), params)
    else:
        rows = session.execute(GROUPED, params)
    points = [
        {
            "t": from_ms(low + int(b) * bucket_ms),
            "min_c": mn,
            "max_c": mx,
            "mean_c": round(float(mean), 4),
            "n": int(count),
        }
        for b, mn, mx, mean, count in rows
        if count
    ]
    return {"points": points, "bucket_s": bucket_ms / 1000}
