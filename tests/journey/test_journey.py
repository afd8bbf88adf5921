"""The whole journey through the HTTP API, local and overseas, on both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from models.case import Case, Milestone
from models.shipment import CustodyEvent
from tests.conftest import NOW, Api
from tests.helpers import Journey, event, register


@pytest.mark.parametrize("route", ["KASHIWA-LOCAL", "JP-US-EWR"])
def test_full_journey_from_registration_to_infusion(api: Api, route: str) -> None:
    j = Journey(api, route=route)
    assert j.case["status"] == "registered"
    j.to_infusion()
    case = api.get("ncc", f"/api/v1/cases/{j.case['id']}").json()
    assert case["status"] == "infused"
    types = [m["type"] for m in case["milestones"]]
    assert types == [
        "collected",
        "shipped_to_manufacturing",
        "received_at_manufacturing",
        "manufacturing_started",
        "qc_released",
        "shipped_to_site",
        "received_at_site",
        "thawed",
        "infused",
    ]
    d = case["durations"]
    # pickup, handoff and delivery an hour apart, receipt half an hour after delivery.
    assert d["collection_to_receipt_h"] == pytest.approx(3.5)
    assert d["receipt_to_start_h"] == pytest.approx(12)
    assert d["start_to_release_d"] == pytest.approx(9)
    assert d["thaw_to_infusion_h"] == pytest.approx(0.3)
    total_h = 1 + 1 + 1 + 0.5 + 12 + 24 * 9 + 2 + 3 + 0.5 + 24 + 0.3
    assert d["vein_to_vein_d"] == pytest.approx(total_h / 24, abs=1e-3)
    assert case["slot"]["site"] == j.factory
    assert {s["status"] for s in case["shipments"]} == {"delivered"}
    # Times come back in UTC with a Z.
    assert case["milestones"][0]["occurred_at"].endswith("Z")


def test_milestone_times_keep_their_instant_across_offsets(api: Api) -> None:
    j = Journey(api)
    j.schedule()
    jst = (NOW - timedelta(days=1)).astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo"))
    r = event(api, "ncc", j.case, "collected", jst, "NCC-EAST", j.coi)
    assert r.status_code == 201, r.text
    got = api.get("ncc", f"/api/v1/cases/{j.case['id']}").json()["milestones"][0]["occurred_at"]
    assert got == (NOW - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_second_open_case_for_same_patient_and_product_is_refused(api: Api) -> None:
    register(api, patient="MRN-42")
    r = api.post(
        "ncc",
        "/api/v1/cases",
        {
            "site": "NCC-EAST",
            "route": "KASHIWA-LOCAL",
            "product": "CART-CD19",
            "patient_ref": "MRN-42",
        },
    )
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "MRN-42" not in r.text
    # Another product, or the same MRN at another hospital, is another case.
    assert (
        api.post(
            "ncc",
            "/api/v1/cases",
            {
                "site": "NCC-EAST",
                "route": "KASHIWA-LOCAL",
                "product": "CART-BCMA",
                "patient_ref": "MRN-42",
            },
        ).status_code
        == 201
    )
    assert (
        api.post(
            "utokyo",
            "/api/v1/cases",
            {
                "site": "UTOKYO-HOSP",
                "route": "TOKYO-KASHIWA",
                "product": "CART-CD19",
                "patient_ref": "MRN-42",
            },
        ).status_code
        == 201
    )


def test_patient_ref_is_never_stored_or_returned(api: Api, database) -> None:  # type: ignore[no-untyped-def]
    case = register(api, patient="SECRET-MRN-777")
    assert "SECRET-MRN-777" not in str(case)
    detail = api.get("ncc", f"/api/v1/cases/{case['id']}").text
    assert "SECRET-MRN-777" not in detail
    from sqlalchemy import text

    with database.engine.connect() as conn:
        for table in ("cases", "audit_log", "milestone", "idempotency_record"):
            dump = str(conn.execute(text(f"SELECT * FROM {table}")).fetchall())
            assert "SECRET-MRN-777" not in dump


def test_cancelled_case_frees_the_patient_for_a_new_case(api: Api) -> None:
    j = Journey(api, patient="MRN-9")
    j.schedule()
    r = event(api, "ncc", j.case, "cancelled", j.at(hours=1), "NCC-EAST", note="patient unwell")
    assert r.status_code == 201, r.text
    case = api.get("ncc", f"/api/v1/cases/{j.case['id']}").json()
    assert case["status"] == "cancelled" and case["slot"] is None
    register(api, patient="MRN-9")


def test_failed_manufacturing_allows_recollection_with_the_same_coi(api: Api) -> None:
    j = Journey(api)
    j.schedule()
    j.step("collected")
    ship = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(ship, "picked_up")
    j.custody(ship, "delivered")
    j.step("received_at_manufacturing")
    j.step("manufacturing_started", coi=False)
    j.step("manufacturing_failed", hours=48, coi=False)
    r = event(
        api,
        "ncc",
        j.case,
        "recollection",
        j.at(hours=24),
        "NCC-EAST",
        data={"apheresis_at": (j.t + timedelta(days=7)).isoformat()},
    )
    assert r.status_code == 201, r.text
    case = api.get("ncc", f"/api/v1/cases/{j.case['id']}").json()
    assert case["status"] == "apheresis_scheduled"
    assert case["cycle"] == 2 and case["coi"] == j.coi
    assert case["slot"] is not None
    j.step("collected", hours=24 * 7)
    assert api.get("ncc", f"/api/v1/cases/{j.case['id']}").json()["status"] == "collected"


def test_an_event_at_the_wrong_or_an_unknown_site_is_refused_and_changes_nothing(
    api: Api,
) -> None:
    j = Journey(api)
    j.schedule()
    at = j.at(hours=1)
    for site, code, says in [
        ("NOWHERE-9", "invalid", "unknown site 'NOWHERE-9'"),
        (j.factory, "site-mismatch", f"collected happens at NCC-EAST, not {j.factory}"),
    ]:
        r = event(api, "ncc", j.case, "collected", at, site, j.coi)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == code and says in r.json()["detail"]
    case = api.get("ncc", f"/api/v1/cases/{j.case['id']}").json()
    assert (case["status"], case["milestones"]) == ("apheresis_scheduled", [])
    assert event(api, "ncc", j.case, "collected", at, "NCC-EAST", j.coi).status_code == 201


def test_an_event_is_stored_as_the_orm_reads_it_back(api: Api, database) -> None:  # type: ignore[no-untyped-def]
    """The event's milestone and the case's new status are written by the driver's own
    statements: read back through the models, they are what was posted, and the row is
    stored as the models store one (``data`` without a value is JSON null, as a milestone
    amended through the models keeps it)."""
    j = Journey(api, patient="MRN-RAW1")
    j.schedule()
    posted = j.step("collected", hours=2)
    with Session(database.engine) as session:
        stored = session.get(Milestone, posted["id"])
        assert stored is not None
        assert (stored.type, stored.case_id, stored.cycle, stored.site) == (
            "collected",
            j.case["id"],
            1,
            posted["site"],
        )
        assert stored.occurred_at.isoformat().replace("+00:00", "Z") == posted["occurred_at"]
        assert stored.recorded_at.isoformat().replace("+00:00", "Z") == posted["recorded_at"]
        assert (stored.note, stored.data, stored.status) == (None, None, "valid")
        case = session.exec(select(Case).where(Case.id == j.case["id"])).one()
        assert case.status == posted["case_status"] == "collected"
        assert case.updated_at.isoformat().replace("+00:00", "Z") == posted["recorded_at"]
        raw = session.execute(
            text("SELECT data IS NULL, CAST(data AS TEXT) FROM milestone WHERE id = :i"),
            {"i": posted["id"]},
        ).one()
        assert (bool(raw[0]), raw[1]) == (False, "null")
    # The case's detail (read through the models) shows the milestone with its time.
    detail = api.get("ncc", f"/api/v1/cases/{j.case['id']}").json()
    assert [(m["id"], m["occurred_at"]) for m in detail["milestones"]] == [
        (posted["id"], posted["occurred_at"])
    ]


def test_custody_events_are_stored_as_the_orm_reads_them_back(api: Api, database) -> None:  # type: ignore[no-untyped-def]
    """Custody scans are written by the driver's own statement too: through the models they
    read back as posted, in order, and without ``data`` they hold JSON null."""
    j = Journey(api, patient="MRN-RAW2")
    j.schedule()
    j.step("collected")
    shipment = j.ship("to_manufacturing", "FRESH_2_8")
    posted = [j.custody(shipment, action) for action in ("picked_up", "handoff", "delivered")]
    with Session(database.engine) as session:
        stored = session.exec(
            select(CustodyEvent)
            .where(CustodyEvent.shipment_id == shipment["id"])
            .order_by(CustodyEvent.id)
        ).all()
        assert [e.id for e in stored] == [p["id"] for p in posted]
        for event, answer in zip(stored, posted, strict=True):
            assert (event.action, event.from_party, event.to_party, event.data) == (
                answer["action"],
                "sender",
                "receiver",
                None,
            )
            assert event.occurred_at.isoformat().replace("+00:00", "Z") == answer["occurred_at"]
        nulls = session.execute(
            text("SELECT count(*) FROM custody_event WHERE shipment_id = :s AND data IS NULL"),
            {"s": shipment["id"]},
        ).scalar_one()
        assert nulls == 0
    detail = api.get("admin", f"/api/v1/shipments/{shipment['id']}").json()
    assert [c["id"] for c in detail["custody"]] == [p["id"] for p in posted]
    assert detail["status"] == "delivered"
