"""Small factories driving cases through the HTTP API, as a hospital and factory would."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tests.conftest import NOW, Api

ROUTE_PARTIES = {
    # route: (coordinator persona, site, manufacturer persona, factory, courier persona, courier)
    "KASHIWA-LOCAL": ("ncc", "NCC-EAST", "kashiwa", "CELLARES-KASHIWA", "courier", "KASHIWA-COLD"),
    "TOKYO-KASHIWA": (
        "utokyo",
        "UTOKYO-HOSP",
        "kashiwa",
        "CELLARES-KASHIWA",
        "courier",
        "KASHIWA-COLD",
    ),
    "JP-US-EWR": (
        "ncc",
        "NCC-EAST",
        "bridgewater",
        "CELLARES-BRIDGEWATER",
        "global",
        "GLOBAL-CRYO",
    ),
}


def iso(t: datetime) -> str:
    return t.isoformat()


def register_devices(api: Api, persona: str, device_ids: list[str]) -> None:
    """The courier registers its loggers before a hospital or factory may list them."""
    for device_id in device_ids:
        r = api.post(persona, "/api/v1/devices", {"device_id": device_id})
        assert r.status_code in (200, 201), r.text


def register(
    api: Api,
    *,
    route: str = "KASHIWA-LOCAL",
    patient: str = "MRN-0001",
    persona: str = "ncc",
    site: str = "NCC-EAST",
    product: str = "CART-CD19",
) -> dict[str, Any]:
    r = api.post(
        persona,
        "/api/v1/cases",
        {"site": site, "route": route, "product": product, "patient_ref": patient},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def event(
    api: Api,
    persona: str,
    case: dict[str, Any],
    type_: str,
    at: datetime,
    site: str,
    coi: str | None = None,
    **extra: Any,
) -> Any:
    body: dict[str, Any] = {"type": type_, "occurred_at": iso(at), "site": site, **extra}
    if coi is not None:
        body["coi"] = coi
    return api.post(persona, f"/api/v1/cases/{case['id']}/events", body)


class Journey:
    """Walks one case along its route, step by step, asserting each step is accepted."""

    def __init__(
        self,
        api: Api,
        route: str = "KASHIWA-LOCAL",
        patient: str = "MRN-0001",
        start: datetime | None = None,
    ) -> None:
        self.api = api
        self.route = route
        (self.coord, self.site, self.maker, self.factory, self.courier, self.courier_org) = (
            ROUTE_PARTIES[route]
        )
        self.case = register(api, route=route, patient=patient, persona=self.coord, site=self.site)
        self.coi = self.case["coi"]
        self.t = start or NOW - timedelta(days=40)
        self.inbound: dict[str, Any] | None = None
        self.outbound: dict[str, Any] | None = None

    def at(self, **delta: float) -> datetime:
        self.t = self.t + timedelta(**delta)
        return self.t

    def ok(self, r: Any, status: int = 201) -> Any:
        assert r.status_code == status, r.text
        return r.json()

    def schedule(self) -> Any:
        return self.ok(
            self.api.post(
                self.coord,
                f"/api/v1/cases/{self.case['id']}/schedule",
                {"apheresis_at": iso(self.t)},
            ),
            200,
        )

    def step(self, type_: str, *, hours: float = 1, coi: bool = True) -> Any:
        persona = (
            self.maker
            if type_
            in {
                "received_at_manufacturing",
                "manufacturing_started",
                "qc_released",
                "manufacturing_failed",
            }
            else self.coord
        )
        site = self.factory if persona == self.maker else self.site
        return self.ok(
            event(
                self.api,
                persona,
                self.case,
                type_,
                self.at(hours=hours),
                site,
                self.coi if coi else None,
            )
        )

    def ship(self, direction: str, profile: str) -> dict[str, Any]:
        persona = self.coord if direction == "to_manufacturing" else self.maker
        origin, dest = (
            (self.site, self.factory)
            if direction == "to_manufacturing"
            else (self.factory, self.site)
        )
        body = {
            "case_id": self.case["id"],
            "direction": direction,
            "origin": origin,
            "destination": dest,
            "profile": profile,
            "courier": self.courier_org,
            "container": {"serial": f"C-{direction}", "kind": "dry shipper"},
            "device_ids": [f"LOG-{self.case['id'][:6]}-{direction}"],
            "coi": self.coi,
        }
        register_devices(self.api, self.courier, body["device_ids"])
        return dict(self.ok(self.api.post(persona, "/api/v1/shipments", body)))

    def custody(self, shipment: dict[str, Any], action: str, *, hours: float = 1) -> Any:
        body = {
            "action": action,
            "occurred_at": iso(self.at(hours=hours)),
            "from_party": "sender",
            "to_party": "receiver",
            "coi": self.coi,
        }
        return self.ok(
            self.api.post(self.courier, f"/api/v1/shipments/{shipment['id']}/custody", body)
        )

    def wrong_scan(self, shipment: dict[str, Any]) -> None:
        """A courier scans another case's label at a handoff: refused (409), and a critical
        COI-mismatch alert is raised."""
        body = {
            "action": "handoff",
            "occurred_at": iso(self.at(hours=0)),
            "from_party": "a",
            "to_party": "b",
            "coi": "CHJ100126999999",
        }
        r = self.api.post(self.courier, f"/api/v1/shipments/{shipment['id']}/custody", body)
        assert r.status_code == 409, r.text

    def to_infusion(self) -> dict[str, Any]:
        """The whole happy path, from scheduling to infusion."""
        profile_in = "FRESH_2_8" if self.route == "KASHIWA-LOCAL" else "CRYO_LN2"
        self.schedule()
        self.step("collected", hours=2)
        self.inbound = self.ship("to_manufacturing", profile_in)
        self.custody(self.inbound, "picked_up")
        self.custody(self.inbound, "handoff", hours=1)
        self.custody(self.inbound, "delivered", hours=1)
        self.step("received_at_manufacturing", hours=0.5)
        self.step("manufacturing_started", hours=12, coi=False)
        self.step("qc_released", hours=24 * 9, coi=False)
        self.outbound = self.ship("to_site", "CRYO_LN2")
        self.custody(self.outbound, "picked_up", hours=2)
        self.custody(self.outbound, "delivered", hours=3)
        self.step("received_at_site", hours=0.5)
        self.step("thawed", hours=24)
        return dict(self.step("infused", hours=0.3))
