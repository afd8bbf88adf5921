"""Shared plumbing: figures, statistics and the benchmarks' databases."""

from __future__ import annotations

import os
import secrets
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from app.db import Database
from app.migrations import upgrade
from app.services.coldchain.ingest import COLUMNS
from seeds.loader import load_reference

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # the benchmarks never talk to anything else
PG_ADMIN_DSN = f"postgresql://postgres@{HOST}:5432/postgres"

Step = Callable[[str], None]
# The raw reference: every row with all its columns bound, as a plain DB-API program would
# store them. (The app binds only the columns a reading has: see bench/p1's second figure.)
SQLITE_INSERT = (
    f"INSERT INTO reading ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
)
PG_COPY = f"COPY reading ({', '.join(COLUMNS)}) FROM STDIN"


class BenchError(RuntimeError):
    """A benchmark could not run (server did not start, a batch was refused, ...)."""


@dataclass(frozen=True)
class Figure:
    """One line of the final table."""

    id: str
    what: str
    ours: float
    reference: float | None
    unit: str
    goal: str
    passed: bool
    ratio: float | None = None
    note: str = ""


def ratio_figure(
    id: str, what: str, ours: float, reference: float, unit: str, *, at_least: float, note: str = ""
) -> Figure:
    """A figure whose goal is ours / reference >= at_least (higher is better)."""
    ratio = ours / reference
    goal = f"≥ {at_least:g}×"
    return Figure(id, what, ours, reference, unit, goal, ratio >= at_least, ratio, note)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def p99(values: Sequence[float]) -> float:
    if len(values) < 2:
        return max(values)
    return statistics.quantiles(values, n=100, method="inclusive")[98]


# ---- databases ---------------------------------------------------------------------------


def prepare(url: str) -> None:
    """Migrate to head and load the reference data, as `make run` does."""
    upgrade(url)
    db = Database(url, pool_size=1)
    try:
        with db.transaction() as session:
            load_reference(session)
    finally:
        db.dispose()


@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"v2v-bench-{prefix}-") as name:
        yield Path(name)


def clone_sqlite(src: Path, dst: Path) -> None:
    """A consistent copy (the online backup API folds the WAL in)."""
    with closing(sqlite3.connect(src)) as source, closing(sqlite3.connect(dst)) as target:
        source.backup(target)
        target.execute("PRAGMA journal_mode=WAL")


def sqlite_connect(path: Path) -> sqlite3.Connection:
    """A raw connection with app/db.py's pragmas: WAL, foreign keys, synchronous=FULL."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def pg_url(name: str) -> str:
    return f"postgresql://postgres@{HOST}:5432/{name}"


def _pg_admin(statement: sql.Composed) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(statement)


@contextmanager
def pg_database(template: str | None = None) -> Iterator[str]:
    """A fresh ``v2v_bench_<random>`` database (optionally a template's copy), dropped after."""
    name = f"v2v_bench_{secrets.token_hex(5)}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    _pg_admin(create)
    try:
        yield name
    finally:
        _pg_admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def pg_version() -> str:
    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.OperationalError as exc:
        return f"unreachable ({str(exc).strip().splitlines()[0]})"
    return str(row[0]) if row else "?"


QUIET_IDLE = 0.9  # share of the cores idle that counts as quiet
QUIET_WAIT_S = 20.0


def _idle_share(window_s: float) -> float | None:
    """The share of all cores idle over ``window_s`` (Linux /proc/stat), or None."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, all

    try:
        idle0, all0 = sample()
        time.sleep(window_s)
        idle1, all1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return (idle1 - idle0) / max(all1 - all0, 1)


def settle() -> float:
    """Let the machine go quiet before a benchmark: PostgreSQL writes out what the previous
    one left dirty (CHECKPOINT), the kernel flushes its dirty pages (sync), then up to
    ``QUIET_WAIT_S`` pass until the cores are ``QUIET_IDLE`` idle over half a second (the
    background writes of one benchmark's bulk loads otherwise ran during the next one's
    measurements). The seconds it took."""
    t0 = time.perf_counter()
    try:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3) as conn:
            conn.execute("CHECKPOINT")
    except psycopg.Error:
        pass  # no PostgreSQL (a SQLite-only run): nothing of its to flush
    os.sync()
    while time.perf_counter() - t0 < QUIET_WAIT_S:
        idle = _idle_share(0.5)
        if idle is None or idle >= QUIET_IDLE:
            break
    return time.perf_counter() - t0
