"""Cases walked through their journeys over HTTP, as a hospital, a factory and a courier would.

Every creating call carries an Idempotency-Key made of the run, the case and the step, so a
retry after a crash replays the stored answer instead of recording the step twice. Each case
lives on its own stretch of the past (``SPACING`` apart) so its physical order always holds
and the factory's 32 positions are never all taken by the walkers themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from loadtest.client import Client

SITE, FACTORY, ROUTE = "NCC-EAST", "CELLARES-KASHIWA", "KASHIWA-LOCAL"
COURIER, PRODUCT = "KASHIWA-COLD", "CART-CD19"
SPACING = timedelta(hours=8)  # 168 h slots / 8 h = 21 positions in use at most, of 32
MAX_CASES = 400
# The longest journey (a failure and a recollection) takes about 26 days.
EPOCH_MARGIN = timedelta(days=35)
# Operation names, as the latency tables print them.
REGISTER, SCHEDULE = "POST /cases", "POST /cases/{id}/schedule"
EVENT, SHIP = "POST /cases/{id}/events", "POST /shipments"
DEVICE = "POST /devices"
CUSTODY = "POST /shipments/{id}/custody"
CREATING = {REGISTER: "register", SHIP: "shipment"}
VARIANTS = (
    "infused",
    "infused",
    "cancelled_after_collection",
    "infused",
    "failed_then_recollected",
    "infused",
    "cancelled_at_factory",
)


def epoch(now: datetime | None = None) -> datetime:
    """Where case 0 starts: far enough back that MAX_CASES journeys end before now."""
    now = now or datetime.now(UTC)
    return (now - SPACING * MAX_CASES - EPOCH_MARGIN).replace(microsecond=0)


@dataclass
class Case:
    id: str
    coi: str


class Walk:
    """One case's steps, each retried (same body, same key) until acknowledged."""

    def __init__(self, client: Client, keys: dict[str, str], *, run: str, index: int) -> None:
        if index >= MAX_CASES:
            raise ValueError(f"at most {MAX_CASES} cases per run")
        self.client, self.keys, self.run, self.index = client, keys, run, index
        self.t = epoch() + SPACING * index
        self.n = 0
        self.case = Case("", "")

    def _post(self, op: str, persona: str, path: str, body: dict[str, Any], *statuses: int) -> Any:
        self.n += 1
        key = f"{self.run}-{self.index}-{self.n}"
        kind = CREATING.get(op)
        if kind:
            with self.client.ledger.lock:
                self.client.ledger.attempted[kind].add(key)
        response = self.client.call(
            op,
            "POST",
            path,
            self.keys[persona],
            json.dumps(body).encode(),
            idempotency_key=key if op != SCHEDULE else None,
        )
        return self.client.expect(response, op, *statuses)

    def _at(self, hours: float) -> str:
        self.t += timedelta(hours=hours)
        return self.t.isoformat()

    def register(self) -> Case:
        body = {
            "site": SITE,
            "route": ROUTE,
            "product": PRODUCT,
            "patient_ref": f"MRN-{self.run}-{self.index:04d}",
        }
        out = self._post(REGISTER, "ncc", "/api/v1/cases", body, 201)
        self.case = Case(out["id"], out["coi"])
        with self.client.ledger.lock:
            self.client.ledger.cases.add(self.case.id)
        return self.case

    def schedule(self) -> None:
        # No Idempotency-Key here: booking again from apheresis_scheduled is itself legal.
        body = {"apheresis_at": self._at(0)}
        self._post(SCHEDULE, "ncc", f"/api/v1/cases/{self.case.id}/schedule", body, 200)

    def event(self, type_: str, hours: float = 1.0, data: dict[str, Any] | None = None) -> None:
        factory_step = type_ in (
            "received_at_manufacturing",
            "manufacturing_started",
            "qc_released",
            "manufacturing_failed",
        )
        body: dict[str, Any] = {
            "type": type_,
            "occurred_at": self._at(hours),
            "site": FACTORY if factory_step else SITE,
            "coi": self.case.coi,
        }
        if data:
            body["data"] = data
        persona = "kashiwa" if factory_step else "ncc"
        out = self._post(EVENT, persona, f"/api/v1/cases/{self.case.id}/events", body, 201)
        with self.client.ledger.lock:
            self.client.ledger.events.add((self.case.id, out["type"], int(out["cycle"])))

    def ship(self, direction: str, devices: list[str] | None = None) -> str:
        inbound = direction == "to_manufacturing"
        for device in devices or []:
            # The courier registers its loggers before a site may list them (200 once known).
            self._post(DEVICE, "courier", "/api/v1/devices", {"device_id": device}, 201, 200)
        body = {
            "case_id": self.case.id,
            "direction": direction,
            "origin": SITE if inbound else FACTORY,
            "destination": FACTORY if inbound else SITE,
            "profile": "FRESH_2_8" if inbound else "CRYO_LN2",
            "courier": COURIER,
            "container": {"serial": f"BOX-{self.run}-{self.index}", "kind": "validated box"},
            "device_ids": devices or [],
            "coi": self.case.coi,
        }
        persona = "ncc" if inbound else "kashiwa"
        out = self._post(SHIP, persona, "/api/v1/shipments", body, 201)
        with self.client.ledger.lock:
            self.client.ledger.shipments.add(out["id"])
        return str(out["id"])

    def custody(self, shipment_id: str, action: str, hours: float = 1.0) -> None:
        body = {
            "action": action,
            "occurred_at": self._at(hours),
            "from_party": "sender",
            "to_party": "receiver",
            "coi": self.case.coi,
        }
        path = f"/api/v1/shipments/{shipment_id}/custody"
        self._post(CUSTODY, "courier", path, body, 201)
        with self.client.ledger.lock:
            self.client.ledger.custody.add((shipment_id, action))


def in_transit(walk: Walk, devices: list[str]) -> datetime:
    """Register, collect and pick up an inbound shipment carrying these loggers; its pickup."""
    walk.register()
    walk.schedule()
    walk.event("collected", hours=2)
    shipment = walk.ship("to_manufacturing", devices)
    walk.custody(shipment, "picked_up")
    return walk.t


def journey(walk: Walk, variant: str) -> None:
    """Walk one case to infusion, or to the variant's cancellation or failure."""
    walk.register()
    walk.schedule()
    recollected = False
    while True:
        walk.event("collected", hours=2)
        if variant == "cancelled_after_collection":
            walk.event("cancelled")
            return
        inbound = walk.ship("to_manufacturing")
        walk.custody(inbound, "picked_up")
        walk.custody(inbound, "handoff")
        walk.custody(inbound, "delivered")
        walk.event("received_at_manufacturing", hours=0.5)
        walk.event("manufacturing_started", hours=12)
        if variant == "cancelled_at_factory":
            walk.event("cancelled")
            return
        if variant == "failed_then_recollected" and not recollected:
            walk.event("manufacturing_failed", hours=24 * 5)
            again = walk.t + timedelta(days=2)
            walk.event("recollection", data={"apheresis_at": again.isoformat()})
            walk.t = again
            recollected = True
            continue
        walk.event("qc_released", hours=24 * 9)
        outbound = walk.ship("to_site")
        walk.custody(outbound, "picked_up", hours=2)
        walk.custody(outbound, "delivered", hours=3)
        walk.event("received_at_site", hours=0.5)
        walk.event("thawed", hours=24)
        walk.event("infused", hours=0.3)
        return
