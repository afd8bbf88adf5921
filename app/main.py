"""The FastAPI application: settings, database, routers, error handlers, middleware."""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from anyio import to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.telemetry import TelemetryConfig
from sqlalchemy.exc import SQLAlchemyError
from starlette.middleware.sessions import SessionMiddleware

from app import __version__, apidocs, gctune, openapi, routeindex, web
from app.clock import Clock, system_clock
from app.config import Settings, get_settings
from app.db import Database
from app.errors import PROBLEM_RESPONSES, install_error_handlers
from app.middleware import BodyGuard, Telemetry
from app.ratelimit import RateLimiter
from app.routers import (
    alerts,
    audit,
    capacity,
    cases,
    coi,
    corrections,
    courier_feeds,
    devices,
    epcis,
    excursions,
    fhir,
    labels,
    metrics,
    notifications,
    notifications_oncall,
    ops,
    principals,
    readings,
    reference,
    shipments,
    tasks,
    webhooks,
)
from app.services.identity.coi import Keyring
from integrations.geocoding import SiteGeocoder

log = logging.getLogger("v2v.db")

API_PREFIX = "/api/v1"

DESCRIPTION = """Tracks the vein-to-vein journey of autologous CAR-T cell therapy: apheresis,
shipment to the factory, manufacturing, QC release, the frozen return and infusion, with the
chain of identity checked at every handoff. Every error is RFC 9457 `application/problem+json`.
"""


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default TLS context (certifi's roots, verified), made once per process: loading
    the roots costs 34 ms, which every app (each test's) paid for its geocoder's client."""
    return httpx.create_ssl_context()


def _telemetry(settings: Settings) -> TelemetryConfig:
    """FastAPI's own OpenTelemetry (``V2V_OPENTELEMETRY``). Left on without a provider set
    up, it asked OpenTelemetry for its three providers on every request (a few percent of a
    live reading's time on the event loop) only to find none."""
    on = settings.opentelemetry
    return {"tracing": on, "metrics": on, "logs": on, "operation_spans": on}


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    database: Database | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    db = database or Database(
        settings.database_url,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        pool_size=settings.db_pool_size,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if database is None:  # a server's own pool (tests share one database among apps)
            try:
                await to_thread.run_sync(db.open_pool)
            except SQLAlchemyError as exc:  # the database may come up after the server
                log.warning("could not open the database pool at start: %s", type(exc).__name__)
            routeindex.build(app)  # before it listens; tests' many apps are spared it
        gctune.settle()  # once per process: what start-up made is not walked again
        scheduler = None
        if settings.scheduler_enabled:
            from app.scheduler import Scheduler

            scheduler = Scheduler(db, clock=app.state.clock, settings=settings)
            scheduler.start()
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.shutdown()
            if database is None:
                db.dispose()

    app = FastAPI(
        title="vein2vein",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # apidocs serves /docs and /redoc without a CDN
        redoc_url=None,
        telemetry=_telemetry(settings),
    )
    app.state.settings = settings
    app.state.db = db
    app.state.clock = clock or system_clock
    app.state.geocoder = (
        SiteGeocoder(
            httpx.Client(verify=_tls_context()),
            domain=settings.geocoder_domain,
            timeout_s=settings.geocoder_timeout_s,
        )
        if settings.geocoder_enabled
        else None
    )
    app.state.ingest_limiter = RateLimiter(per_minute=settings.rate_limit_ingest_per_min)
    # Logins are limited per (address, key id) so a ward behind one NAT is not locked out by
    # its own shift change, and per address over all key ids so one address cannot spray.
    app.state.login_limiter = RateLimiter(per_minute=settings.rate_limit_login_per_min, burst=5)
    app.state.login_address_limiter = RateLimiter(
        per_minute=settings.rate_limit_login_per_address_per_min
    )
    app.state.keyring = Keyring(
        settings.coi_signing_keys.get_secret_value(), settings.coi_verify_keys
    )
    install_error_handlers(app)
    openapi.customise(app)
    for module in (
        reference,
        cases,
        labels,
        corrections,
        capacity,
        shipments,
        devices,
        readings,
        excursions,
        alerts,
        metrics,
        coi,
        audit,
        principals,
        webhooks,
        notifications,
        notifications_oncall,
        fhir,
        epcis,
        courier_feeds,
        tasks,
    ):
        app.include_router(module.router, prefix=API_PREFIX, responses=PROBLEM_RESPONSES)
    app.include_router(ops.router)
    apidocs.install(app)
    app.include_router(web.router)  # the dashboard; not in the OpenAPI schema
    web.install_error_pages(app)  # unknown workspace URLs answer HTML, the API stays JSON
    app.mount("/static", web.static_files(), name="static")
    routeindex.install(app)  # last: it reads every included route
    # Innermost, so the telemetry counts the compression time. Pages, static files and API
    # bodies over 1 KiB are gzipped (level 6: nearly level 9's size at a third of its CPU);
    # the plotly bundle comes already compressed and passes through. The session cookie is
    # SameSite=Strict, so a cross-site page cannot make the browser fetch a logged-in page and
    # measure its compressed size (BREACH).
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=6)
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:  # closed by default: no CORS headers unless origins are configured
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        )
    app.add_middleware(SessionMiddleware, **web.session_options(settings))
    app.add_middleware(BodyGuard, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(Telemetry)
    logging.getLogger("v2v").setLevel(settings.log_level.upper())
    return app
