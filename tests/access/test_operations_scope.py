"""Scope of factory capacity, device keys and Prometheus metrics (issue #14, part 6)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.clock import FrozenClock
from app.config import Settings
from app.db import Database
from app.main import create_app
from models.principal import Role
from tests.conftest import METRICS_TOKEN, Api
from tests.helpers import Journey

AVAILABILITY = "/api/v1/slots/availability?site={site}&from=2026-10-01&to=2026-12-31"


@pytest.fixture
def booked(api: Api) -> dict[str, Any]:
    """A case from NCC East booked at the Kashiwa factory."""
    j = Journey(api)
    j.schedule()
    return {"case_id": j.case["id"], "coi": j.coi}


def test_availability_is_for_planners_and_factories_only(api: Api) -> None:
    api.key("logger", Role.device, courier="KASHIWA-COLD", device_id="LOG-SCOPE-1")
    url = AVAILABILITY.format(site="CELLARES-KASHIWA")
    for persona in ("logger", "courier", "global", "viewer", "qa"):
        r = api.get(persona, url)
        assert r.status_code == 403, (persona, r.status_code)
    for persona in ("admin", "ncc", "utokyo", "kashiwa"):
        assert api.get(persona, url).status_code == 200, persona


def test_availability_is_scoped_to_the_callers_routes_and_factory(
    api: Api, booked: dict[str, Any]
) -> None:
    kashiwa = AVAILABILITY.format(site="CELLARES-KASHIWA")
    bridgewater = AVAILABILITY.format(site="CELLARES-BRIDGEWATER")
    # Kyoto has no route to any factory; Tokyo's only route is to Kashiwa.
    assert api.get("kyoto", kashiwa).status_code == 404
    assert api.get("utokyo", bridgewater).status_code == 404
    assert api.get("ncc", bridgewater).status_code == 200  # NCC East ships to both
    # A factory sees its own capacity only.
    assert api.get("bridgewater", kashiwa).status_code == 404
    assert api.get("kashiwa", bridgewater).status_code == 404
    # Out of scope looks exactly like an unknown factory.
    unknown = api.get("kyoto", AVAILABILITY.format(site="NOWHERE"))
    assert api.get("kyoto", kashiwa).json() == unknown.json()


def test_another_hospital_sees_counts_but_no_case(api: Api, booked: dict[str, Any]) -> None:
    r = api.get("utokyo", AVAILABILITY.format(site="CELLARES-KASHIWA"))
    assert r.status_code == 200
    days = r.json()["days"]
    assert sum(d["booked"] for d in days) >= 1  # NCC East's booking counts against capacity
    assert set(days[0]) == {"date", "capacity", "booked", "free"}
    assert booked["case_id"] not in r.text and booked["coi"] not in r.text
    assert "NCC-EAST" not in r.text


def test_device_keys_reach_ingest_only(api: Api) -> None:
    api.key("logger", Role.device, courier="KASHIWA-COLD", device_id="LOG-SCOPE-2")
    for url in (
        "/api/v1/sites",
        "/api/v1/sites/NCC-EAST",
        "/api/v1/routes",
        "/api/v1/routes/KASHIWA-LOCAL",
        "/api/v1/profiles",
        "/api/v1/products",
        "/api/v1/me",
        "/api/v1/cases",
        "/api/v1/alerts",
    ):
        r = api.get("logger", url)
        assert r.status_code == 403, (url, r.status_code)
    assert api.post("logger", "/api/v1/readings", {"readings": []}).status_code == 200


@pytest.fixture
def metrics_app(db_url: str, clock: FrozenClock) -> Any:
    """The app with no metrics token: /metrics answers loopback clients only."""
    settings = Settings(database_url=db_url, env="test", scheduler_enabled=False)
    database = Database(db_url, pool_size=2)
    yield create_app(settings, clock=clock, database=database)
    database.dispose()


def test_metrics_without_a_token_answer_loopback_only(metrics_app: Any) -> None:
    for host, status in (("127.0.0.1", 200), ("::1", 200), ("10.1.2.3", 403), ("testclient", 403)):
        with TestClient(metrics_app, client=(host, 50000)) as client:
            r = client.get("/metrics")
        assert r.status_code == status, (host, r.status_code)
        if status == 200:
            assert "v2v_http_requests_total" in r.text
        else:
            assert "v2v_" not in r.text


def test_metrics_with_a_token_need_it_from_everywhere(api: Api) -> None:
    assert api.settings.metrics_token is not None
    assert api.client.get("/metrics").status_code == 401
    assert api.get("admin", "/metrics").status_code == 401  # an API key is not the token
    wrong = {"Authorization": "Bearer " + METRICS_TOKEN[:-1] + "x"}
    assert api.client.get("/metrics", headers=wrong).status_code == 401
    ok = api.client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert ok.status_code == 200 and "v2v_http_requests_total" in ok.text
    with TestClient(api.client.app, client=("127.0.0.1", 1)) as local:
        assert local.get("/metrics").status_code == 401  # a token, once set, is always needed
    assert isinstance(api.settings.metrics_token, SecretStr)
