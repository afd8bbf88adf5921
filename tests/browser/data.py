"""Demo data for the browser suite: the demo cohort, plus live shipments through the API.

Relative to the real current time (the uvicorn server under test runs on the system clock):
``seeds.demo`` writes two years of cases (every stage, readings, excursions, alerts); then,
as the parties would through the API, a fresh box in transit with a temperature excursion,
a healthy one, an overseas shipment whose handoff scanned the wrong label; then the delay
sweep raises its alerts.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from app.jobs.delays import delay_sweep
from seeds import demo
from tests.conftest import Api
from tests.helpers import Journey

DEMO_CASES = 150
DEMO_SEED = 11
MIN = timedelta(minutes=1)
NCC = (35.9027, 139.9378)
KASHIWA = (35.8946, 139.9495)


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
    """Write the cohort and the live shipments; return the ids the tests look for."""
    demo.generate(api.database, cases=DEMO_CASES, seed=DEMO_SEED, now=now, settings=api.settings)
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
