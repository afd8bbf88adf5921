"""GS1 EPCIS 2.0: capture of sensor data, custody and pairings; export of a case."""

from __future__ import annotations

import asyncio
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlmodel import Session

from app.deps import NowDep, SessionDep, SettingsDep, get_db, require_roles
from app.services.access.scope import CASE_READERS
from app.services.coldchain import rides, writer
from app.services.interop import epcis_capture, epcis_export
from integrations import epcis
from models.principal import Principal, Role

router = APIRouter(prefix="/integrations/epcis", tags=["interop"])
Capturer = Annotated[Principal, require_roles(Role.courier, Role.device, Role.admin)]
Reader = Annotated[Principal, require_roles(*CASE_READERS)]


class Rejected(BaseModel):
    loc: str
    reason: str
    code: str | None = None


class Ignored(BaseModel):
    pointer: str
    reason: str


class CaptureResponse(BaseModel):
    events: int
    readings: int
    duplicates: int
    custody: int
    custody_duplicates: int
    associations: int
    alerts: int
    ignored: list[Ignored]
    rejected: list[Rejected]


class EpcisResponse(JSONResponse):
    media_type = epcis.EPCIS_JSON_LD


_DOCUMENT = {
    "type": "object",
    "description": "A GS1 EPCIS 2.0 document (JSON or JSON-LD), `type` EPCISDocument.",
    "required": ["@context", "type", "schemaVersion", "creationDate", "epcisBody"],
}
_CAPTURE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            epcis.EPCIS_JSON_LD: {"schema": _DOCUMENT},
            "application/json": {"schema": _DOCUMENT},
        },
    }
}
_EXPORT_CONTENT = {
    200: {
        "description": "Custody steps and sensor data as an EPCIS 2.0 document; when more "
        'follow, a `Link: <…nextPageToken=…>; rel="next"` header.',
        "content": {epcis.EPCIS_JSON_LD: {"schema": _DOCUMENT}},
    }
}


@router.post(
    "/capture",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CaptureResponse,
    openapi_extra=_CAPTURE_BODY,
)
async def capture(
    request: Request, principal: Capturer, settings: SettingsDep, now: NowDep
) -> CaptureResponse:
    """Capture an EPCIS 2.0 document: readings, alarms, custody steps and device pairings."""
    request.app.state.ingest_limiter.hit(principal.id)  # shares the key's ingest budget
    body = await request.body()
    db = get_db(request)

    document = await to_thread.run_sync(epcis_capture.parse, body)

    def work(session: Session) -> epcis_capture.CaptureResult:
        return epcis_capture.capture(
            session,
            actor=principal,
            document=document,
            now=now,
            future_tolerance_s=settings.future_tolerance_s,
            bounds=rides.LateBounds.of(settings),
        )

    # Stored by the ingest writer, like every other reading; ~100 bytes a reading.
    result = await asyncio.wrap_future(writer.submit(db, work, size=len(body) // 100))
    return CaptureResponse(
        events=result.events,
        readings=result.readings,
        duplicates=result.duplicates,
        custody=result.custody,
        custody_duplicates=result.custody_duplicates,
        associations=result.associations,
        alerts=result.alerts,
        ignored=[Ignored.model_validate(i) for i in result.ignored],
        rejected=[Rejected.model_validate(r) for r in result.rejected],
    )


@router.get(
    "/events",
    response_class=EpcisResponse,
    responses=_EXPORT_CONTENT,  # type: ignore[arg-type]
)
def export_events(
    principal: Reader,
    session: SessionDep,
    request: Request,
    now: NowDep,
    query: Annotated[epcis_export.EventQuery, Query()],
) -> EpcisResponse:
    """The caller's custody and sensor events as EPCIS 2.0 (JSON-LD), queried and paged."""
    page = epcis_export.query_events(session, actor=principal, query=query, now=now)
    headers = {}
    if page.next_page_token is not None:
        url = request.url.include_query_params(nextPageToken=page.next_page_token)
        headers["Link"] = f'<{url}>; rel="next"'
    return EpcisResponse(page.document, headers=headers)
