"""Demo-like data for the browser suite, written through the API as the parties would.

Relative to the real current time (the uvicorn server under test runs on the system clock):
infused cases on the local and the overseas route with their typical durations, cases in
flight, a fresh shipment in transit with a temperature excursion, a healthy one, an overseas
shipment with a chain-of-identity mismatch, and the delay sweep's alerts.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from app.jobs.delays import delay_sweep
from tests.conftest import Api
from tests.helpers import Journey

MIN = timedelta(minutes=1)
NCC = (35.9027, 139.9378)
KASHIWA = (35.8946, 139.9495)
# (route, collected days ago, pickup h, transit h, queue h, manufacture d, release h,
#  return h, hospital to infusion d)
FINISHED = [
    ("KASHIWA-LOCAL", 55, 0.6, 1.2, 8, 11.2, 20, 1.3, 2.5),
    ("KASHIWA-LOCAL", 40, 0.7, 1.1, 9, 11.5, 24, 1.2, 3.1),
    ("KASHIWA-LOCAL", 33, 0.9, 1.4, 12, 11.1, 28, 1.3, 2.2),
    ("KASHIWA-LOCAL", 26, 0.5, 1.2, 11, 10.9, 22, 1.4, 1.5),
    ("JP-US-EWR", 90, 96, 70, 120, 18.5, 110, 72, 2.2),
    ("JP-US-EWR", 80, 90, 66, 130, 18.9, 100, 80, 2.6),
    ("JP-US-EWR", 72, 110, 75, 100, 18.2, 120, 70, 1.9),
    ("JP-US-EWR", 64, 100, 68, 140, 19.1, 104, 76, 2.4),
]


def _walk(j: Journey, spec: tuple[Any, ...]) -> None:
    _, _, pickup_h, transit_h, queue_h, make_d, release_h, back_h, infuse_d = spec
    inbound = "FRESH_2_8" if j.route == "KASHIWA-LOCAL" else "CRYO_LN2"
    j.schedule()
    j.step("collected", hours=0.1)
    j.inbound = j.ship("to_manufacturing", inbound)
    j.custody(j.inbound, "picked_up", hours=pickup_h)
    j.custody(j.inbound, "delivered", hours=transit_h)
    j.step("received_at_manufacturing", hours=0.3)
    j.step("manufacturing_started", hours=queue_h, coi=False)
    j.step("qc_released", hours=make_d * 24, coi=False)
    j.outbound = j.ship("to_site", "CRYO_LN2")
    j.custody(j.outbound, "picked_up", hours=release_h)
    j.custody(j.outbound, "delivered", hours=back_h)
    j.step("received_at_site", hours=0.4)
    j.step("thawed", hours=infuse_d * 24)
    j.step("infused", hours=0.25)


def _readings(
    device: str, start: datetime, end: datetime, temp: Any, every_min: int = 5, track: bool = True
) -> list[dict[str, Any]]:
    """A logger's readings from just after pickup; local ones drive from NCC to Kashiwa."""
    out = []
    t, i = start + MIN, 0
    while t <= end:
        item = {"device_id": device, "ts": t.isoformat(), "temp_c": round(temp(i), 2)}
        if track:
            frac = (t - start) / (end - start)
            item["lat"] = NCC[0] + (KASHIWA[0] - NCC[0]) * frac
            item["lon"] = NCC[1] + (KASHIWA[1] - NCC[1]) * frac
        out.append(item)
        t += every_min * MIN
        i += 1
    return out


def _post(api: Api, persona: str, items: list[dict[str, Any]]) -> None:
    r = api.post(persona, "/api/v1/readings", {"readings": items})
    assert r.status_code == 200 and not r.json()["rejected"], r.text


def build(api: Api, now: datetime) -> dict[str, Any]:
    """Write the cohort; return the ids the tests look for."""
    for n, spec in enumerate(FINISHED):
        start = now - timedelta(days=spec[1])
        j = Journey(api, route=spec[0], patient=f"MRN-B{n:03d}", start=start)
        _walk(j, spec)
    # In manufacturing at Kashiwa, collected nine days ago.
    making = Journey(api, patient="MRN-B100", start=now - timedelta(days=9))
    making.schedule()
    making.step("collected", hours=0.1)
    ship = making.ship("to_manufacturing", "FRESH_2_8")
    making.custody(ship, "picked_up", hours=0.7)
    making.custody(ship, "delivered", hours=1.3)
    making.step("received_at_manufacturing", hours=0.3)
    making.step("manufacturing_started", hours=10, coi=False)
    # A fresh box on the road now, warmed for half an hour an hour ago: an excursion.
    hot = Journey(api, patient="MRN-B200", start=now - timedelta(hours=3, minutes=10))
    hot.schedule()
    hot.step("collected", hours=0.1)
    hot_ship = hot.ship("to_manufacturing", "FRESH_2_8")
    hot.custody(hot_ship, "picked_up", hours=0.5)
    warm = range(10, 17)
    _post(
        api,
        "courier",
        _readings(
            hot_ship["device_ids"][0],
            hot.t,
            now - 2 * MIN,
            lambda i: (11.5 + 1.2 * math.sin(i)) if i in warm else 4.6 + 0.4 * math.sin(i / 3),
        ),
    )
    # A healthy box, picked up forty minutes ago.
    cool = Journey(api, patient="MRN-B300", start=now - timedelta(hours=1, minutes=20))
    cool.schedule()
    cool.step("collected", hours=0.1)
    cool_ship = cool.ship("to_manufacturing", "FRESH_2_8")
    cool.custody(cool_ship, "picked_up", hours=0.5)
    _post(
        api,
        "courier",
        _readings(cool_ship["device_ids"][0], cool.t, now - 3 * MIN, lambda i: 5.0 + 0.3 * (i % 3)),
    )
    # Overseas material on its way to New Jersey; a handoff scanned the wrong label.
    far = Journey(api, route="JP-US-EWR", patient="MRN-B400", start=now - timedelta(days=5))
    far.schedule()
    far.step("collected", hours=0.1)
    far_ship = far.ship("to_manufacturing", "CRYO_LN2")
    far.custody(far_ship, "picked_up", hours=96)
    _post(
        api,
        "global",
        _readings(
            far_ship["device_ids"][0],
            far.t,
            now - 40 * MIN,
            lambda i: -188 + 0.2 * (i % 5),
            every_min=15,
            track=False,
        ),
    )
    wrong = api.post(
        "global",
        f"/api/v1/shipments/{far_ship['id']}/custody",
        {
            "action": "handoff",
            "occurred_at": (now - 30 * MIN).isoformat(),
            "from_party": "NRT cargo",
            "to_party": "GLOBAL-CRYO",
            "coi": "CHJ100126999999",
        },
    )
    assert wrong.status_code == 409, wrong.text
    delay_sweep(api.database, now=now)
    return {
        "excursion_case": hot.case["id"],
        "excursion_coi": hot.coi,
        "excursion_shipment": hot_ship["id"],
        "healthy_shipment": cool_ship["id"],
        "overseas_shipment": far_ship["id"],
    }
