"""EPCIS 2.0 capture and export: GS1's own examples, units, intervals, alarms, custody,
pairings, faults as JSON pointers, and an export that validates and captures back."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator, FormatChecker
from sqlalchemy import text

from app.db import Database
from integrations import epcis
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
