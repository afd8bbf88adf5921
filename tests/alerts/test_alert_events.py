"""Alert lifecycle events reach webhook subscribers: opened, acknowledged, resolved."""

from __future__ import annotations

from datetime import timedelta

from app.db import Database
from app.jobs import sweeps
from tests.coldchain.test_readings import in_transit, post, readings
from tests.conftest import Api


def test_open_ack_and_resolve_are_each_queued_for_delivery(api: Api, database: Database) -> None:
    hook = api.post(
        "admin",
        "/api/v1/webhooks",
        {"url": "https://hospital.example/v2v", "kinds": ["loss_of_signal"], "secret": "s" * 24},
    )
    assert hook.status_code == 201, hook.text
    _, ship, t0 = in_transit(api)
    post(api, "courier", readings(ship["device_ids"][0], t0, [5.0]))
    sweeps.loss_of_signal(database, now=t0 + timedelta(minutes=45))
    (alert,) = api.get("ncc", "/api/v1/alerts?kind=loss_of_signal").json()["items"]
    assert api.post("ncc", f"/api/v1/alerts/{alert['id']}/ack", {}).status_code == 200
    post(api, "courier", readings(ship["device_ids"][0], t0 + timedelta(minutes=50), [5.0]))
    sweeps.loss_of_signal(database, now=t0 + timedelta(minutes=51))
    events = [d["event"] for d in api.get("admin", "/api/v1/webhooks/deliveries").json()["items"]]
    assert sorted(events) == ["alert.acknowledged", "alert.opened", "alert.resolved"]
