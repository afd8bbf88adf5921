"""The caller's shipment list, cancelling before pickup, and shipments that follow the route."""

from __future__ import annotations

from typing import Any

import pytest

from app.clock import FrozenClock
from tests.conftest import Api
from tests.helpers import register_devices
from tests.shipments.test_custody_rules import body, collected


@pytest.fixture
def three(api: Api, clock: FrozenClock) -> dict[str, Any]:
    """NCC East (Kashiwa, in transit), UTokyo (Kashiwa, created), NCC East (overseas)."""
    ncc = collected(api, patient="MRN-L1")
    ncc_ship = ncc.ship("to_manufacturing", "FRESH_2_8")
    ncc.custody(ncc_ship, "picked_up")
    clock.advance(minutes=1)
    tokyo = collected(api, route="TOKYO-KASHIWA", patient="MRN-L2")
    tokyo_ship = tokyo.ship("to_manufacturing", "FRESH_2_8")
    clock.advance(minutes=1)
    far = collected(api, route="JP-US-EWR", patient="MRN-L3")
    far_ship = far.ship("to_manufacturing", "CRYO_LN2")
    return {
        "ncc": (ncc, ncc_ship),
        "tokyo": (tokyo, tokyo_ship),
        "far": (far, far_ship),
    }


def ids(api: Api, persona: str, query: str = "") -> set[str]:
    r = api.get(persona, f"/api/v1/shipments{query}")
    assert r.status_code == 200, r.text
    return {s["id"] for s in r.json()["items"]}


def test_each_caller_lists_its_own_shipments(api: Api, three: dict[str, Any]) -> None:
    ncc, tokyo, far = (three[k][1]["id"] for k in ("ncc", "tokyo", "far"))
    assert ids(api, "courier") == {ncc, tokyo}  # KASHIWA-COLD carries both Kashiwa loops
    assert ids(api, "global") == {far}
    assert ids(api, "ncc") == {ncc, far}
    assert ids(api, "utokyo") == {tokyo}
    assert ids(api, "kyoto") == set()
    assert ids(api, "kashiwa") == {ncc, tokyo}
    assert ids(api, "bridgewater") == {far}
    assert ids(api, "admin") == ids(api, "qa") == {ncc, tokyo, far}
    assert api.get("viewer", "/api/v1/shipments").status_code == 403
    # Filters; a case outside the caller's scope is an empty list, not an error.
    assert ids(api, "courier", "?status=in_transit") == {ncc}
    assert ids(api, "courier", "?status=created&direction=to_manufacturing") == {tokyo}
    assert ids(api, "courier", "?direction=to_site") == set()
    assert ids(api, "utokyo", f"?case_id={three['ncc'][0].case['id']}") == set()
    assert ids(api, "global", f"?case_id={three['ncc'][0].case['id']}") == set()
    assert ids(api, "ncc", f"?case_id={three['ncc'][0].case['id']}") == {ncc}
    (item,) = api.get("utokyo", "/api/v1/shipments").json()["items"]
    j = three["tokyo"][0]
    assert item == {
        "id": tokyo,
        "case_id": j.case["id"],
        "coi": j.coi,
        "status": "created",
        "direction": "to_manufacturing",
        "origin": "UTOKYO-HOSP",
        "destination": "CELLARES-KASHIWA",
        "courier": "KASHIWA-COLD",
        "created_at": item["created_at"],
        "picked_up_at": None,
        "delivered_at": None,
        "cancelled_at": None,
    }
    assert item["created_at"].endswith("Z")


def test_the_list_pages_newest_first(api: Api, three: dict[str, Any]) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(4):
        query = "?limit=1" + (f"&cursor={cursor}" if cursor else "")
        page = api.get("admin", f"/api/v1/shipments{query}").json()
        seen += [s["id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [three[k][1]["id"] for k in ("far", "tokyo", "ncc")]
    for query in ("?limit=0", "?limit=501", "?cursor=%%%", "?cursor=WzFd", "?status=lost",
                  "?direction=sideways", "?case_id=" + "x" * 65):  # fmt: skip
        r = api.get("admin", f"/api/v1/shipments{query}")
        assert r.status_code == 422, (query, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")


def test_cancel_before_pickup_only_by_its_sender(api: Api, three: dict[str, Any]) -> None:
    tokyo, ship = three["tokyo"]
    url = f"/api/v1/shipments/{ship['id']}/cancel"
    assert api.post("ncc", url, {"reason": "x"}).status_code == 404  # another site
    assert api.post("courier", url, {"reason": "x"}).status_code == 403
    assert api.post("kashiwa", url, {"reason": "x"}).status_code == 403  # not the sender
    for bad in ({}, {"reason": ""}, {"reason": "x" * 2001}, {"reason": "x", "more": 1}):
        r = api.post("utokyo", url, bad)
        assert r.status_code == 422 and r.json()["status"] == 422
    r = api.post("utokyo", url, {"reason": "patient unwell, collection postponed"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["status"] == "cancelled" and got["cancelled_at"].endswith("Z")
    assert got["cancel_reason"] == "patient unwell, collection postponed"
    again = api.post("utokyo", url, {"reason": "twice"})
    assert again.status_code == 409 and again.json()["code"] == "shipment-cancelled"
    audit = api.get("admin", f"/api/v1/audit?entity=shipment&entity_id={ship['id']}").json()
    entry = audit["items"][-1]
    assert entry["action"] == "shipment.cancelled" and entry["actor"] == "utokyo"
    assert entry["reason"] == "patient unwell, collection postponed"
    # The case can ship again, with the same logger.
    second = tokyo.ok(api.post("utokyo", "/api/v1/shipments", body(tokyo, ship["device_ids"])))
    assert second["status"] == "created"
    # After pickup it is too late.
    ncc, moving = three["ncc"]
    r = api.post("ncc", f"/api/v1/shipments/{moving['id']}/cancel", {"reason": "late"})
    assert r.status_code == 409 and r.json()["code"] == "shipment-in-transit"
    assert api.get("ncc", f"/api/v1/shipments/{moving['id']}").json()["status"] == "in_transit"
    # An admin may cancel any shipment that has not left.
    far = three["far"][1]
    r = api.post("admin", f"/api/v1/shipments/{far['id']}/cancel", {"reason": "rerouted"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"


def test_a_shipment_follows_its_cases_route(api: Api) -> None:
    j = collected(api)
    wrong = {
        **body(j, []),
        "origin": "UTOKYO-HOSP",
        "destination": "CELLARES-BRIDGEWATER",
        "profile": "CRYO_LN2",
    }
    r = api.post("ncc", "/api/v1/shipments", wrong)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "route-mismatch"
    assert {e["loc"]: e["msg"] for e in problem["errors"]} == {
        "body/origin": "expected NCC-EAST (route KASHIWA-LOCAL)",
        "body/destination": "expected CELLARES-KASHIWA (route KASHIWA-LOCAL)",
        "body/profile": "expected FRESH_2_8 (route KASHIWA-LOCAL)",
    }
    assert problem["expected"] == {
        "origin": "NCC-EAST",
        "destination": "CELLARES-KASHIWA",
        "profile": "FRESH_2_8",
    }
    r = api.post("ncc", "/api/v1/shipments", {**body(j, []), "profile": "CRYO_LN2"})
    assert r.status_code == 422 and [e["loc"] for e in r.json()["errors"]] == ["body/profile"]
    assert api.get("ncc", "/api/v1/shipments").json()["items"] == []
    # The way back: factory -> the case's site, cryopreserved.
    back = {**body(j, [], "to_site"), "destination": "KYOTO-UNIV-HOSP", "profile": "FRESH_2_8"}
    r = api.post("kashiwa", "/api/v1/shipments", back)
    assert r.status_code == 422
    assert {e["loc"]: e["msg"] for e in r.json()["errors"]} == {
        "body/destination": "expected NCC-EAST (route KASHIWA-LOCAL)",
        "body/profile": "expected CRYO_LN2 (route KASHIWA-LOCAL)",
    }


def test_bad_shipment_bodies_are_problems(api: Api) -> None:
    j = collected(api)
    good = body(j, [])
    for bad in (
        {},
        {**good, "direction": "sideways"},
        {**good, "device_ids": ["A", "A"]},
        {**good, "device_ids": [""]},
        {**good, "container": {"serial": "S"}},
        {**good, "origin": "NOWHERE"},
        {**good, "courier": "NOBODY"},
        {**good, "unknown": 1},
    ):
        r = api.post("ncc", "/api/v1/shipments", bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert api.get("ncc", "/api/v1/shipments").json()["items"] == []


def test_a_shipment_names_known_sites_profile_and_courier(api: Api) -> None:
    j = collected(api)
    cases = (
        ({"origin": "NOWHERE-1"}, "body/origin", "unknown site 'NOWHERE-1'"),
        ({"destination": "NOWHERE-2"}, "body/destination", "unknown site 'NOWHERE-2'"),
        ({"destination": j.site}, "body/destination", "origin and destination are the same site"),
        ({"profile": "WARM_37"}, "body/profile", "unknown profile 'WARM_37'"),
        ({"courier": "NO-SUCH-COURIER"}, "body/courier", "unknown courier 'NO-SUCH-COURIER'"),
    )
    for change, loc, detail in cases:
        r = api.post("ncc", "/api/v1/shipments", {**body(j, []), **change})
        assert r.status_code == 422, (change, r.text)
        problem = r.json()
        assert problem["detail"] == detail
        assert [e["loc"] for e in problem["errors"]] == [loc]
    assert api.get("ncc", "/api/v1/shipments").json()["items"] == []
    audit = api.get("admin", "/api/v1/audit?entity=shipment").json()["items"]
    assert audit == []


def test_a_new_shipment_is_answered_as_it_is_read(api: Api) -> None:
    """The creation's answer is built without reading the shipment back: it must be what a
    reader sees the moment after."""
    j = collected(api)
    register_devices(api, "courier", ["LOG-NEW-1"])
    made = j.ok(api.post("ncc", "/api/v1/shipments", body(j, ["LOG-NEW-1"])))
    assert made["custody"] == [] and made["eta"] is None and made["last_reading"] is None
    assert made["excursion_summary"]["count"] == 0
    assert api.get("ncc", f"/api/v1/shipments/{made['id']}").json() == made
