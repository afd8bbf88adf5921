"""Alert lifecycle events reach webhook subscribers: opened, acknowledged, resolved; a refresh
that changes nothing is no event and no write."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event

from app.db import Database
from app.jobs import sweeps
from app.services.alerts import lifecycle
from models.alert import AlertKind, Severity
from tests.coldchain.test_readings import in_transit, post, readings
from tests.conftest import NOW, Api


def _subscribe(api: Api, kind: str) -> None:
    body = {"url": "https://hospital.example/v2v", "kinds": [kind], "secret": "s" * 24}
    hook = api.post("admin", "/api/v1/webhooks", body)
    assert hook.status_code == 201, hook.text


def test_open_ack_and_resolve_are_each_queued_for_delivery(api: Api, database: Database) -> None:
    _subscribe(api, "loss_of_signal")
    _, ship, t0 = in_transit(api)
    post(api, "courier", readings(ship["device_ids"][0], t0, [5.0]))
    sweeps.loss_of_signal(database, now=t0 + timedelta(minutes=45))
    (alert,) = api.get("ncc", "/api/v1/alerts?kind=loss_of_signal").json()["items"]
    assert api.post("ncc", f"/api/v1/alerts/{alert['id']}/ack", {}).status_code == 200
    post(api, "courier", readings(ship["device_ids"][0], t0 + timedelta(minutes=50), [5.0]))
    sweeps.loss_of_signal(database, now=t0 + timedelta(minutes=51))
    events = [d["event"] for d in api.get("admin", "/api/v1/webhooks/deliveries").json()["items"]]
    assert sorted(events) == ["alert.acknowledged", "alert.opened", "alert.resolved"]


def test_a_refresh_that_changes_nothing_writes_nothing(api: Api, database: Database) -> None:
    """Ingest re-raises a shipment's due alerts with every batch: an unchanged one keeps its
    ``updated_at`` and tells subscribers nothing; a changed one is updated and announced."""
    _subscribe(api, "temperature_excursion")
    _, ship, _ = in_transit(api)
    updates: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE ALERT"):
            updates.append(statement)

    def budget(minutes: int, at: datetime) -> None:
        with database.session(write=True) as session:
            lifecycle.raise_alert(
                session,
                kind=AlertKind.temperature_excursion,
                severity=Severity.major,
                code="coldchain.budget",
                params={"shipment_id": ship["id"], "out_of_range_min": minutes, "budget_min": 30},
                shipment_id=ship["id"],
                dedupe_key=f"budget:{ship['id']}",
                now=at,
            )
            session.commit()

    def stored() -> dict[str, Any]:
        (alert,) = api.get("qa", f"/api/v1/alerts?shipment_id={ship['id']}").json()["items"]
        return dict(alert)

    event.listen(database.engine, "before_cursor_execute", count)
    try:
        budget(31, NOW)
        first = stored()
        budget(31, NOW + timedelta(minutes=1))
        assert updates == []
        assert stored()["updated_at"] == first["updated_at"]
        budget(33, NOW + timedelta(minutes=2))
        assert len(updates) == 1
    finally:
        event.remove(database.engine, "before_cursor_execute", count)
    changed = stored()
    assert changed["updated_at"] != first["updated_at"]
    assert "33" in changed["message"] and "31" in first["message"]
    events = [d["event"] for d in api.get("admin", "/api/v1/webhooks/deliveries").json()["items"]]
    assert sorted(events) == ["alert.opened", "alert.updated"]
