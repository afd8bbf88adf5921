"""EPCIS export: valid against GS1's schema, and captured back it reproduces readings and
custody; device ids as canonical GS1 Digital Links."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from app.db import Database
from integrations import epcis
from tests.conftest import Api
from tests.helpers import Journey, iso
from tests.interop.test_epcis import (
    EVENTS,
    GIAI_111,
    LOGGER,
    MIN,
    START,
    assert_conformant,
    capture,
    shipment,
)


def _delivered_with_data(api: Api) -> tuple[Journey, dict[str, Any], int]:
    j, ship = shipment(api, devices=[LOGGER, "LOG-EPCIS-2"], start=START)
    t0 = j.t
    items = [
        {"device_id": LOGGER, "ts": iso(t0 + i * 5 * MIN), "temp_c": 5.0 + i / 10}
        for i in range(1, 30)
    ] + [
        {"device_id": "LOG-EPCIS-2", "ts": iso(t0 + 7 * MIN), "temp_c": 9.5,
         "humidity_pct": 40.0, "lat": 35.9, "lon": 139.95, "light_lux": 3.0, "shock_g": 1.5,
         "battery_pct": 88.0},
    ]  # fmt: skip
    assert api.post("courier", "/api/v1/readings", {"readings": items}).json()["accepted"] == 30
    handoff = {
        "action": "handoff",
        "occurred_at": iso(j.at(hours=1)),
        "from_party": "Kashiwa Cold driver",
        "to_party": "Kashiwa Cold hub",
        "coi": j.coi,
        "lat": 35.88,
        "lon": 139.93,
    }
    j.ok(api.post("courier", f"/api/v1/shipments/{ship['id']}/custody", handoff))
    j.custody(ship, "delivered", hours=2)
    return j, ship, 30


def _export(api: Api, case_id: str, persona: str = "ncc") -> dict[str, Any]:
    r = api.get(persona, EVENTS.format(case_id))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/ld+json")
    return dict(r.json())


def _essence(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "eventID"} for e in doc["epcisBody"]["eventList"]]


def test_export_validates_against_gs1s_schema(api: Api, database: Database) -> None:
    j, ship, n = _delivered_with_data(api)
    doc = _export(api, j.case["id"])
    assert_conformant(doc)
    events = doc["epcisBody"]["eventList"]
    times = [datetime.fromisoformat(e["eventTime"]) for e in events]
    assert times == sorted(times)
    steps = [e["bizStep"] for e in events if e["bizStep"] != "sensor_reporting"]
    assert steps == ["shipping", "transporting", "receiving"]
    assert all(epcis.coi_uri(j.coi) in e["epcList"] for e in events)
    reports = [
        r
        for e in events
        for el in e.get("sensorElementList", [])
        for r in el["sensorReport"]
        if r["type"] == "Temperature"
    ]
    assert len(reports) == n and {r["uom"] for r in reports} == {"CEL"}
    handoff = next(e for e in events if e["bizStep"] == "transporting")
    assert handoff["readPoint"] == {"id": "geo:35.88,139.93"}
    for persona in ("admin", "kashiwa", "qa"):
        assert_conformant(_export(api, j.case["id"], persona))
    for persona, status in (("kyoto", 404), ("bridgewater", 404), ("courier", 403)):
        assert api.get(persona, EVENTS.format(j.case["id"])).status_code == status
    assert api.get("ncc", EVENTS.format("0" * 32)).status_code == 404


def test_capture_of_the_export_reproduces_readings_and_custody(
    api: Api, database: Database
) -> None:
    j, ship, n = _delivered_with_data(api)
    exported = _export(api, j.case["id"])
    # 1. Into the same system: everything is already there.
    again = capture(api, "courier", exported)
    assert (again["readings"], again["duplicates"]) == (0, n)
    assert (again["custody"], again["custody_duplicates"], again["rejected"]) == (0, 3, [])
    # 2. Into a fresh case and shipment, relabelled (COI, container, loggers).
    k, fresh = shipment(
        api,
        devices=["LOG-NEW-1", "LOG-NEW-2"],
        container="C-NEW",
        patient="MRN-E2",
        start=START - timedelta(hours=2),  # collected before the original pickup
        pick_up=False,
    )
    labels = {
        epcis.coi_uri(j.coi): epcis.coi_uri(k.coi),
        epcis.id_uri("C-EPCIS"): epcis.id_uri("C-NEW"),
        epcis.id_uri(LOGGER): epcis.id_uri("LOG-NEW-1"),
        epcis.id_uri("LOG-EPCIS-2"): epcis.id_uri("LOG-NEW-2"),
    }
    relabelled = json.loads(json.dumps(exported), object_hook=lambda o: _relabel(o, labels))
    result = capture(api, "courier", relabelled)
    assert (result["readings"], result["custody"], result["rejected"]) == (n, 3, [])
    assert _essence(_export(api, k.case["id"])) == _essence(relabelled)
    original = api.get("courier", f"/api/v1/shipments/{ship['id']}").json()["custody"]
    copied = api.get("courier", f"/api/v1/shipments/{fresh['id']}").json()["custody"]
    fields = ("action", "occurred_at", "from_party", "to_party", "lat", "lon")
    assert [[c[f] for f in fields] for c in copied] == [[c[f] for f in fields] for c in original]


def _relabel(node: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    return {
        k: [labels.get(x, x) if isinstance(x, str) else x for x in v]
        if isinstance(v, list)
        else labels.get(v, v)
        if isinstance(v, str)
        else v
        for k, v in node.items()
    }


# ---- identifiers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("urn:epc:id:giai:4000001.111", GIAI_111),
        ("https://id.gs1.org/8004/4000001111", GIAI_111),
        ("https://resolver.example.com/giai/4000001111?linkType=all#x", GIAI_111),
        ("urn:epc:id:sgtin:0614141.812345.6789", "https://id.gs1.org/01/80614141123458/21/6789"),
        ("https://id.gs1.org/01/9506000134352/21/12345", "https://id.gs1.org/01/09506000134352/21/12345"),
        ("urn:epc:id:sscc:0614141.1234567890", "https://id.gs1.org/00/106141412345678908"),
        ("urn:epc:id:grai:0614141.12345.400", "https://id.gs1.org/8003/00614141123452400"),
        ("urn:epc:id:sgln:0614141.12345.400", "https://id.gs1.org/414/0614141123452/254/400"),
        ("urn:epc:id:gsrn:0614141.1234567890", "https://id.gs1.org/8018/061414112345678902"),
        ("urn:v2v:id:LOG%2042", "LOG 42"),
        ("LOG-0042", "LOG-0042"),
        ("urn:uuid:0f9b3c8e-0000-4000-8000-00000000000a",) * 2,
    ],
)  # fmt: skip
def test_device_ids_are_canonical_gs1_digital_links(given: str, canonical: str) -> None:
    assert epcis.canonical_id(given) == canonical
    assert epcis.canonical_id(epcis.id_uri(canonical)) == canonical
