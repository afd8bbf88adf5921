"""EPCIS capture: units, excursions and alarms from sensor reports, biz steps as custody with
the COI checked, sensor association, refused documents and device keys."""

from __future__ import annotations

import copy
import json
from datetime import UTC

import pytest

from app.db import Database
from app.services.coldchain import ingest as readings
from integrations import epcis
from models.principal import Role
from tests.conftest import Api
from tests.helpers import iso
from tests.interop.test_epcis import (
    CAPTURE,
    LOGGER,
    MIN,
    WRONG,
    assert_conformant,
    capture,
    count,
    custody_event,
    document,
    ms,
    object_event,
    sensors,
    shipment,
    stored,
)


def test_units_are_converted_to_celsius(api: Api, database: Database) -> None:
    j, _ = shipment(api, devices=[LOGGER])
    t0 = j.t + 10 * MIN
    reports = [
        {"type": "Temperature", "time": iso(t0 + i * MIN), "value": v, "uom": u}
        for i, (v, u) in enumerate(((5.0, "CEL"), (278.15, "KEL"), (41.0, "FAH"), (7.0, "XYZ")))
    ]
    reports.append({"type": "gs1:MT-Temperature", "time": iso(t0 + 9 * MIN), "value": 300.0})
    doc = document(sensors(t0 + 10 * MIN, reports))
    assert_conformant(doc)
    result = capture(api, "courier", doc)
    assert [r[2] for r in stored(database)] == [5.0, 5.0, 5.0]  # 278.15 K is exactly 5 °C
    assert result["rejected"] == [
        {
            "loc": f"/epcisBody/eventList/0/sensorElementList/0/sensorReport/{k}/uom",
            "reason": "a temperature needs uom CEL, KEL or FAH",
            "code": None,
        }
        for k in (3, 4)
    ]
    assert epcis.to_celsius(-320.8, "FAH") == -196.0  # liquid nitrogen


def test_an_interval_maximum_above_range_opens_an_excursion(api: Api, database: Database) -> None:
    j, ship = shipment(api, devices=[LOGGER])
    start, end = j.t + 10 * MIN, j.t + 40 * MIN
    interval = object_event(
        end,
        sensorElementList=[
            {
                "sensorMetadata": {
                    "deviceID": epcis.id_uri(LOGGER),
                    "startTime": iso(start),
                    "endTime": iso(end),
                },
                "sensorReport": [
                    {"type": "Temperature", "minValue": 4.0, "maxValue": 12.0, "meanValue": 6.0,
                     "sDev": 1.2, "uom": "CEL"},
                ],
            }
        ],
    )  # fmt: skip
    later = sensors(end + 10 * MIN, [{"type": "Temperature", "value": 5.0, "uom": "CEL"}])
    doc = document(interval, later)
    assert_conformant(doc)
    assert capture(api, "courier", doc)["readings"] == 4
    assert [(r[1], r[2]) for r in stored(database)] == [
        (ms(iso(start)), 4.0),
        (ms(iso(start + 15 * MIN)), 6.0),  # the mean, midway
        (ms(iso(end)), 12.0),
        (ms(iso(end + 10 * MIN)), 5.0),
    ]
    (exc,) = api.get("ncc", f"/api/v1/excursions?shipment_id={ship['id']}").json()["items"]
    assert (exc["kind"], exc["peak_c"], exc["duration_min"]) == ("high", 12.0, 10.0)
    assert exc["started_at"] == iso(end.astimezone(UTC)).replace("+00:00", "Z")


def test_alarm_and_error_conditions_raise_alerts_once(api: Api, database: Database) -> None:
    j, ship = shipment(api, devices=[LOGGER])
    at = j.t + 10 * MIN
    doc = document(
        sensors(
            at,
            [
                {"type": "Temperature", "exception": "ALARM_CONDITION", "value": 9.5,
                 "uom": "CEL"},
                {"type": "Temperature", "exception": "ERROR_CONDITION",
                 "uriValue": "https://example.com/ErrorCode-A827"},
            ],
        )
    )  # fmt: skip
    assert_conformant(doc)
    result = capture(api, "courier", doc)
    assert (result["alerts"], result["readings"]) == (2, 1)
    capture(api, "courier", doc)  # a resend refreshes the alerts, never doubles them
    alerts = api.get("ncc", f"/api/v1/alerts?case_id={j.case['id']}").json()["items"]
    epcis_alerts = sorted(
        (a["severity"], a["shipment_id"]) for a in alerts if "EPCIS" in a["message"]
    )
    assert epcis_alerts == [("major", ship["id"]), ("warning", ship["id"])]
    assert any("ErrorCode-A827" in a["message"] for a in alerts)


# ---- custody and pairing -------------------------------------------------------------------


def test_biz_steps_become_custody_with_the_coi_checked(api: Api, database: Database) -> None:
    j, ship = shipment(api, devices=[LOGGER], pick_up=False)
    t = j.t
    coi, container = epcis.coi_uri(j.coi), epcis.id_uri("C-EPCIS")
    parties = {
        "sourceList": [{"type": "possessing_party", "source": "urn:v2v:party:NCC%20East"}],
        "destinationList": [{"type": "possessing_party", "destination": "urn:v2v:party:Kashiwa"}],
    }
    doc = document(
        custody_event("shipping", t + 60 * MIN, [coi, container], **parties),
        custody_event("transporting", t + 90 * MIN, [coi, epcis.id_uri(LOGGER)],
                      readPoint={"id": "geo:35.87,139.97"}),
        custody_event("receiving", t + 150 * MIN, [coi, container]),
    )  # fmt: skip
    assert_conformant(doc)
    # Scanners send the label as printed: the barcode form (&/…) or the bare code.
    doc["epcisBody"]["eventList"][0]["epcList"][0] = "&/" + j.coi
    doc["epcisBody"]["eventList"][2]["epcList"][0] = j.coi
    result = capture(api, "courier", doc)
    assert (result["custody"], result["rejected"]) == (3, [])
    got = api.get("courier", f"/api/v1/shipments/{ship['id']}").json()
    assert got["status"] == "delivered"
    assert [(c["action"], c["lat"], c["from_party"]) for c in got["custody"]] == [
        ("picked_up", None, "NCC East"),
        ("handoff", 35.87, "not stated (EPCIS)"),
        ("delivered", None, "not stated (EPCIS)"),
    ]
    case = api.get("ncc", f"/api/v1/cases/{j.case['id']}").json()
    assert case["status"] == "in_transit_to_manufacturing"
    assert capture(api, "courier", doc)["custody_duplicates"] == 3


def test_a_wrong_or_missing_coi_is_refused_as_over_http(api: Api, database: Database) -> None:
    j, ship = shipment(api, devices=[LOGGER], pick_up=False)
    container = epcis.id_uri("C-EPCIS")
    doc = document(
        custody_event("shipping", j.t + 60 * MIN, [epcis.coi_uri(WRONG), container]),
        custody_event("shipping", j.t + 61 * MIN, [container]),
        custody_event("shipping", j.t + 62 * MIN, [epcis.coi_uri(j.coi), "urn:v2v:id:OTHER"]),
    )
    result = capture(api, "courier", doc)
    assert result["custody"] == 0
    assert [(r["loc"], r["code"]) for r in result["rejected"]] == [
        ("/epcisBody/eventList/0", "coi-mismatch"),
        ("/epcisBody/eventList/1/epcList", "coi-required"),
        ("/epcisBody/eventList/2/epcList", None),
    ]
    assert api.get("courier", f"/api/v1/shipments/{ship['id']}").json()["status"] == "created"
    (alert,) = api.get("ncc", "/api/v1/alerts?kind=coi_mismatch").json()["items"]
    assert alert["severity"] == "critical" and WRONG in alert["message"]
    audit = api.get("admin", f"/api/v1/audit?entity=case&entity_id={j.case['id']}").json()
    assert "coi.mismatch" in [e["action"] for e in audit["items"]]
    # Another courier's key finds no shipment of its own, and learns nothing more.
    other = capture(api, "global", document(custody_event("shipping", j.t, [container])))
    assert other["rejected"][0]["loc"] == "/epcisBody/eventList/0/epcList"


def test_association_pairs_and_unpairs_sensors(api: Api, database: Database) -> None:
    j, ship = shipment(api, devices=[LOGGER], container="urn:epc:id:grai:4012345.55555.98765")
    at = j.t + 30 * MIN
    sensor = "https://id.gs1.org/8004/4000001999"
    pairing = {
        "type": "AssociationEvent",
        "eventTime": iso(at),
        "eventTimeZoneOffset": "+00:00",
        "parentID": "urn:epc:id:grai:4012345.55555.98765",  # the container
        "childEPCs": ["urn:epc:id:giai:4000001.999"],
        "action": "ADD",
        "bizStep": "assembling",
    }
    reading = sensors(at + 10 * MIN, [{"type": "Temperature", "value": 5.5, "uom": "CEL"}], sensor)
    unpairing = {**pairing, "eventTime": iso(at + 20 * MIN), "action": "DELETE",
                 "bizStep": "disassembling"}  # fmt: skip
    late = sensors(at + 30 * MIN, [{"type": "Temperature", "value": 5.6, "uom": "CEL"}], sensor)
    doc = document(pairing, reading, unpairing, late)
    assert_conformant(doc)
    result = capture(api, "courier", doc)
    assert (result["associations"], result["readings"]) == (2, 1)
    assert (
        result["rejected"][0]["loc"] == "/epcisBody/eventList/3/sensorElementList/0/sensorReport/0"
    )
    assert [(r[0], r[2]) for r in stored(database)] == [(sensor, 5.5)]
    assert api.get("courier", f"/api/v1/shipments/{ship['id']}").json()["device_ids"] == [LOGGER]
    audit = api.get("admin", f"/api/v1/audit?entity=shipment&entity_id={ship['id']}").json()
    actions = [e["action"] for e in audit["items"]]
    assert "shipment.devices_added" in actions and "shipment.devices_removed" in actions


# ---- faults ----------------------------------------------------------------------------------


def test_an_invalid_document_is_422_with_a_pointer_and_stores_nothing(
    api: Api, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    j, ship = shipment(api, devices=[LOGGER])
    t = j.t
    good = [{"type": "Temperature", "value": 5.0 + k, "uom": "CEL"} for k in range(3)]
    events = [sensors(t + i * MIN, copy.deepcopy(good)) for i in range(1, 4)]
    handoff = custody_event("transporting", t + 5 * MIN, [epcis.coi_uri(j.coi)])
    bad = sensors(t + 6 * MIN, copy.deepcopy(good))
    bad["sensorElementList"][0]["sensorReport"][2]["value"] = "warm"
    before = (stored(database), count(database, "custody_event"), count(database, "audit_log"))
    r = api.client.post(
        CAPTURE,
        content=json.dumps(document(*events[:2], handoff, bad)),
        headers={**api.headers("courier"), "content-type": "application/json"},
    )
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["loc"] == (
        "/epcisBody/eventList/3/sensorElementList/0/sensorReport/2/value"
    )
    faults = {
        "{not json": "",
        json.dumps({**document(), "type": "EPCISQueryDocument"}): "/type",
        json.dumps(document(sensors(t, good) | {"eventTime": "2026-01-01T00:00:00"})): (
            "/epcisBody/eventList/0/eventTime"
        ),
        json.dumps(document({**events[0], "sensorElementList": [{"sensorReport": []}]})): (
            "/epcisBody/eventList/0/sensorElementList/0/sensorReport"
        ),
        json.dumps(document({"type": "AssociationEvent", "eventTime": iso(t), "action": "ADD"})): (
            "/epcisBody/eventList/0"
        ),
    }
    for body, loc in faults.items():
        r = api.client.post(CAPTURE, content=body, headers={**api.headers("courier"),
                            "content-type": "application/ld+json"})  # fmt: skip
        assert r.status_code == 422, body
        assert r.json()["errors"][0]["loc"] == loc, r.json()
    monkeypatch.setattr(readings, "MAX_BATCH", 8)  # the cap, without a 10,001-report body
    r = api.client.post(
        CAPTURE,
        content=json.dumps(document(*events, handoff)),
        headers={**api.headers("courier"), "content-type": "application/ld+json"},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "/epcisBody/eventList"
    after = (stored(database), count(database, "custody_event"), count(database, "audit_log"))
    assert after == before
    assert api.post("ncc", CAPTURE, document()).status_code == 403


def test_a_device_key_captures_its_own_readings_only(api: Api, database: Database) -> None:
    j, _ = shipment(api, devices=[LOGGER, "LOG-EPCIS-2"])
    api.key("logger", Role.device, courier="KASHIWA-COLD", device_id=LOGGER)
    value = [{"type": "Temperature", "value": 5.0, "uom": "CEL"}]
    doc = document(sensors(j.t + MIN, value), sensors(j.t + MIN, value, "LOG-EPCIS-2"))
    result = capture(api, "logger", doc)
    assert result["readings"] == 1 and "not one of your" in result["rejected"][0]["reason"]


# ---- export ----------------------------------------------------------------------------------
