"""Readings (courier and device keys), traces, excursions and QA dispositions."""

from __future__ import annotations

import json
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlmodel import Session

from app.config import Settings
from app.deps import (
    authenticate,
    bearer_token,
    ensure_role,
    get_db,
    require_roles,
)
from app.errors import Invalid
from app.services.access.scope import SHIPMENT_READERS
from app.services.coldchain import ingest as readings
from models.coldchain import IngestResponse
from models.principal import Principal, Role

router = APIRouter(tags=["cold chain"])
Reader = Annotated[Principal, require_roles(*SHIPMENT_READERS)]
QA = Annotated[Principal, require_roles(Role.qa)]

_READING_SCHEMA = {
    "type": "object",
    "required": ["device_id", "ts", "temp_c"],
    "properties": {
        "device_id": {"type": "string", "maxLength": 200},
        "ts": {"type": "string", "format": "date-time", "description": "RFC 3339 with offset"},
        "temp_c": {"type": "number"},
        "lat": {"type": "number", "minimum": -90, "maximum": 90},
        "lon": {"type": "number", "minimum": -180, "maximum": 180},
        "humidity_pct": {"type": "number", "minimum": 0, "maximum": 100},
        "shock_g": {"type": "number", "minimum": 0},
        "light_lux": {"type": "number", "minimum": 0},
        "battery_pct": {"type": "number", "minimum": 0, "maximum": 100},
    },
    "additionalProperties": False,
}
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["readings"],
                    "properties": {
                        "readings": {
                            "type": "array",
                            "maxItems": readings.MAX_BATCH,
                            "items": _READING_SCHEMA,
                        }
                    },
                    "additionalProperties": False,
                }
            }
        },
    }
}


def _items(body: bytes) -> list[Any]:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise Invalid("body is not valid JSON", errors=[{"loc": "body", "msg": str(exc)}]) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("readings"), list):
        raise Invalid(
            'send {"readings": [...]}', errors=[{"loc": "body/readings", "msg": "list required"}]
        )
    if set(doc) - {"readings"}:
        raise Invalid("unknown top-level field", errors=[{"loc": "body", "msg": "only readings"}])
    items: list[Any] = doc["readings"]
    if len(items) > readings.MAX_BATCH:
        raise Invalid(
            f"at most {readings.MAX_BATCH} readings per call",
            errors=[{"loc": "body/readings", "msg": f"{len(items)} items"}],
        )
    return items


INGEST_ROLES = frozenset({Role.courier, Role.device, Role.admin})
# A body this small is a few readings: on SQLite it is stored on the event loop itself when
# the writer lock is free at once (a thread hop costs as much as the write); otherwise, and
# for every larger batch, in a worker thread.
INLINE_MAX_BYTES = 4096


@router.post("/readings", response_model=IngestResponse, openapi_extra=_BATCH_BODY)
async def post_readings(request: Request) -> Any:
    """Store a batch of up to 10,000 readings; bad items are rejected alone, resends counted."""
    # The hot path: the key check, decoding and storage in one transaction, with no
    # per-dependency thread hops and no separate session for the key.
    token = bearer_token(request)
    body = await request.body()
    db = get_db(request)
    settings: Settings = request.app.state.settings
    now = request.app.state.clock()

    def work(session: Session) -> readings.IngestResult:
        principal = ensure_role(authenticate(request, session, token), INGEST_ROLES)
        request.app.state.ingest_limiter.hit(principal.id)
        tolerance = settings.future_tolerance_s
        result = readings.ingest_body(
            session, actor=principal, body=body, now=now, future_tolerance_s=tolerance
        )
        if result is None:  # some item is invalid: validate item by item
            result = readings.ingest(
                session, actor=principal, items=_items(body), now=now, future_tolerance_s=tolerance
            )
        return result

    def in_thread() -> readings.IngestResult:
        with readings.transaction(db) as session:
            return work(session)

    result = None
    if db.dialect == "sqlite" and len(body) <= INLINE_MAX_BYTES:
        result = readings.run_if_free(db, work)
    if result is None:
        result = await to_thread.run_sync(in_thread)
    return JSONResponse(
        {"accepted": result.accepted, "duplicates": result.duplicates, "rejected": result.rejected}
    )
