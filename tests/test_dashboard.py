"""The dashboard's pages through TestClient, on both databases: login, scope, CSRF, languages."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from app.db import Database
from models.alert import Alert
from tests.conftest import NOW, Api
from tests.helpers import Journey
from tests.test_readings import in_transit, post, readings

COI_RE = re.compile(r"CH[A-NP-Z1-9][A-NP-Z0-9]{2}[0-9]{4}[A-Z0-9]{6}")
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """One person's cookie jar on the app, logging in through the form as a person would."""

    def __init__(self, api: Api, persona: str | None = None, **headers: str) -> None:
        self.client = TestClient(api.client.app, follow_redirects=False, headers=headers)
        self.api = api
        if persona is not None:
            r = self.login(api.keys[persona])
            assert r.status_code == 303, r.text

    def csrf(self, url: str = "/") -> str:
        match = CSRF_RE.search(self.client.get(url).text)
        assert match, url
        return match.group(1)

    def login(self, key: str, next_: str = "/") -> Any:
        token = self.csrf("/login")
        return self.client.post(
            "/login", data={"api_key": key, "csrf_token": token, "next": next_}
        )

    def get(self, url: str, **kw: Any) -> Any:
        return self.client.get(url, **kw)

    def post(self, url: str, data: dict[str, str], page: str = "/") -> Any:
        return self.client.post(url, data={"csrf_token": self.csrf(page), **data})


@pytest.fixture
def world(api: Api, database: Database) -> dict[str, Any]:
    """An NCC East case in transit with an excursion, and an infused case on each route."""
    j, shipment, t0 = in_transit(api, patient="MRN-WEB-1")
    device = shipment["device_ids"][0]
    post(api, "courier", readings(device, t0, [5.0, 5.2, 12.5, 13.0, 12.0, 5.5, 5.1]))
    for route, patient in (("KASHIWA-LOCAL", "MRN-WEB-2"), ("JP-US-EWR", "MRN-WEB-3")):
        Journey(api, route=route, patient=patient, start=NOW - timedelta(days=60)).to_infusion()
    with database.session() as session:
        alert = session.exec(select(Alert).where(Alert.shipment_id == shipment["id"])).first()
    assert alert is not None
    return {
        "case_id": j.case["id"],
        "coi": j.coi,
        "shipment_id": shipment["id"],
        "alert_id": alert.id,
    }


def test_every_page_renders_for_a_coordinator(api: Api, world: dict[str, Any]) -> None:
    ncc = Browser(api, "ncc")
    pages = {
        "/": ["Open alerts", "Shipments in transit", "Cases by journey stage", "KASHIWA-LOCAL"],
        f"/cases/{world['case_id']}": [world["coi"], "Journey against targets", "Chain of custody"],
        f"/shipments/{world['shipment_id']}": ["Mean kinetic temperature", "Out of range"],
        "/routes": ["Side by side", "JP-US-EWR", "Predicted for a case collected today"],
        "/alerts": ["Temperature excursion", "Acknowledge"],
    }
    for url, needles in pages.items():
        r = ncc.get(url)
        assert r.status_code == 200, (url, r.text[:2000])
        assert r.headers["content-type"].startswith("text/html")
        for needle in needles:
            assert needle in r.text, (url, needle)
