"""``GET /tasks`` from the user's side: real HTTP, both databases, the roles' scopes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.coldchain.test_frozen import EXCURSION, excursions, sign
from tests.coldchain.test_readings import in_transit, post, readings
from tests.conftest import NOW, Api
from tests.helpers import Journey, register

DAY = timedelta(days=1)


def tasks(api: Api, persona: str, query: str = "") -> list[dict[str, Any]]:
    r = api.get(persona, f"/api/v1/tasks{query}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["truncated"] is False
    return list(body["items"])


def of_kind(items: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [t for t in items if t["kind"] == kind]


def booked(api: Api, *, route: str, patient: str, at: Any) -> Journey:
    j = Journey(api, route=route, patient=patient, start=at)
    j.schedule()
    return j


def test_a_coordinator_sees_its_sites_apheresis_tomorrow_and_not_another_sites(
    api: Api,
) -> None:
    ours = booked(api, route="KASHIWA-LOCAL", patient="MRN-T1", at=NOW + DAY)
    theirs = booked(api, route="TOKYO-KASHIWA", patient="MRN-T2", at=NOW + DAY)

    (task,) = of_kind(tasks(api, "ncc"), "apheresis")
    assert task["case_id"] == ours.case["id"]
    assert task["coi"] == ours.coi
    assert ours.coi in task["title"] and "MRN" not in task["title"]
    assert task["due_at"].startswith("2026-11-27T00:00:00")
    assert task["overdue"] is False
    assert [t["case_id"] for t in of_kind(tasks(api, "utokyo"), "apheresis")] == [theirs.case["id"]]
    # A hospital on no case's route sees nothing; a factory is not asked to collect blood.
    assert tasks(api, "kyoto") == []
    assert of_kind(tasks(api, "kashiwa"), "apheresis") == []
    # Both cases' slots are booked at Kashiwa: the factory sees both starts coming.
    starts = {t["case_id"] for t in of_kind(tasks(api, "kashiwa"), "manufacturing_start")}
    assert starts == {ours.case["id"], theirs.case["id"]}


def test_items_are_sorted_by_due_time_then_kind(api: Api) -> None:
    booked(api, route="KASHIWA-LOCAL", patient="MRN-T3", at=NOW + 2 * DAY)
    booked(api, route="KASHIWA-LOCAL", patient="MRN-T4", at=NOW + DAY)
    items = tasks(api, "admin")
    keys = [(t["due_at"], t["kind"]) for t in items]
    assert keys == sorted(keys)
    assert len(of_kind(items, "apheresis")) == 2


def test_a_factory_sees_incoming_material_and_the_courier_its_delivery(api: Api) -> None:
    j = Journey(api, patient="MRN-T5", start=NOW - timedelta(hours=3))
    j.schedule()
    j.step("collected")
    shipment = j.ship("to_manufacturing", "FRESH_2_8")
    (pickup,) = of_kind(tasks(api, "ncc"), "pickup")
    assert pickup["shipment_id"] == shipment["id"]
    assert of_kind(tasks(api, "courier"), "pickup")[0]["shipment_id"] == shipment["id"]
    j.custody(shipment, "picked_up")

    (arrival,) = of_kind(tasks(api, "kashiwa"), "arrival")
    assert (arrival["shipment_id"], arrival["case_id"]) == (shipment["id"], j.case["id"])
    assert arrival["params"]["destination"] == "CELLARES-KASHIWA"
    assert [t["shipment_id"] for t in of_kind(tasks(api, "courier"), "arrival")] == [shipment["id"]]
    # The hospital sent it: the arrival at the factory is not the hospital's task, and the
    # pickup is done.
    assert of_kind(tasks(api, "ncc"), "arrival") == []
    assert of_kind(tasks(api, "ncc"), "pickup") == []
    # Another factory and another courier never see it.
    for persona in ("bridgewater", "global", "kyoto"):
        assert j.coi not in api.get(persona, "/api/v1/tasks").text


def test_a_collected_case_without_a_shipment_still_owes_its_pickup(api: Api) -> None:
    j = Journey(api, patient="MRN-T6", start=NOW - timedelta(hours=3))
    j.schedule()
    j.step("collected")
    (owed,) = of_kind(tasks(api, "ncc"), "pickup")
    assert (owed["case_id"], owed["shipment_id"]) == (j.case["id"], None)
    assert owed["params"]["unbooked"] is True


def test_a_missed_step_is_overdue_until_it_is_done(api: Api) -> None:
    j = booked(api, route="KASHIWA-LOCAL", patient="MRN-T7", at=NOW - timedelta(hours=5))
    (late,) = of_kind(tasks(api, "ncc"), "apheresis")
    assert late["overdue"] is True
    # Before the window too: a coordinator looking at next week still sees it.
    (still,) = of_kind(tasks(api, "ncc", "?from=2026-12-01&to=2026-12-05"), "apheresis")
    assert still["overdue"] is True

    j.step("collected")  # at NOW - 4 h
    assert of_kind(tasks(api, "ncc"), "apheresis") == []


def test_a_date_window_is_whole_days_in_the_sites_zone(api: Api) -> None:
    # NCC East is in Asia/Tokyo: 27 November there runs from 26 Nov 15:00Z to 27 Nov 15:00Z.
    inside = booked(api, route="KASHIWA-LOCAL", patient="MRN-T8", at=NOW + timedelta(hours=20))
    booked(api, route="KASHIWA-LOCAL", patient="MRN-T9", at=NOW + timedelta(hours=40))
    found = of_kind(tasks(api, "ncc", "?from=2026-11-27&to=2026-11-27"), "apheresis")
    assert [t["case_id"] for t in found] == [inside.case["id"]]
    r = api.get("ncc", "/api/v1/tasks?from=2026-11-27&to=2026-11-27")
    assert r.json()["window_from"].startswith("2026-11-26T15:00:00")
    assert r.json()["window_to"].startswith("2026-11-27T15:00:00")


def test_qa_sees_an_unsigned_closed_excursion_until_it_is_signed(api: Api) -> None:
    _, ship, t0 = in_transit(api, patient="MRN-T10")
    post(api, "courier", readings(ship["device_ids"][0], t0, EXCURSION))
    (exc,) = excursions(api, ship["id"])
    assert exc["status"] == "closed"

    (task,) = of_kind(tasks(api, "qa"), "disposition")
    assert task["params"]["excursion_id"] == exc["id"]
    assert task["shipment_id"] == ship["id"]
    assert task["overdue"] is False  # waiting for a signature, not a missed plan
    assert of_kind(tasks(api, "ncc"), "disposition") == []  # only QA signs

    sign(api, exc["id"], "quarantine")
    assert of_kind(tasks(api, "qa"), "disposition") == []
    # The quarantine holds the product: QA now has the hold to assess.
    (hold,) = of_kind(tasks(api, "qa"), "hold_review")
    assert hold["coi"] == task["coi"]


def test_open_alerts_reach_the_roles_that_act_on_them_and_stay_in_scope(api: Api) -> None:
    j = Journey(api, patient="MRN-T11", start=NOW - timedelta(hours=3))
    j.schedule()
    j.step("collected")
    shipment = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(shipment, "picked_up")
    j.wrong_scan(shipment)  # a COI mismatch: a critical alert
    for persona in ("ncc", "kashiwa", "courier", "qa", "admin"):
        alerts = of_kind(tasks(api, persona), "alert")
        assert [a["params"]["alert_kind"] for a in alerts] == ["coi_mismatch"], persona
        assert alerts[0]["coi"] == j.coi
    for persona in ("kyoto", "bridgewater", "global"):
        r = api.get(persona, "/api/v1/tasks")
        assert r.status_code == 200
        assert j.coi not in r.text and shipment["id"] not in r.text, persona

    alert_id = of_kind(tasks(api, "ncc"), "alert")[0]["params"]["alert_id"]
    assert api.post("ncc", f"/api/v1/alerts/{alert_id}/ack", {}).status_code == 200
    assert of_kind(tasks(api, "ncc"), "alert") == []  # acknowledged: someone has it


@pytest.mark.parametrize(
    "query",
    [
        "?from=2026-11-30&to=2026-11-29",  # to before from
        "?from=2026-11-30T00:00:00%2B09:00&to=2026-11-30T00:00:00%2B09:00",  # empty
        "?from=2026-01-01&to=2026-06-01",  # more than 92 days
        "?from=1999-12-31",
        "?to=2101-01-01",
        "?from=9999-12-31T23:59:59-14:00",
        "?from=0001-01-01",
        "?from=2026-11-26T09:00:00",  # naive
        "?from=2026-11-26T00:00:00",  # naive, even at midnight
        "?from=2026-02-30",
        "?from=tomorrow",
        "?to=" + "9" * 200,
        "?to=2026-11-25",  # before now, the default from
    ],
)
def test_a_bad_window_is_a_422_problem(api: Api, query: str) -> None:
    register(api, patient="MRN-T12")
    r = api.get("ncc", f"/api/v1/tasks{query}")
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == 422 and body["errors"]


def test_a_window_with_an_offset_is_accepted(api: Api) -> None:
    r = api.get("ncc", "/api/v1/tasks?from=2026-11-26T09:00:00%2B09:00&to=2026-12-01")
    assert r.status_code == 200, r.text
    assert r.json()["window_from"].startswith("2026-11-26T00:00:00")


@pytest.mark.parametrize("persona", ["viewer", "logger"])
def test_viewers_and_devices_have_no_task_list(api: Api, persona: str) -> None:
    if persona == "logger":
        from models.principal import Role

        api.key("logger", Role.device, courier="KASHIWA-COLD", device_id="LOG-T-1")
    r = api.get(persona, "/api/v1/tasks")
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")


def test_the_contract_documents_every_kind(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    operation = spec["paths"]["/api/v1/tasks"]["get"]
    for kind in (
        "apheresis",
        "pickup",
        "arrival",
        "manufacturing_start",
        "qc_release",
        "thaw",
        "infusion",
        "alert",
        "disposition",
        "hold_review",
    ):
        assert f"`{kind}`" in operation["description"], kind


def planned(api: Api, *, patient: str, infusion_at: Any, start: Any) -> Journey:
    """A case registered with its planned infusion, walked with Journey's steps."""
    r = api.post(
        "ncc",
        "/api/v1/cases",
        {
            "site": "NCC-EAST",
            "route": "KASHIWA-LOCAL",
            "product": "CART-CD19",
            "patient_ref": patient,
            "planned_infusion_at": infusion_at.isoformat(),
        },
    )
    assert r.status_code == 201, r.text
    j = Journey.__new__(Journey)
    j.__dict__.update(
        api=api,
        route="KASHIWA-LOCAL",
        coord="ncc",
        site="NCC-EAST",
        maker="kashiwa",
        factory="CELLARES-KASHIWA",
        courier="courier",
        courier_org="KASHIWA-COLD",
        case=r.json(),
        coi=r.json()["coi"],
        t=start,
        inbound=None,
        outbound=None,
    )
    return j


def test_the_factory_and_qa_see_a_release_due_and_it_goes_once_released(api: Api) -> None:
    j = Journey(api, patient="MRN-T13", start=NOW - timedelta(days=13))
    j.schedule()
    j.step("collected")
    inbound = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(inbound, "picked_up")
    j.custody(inbound, "delivered")
    j.step("received_at_manufacturing")
    j.step("manufacturing_started", coi=False)  # 13 days ago; KASHIWA-LOCAL expects 11
    for persona in ("kashiwa", "qa"):
        (release,) = of_kind(tasks(api, persona), "qc_release")
        assert release["case_id"] == j.case["id"] and release["overdue"] is True
        assert release["params"]["site"] == "CELLARES-KASHIWA"
    assert of_kind(tasks(api, "ncc"), "qc_release") == []
    assert of_kind(tasks(api, "bridgewater"), "qc_release") == []
    j.step("qc_released", hours=1, coi=False)
    assert of_kind(tasks(api, "kashiwa"), "qc_release") == []
    # The product now waits at the factory for its shipment to the hospital.
    (owed,) = of_kind(tasks(api, "kashiwa"), "pickup")
    assert owed["params"] == {"direction": "to_site", "unbooked": True}


def test_thaw_and_infusion_follow_the_planned_infusion_and_the_thaw_clock(api: Api) -> None:
    infusion_at = NOW + timedelta(hours=6)
    j = planned(api, patient="MRN-T14", infusion_at=infusion_at, start=NOW - timedelta(days=12))
    j.schedule()
    j.step("collected")
    inbound = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(inbound, "picked_up")
    j.custody(inbound, "delivered")
    j.step("received_at_manufacturing")
    j.step("manufacturing_started", coi=False)
    j.step("qc_released", hours=24 * 9, coi=False)
    outbound = j.ship("to_site", "CRYO_LN2")
    j.custody(outbound, "picked_up")
    (arrival,) = of_kind(tasks(api, "ncc"), "arrival")  # the product coming home
    assert arrival["shipment_id"] == outbound["id"]
    j.custody(outbound, "delivered")
    j.step("received_at_site")

    items = tasks(api, "ncc")
    (thaw,) = of_kind(items, "thaw")
    (infusion,) = of_kind(items, "infusion")
    # CART-CD19: infusion starts within 30 min of thawing, so thaw 30 min before.
    assert thaw["due_at"].startswith("2026-11-26T05:30:00")
    assert infusion["due_at"].startswith("2026-11-26T06:00:00")
    assert of_kind(tasks(api, "kashiwa"), "thaw") == []

    j.t = NOW - timedelta(minutes=10)
    j.step("thawed", hours=0)
    items = tasks(api, "ncc")
    assert of_kind(items, "thaw") == []
    # Thawed: the product's own clock wins over the plan (10 min ago + 30 min).
    (infusion,) = of_kind(items, "infusion")
    assert infusion["due_at"].startswith("2026-11-26T00:20:00")
    j.step("infused", hours=0.1)
    assert of_kind(tasks(api, "ncc"), "infusion") == []


def test_a_long_list_is_capped_and_says_so(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.services.tasks import listing

    for n in range(3):
        booked(api, route="KASHIWA-LOCAL", patient=f"MRN-C{n}", at=NOW + (n + 1) * DAY)
    monkeypatch.setattr(listing, "CAP", 2)
    body = api.get("ncc", "/api/v1/tasks").json()
    assert body["truncated"] is True
    assert [t["due_at"][:10] for t in body["items"]] == ["2026-11-27", "2026-11-28"]


def test_every_task_of_a_product_on_hold_says_so(api: Api) -> None:
    infusion_at = NOW + timedelta(hours=6)
    j = planned(api, patient="MRN-T15", infusion_at=infusion_at, start=NOW - timedelta(days=12))
    j.schedule()
    j.step("collected")
    inbound = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(inbound, "picked_up")
    j.custody(inbound, "delivered")
    j.step("received_at_manufacturing")
    j.step("manufacturing_started", coi=False)
    j.step("qc_released", hours=24 * 9, coi=False)
    outbound = j.ship("to_site", "CRYO_LN2")
    j.custody(outbound, "picked_up")
    j.custody(outbound, "delivered")
    j.step("received_at_site")
    hold = {
        "action": "place",
        "reason": "seal broken",
        "signature": {"password_or_key": api.keys["qa"], "meaning": "approval"},
    }
    assert api.post("qa", f"/api/v1/cases/{j.case['id']}/hold", hold).status_code == 200

    items = tasks(api, "ncc")
    for kind in ("thaw", "infusion"):
        (task,) = of_kind(items, kind)
        assert task["params"]["on_hold"] is True
        assert "on hold: do not thaw or infuse" in task["title"]
    (review,) = of_kind(tasks(api, "qa"), "hold_review")
    assert review["case_id"] == j.case["id"]

    release = {**hold, "action": "release", "reason": "seal intact on second look"}
    assert api.post("qa", f"/api/v1/cases/{j.case['id']}/hold", release).status_code == 200
    (thaw,) = of_kind(tasks(api, "ncc"), "thaw")
    assert "on_hold" not in thaw["params"] and "on hold" not in thaw["title"]
    assert of_kind(tasks(api, "qa"), "hold_review") == []
