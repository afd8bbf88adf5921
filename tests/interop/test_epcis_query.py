"""EPCIS 2.0 query subset on GET /events (MATCH_epc, times, bizStep, eventType, paging) and
the fields capture does not map, listed as ``ignored`` with JSON pointers."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from app.services.identity.coi import check_char
from integrations import epcis
from tests.conftest import Api
from tests.helpers import Journey, iso
from tests.interop.test_epcis import (
    MIN,
    START,
    assert_conformant,
    capture,
    document,
    fixture_path,
    sensors,
    shipment,
    stored,
)

EVENTS = "/api/v1/integrations/epcis/events"


def with_data(api: Api, tag: str, start: Any) -> tuple[Journey, dict[str, Any]]:
    """A delivered shipment: pickup, 12 readings, handoff, 18 readings, delivery."""
    devices = [f"LOG-{tag}-1", f"LOG-{tag}-2"]
    j, ship = shipment(
        api, devices=devices, container=f"C-{tag}", patient=f"MRN-{tag}", start=start
    )
    t0 = j.t
    items = [
        {"device_id": devices[0], "ts": iso(t0 + i * 5 * MIN), "temp_c": 5.0} for i in range(1, 30)
    ] + [{"device_id": devices[1], "ts": iso(t0 + 7 * MIN), "temp_c": 6.0}]
    assert api.post("courier", "/api/v1/readings", {"readings": items}).json()["accepted"] == 30
    j.custody(ship, "handoff", hours=1)
    j.custody(ship, "delivered", hours=2)
    return j, ship


@pytest.fixture
def two(api: Api) -> tuple[Journey, Journey]:
    a, _ = with_data(api, "A", START)
    b, _ = with_data(api, "B", START + timedelta(days=1))
    return a, b


def query(api: Api, persona: str = "ncc", **params: Any) -> tuple[list[dict[str, Any]], Any]:
    r = api.get(persona, EVENTS, params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/ld+json")
    doc = r.json()
    assert_conformant(doc)
    return doc["epcisBody"]["eventList"], r


def cois(events: list[dict[str, Any]]) -> set[str]:
    return {e for ev in events for e in ev["epcList"] if e.startswith("urn:v2v:coi:")}


def test_match_epc_by_coi_in_any_form_returns_that_case_only(
    api: Api, two: tuple[Journey, Journey]
) -> None:
    a, b = two
    everything, _ = query(api)
    assert len(everything) == 10 and cois(everything) == {
        epcis.coi_uri(a.coi),
        epcis.coi_uri(b.coi),
    }
    forms = (a.coi, f"&/{a.coi}", f"{a.coi} {check_char(a.coi)}", epcis.coi_uri(a.coi))
    for form in forms:
        events, _ = query(api, MATCH_epc=form)
        assert len(events) == 5, form
        assert cois(events) == {epcis.coi_uri(a.coi)}
    assert query(api, case_id=a.case["id"])[0] == query(api, MATCH_epc=a.coi)[0]
    # Out of scope: absent, not an error.
    assert query(api, "kyoto", MATCH_epc=a.coi)[0] == []
    assert query(api, "kyoto")[0] == []


def test_match_epc_by_device_selects_the_events_naming_it(
    api: Api, two: tuple[Journey, Journey]
) -> None:
    _, b = two
    events, _ = query(api, MATCH_epc="LOG-B-2")
    # Its three custody steps (all the shipment's loggers are EPCs) and the one sensor event
    # holding its reading (the readings up to the handoff, which comes first at its instant).
    assert [e["bizStep"] for e in events] == [
        "shipping",
        "transporting",
        "sensor_reporting",
        "receiving",
    ]
    assert cois(events) == {epcis.coi_uri(b.coi)}
    assert len(query(api, MATCH_epc=epcis.id_uri("C-B"))[0]) == 5
    both, _ = query(api, MATCH_epc="LOG-A-2,LOG-B-2")
    assert len(both) == 8


def test_time_biz_step_and_event_type_filters(api: Api, two: tuple[Journey, Journey]) -> None:
    a, _ = two
    events, _ = query(api, MATCH_epc=a.coi)
    handoff = next(e for e in events if e["bizStep"] == "transporting")
    delivered = next(e for e in events if e["bizStep"] == "receiving")
    window, _ = query(
        api,
        MATCH_epc=a.coi,
        GE_eventTime=handoff["eventTime"],
        LT_eventTime=delivered["eventTime"],
    )
    assert [e["bizStep"] for e in window] == ["transporting", "sensor_reporting"] + [
        "sensor_reporting"
    ]
    # The same instant in Japan's offset selects the same events.
    at = datetime.fromisoformat(handoff["eventTime"]).astimezone(timezone(timedelta(hours=9)))
    jst, _ = query(api, MATCH_epc=a.coi, GE_eventTime=at.isoformat())
    assert [e["bizStep"] for e in jst] == [e["bizStep"] for e in window] + ["receiving"]
    for step in (
        "shipping",
        "urn:epcglobal:cbv:bizstep:shipping",
        "https://ref.gs1.org/cbv/BizStep-shipping",
    ):
        shipped, _ = query(api, EQ_bizStep=step)
        assert [e["bizStep"] for e in shipped] == ["shipping", "shipping"], step
    assert len(query(api, eventType="ObjectEvent")[0]) == 10
    assert query(api, eventType="AggregationEvent")[0] == []
    for bad in (
        {"eventType": "Bogus"},
        {"GE_eventTime": "2026-11-01T00:00:00"},  # naive
        {"GE_eventTime": "2026-11-02T00:00:00Z", "LT_eventTime": "2026-11-01T00:00:00Z"},
        {"nextPageToken": "not-a-token"},
    ):
        r = api.get("ncc", EVENTS, params=bad)
        assert r.status_code == 422, bad
        assert r.headers["content-type"].startswith("application/problem+json")


def test_paging_walks_every_event_once(api: Api, two: tuple[Journey, Journey]) -> None:
    everything, _ = query(api)
    seen: list[str] = []
    url: str | None = f"{EVENTS}?perPage=3"
    pages = 0
    while url:
        r = api.get("ncc", url)
        assert r.status_code == 200, r.text
        events = r.json()["epcisBody"]["eventList"]
        assert 1 <= len(events) <= 3
        seen += [e["eventID"] for e in events]
        pages += 1
        link = r.headers.get("link")
        url = None
        if link:
            match = re.fullmatch(r'<http://testserver([^>]+)>; rel="next"', link)
            assert match, link
            url = match.group(1)
            assert "perPage=3" in url and "nextPageToken=" in url
    assert pages == 4
    assert seen == [e["eventID"] for e in everything] and len(set(seen)) == 10
    # A filtered walk pages the same way, scoped on every page.
    a, _ = two
    r = api.get("ncc", EVENTS, params={"MATCH_epc": a.coi, "perPage": 4})
    assert "link" in r.headers
    token = re.search(r"nextPageToken=([^&>]+)", r.headers["link"]).group(1)  # type: ignore[union-attr]
    rest = api.get("kyoto", EVENTS, params={"MATCH_epc": a.coi, "nextPageToken": token})
    assert rest.json()["epcisBody"]["eventList"] == []
    second = api.get(
        "ncc", EVENTS, params={"MATCH_epc": a.coi, "perPage": 4, "nextPageToken": token}
    )
    assert len(second.json()["epcisBody"]["eventList"]) == 1 and "link" not in second.headers


def test_unmapped_fields_are_listed_with_pointers_and_reasons(api: Api) -> None:
    j, ship = shipment(api, devices=["LOG-IGN"], container="C-IGN", patient="MRN-IGN")
    t = j.t + 10 * MIN
    mean_only = {"type": "Temperature", "meanValue": 4.5, "sDev": 0.2, "uom": "CEL"}
    note = {
        "type": "Temperature",
        "value": 5.0,
        "uom": "CEL",
        "stringValue": "probe A",
        "time": iso(t),
    }
    humid = {"type": "RelativeHumidity", "value": 40.0, "uom": "P1", "time": iso(t)}
    absolute = {"type": "AbsoluteHumidity", "value": 3.0, "uom": "A93", "time": iso(t)}
    reporting = sensors(t + MIN, [mean_only], device="LOG-IGN")
    reporting["bizTransactionList"] = [{"type": "po", "bizTransaction": "urn:example:po:1"}]
    second = sensors(t, [note, humid, absolute], device="LOG-IGN")
    doc = document(reporting, second)
    doc["id"] = "urn:uuid:0f9b3c8e-0000-4000-8000-00000000000b"
    result = capture(api, "courier", doc)
    assert result["readings"] == 2 and result["rejected"] == []
    rows = {(r[1], r[2], r[3]) for r in stored_rows(api)}
    assert (ms_of(t + MIN), 4.5, None) in rows  # the mean is the reading
    assert (ms_of(t), 5.0, 40.0) in rows  # humidity joins the temperature
    got = {i["pointer"]: i["reason"] for i in result["ignored"]}
    e0, e1 = "/epcisBody/eventList/0", "/epcisBody/eventList/1"
    report = "/sensorElementList/0/sensorReport/"
    assert set(got) == {
        "/id",
        e0 + "/bizTransactionList",
        e0 + "/readPoint",
        e0 + report + "0/sDev",
        e1 + "/readPoint",
        e1 + report + "0/stringValue",
        e1 + report + "2",
    }
    assert "business transactions" in got[e0 + "/bizTransactionList"]
    assert "AbsoluteHumidity" in got[e1 + report + "2"]


def stored_rows(api: Api) -> list[tuple[Any, ...]]:
    return stored(api.database)


def ms_of(t: Any) -> int:
    return round(t.timestamp() * 1000)


def test_example_2_keeps_min_mean_and_max_and_names_what_it_drops(api: Api) -> None:
    start = datetime(2019, 4, 1, tzinfo=UTC)
    shipment(api, devices=["https://id.gs1.org/8004/4000001111"], start=start)
    body = json.loads(fixture_path("SensorDataExample2.jsonld").read_text())
    result = capture(api, "courier", body)
    assert result["readings"] == 3
    reasons = {i["pointer"]: i["reason"] for i in result["ignored"]}
    base = "/epcisBody/eventList/0/sensorElementList/0"
    assert "statistics" in reasons[base + "/sensorReport/0/sDev"]
    assert "bizRules" not in reasons and base + "/sensorMetadata/bizRules" in reasons
    assert reasons[base + "/sensorReport/3"].startswith("Illuminance is stored only as a point")
