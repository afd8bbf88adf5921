"""EPCIS 2.0 capture and export: GS1's own examples, units, intervals, alarms, custody,
pairings, faults as JSON pointers, and an export that validates and captures back."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator, FormatChecker
from sqlalchemy import text

from app.db import Database
from app.services.coldchain import ingest as readings
from integrations import epcis
from models.principal import Role
from tests.conftest import IN_CI, NOW, Api
from tests.helpers import Journey, iso, register_devices

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "epcis"
CAPTURE = "/api/v1/integrations/epcis/capture"
EVENTS = "/api/v1/integrations/epcis/events?case_id={}"
WRONG = "CHJ100126999999"
LOGGER = "LOG-EPCIS-1"
GIAI_111 = "https://id.gs1.org/8004/4000001111"  # urn:epc:id:giai:4000001.111
MIN = timedelta(minutes=1)
START = NOW - timedelta(days=40)

# GS1's examples carry no COI; the examples are conformance references, not our journeys.
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s]*$")
_FORMATS = FormatChecker()


@_FORMATS.checks("uri")
def _is_uri(value: object) -> bool:
    # jsonschema checks "uri" only with rfc3987 installed; this is RFC 3986's scheme rule.
    return not isinstance(value, str) or bool(_URI.match(value))


@_FORMATS.checks("date-time")
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return False
    return "T" in value and parsed.tzinfo is not None


def fixture_path(name: str) -> Path:
    if not FIXTURES.is_dir():
        if IN_CI:
            pytest.fail(f"{FIXTURES} is required under CI and absent")
        pytest.skip(f"GS1 EPCIS fixtures absent ({FIXTURES}); set CI=true to make this fatal")
    return FIXTURES / name


def gs1_validator() -> Draft7Validator:
    schema = json.loads(fixture_path("EPCIS-JSON-Schema.json").read_text())
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema, format_checker=_FORMATS)


def assert_conformant(doc: dict[str, Any]) -> None:
    errors = sorted(gs1_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]


def ms(value: str) -> int:
    return round(datetime.fromisoformat(value).timestamp() * 1000)


def capture(api: Api, persona: str, doc: Any, status: int = 202) -> dict[str, Any]:
    body = doc if isinstance(doc, str) else json.dumps(doc)
    r = api.client.post(
        CAPTURE,
        content=body,
        headers={**api.headers(persona), "content-type": "application/ld+json"},
    )
    assert r.status_code == status, r.text
    return dict(r.json())


def stored(database: Database) -> list[tuple[Any, ...]]:
    with database.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT device_id, ts_ms, temp_c, humidity_pct, light_lux, lat, lon "
                "FROM reading ORDER BY device_id, ts_ms"
            )
        )
        return [tuple(r) for r in rows]


def count(database: Database, table: str) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def shipment(
    api: Api,
    *,
    devices: list[str],
    container: str = "C-EPCIS",
    start: datetime | None = None,
    patient: str = "MRN-E1",
    pick_up: bool = True,
) -> tuple[Journey, dict[str, Any]]:
    """A local case with a fresh-material shipment carrying these devices (picked up)."""
    j = Journey(api, patient=patient, start=start)
    j.schedule()
    j.step("collected")
    body = {
        "case_id": j.case["id"],
        "direction": "to_manufacturing",
        "origin": "NCC-EAST",
        "destination": "CELLARES-KASHIWA",
        "profile": "FRESH_2_8",
        "courier": "KASHIWA-COLD",
        "container": {"serial": container, "kind": "box"},
        "device_ids": devices,
        "coi": j.coi,
    }
    register_devices(api, "courier", devices)
    ship = dict(j.ok(api.post("ncc", "/api/v1/shipments", body)))
    if pick_up:
        j.custody(ship, "picked_up")
    return j, ship


def document(*events: dict[str, Any]) -> dict[str, Any]:
    return {
        "@context": [epcis.CONTEXT],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-25T00:00:00Z",
        "epcisBody": {"eventList": list(events)},
    }


def object_event(at: datetime, **fields: Any) -> dict[str, Any]:
    event = {
        "type": "ObjectEvent",
        "eventTime": iso(at),
        "eventTimeZoneOffset": "+00:00",
        "epcList": [],
        "action": "OBSERVE",
        "bizStep": "sensor_reporting",
        "readPoint": {"id": "urn:v2v:site:NCC-EAST"},
    }
    return {**event, **fields}


def sensors(at: datetime, reports: list[dict[str, Any]], device: str = LOGGER) -> dict[str, Any]:
    element = {"sensorMetadata": {"deviceID": epcis.id_uri(device)}, "sensorReport": reports}
    return object_event(at, sensorElementList=[element])


def custody_event(step: str, at: datetime, epcs: list[str], **fields: Any) -> dict[str, Any]:
    return object_event(at, bizStep=step, epcList=epcs, **fields)


# ---- GS1's examples ----------------------------------------------------------------------

T = "2019-04-02T{}+01:00"
EXAMPLES: dict[str, dict[str, Any]] = {
    "SensorDataExample1.jsonld": {
        "devices": [GIAI_111],
        "readings": [
            (GIAI_111, ms(T.format("14:05:00")), 26.0, None, 800.0, None, None),
            (GIAI_111, ms(T.format("14:35:00")), 26.1, None, 801.0, None, None),
            (GIAI_111, ms(T.format("14:55:00")), 26.2, None, 802.0, None, None),
        ],
        "ignored": 6,  # AbsoluteHumidity (A93) and Speed (KMH), three each
    },
    "SensorDataExample1b.jsonld": {
        "devices": [GIAI_111],
        "readings": [
            (GIAI_111, ms(T.format("14:05:00")), 26.0, None, 800.0, None, None),
            (GIAI_111, ms(T.format("14:35:00")), 26.1, None, 801.0, None, None),
            (GIAI_111, ms(T.format("14:55:00")), 26.2, None, 802.0, None, None),
        ],
        "ignored": 6,
    },
    "SensorDataExample2.jsonld": {  # interval: min at startTime, mean midway, max at endTime
        "devices": [GIAI_111],
        "readings": [
            (GIAI_111, ms(T.format("13:55:01")), 26.0, None, None, None, None),
            (GIAI_111, ms(T.format("14:25:00.500")), 26.1, None, None, None, None),
            (GIAI_111, ms(T.format("14:55:00")), 26.2, None, None, None, None),
        ],
        "ignored": 4,  # sDev; interval AbsoluteHumidity, Speed, Illuminance
    },
    "SensorDataExample3.jsonld": {  # no deviceID and an empty epcList: nothing to attach to
        "devices": [GIAI_111],
        "readings": [],
        "ignored": 1,
        "rejected": ["/epcisBody/eventList/0/sensorElementList/0/sensorReport/0"],
    },
    "SensorDataExample5.jsonld": {
        "devices": [GIAI_111],
        "readings": [
            (GIAI_111, ms(T.format(f"14:{m}:00")), t, None, None, None, None)
            for m, t in (("05", 26.0), ("15", 26.1), ("25", 26.2), ("35", 26.3))
            + (("45", 26.4), ("55", 26.5))
        ],
        "ignored": 0,
    },
    "SensorDataExample9.jsonld": {  # the sensor is the event's EPC (an SGTIN)
        "start": datetime(2020, 5, 6, tzinfo=UTC),
        "devices": ["https://id.gs1.org/01/04012345111118/21/9876"],
        "readings": [],
        "ignored": 1,  # the booleanValue beside the alarm
        "alarms": [
            ("warning", "ERROR_CONDITION from the Temperature sensor"),
            ("major", "ALARM_CONDITION from the AbsoluteHumidity sensor"),
        ],
    },
    "SensorDataExample13.jsonld": {  # Digital Link EPC; two probes at one instant
        "start": datetime(2021, 4, 26, tzinfo=UTC),
        "devices": ["https://id.gs1.org/01/09506000134352/21/12345"],
        "readings": [
            (
                "https://id.gs1.org/01/09506000134352/21/12345",
                ms("2021-04-27T15:00:00+01:00"),
                20.9,
                None,
                None,
                None,
                None,
            )
        ],
        "duplicates": 1,  # 20.7 (outer package) at the same device and instant
        "ignored": 2,  # ex:feature of each probe
    },
    "AssociationEvent-f.jsonld": {
        "start": datetime(2019, 11, 5, tzinfo=UTC),
        "devices": ["LOG-ASSET"],
        "container": "urn:epc:id:grai:4012345.55555.98765",
        "readings": [],
        "ignored": 1,  # the interval AbsoluteHumidity report
        "paired": ["https://id.gs1.org/8004/400000112345", "https://id.gs1.org/8004/400000112346"],
    },
}


def test_gs1_examples_conform_to_gs1s_schema() -> None:
    validator = gs1_validator()
    for name in EXAMPLES:
        doc = json.loads(fixture_path(name).read_text())
        assert not list(validator.iter_errors(doc)), name
    broken = json.loads(fixture_path("SensorDataExample1.jsonld").read_text())
    broken["epcisBody"]["eventList"][0]["eventTime"] = "2019-04-02T15:00:00"
    assert list(validator.iter_errors(broken)), "the checker must see a naive time"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_gs1_example_imports_with_the_expected_readings(
    api: Api, database: Database, name: str
) -> None:
    want = EXAMPLES[name]
    body = fixture_path(name).read_text()
    j, ship = shipment(
        api,
        devices=want["devices"],
        container=want.get("container", "C-EPCIS"),
        start=want.get("start", datetime(2019, 4, 1, tzinfo=UTC)),
    )
    result = capture(api, "courier", body)
    assert stored(database) == want["readings"]
    assert result["events"] == 1
    assert result["readings"] == len(want["readings"])
    assert result["duplicates"] == want.get("duplicates", 0)
    # Ignored sensor-report fields; event and header fields are in test_ignored_fields_….
    in_reports = [i for i in result["ignored"] if "/sensorReport/" in i["pointer"]]
    assert len(in_reports) == want["ignored"], in_reports
    assert all(i["reason"] for i in result["ignored"])
    assert [r["loc"] for r in result["rejected"]] == want.get("rejected", [])
    alarms = [
        (a["severity"], a["message"])
        for a in api.get("ncc", "/api/v1/alerts?kind=temperature_excursion").json()["items"]
        if "EPCIS" in a["message"]
    ]
    want_alarms = want.get("alarms", [])
    assert sorted(s for s, _ in alarms) == sorted(s for s, _ in want_alarms)
    for severity, fragment in want_alarms:
        assert any(s == severity and fragment in m for s, m in alarms), alarms
    if "paired" in want:
        got = api.get("courier", f"/api/v1/shipments/{ship['id']}").json()
        assert got["device_ids"] == [*want["devices"], *want["paired"]]
        paired_at = datetime(2019, 11, 6, 13, 0, tzinfo=UTC)
        items = [
            {"device_id": want["paired"][0], "ts": iso(paired_at + 30 * MIN), "temp_c": 5.0},
            {"device_id": want["paired"][1], "ts": iso(paired_at - 30 * MIN), "temp_c": 5.0},
        ]
        r = api.post("courier", "/api/v1/readings", {"readings": items}).json()
        assert r["accepted"] == 1 and r["rejected"][0]["index"] == 1  # before the pairing
    before = stored(database)
    again = capture(api, "courier", body)  # resending changes nothing
    assert again["readings"] == 0 and stored(database) == before


# ---- units, intervals, alarms ------------------------------------------------------------


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
