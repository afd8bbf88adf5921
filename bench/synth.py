"""Large synthetic datasets for the query and sweep benchmarks, written in bulk.

Cases, milestones and shipments go through SQLAlchemy Core ``executemany`` (so the UTC column
type stores timestamps exactly as the app does, on either database); readings through raw
``executemany`` (SQLite) or COPY (PostgreSQL). Deterministic: the same sizes give the same data.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Table, insert

from app.db import Database
from app.services.access import principals
from app.services.coldchain.ingest import COLUMNS
from app.services.metrics import turnaround_rows
from bench.harness import SQLITE_INSERT, sqlite_connect
from models.case import Case, Milestone
from models.coldchain import ShipmentState
from models.principal import Role
from models.shipment import Shipment

NOW = datetime(2026, 11, 26, tzinfo=UTC)
JOURNEY = (
    ("collected", 0.0),
    ("shipped_to_manufacturing", 2.0),
    ("received_at_manufacturing", 4.0),
    ("manufacturing_started", 20.0),
    ("qc_released", 20.0 + 24 * 11),
    ("shipped_to_site", 20.0 + 24 * 12),
    ("received_at_site", 24.0 + 24 * 12),
    ("thawed", 24.0 + 24 * 14),
    ("infused", 24.5 + 24 * 14),
)
ROUTES = (("KASHIWA-LOCAL", 1.0), ("JP-US-EWR", 2.6), ("TOKYO-KASHIWA", 1.05))


def table(model: Any) -> Table:
    t: Table = model.__table__
    return t


def _chunks(rows: list[dict[str, Any]], size: int = 20_000) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def admin_key(url: str) -> str:
    db = Database(url, pool_size=1)
    try:
        from app.config import get_settings

        with db.transaction() as session:
            _, key = principals.create_principal(
                session,
                name="bench admin",
                role=Role.admin,
                secret_key=get_settings().secret_key.get_secret_value(),
            )
        return key
    finally:
        db.dispose()


def cohort(url: str, *, cases: int, in_transit: bool = False, seed: int = 5) -> list[str]:
    """``cases`` cases over two years, infused (or picked up and in transit); their ids."""
    rng = random.Random(seed)
    case_rows: list[dict[str, Any]] = []
    milestone_rows: list[dict[str, Any]] = []
    shipment_rows: list[dict[str, Any]] = []
    ids = []
    for i in range(cases):
        cid = f"{seed:02d}{i:030d}"[-32:]
        ids.append(cid)
        route, stretch = ROUTES[i % len(ROUTES)]
        site = "UTOKYO-HOSP" if route == "TOKYO-KASHIWA" else "NCC-EAST"
        if in_transit:
            collected = NOW - timedelta(hours=3 + rng.random() * 20)
            steps = JOURNEY[:2]
            status = "in_transit_to_manufacturing"
        else:
            collected = NOW - timedelta(days=20 + rng.random() * 710)
            steps = JOURNEY
            status = "infused"
        case_rows.append(
            {
                "id": cid,
                # CH + FIN (J100 + seed digit) + year + sequence: unique per seed and index.
                "coi": f"CHJ100{seed % 10}{20 + i // 1_000_000:02d}{i % 1_000_000:06d}",
                "coi_check": "0",
                "coi_token": "bench",
                "site": site,
                "route": route,
                "product": "CART-CD19",
                "patient_hash": f"{seed}-{i}",
                "status": status,
                "cycle": 1,
                "apheresis_at": collected,
                "created_at": collected - timedelta(days=3),
                "updated_at": collected,
                "closed_at": None if in_transit else collected,
            }
        )
        for kind, hours in steps:
            jitter = 1 + (rng.random() - 0.5) * 0.3
            milestone_rows.append(
                {
                    "case_id": cid,
                    "type": kind,
                    "cycle": 1,
                    "occurred_at": collected + timedelta(hours=hours * stretch * jitter),
                    "recorded_at": collected + timedelta(hours=hours * stretch * jitter, minutes=5),
                    "site": site,
                    "actor": "bench",
                }
            )
        if in_transit:
            shipment_rows.append(
                {
                    "id": f"s{cid[1:]}",
                    "case_id": cid,
                    "direction": "to_manufacturing",
                    "origin": site,
                    "destination": "CELLARES-KASHIWA",
                    "profile": "FRESH_2_8",
                    "courier": "KASHIWA-COLD",
                    "container_serial": f"C{i}",
                    "container_kind": "box",
                    "device_ids": [f"D{i}"],
                    "status": "in_transit",
                    "created_at": collected,
                    "picked_up_at": collected + timedelta(hours=2),
                }
            )
    db = Database(url, pool_size=1)
    try:
        with db.transaction() as session:
            conn = session.connection()
            for rows, model in (
                (case_rows, Case),
                (milestone_rows, Milestone),
                (shipment_rows, Shipment),
            ):
                for chunk in _chunks(rows):
                    conn.execute(insert(table(model)), chunk)
            # Bulk rows bypass the services: fill the metrics' per-case rows as they would.
            turnaround_rows.recompute_all(session)
    finally:
        db.dispose()
    return ids


def readings_sqlite(path: Path, rows: Iterator[tuple[Any, ...]]) -> None:
    with closing(sqlite_connect(path)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(SQLITE_INSERT, rows)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def readings_postgres(url: str, rows: Iterator[tuple[Any, ...]]) -> None:
    with (
        psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn,
        conn.cursor() as cur,
    ):
        with cur.copy(f"COPY reading ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute("ANALYZE reading")


def trace_rows(
    shipment_id: str, device: str, n: int, start_ms: int, step_ms: int
) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(n)
    for i in range(n):
        yield (
            shipment_id,
            device,
            start_ms + i * step_ms,
            round(5 + rng.gauss(0, 0.8), 2),
            None,
            None,
            None,
            None,
            None,
            None,
            start_ms,
        )


def states(url: str, newest: dict[str, int]) -> None:
    db = Database(url, pool_size=1)
    try:
        with db.transaction() as session:
            rows = [
                {
                    "shipment_id": s,
                    "n": 10,
                    "last_ts_ms": t,
                    "newest_ts_ms": t,
                    "last_temp_c": 5.0,
                    "mkt_w": 0.0,
                    "mkt_wexp": 0.0,
                    "oor_closed_ms": 0,
                    "needs_reeval": False,
                    "updated_at": NOW,
                }
                for s, t in newest.items()
            ]
            for chunk in _chunks(rows):
                session.connection().execute(insert(table(ShipmentState)), chunk)
    finally:
        db.dispose()
