"""Adding sites: coordinates given or geocoded, and a geocoder that never hangs the service."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from integrations.geocoding import SiteGeocoder
from tests.conftest import Api

NEW = {
    "code": "SHIZUOKA-CC",
    "name": "Shizuoka Cancer Center",
    "kind": "treatment_center",
    "timezone": "Asia/Tokyo",
    "country": "JP",
    "fin": "J1005",
    "address": "1007 Shimonagakubo, Nagaizumi, Shizuoka, Japan",
}


def nominatim(handler: Any) -> SiteGeocoder:
    return SiteGeocoder(httpx.Client(transport=httpx.MockTransport(handler)), timeout_s=1.0)


def test_create_with_coordinates_and_refuse_duplicates(api: Api) -> None:
    r = api.post("admin", "/api/v1/sites", {**NEW, "lat": 35.1354, "lon": 138.9037})
    assert r.status_code == 201, r.text
    assert api.get("ncc", "/api/v1/sites/SHIZUOKA-CC").json()["lat"] == 35.1354
    assert api.post("admin", "/api/v1/sites", {**NEW, "lat": 1, "lon": 1}).status_code == 409
    audit = api.get("admin", "/api/v1/audit?entity=site&entity_id=SHIZUOKA-CC").json()["items"]
    assert audit[0]["action"] == "site.created"


def test_address_is_geocoded_through_nominatim(api: Api) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json=[{"lat": "35.1354", "lon": "138.9037", "display_name": "Shizuoka Cancer Center"}],
        )

    api.client.app.state.geocoder = nominatim(handler)  # type: ignore[attr-defined]
    r = api.post("admin", "/api/v1/sites", NEW)
    assert r.status_code == 201, r.text
    assert (r.json()["lat"], r.json()["lon"]) == (35.1354, 138.9037)
    assert seen[0].url.path == "/search" and "Nagaizumi" in str(seen[0].url)
    assert "vein2vein" in seen[0].headers["user-agent"]


@pytest.mark.parametrize(
    ("failure", "fragment"),
    [
        (httpx.ReadTimeout("slow"), "did not answer in time"),
        (httpx.ConnectError("no route"), "unavailable"),
        (None, "no such address"),
    ],
)
def test_geocoder_failures_ask_for_coordinates(
    api: Api, failure: Exception | None, fragment: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if failure is not None:
            raise failure
        return httpx.Response(200, json=[])

    api.client.app.state.geocoder = nominatim(handler)  # type: ignore[attr-defined]
    r = api.post("admin", "/api/v1/sites", NEW)
    assert r.status_code == 422 and fragment in r.json()["detail"]
    assert {e["loc"] for e in r.json()["errors"]} == {"body/lat", "body/lon"}
    assert api.get("admin", "/api/v1/sites/SHIZUOKA-CC").status_code == 404


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


def test_an_unresponsive_geocoder_times_out_instead_of_hanging(
    api: Api, silent_server: int
) -> None:
    # The client's own timeout is a minute: only the geocoder's 0.3 s can end the wait in
    # seconds. The bound leaves room for a loaded machine (3 s was once missed by 2 ms).
    api.client.app.state.geocoder = SiteGeocoder(  # type: ignore[attr-defined]
        httpx.Client(timeout=60), domain=f"127.0.0.1:{silent_server}", scheme="http", timeout_s=0.3
    )
    started = time.monotonic()
    r = api.post("admin", "/api/v1/sites", NEW)
    assert r.status_code == 422 and "did not answer in time" in r.json()["detail"]
    assert time.monotonic() - started < 15


def test_bad_site_input(api: Api) -> None:
    api.client.app.state.geocoder = None  # type: ignore[attr-defined]
    for body in (
        {**NEW, "timezone": "Mars/Olympus"},
        {**NEW, "lat": 35.0},
        {**NEW, "code": "bad code"},
        {**NEW, "kind": "spaceport"},
        {**NEW, "fin": "O1234"},
        NEW,
    ):
        r = api.post("admin", "/api/v1/sites", body)
        assert r.status_code == 422, body
    assert "switched off" in api.post("admin", "/api/v1/sites", NEW).json()["detail"]
    assert api.post("ncc", "/api/v1/sites", {**NEW, "lat": 1, "lon": 1}).status_code == 403


def test_the_geocoder_verifies_certificates_with_roots_loaded_once_per_process() -> None:
    from app import main

    context = main._tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0  # the trusted roots are loaded
    assert main._tls_context() is context  # every app's client shares them
