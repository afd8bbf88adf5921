"""The app plus two bare endpoints for P2's baselines: served only by benchmarks.

``uvicorn bench.server:app``: the same settings (from ``V2V_*``), middleware and process as
the real server, so the echo measures what FastAPI and uvicorn cost before any of our code.

``POST /bench/durable`` is the floor of any durable single-reading write: the body stored
as one row and committed (WAL, ``synchronous=FULL``, as the app) in a scratch SQLite file
beside the app's database, on the event loop, with nothing else (no key, no validation, no
duplicate check, no detector). Whatever the app does per reading comes on top of it.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.engine import make_url

from app.main import create_app
from bench.harness import sqlite_connect

app = create_app()
_FLOOR: list[sqlite3.Connection] = []
_FLOOR_LOCK = threading.Lock()


@app.post("/bench/echo")
async def echo(body: dict[str, Any]) -> dict[str, Any]:
    """Return the JSON body unchanged."""
    return body


def _floor() -> sqlite3.Connection:
    with _FLOOR_LOCK:
        if not _FLOOR:
            database = make_url(app.state.settings.database_url).database
            if not database or database == ":memory:":
                raise RuntimeError("/bench/durable needs a SQLite file database")
            conn = sqlite_connect(Path(database).with_name("durable-floor.sqlite3"))
            conn.execute("CREATE TABLE IF NOT EXISTS body (id INTEGER PRIMARY KEY, doc BLOB)")
            _FLOOR.append(conn)
        return _FLOOR[0]


@app.post("/bench/durable")
async def durable(request: Request) -> JSONResponse:
    """Store the body as one row, commit, answer as ingest does."""
    body = await request.body()
    conn = _floor()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO body (doc) VALUES (?)", [body])
    conn.execute("COMMIT")
    return JSONResponse({"accepted": 1, "duplicates": 0, "rejected": []})
