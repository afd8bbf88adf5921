"""Reading ingest (courier, device and admin keys): the hot path."""

from __future__ import annotations

from anyio import to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlmodel import Session

from app.config import Settings
from app.deps import authenticate, bearer_token, ensure_role, get_db
from app.services.coldchain import decode as reading_batch
from app.services.coldchain import ingest as readings
from app.services.coldchain import rides
from models.coldchain import IngestResponse
from models.principal import Role

router = APIRouter(tags=["cold chain"])

# Documented from the batch decoder's own definition: the limits cannot drift apart.
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": reading_batch.batch_schema()}},
    }
}


INGEST_ROLES = frozenset({Role.courier, Role.device, Role.admin})
# A body this small is a few readings: on SQLite it is stored on the event loop itself when
# the writer lock is free at once (a thread hop costs as much as the write); otherwise, and
# for every larger batch, in a worker thread.
INLINE_MAX_BYTES = 4096


@router.post("/readings", response_model=IngestResponse, openapi_extra=_BATCH_BODY)
async def post_readings(request: Request) -> JSONResponse:
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
        return readings.ingest_json(
            session,
            actor=principal,
            body=body,
            now=now,
            future_tolerance_s=settings.future_tolerance_s,
            bounds=rides.LateBounds.of(settings),
        )

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
