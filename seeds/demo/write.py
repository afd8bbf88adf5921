"""Writing a batch of demo rows: bulk statements, parents before children."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy import select as select_columns
from sqlmodel import Session, SQLModel

from app.services.coldchain.ingest import COLUMNS as READING_COLUMNS
from seeds.demo.readings import Fleet

READINGS_CHUNK = 50_000


@dataclass
class Batch:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    readings: list[tuple[Any, ...]] = field(default_factory=list)
    open_states: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)


# Parents before children (foreign keys).
TABLES = (
    "cases",
    "slot",
    "milestone",
    "device",
    "shipment",
    "custody_event",
    "device_assignment",
    "reading",
    "excursion",
    "shipment_state",
    "alert",
)


def _table(name: str) -> Table:
    return SQLModel.metadata.tables[name]


def write(session: Session, batch: Batch, fleet: Fleet) -> Counter[str]:
    """Bulk-insert a batch: Core executemany per table, COPY or raw executemany for readings."""
    batch.rows["device"], fleet.new = fleet.new, []
    written: Counter[str] = Counter()
    for name in TABLES:
        if name == "reading":
            for i in range(0, len(batch.readings), READINGS_CHUNK):
                insert_readings(session, batch.readings[i : i + READINGS_CHUNK])
            written[name] = len(batch.readings)
            continue
        if name == "shipment_state" and batch.open_states:
            excursions = _table("excursion").c
            found = session.execute(
                select_columns(excursions.id, excursions.shipment_id, excursions.started_ms).where(
                    excursions.status == "open",
                    excursions.shipment_id.in_(sorted({k[0] for k in batch.open_states})),
                )
            )
            for excursion_id, shipment_id, started_ms in found:
                state = batch.open_states.get((shipment_id, started_ms))
                if state is not None:
                    state["open_excursion_id"] = excursion_id
        rows = batch.rows.get(name, [])
        if rows:
            session.execute(insert(_table(name)), rows)
            written[name] = len(rows)
    return written


def insert_readings(session: Session, rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    connection = session.connection()
    driver: Any = connection.connection.driver_connection
    columns = ", ".join(READING_COLUMNS)
    if connection.dialect.name == "postgresql":
        with driver.cursor() as cursor, cursor.copy(f"COPY reading ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" for _ in READING_COLUMNS)
    cursor = driver.cursor()
    try:
        cursor.executemany(f"INSERT INTO reading ({columns}) VALUES ({marks})", rows)  # noqa: S608
    finally:
        cursor.close()
