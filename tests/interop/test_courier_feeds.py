"""Courier feeds configured and watched: the admin API and ``v2v courier feed``, polled by the
courier job against a courier API faked at the transport (httpx.MockTransport)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.config import Settings, get_settings
from app.db import Database
from tests.conftest import NOW, Api
from tests.interop.test_courier import (
    BASE,
    MIN,
    TOKEN,
    FakeCourier,
    in_transit,
    page,
    poll,
    reading,
    reading_rows,
    scan,
)

FEEDS = "/api/v1/integrations/courier/feeds"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, api: Api) -> Iterator[Api]:
    monkeypatch.setenv("V2V_DATABASE_URL", api.database.engine.url.render_as_string(False))
    get_settings.cache_clear()
    yield api
    get_settings.cache_clear()


def run(*args: str, **kw: Any) -> Any:
    result = CliRunner().invoke(cli, list(args), **kw)
    return result


def test_a_feed_added_by_the_cli_is_polled_and_watched(
    env: Api, database: Database, settings: Settings
) -> None:
    j, shipment, t0 = in_transit(env)
    device = shipment["device_ids"][0]
    fake = FakeCourier(
        {
            None: page(
                [
                    reading(device, t0 + 10 * MIN),
                    scan(shipment["id"], "handoff", t0 + 20 * MIN, j.coi),
                    reading(device, t0 + 30 * MIN),
                ],
                "c1",
            ),
            "c1": page([], None),
        }
    )
    added = run("courier", "feed", "add", "KASHIWA-COLD", "--url", BASE, input=TOKEN + "\n")
    assert added.exit_code == 0, added.output
    assert TOKEN not in added.stdout
    assert poll(database, settings, fake) == 3
    assert reading_rows(database) == (2, 2)
    body = env.get("admin", f"/api/v1/shipments/{shipment['id']}").json()
    assert [c["action"] for c in body["custody"]] == ["picked_up", "handoff"]

    listed = run("courier", "feed", "list", "--json")
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert (row["courier"], row["cursor"], row["active"], row["last_error"]) == (
        "KASHIWA-COLD",
        "c1",
        True,
        None,
    )
    assert row["last_success_at"].startswith(NOW.strftime("%Y-%m-%dT%H:%M"))
    assert row["newest_event_at"] is not None and row["lag_s"] is not None
    assert "auth_token" not in row and TOKEN not in listed.stdout
    plain = run("courier", "feed", "list")
    assert "KASHIWA-COLD\tactive\tc1\t" in plain.stdout

    # The courier breaks: the next poll fails and the list says why.
    fake.faults["c1"] = [httpx.Response(403, json={"error": "token revoked"})]
    assert poll(database, settings, fake, now=NOW + 5 * MIN) == 0
    (row,) = json.loads(run("courier", "feed", "list", "--json").stdout)
    assert row["cursor"] == "c1" and "403" in row["last_error"]

    # Paused: the poller leaves it alone.
    assert run("courier", "feed", "pause", "KASHIWA-COLD").exit_code == 0
    asked = len(fake.requests)
    assert poll(database, settings, fake, now=NOW + 10 * MIN) == 0
    assert len(fake.requests) == asked
    assert json.loads(run("courier", "feed", "list", "--json").stdout)[0]["active"] is False
    assert run("courier", "feed", "pause", "NO-SUCH").exit_code == 2


def test_the_admin_api_adds_lists_and_pauses_feeds(api: Api, database: Database) -> None:
    body = {"courier": "GLOBAL-CRYO", "base_url": BASE, "auth_token": TOKEN}
    r = api.post("admin", FEEDS, body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["active"] is True and created["cursor"] is None and created["lag_s"] is None
    assert TOKEN not in r.text and "auth_token" not in created
    assert api.post("admin", FEEDS, body).status_code == 409
    bad = {**body, "courier": "KASHIWA-COLD", "base_url": "ftp://x"}
    assert api.post("admin", FEEDS, bad).status_code == 422
    assert api.post("admin", FEEDS, {**body, "courier": "NOPE"}).status_code == 422

    listed = api.get("admin", FEEDS).json()["items"]
    assert [f["courier"] for f in listed] == ["GLOBAL-CRYO"]
    headers = api.headers("admin")
    paused = api.client.patch(f"{FEEDS}/GLOBAL-CRYO", json={"active": False}, headers=headers)
    assert paused.status_code == 200 and paused.json()["active"] is False
    resumed = api.client.patch(f"{FEEDS}/GLOBAL-CRYO", json={"active": True}, headers=headers)
    assert resumed.json()["active"] is True
    assert (
        api.client.patch(f"{FEEDS}/NOPE", json={"active": True}, headers=headers).status_code == 404
    )
    # No interval column on the feed: the poll period is the scheduler's.
    interval = {"active": True, "interval_s": 60}
    assert (
        api.client.patch(f"{FEEDS}/GLOBAL-CRYO", json=interval, headers=headers).status_code == 422
    )
    trail = api.get("admin", "/api/v1/audit?entity=courier_feed").json()["items"]
    assert [e["action"] for e in trail] == [
        "courier_feed.configured",
        "courier_feed.paused",
        "courier_feed.resumed",
    ]
    assert TOKEN not in json.dumps(trail)
    for persona in ("qa", "courier", "ncc"):
        assert api.get(persona, FEEDS).status_code == 403
