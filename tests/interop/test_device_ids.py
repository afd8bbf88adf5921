"""One canonical device id wherever ids enter: a GS1 EPC URN and its Digital Link are one
logger through REST, MQTT, EPCIS, courier feeds and principals (API and CLI); malformed GS1
forms are refused with their reason; migration 0013 rewrites stored ids and refuses ids
that would collide."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text
from typer.testing import CliRunner

from app.cli import cli
from app.clock import FrozenClock
from app.config import Settings, get_settings
from app.db import Database
from app.migrations import alembic_config, current_revision, head_revision, upgrade
from integrations import gs1
from models.principal import Role
from tests.coldchain.test_readings import MIN, post
from tests.conftest import Api
from tests.helpers import Journey, iso
from tests.interop.test_courier import FakeCourier, configure, page, poll, reading
from tests.interop.test_epcis import capture, document, object_event
from tests.interop.test_mqtt import Rig, broker  # noqa: F401  (the broker fixture)

URN = "urn:epc:id:giai:4512345.L1"
LINK = "https://id.gs1.org/8004/4512345L1"
OTHER_LINK = "https://resolver.example.com/giai/4512345L1?linkType=all"  # the same logger


def devices_stored(database: Database) -> dict[str, list[str]]:
    with database.engine.connect() as conn:
        return {
            table: sorted({r[0] for r in conn.execute(text(f"SELECT {column} FROM {table}"))})
            for table, column in (
                ("device", "id"),
                ("device_assignment", "device_id"),
                ("reading", "device_id"),
            )
        }


def ship_with(api: Api, device_ids: list[str], patient: str) -> tuple[Journey, Any]:
    """A fresh-material shipment of a local case listing these ids, as the coordinator sent."""
    j = Journey(api, patient=patient)
    j.schedule()
    j.step("collected")
    body = {
        "case_id": j.case["id"],
        "direction": "to_manufacturing",
        "origin": "NCC-EAST",
        "destination": "CELLARES-KASHIWA",
        "profile": "FRESH_2_8",
        "courier": "KASHIWA-COLD",
        "container": {"serial": f"C-{patient}", "kind": "box"},
        "device_ids": device_ids,
        "coi": j.coi,
    }
    return j, api.post("ncc", "/api/v1/shipments", body)


def epcis_reading(at: datetime, device: str, temp: float) -> dict[str, Any]:
    report = {"type": "Temperature", "value": temp, "uom": "CEL"}
    element = {"sensorMetadata": {"deviceID": device}, "sensorReport": [report]}
    return document(object_event(at, sensorElementList=[element]))


# ---- the rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [URN, LINK, OTHER_LINK, "URN:EPC:ID:GIAI:4512345.L1", "http://id.gs1.org/8004/4512345L1"],
)
def test_every_form_of_one_logger_has_one_canonical_id(given: str) -> None:
    assert gs1.device_id(given) == LINK
    assert gs1.device_id(LINK) is LINK  # already canonical: returned as is


@pytest.mark.parametrize("plain", ["LOG-0042", "urn:uuid:0f9b3c8e", "https://example.com/d/7"])
def test_ids_that_are_not_gs1_are_kept_as_given(plain: str) -> None:
    assert gs1.device_id(plain) is plain


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("urn:epc:id:giai:4512345", "2 dot-separated parts"),
        ("urn:epc:id:giai:ABCDEFG.L1", "company prefix must be 6 to 12 digits"),
        ("urn:epc:id:giai:4512345." + "A" * 24, "asset reference must be 1 to 23"),
        ("urn:epc:id:sgtin:0614141.81234.6789", "13 digits together"),
        ("urn:epc:class:lgtin:4012345.012345.998877", "a device is named by urn:epc:id:"),
        ("https://id.gs1.org/8004/", "the GS1 key 8004 has no value"),
        ("https://id.gs1.org/8004/45L1", "begins with its GS1 company prefix"),
        ("https://id.gs1.org/8004/4512345 L1", "1 to 30 GS1 characters"),
        ("https://id.gs1.org/01/09506000134353/21/1", "wrong check digit"),
    ],
)
def test_malformed_gs1_forms_say_why(given: str, why: str) -> None:
    with pytest.raises(gs1.MalformedId) as caught:
        gs1.device_id(given)
    assert caught.value.reason.startswith("malformed GS1 identifier: ")
    assert why in caught.value.reason
    assert gs1.canonical_id(given) == given  # matching others' documents: kept as written


# ---- every entry lands on one device -------------------------------------------------------


@pytest.mark.usefixtures("broker")
def test_urn_and_digital_link_are_one_device_at_every_entry(
    api: Api, database: Database, settings: Settings, clock: FrozenClock
) -> None:
    # The courier registers the logger as its URN; the coordinator lists it as its URN.
    r = api.post("courier", "/api/v1/devices", {"device_id": URN})
    assert (r.status_code, r.json()["id"]) == (201, LINK), r.text
    j, r = ship_with(api, [URN], "MRN-D1")
    ship = j.ok(r)
    assert ship["device_ids"] == [LINK]
    # Registered again as its Digital Link (another resolver's, even): the same device.
    for form in (LINK, OTHER_LINK):
        r = api.post("courier", "/api/v1/devices", {"device_id": form})
        assert (r.status_code, r.json()["id"]) == (200, LINK), r.text
    j.custody(ship, "picked_up")
    t0 = j.t

    # REST with the Digital Link and with the URN.
    assert post(api, "courier", [{"device_id": LINK, "ts": iso(t0 + MIN), "temp_c": 5.0}]) == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": [],
    }
    by_urn = post(api, "courier", [{"device_id": URN, "ts": iso(t0 + 2 * MIN), "temp_c": 5.1}])
    assert by_urn["accepted"] == 1
    # The same instant under the other name is a resend, not a second reading.
    again = post(api, "courier", [{"device_id": URN, "ts": iso(t0 + MIN), "temp_c": 5.0}])
    assert (again["accepted"], again["duplicates"]) == (0, 1)
    # MQTT: the URN in the topic (a Digital Link has slashes), the device's own key made
    # with the URN; an item may name either form.
    key = api.key("logger", Role.device, courier="KASHIWA-COLD", device_id=URN)
    rig = Rig(database, settings, clock)
    try:
        rig.start_worker()
        ack = rig.logger.send(
            URN,
            [
                {"ts": iso(t0 + 3 * MIN), "temp_c": 5.2},
                {"device_id": LINK, "ts": iso(t0 + 4 * MIN), "temp_c": 5.3},
            ],
            key,
        )
        assert (ack["status"], ack["accepted"], ack["rejected"]) == ("ok", 2, []), ack
    finally:
        rig.close()
    # EPCIS with a Digital Link as the sensor's deviceID.
    result = capture(api, "courier", epcis_reading(t0 + 5 * MIN, OTHER_LINK, 5.4))
    assert (result["readings"], result["rejected"]) == (1, [])
    # A courier feed naming it by its URN.
    configure(database)
    fake = FakeCourier({None: page([reading(URN, t0 + 6 * MIN, 5.5)], "c1"), "c1": page([], None)})
    assert poll(database, settings, fake) == 1

    trace = api.get("ncc", f"/api/v1/shipments/{ship['id']}/readings").json()
    assert [p["mean_c"] for p in trace["points"]] == [5.0, 5.1, 5.2, 5.3, 5.4, 5.5]
    assert devices_stored(database) == {
        "device": [LINK],
        "device_assignment": [LINK],
        "reading": [LINK],
    }

    # The logger rides in this open shipment: listing it under either name elsewhere is refused.
    for n, form in enumerate((URN, LINK, OTHER_LINK)):
        _, r = ship_with(api, [form], f"MRN-D{n + 2}")
        assert (r.status_code, r.json()["code"]) == (409, "device-in-use"), r.text
        assert r.json()["device_id"] == LINK


def test_malformed_gs1_ids_are_refused_with_their_reason(api: Api, database: Database) -> None:
    bad = "urn:epc:id:giai:4512345"
    r = api.post("courier", "/api/v1/devices", {"device_id": bad})
    assert (r.status_code, r.json()["code"]) == (422, "device-id-malformed"), r.text
    problem = r.json()
    assert "malformed GS1 identifier" in problem["detail"] and bad in problem["detail"]
    assert problem["errors"][0]["loc"] == "body/device_id"

    _, r = ship_with(api, ["LOG-FINE", "https://id.gs1.org/8004/"], "MRN-D8")
    assert (r.status_code, r.json()["code"]) == (422, "device-id-malformed"), r.text
    assert r.json()["errors"][0]["loc"] == "body/device_ids/1"
    _, r = ship_with(api, [URN, LINK], "MRN-D9")  # two names of one logger
    assert r.status_code == 422 and "same device" in r.json()["detail"], r.text

    r = api.post(
        "admin",
        "/api/v1/principals",
        {"name": "logger", "role": "device", "courier": "KASHIWA-COLD", "device_id": bad},
    )
    assert (r.status_code, r.json()["code"]) == (422, "device-id-malformed"), r.text
    r = api.post(
        "admin",
        "/api/v1/principals",
        {"name": "logger", "role": "device", "courier": "KASHIWA-COLD", "device_id": URN},
    )
    assert (r.status_code, r.json()["device_id"]) == (201, LINK), r.text

    # A reading is rejected alone, with the reason (the whole-batch path hands the batch
    # to the per-item one, which says which item and why).
    items = [
        {"device_id": "LOG-X", "ts": "2026-11-01T00:00:00+00:00", "temp_c": 5.0},
        {"device_id": bad, "ts": "2026-11-01T00:00:00+00:00", "temp_c": 5.0},
    ]
    assert post(api, "courier", items)["rejected"] == [
        {"index": 0, "reason": "unknown device, or not one of your organisation's"},
        {
            "index": 1,
            "reason": "device_id: malformed GS1 identifier: "
            "a urn:epc:id:giai URN has 2 dot-separated parts",
        },
    ]
    assert devices_stored(database) == {"device": [LINK], "device_assignment": [], "reading": []}


def test_cli_device_principals_take_the_canonical_id(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("V2V_DATABASE_URL", api.database.engine.url.render_as_string(False))
    get_settings.cache_clear()
    try:
        create = ["principal", "create", "--role", "device", "--courier", "KASHIWA-COLD"]
        out = CliRunner().invoke(cli, [*create, "--device", URN, "--name", "logger 1"])
        assert out.exit_code == 0, out.output
        out = CliRunner().invoke(cli, [*create, "--device", "urn:epc:id:giai:45.L1", "--name", "x"])
        assert out.exit_code == 2 and "malformed GS1 identifier" in out.output
    finally:
        get_settings.cache_clear()
    listed = api.get("admin", "/api/v1/principals").json()["items"]
    assert [p["device_id"] for p in listed if p["role"] == "device"] == [LINK]


# ---- migration 0013 -------------------------------------------------------------------------

SHIPMENT = sa.table("shipment", sa.column("id", sa.String()), sa.column("device_ids", sa.JSON()))


def _rename(database: Database, old: str, new: str) -> None:
    """Write a device id as a version before 0013 could have stored it."""
    with database.engine.begin() as conn:
        for table, column in (
            ("device", "id"),
            ("device_assignment", "device_id"),
            ("reading", "device_id"),
            ("principal", "device_id"),
        ):
            conn.execute(text(f"UPDATE {table} SET {column} = :new WHERE {column} = :old"), {
                "new": new,
                "old": old,
            })  # fmt: skip
        for shipment_id, ids in list(conn.execute(sa.select(SHIPMENT.c.id, SHIPMENT.c.device_ids))):
            if old in ids:
                renamed = [new if d == old else d for d in ids]
                conn.execute(
                    SHIPMENT.update().where(SHIPMENT.c.id == shipment_id).values(device_ids=renamed)
                )


def _add_device(database: Database, device_id: str) -> None:
    with database.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO device (id, courier, created_at) VALUES (:d, 'KASHIWA-COLD', :at)"),
            {"d": device_id, "at": "2026-11-01 00:00:00+00:00"},
        )


# The revision under test, and the one before it (what a database held before the upgrade).
REVISION = "0013"
BEFORE = ScriptDirectory.from_config(alembic_config()).get_revision(REVISION).down_revision


def _before_0013(database: Database, url: str) -> None:
    """Back to the previous revision (0013 changes no schema): the data is then what that
    version stored."""
    assert isinstance(BEFORE, str)
    command.downgrade(alembic_config(url), BEFORE)
    assert current_revision(database.engine) == BEFORE


def _mixed_forms(api: Api, database: Database, url: str) -> dict[str, Any]:
    """Before 0013: a shipment in transit with readings, its logger stored as its URN, with a
    device key; other devices stored as a foreign Digital Link, plainly and malformed."""
    for device_id in ("LOG-M1", "LOG-PLAIN"):
        assert api.post("courier", "/api/v1/devices", {"device_id": device_id}).status_code == 201
    j, r = ship_with(api, ["LOG-M1", "LOG-PLAIN"], "MRN-M1")
    ship: dict[str, Any] = j.ok(r)
    j.custody(ship, "picked_up")
    items = [{"device_id": "LOG-M1", "ts": iso(j.t + k * MIN), "temp_c": 5.0} for k in (1, 2)]
    assert post(api, "courier", items)["accepted"] == 2
    api.key("logger", Role.device, courier="KASHIWA-COLD", device_id="LOG-M1")
    _before_0013(database, url)
    _rename(database, "LOG-M1", URN)
    _add_device(database, "https://example.com/8004/4000001111?x=1")
    _add_device(database, "urn:epc:id:giai:bad")  # malformed: names no other device, kept
    return {**ship, "t": j.t}


def test_migration_0013_rewrites_stored_ids_in_their_canonical_form(
    api: Api, database: Database, db_url: str
) -> None:
    ship = _mixed_forms(api, database, db_url)
    upgrade(db_url)
    assert current_revision(database.engine) == head_revision()
    assert devices_stored(database) == {
        "device": sorted(
            [LINK, "LOG-PLAIN", "https://id.gs1.org/8004/4000001111", "urn:epc:id:giai:bad"]
        ),
        "device_assignment": sorted([LINK, "LOG-PLAIN"]),
        "reading": [LINK],
    }
    shown = api.get("ncc", f"/api/v1/shipments/{ship['id']}").json()
    assert shown["device_ids"] == [LINK, "LOG-PLAIN"]
    with database.engine.connect() as conn:
        principal = conn.execute(text("SELECT device_id FROM principal WHERE name = 'logger'"))
        assert principal.scalar_one() == LINK
    # The logger's own key still sends, under either name, to the same shipment.
    more = [{"device_id": URN, "ts": iso(ship["t"] + 3 * MIN), "temp_c": 5.5}]
    assert post(api, "logger", more)["accepted"] == 1
    trace = api.get("ncc", f"/api/v1/shipments/{ship['id']}/readings").json()
    assert [p["mean_c"] for p in trace["points"]] == [5.0, 5.0, 5.5]


def test_migration_0013_refuses_ids_that_would_collide(
    api: Api, database: Database, db_url: str
) -> None:
    _mixed_forms(api, database, db_url)
    _add_device(database, LINK)  # the same logger, stored under its other name too
    before = devices_stored(database)
    with pytest.raises(RuntimeError, match="1 device\\(s\\) are stored under two or more ids") as e:
        upgrade(db_url)
    report = str(e.value)
    assert f"{LINK} <- '{LINK}' (device.id); '{URN}' (" in report
    assert "device_assignment.device_id" in report and "shipment.device_ids" in report
    assert current_revision(database.engine) == BEFORE
    assert devices_stored(database) == before  # nothing was rewritten
