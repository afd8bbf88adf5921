"""Bad input: a clear RFC 9457 problem, nothing written, never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from app.db import Database
from tests.conftest import Api
from tests.helpers import Journey

TABLES = (
    "cases",
    "milestone",
    "shipment",
    "custody_event",
    "alert",
    "audit_log",
    "idempotency_record",
    "slot",
)


def _counts(database: Database) -> dict[str, Any]:
    with database.engine.connect() as conn:
        counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}
        counts["status"] = conn.execute(text("SELECT status FROM cases ORDER BY id")).all()
    return counts


def _assert_problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == status and body["detail"]
    assert "Traceback" not in r.text
    return dict(body)


@pytest.fixture
def scheduled(api: Api) -> Journey:
    j = Journey(api)
    j.schedule()
    return j


def test_case_creation_refuses_bad_input_and_writes_nothing(
    api: Api, database: Database, scheduled: Journey
) -> None:
    before = _counts(database)
    good = {
        "site": "NCC-EAST",
        "route": "KASHIWA-LOCAL",
        "product": "CART-CD19",
        "patient_ref": "MRN-X",
    }
    cases = [
        ({**good, "site": "NOWHERE"}, 422, "body/site"),
        ({**good, "route": "NOWHERE"}, 422, "body/route"),
        ({**good, "product": "NOWHERE"}, 422, "body/product"),
        ({**good, "planned_infusion_at": "2026-12-01T09:00:00"}, 422, "body/planned_infusion_at"),
        ({**good, "patient_ref": ""}, 422, "body/patient_ref"),
        ({**good, "surprise": 1}, 422, "body/surprise"),
        ({k: v for k, v in good.items() if k != "route"}, 422, "body/route"),
    ]
    for body, status, loc in cases:
        problem = _assert_problem(api.post("admin", "/api/v1/cases", body), status)
        assert loc in [e["loc"] for e in problem.get("errors", [])], problem
    assert _counts(database) == before


def test_event_refusals_change_nothing(api: Api, database: Database, scheduled: Journey) -> None:
    j = scheduled
    url = f"/api/v1/cases/{j.case['id']}/events"
    before = _counts(database)
    base = {
        "type": "collected",
        "occurred_at": j.at(hours=1).isoformat(),
        "site": "NCC-EAST",
        "coi": j.coi,
    }
    refusals = [
        ({**base, "occurred_at": "2026-11-25T09:00:00"}, 422),  # naive
        ({**base, "occurred_at": "2030-01-01T00:00:00Z"}, 422),  # future
        ({**base, "site": "NOWHERE"}, 422),
        ({**base, "site": "UTOKYO-HOSP"}, 422),  # another hospital's site
        ({**base, "type": "infused"}, 409),  # illegal transition
        ({**base, "type": "teleported"}, 422),
        ({k: v for k, v in base.items() if k != "coi"}, 422),  # identity step without a scan
        ({**base, "coi": "not-a-coi"}, 422),
        ({**base, "data": {"x": float("nan")}}, None),  # cannot be sent as JSON: see below
    ]
    for body, status in refusals:
        if status is None:
            continue
        _assert_problem(api.post("ncc", url, body), status)
    assert _counts(database) == before


def test_nan_and_infinity_are_refused(api: Api, database: Database, scheduled: Journey) -> None:
    j = scheduled
    j.step("collected")
    shipment = j.ship("to_manufacturing", "FRESH_2_8")
    before = _counts(database)
    when = j.at(hours=1).isoformat()
    raw = (
        f'{{"action": "picked_up", "occurred_at": "{when}", "from_party": "a", '
        f'"to_party": "b", "coi": "{j.coi}", "lat": NaN}}'
    )
    r = api.client.post(
        f"/api/v1/shipments/{shipment['id']}/custody",
        content=raw,
        headers={**api.headers("courier"), "content-type": "application/json"},
    )
    assert "body/lat" in [e["loc"] for e in _assert_problem(r, 422)["errors"]]
    raw_case = (
        '{"site": "NCC-EAST", "route": "KASHIWA-LOCAL", "product": "CART-CD19", '
        '"patient_ref": "M", "planned_infusion_at": Infinity}'
    )
    r = api.client.post(
        "/api/v1/cases",
        content=raw_case,
        headers={**api.headers("ncc"), "content-type": "application/json"},
    )
    _assert_problem(r, 422)
    assert _counts(database) == before


def test_wrong_content_type_malformed_json_and_oversized_body(
    api: Api, database: Database, scheduled: Journey
) -> None:
    before = _counts(database)
    r = api.client.post(
        "/api/v1/cases",
        content="site=NCC-EAST",
        headers={**api.headers("ncc"), "content-type": "text/plain"},
    )
    _assert_problem(r, 415)
    r = api.client.post(
        "/api/v1/cases",
        content="{not json",
        headers={**api.headers("ncc"), "content-type": "application/json"},
    )
    _assert_problem(r, 422)
    big = '{"site": "' + "x" * (api.settings.max_body_bytes + 10) + '"}'
    r = api.client.post(
        "/api/v1/cases",
        content=big,
        headers={**api.headers("ncc"), "content-type": "application/json"},
    )
    _assert_problem(r, 413)
    assert _counts(database) == before


def test_unknown_paths_methods_and_keys_are_problems(api: Api) -> None:
    _assert_problem(api.client.get("/api/v1/nothing-here"), 404)
    _assert_problem(api.client.delete("/api/v1/cases"), 405)
    _assert_problem(api.client.get("/api/v1/cases"), 401)
    r = api.client.get("/api/v1/cases", headers={"Authorization": "Bearer v2v_nope_nope"})
    assert _assert_problem(r, 401)["detail"] == "invalid or revoked API key"
    assert r.headers["www-authenticate"] == "Bearer"
    _assert_problem(api.get("ncc", "/api/v1/cases?limit=0"), 422)
    _assert_problem(api.get("ncc", "/api/v1/cases?limit=501"), 422)
    _assert_problem(api.get("ncc", "/api/v1/cases?cursor=%%%"), 422)
    _assert_problem(api.get("ncc", "/api/v1/cases?status=lost"), 422)


def test_idempotency_key_replays_and_refuses_reuse(api: Api, database: Database) -> None:
    body = {
        "site": "NCC-EAST",
        "route": "KASHIWA-LOCAL",
        "product": "CART-CD19",
        "patient_ref": "MRN-IDEM",
    }
    headers = {"Idempotency-Key": "reg-1"}
    first = api.post("ncc", "/api/v1/cases", body, headers=headers)
    again = api.post("ncc", "/api/v1/cases", body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.content == again.content  # the stored answer, byte for byte
    assert again.headers.get("idempotent-replayed") == "true"
    before = _counts(database)
    other = api.post("ncc", "/api/v1/cases", {**body, "patient_ref": "MRN-OTHER"}, headers=headers)
    assert _assert_problem(other, 409)["code"] == "idempotency-key-reused"
    assert _counts(database) == before


def test_nul_characters_are_refused_everywhere(api: Api, database: Database) -> None:
    before = _counts(database)
    body = (
        '{"site": "NCC-EAST", "route": "KASHIWA-LOCAL", "product": "CART-CD19", '
        '"patient_ref": "A\\u0000B"}'
    )
    r = api.client.post(
        "/api/v1/cases",
        content=body,
        headers={**api.headers("ncc"), "content-type": "application/json"},
    )
    assert _assert_problem(r, 422)["code"] == "nul-character"
    _assert_problem(api.get("ncc", "/api/v1/cases?site=NCC%00EAST"), 422)
    assert _counts(database) == before
