"""Reading ingest (courier, device and admin keys): the hot path."""

from __future__ import annotations

import asyncio
from functools import partial

from anyio import to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlmodel import Session

from app.config import Settings
from app.deps import authenticate_along, bearer_token, ensure_role, get_db
from app.raw import Raw
from app.services.coldchain import decode as reading_batch
from app.services.coldchain import ingest as readings
from app.services.coldchain import rides, writer
from models.coldchain import IngestResponse
from models.principal import Principal, Role

router = APIRouter(tags=["cold chain"])

# Documented from the batch decoder's own definition: the limits cannot drift apart.
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": reading_batch.batch_schema()}},
    }
}


INGEST_ROLES = frozenset({Role.courier, Role.device, Role.admin})
# A body this small (up to ~200 readings) is decoded on the event loop: a thread hop would
# cost about as much. Larger ones are decoded in a worker thread.
INLINE_MAX_BYTES = 16_384


@router.post("/readings", response_model=IngestResponse, openapi_extra=_BATCH_BODY)
async def post_readings(request: Request) -> JSONResponse:
    """Store a batch of up to 10,000 readings; bad items are rejected alone, resends counted."""
    # The hot path: decoding happens outside any transaction; the key check and storage run
    # in the process's ingest writer, which commits concurrent batches together and answers
    # each once the commit holding it is done.
    token = bearer_token(request)
    body = await request.body()
    db = get_db(request)
    settings: Settings = request.app.state.settings
    now = request.app.state.clock()
    tolerance = settings.future_tolerance_s
    if len(body) <= INLINE_MAX_BYTES:
        prepared = readings.prepare_json(body, now=now, future_tolerance_s=tolerance)
    else:
        prepared = await to_thread.run_sync(
            partial(readings.prepare_json, body, now=now, future_tolerance_s=tolerance)
        )
    charged: list[str] = []  # the rate limit is charged once, even if the unit runs twice
    actor: list[Principal] = []
    read: list[rides.Read | None] = [None]

    def check(session: Session) -> None:
        # Every refusal comes before anything is written: the writer needs no savepoint.
        # The devices' rides are read in the key's round trip; used only once it is checked.
        devices = prepared.columns.device_ids  # none for a refused body
        along = rides.read_ahead(Raw.of(session), devices)
        principal, found = authenticate_along(request, session, token, along)
        ensure_role(principal, INGEST_ROLES)
        if not charged:
            request.app.state.ingest_limiter.hit(principal.id)
            charged.append(principal.id)
        if prepared.refused is not None:
            raise prepared.refused
        actor[:] = [principal]
        read[:] = [rides.Read.of(devices, found)]

    def work(session: Session) -> readings.IngestResult:
        return readings.store_prepared(
            session,
            actor=actor[0],
            prepared=prepared,
            now=now,
            future_tolerance_s=tolerance,
            bounds=rides.LateBounds.of(settings),
            read=read[0],
        )

    result = await asyncio.wrap_future(writer.submit(db, work, size=len(prepared), check=check))
    return JSONResponse(
        {"accepted": result.accepted, "duplicates": result.duplicates, "rejected": result.rejected}
    )
