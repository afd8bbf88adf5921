"""Storage per reading, table and indexes included, for the capacity estimate in README.md.

``python -m loadtest.footprint [--readings 1000000]``

Fresh databases with four shipments in transit (bench/world.py), then `--readings` realistic
logger rows (bench's generator: 2 s apart, a GPS fix every 30th) stored with the statements
bench/ uses as references (COPY on PostgreSQL, executemany on SQLite), then measured.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

import psycopg

from bench.harness import PG_COPY, SQLITE_INSERT
from bench.world import build_world
from loadtest.cluster import fresh_database

LOGGERS = 4


def _sqlite(url: str, rows: list[tuple[object, ...]]) -> tuple[int, int]:
    path = Path(url.removeprefix("sqlite:///"))
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        before = path.stat().st_size
        conn.execute("BEGIN")
        conn.executemany(SQLITE_INSERT, rows)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return path.stat().st_size - before, 0


def _postgres(url: str, rows: list[tuple[object, ...]]) -> tuple[int, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.cursor() as cur, cur.copy(PG_COPY) as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute("VACUUM ANALYZE reading")
        # Summed over the partitions (a partitioned parent has no storage of its own); a
        # plain table is its own one-row tree.
        sizes = conn.execute(
            "SELECT sum(pg_total_relation_size(relid)), sum(pg_indexes_size(relid)) "
            "FROM pg_partition_tree('reading')"
        ).fetchone()
    if sizes is None:
        raise RuntimeError("no sizes")
    return int(sizes[0]), int(sizes[1])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.footprint", description=__doc__)
    parser.add_argument("--readings", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    for backend in ("sqlite", "postgres"):
        with fresh_database(backend) as (url, _):
            world = build_world(url, loggers=LOGGERS, label="F")
            rows = [
                row
                for logger in world.loggers
                for row in logger.preload_rows(args.readings // LOGGERS)
            ]
            total, indexes = (_sqlite if backend == "sqlite" else _postgres)(url, rows)
        n = len(rows)
        detail = (
            f" ({(total - indexes) / n:.0f} table + {indexes / n:.0f} indexes)" if indexes else ""
        )
        print(
            f"footprint {backend}: {n:,} readings take {total / 1e6:,.1f} MB, "
            f"{total / n:.0f} bytes per reading{detail}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
