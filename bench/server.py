"""The app plus a bare FastAPI echo endpoint, for P2's baseline: served only by benchmarks.

``uvicorn bench.server:app``: the same settings (from ``V2V_*``), middleware and process as
the real server, so the echo measures what FastAPI and uvicorn cost before any of our code.
"""

from __future__ import annotations

from typing import Any

from app.main import create_app

app = create_app()


@app.post("/bench/echo")
async def echo(body: dict[str, Any]) -> dict[str, Any]:
    """Return the JSON body unchanged."""
    return body
