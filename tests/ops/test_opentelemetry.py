"""FastAPI's own OpenTelemetry is opt-in (``V2V_OPENTELEMETRY``): off, a request does not ask
OpenTelemetry for its providers (it did, three times per request, to find none set up);
on, it does, so an SDK set up around the server sees the requests."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry import trace

from app.db import Database
from app.main import create_app
from tests.conftest import FrozenClock, make_settings

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # no database work


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How often anything asked OpenTelemetry for its tracer provider."""
    asked: list[int] = []
    real = trace.get_tracer_provider

    def counting() -> Any:
        asked.append(1)
        return real()

    monkeypatch.setattr(trace, "get_tracer_provider", counting)
    return asked


@pytest.mark.parametrize(("on", "asks"), [(False, False), (True, True)])
def test_requests_ask_opentelemetry_for_its_providers_only_when_told_to(
    db_url: str, database: Database, clock: FrozenClock, lookups: list[int], on: bool, asks: bool
) -> None:
    settings = make_settings(db_url).model_copy(update={"opentelemetry": on})
    with TestClient(create_app(settings, clock=clock, database=database)) as client:
        before = len(lookups)
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
        assert (len(lookups) - before >= 3) is asks
