"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app import telemetry
from app.deps import MetricsAccess, get_db
from app.errors import PROBLEM_RESPONSES
from app.migrations import current_revision, head_revision

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz", response_model=dict[str, str | None], responses={503: {"description": "Not ready"}}
)
def readyz(request: Request) -> dict[str, str | None] | JSONResponse:
    """The database answers and its schema is at the migrations' head."""
    db = get_db(request)
    try:
        current = current_revision(db.engine)
    except Exception:  # noqa: BLE001 - any failure means "not ready", never a 500
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    head = head_revision()
    if current != head:
        return JSONResponse(
            {"status": "unavailable", "database": "ok", "migration": current, "head": head},
            status_code=503,
        )
    return {"status": "ok", "database": "ok", "migration": current}


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[MetricsAccess],
    responses={k: PROBLEM_RESPONSES[k] for k in (401, 403)},
)
def metrics() -> Response:
    """Prometheus exposition (V2V_METRICS_TOKEN as bearer, else loopback clients only)."""
    return Response(generate_latest(telemetry.REGISTRY), media_type=CONTENT_TYPE_LATEST)
