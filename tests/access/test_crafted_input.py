"""Crafted input is refused with a 4xx problem, never a 500, and the server keeps serving.

Each case is what an attacker (or a broken client) can send through the API: JSON nested
deeper than any parser's stack, free-form event data nested or grown without bound, cursors
carrying instants no column can hold, dates at the edge of the calendar.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.jsonlimits import json_too_deep
from tests.conftest import Api
from tests.helpers import Journey, iso


def _cursor(*values: Any) -> str:
    raw = json.dumps(list(values), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _refused(r: Any, *statuses: int) -> dict[str, Any]:
    assert r.status_code in (statuses or (400, 413, 422)), r.text[:500]
    assert r.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = r.json()
    assert problem["status"] == r.status_code
    return problem


def _still_serving(api: Api) -> None:
    assert api.get("admin", "/api/v1/cases").status_code == 200


def _nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def _deep_array(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_json_nested_fifty_thousand_deep_to_readings_is_refused(api: Api) -> None:
    body = b'{"readings":' + _deep_array(50_000) + b"}"
    r = api.post(
        "courier", "/api/v1/readings", content=body, headers={"Content-Type": "application/json"}
    )
    problem = _refused(r, 422)
    assert problem["code"] == "json-too-deep"
    _still_serving(api)


@pytest.mark.parametrize("path", ["/api/v1/cases", "/api/v1/webhooks", "/api/v1/shipments"])
def test_deep_json_to_any_endpoint_is_refused(api: Api, path: str) -> None:
    r = api.post(
        "admin", path, content=_deep_array(5_000), headers={"Content-Type": "application/json"}
    )
    assert _refused(r, 422)["code"] == "json-too-deep"
    _still_serving(api)


def test_brackets_inside_strings_do_not_count_as_depth(api: Api) -> None:
    note = "[" * 100 + '\\"{' * 50
    j = Journey(api)
    j.schedule()
    r = api.post(
        "ncc",
        f"/api/v1/cases/{j.case['id']}/events",
        {
            "type": "collected",
            "occurred_at": iso(j.at(hours=1)),
            "site": "NCC-EAST",
            "coi": j.coi,
            "note": note,
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["note"] == note


def _event(api: Api, data: Any, patient: str = "MRN-0001") -> Any:
    j = Journey(api, patient=patient)
    j.schedule()
    return api.post(
        "ncc",
        f"/api/v1/cases/{j.case['id']}/events",
        {
            "type": "collected",
            "occurred_at": iso(j.at(hours=1)),
            "site": "NCC-EAST",
            "coi": j.coi,
            "data": data,
        },
    )


def test_event_data_nested_nine_hundred_deep_is_refused_and_not_stored(api: Api) -> None:
    # Under the edge's JSON depth cap of 32, the event's own cap (depth 8) refuses it.
    r = _event(api, _nested(30))
    problem = _refused(r, 422)
    assert "body/data" in [e["loc"] for e in problem["errors"]]
    r = _event(api, _nested(900), patient="MRN-0002")
    assert _refused(r, 422)["code"] == "json-too-deep"
    audit = api.get("admin", "/api/v1/audit?entity=case").json()["items"]
    assert not [e for e in audit if e["action"] == "case.collected"]
    _still_serving(api)


def test_event_data_over_eight_kilobytes_is_refused(api: Api) -> None:
    problem = _refused(_event(api, {"blob": "x" * 9000}), 422)
    assert "body/data" in [e["loc"] for e in problem["errors"]]


def test_event_data_within_the_caps_is_kept(api: Api) -> None:
    data = _nested(7, "ok")
    r = _event(api, data)
    assert r.status_code == 201, r.text
    assert r.json()["data"] == data


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor("2026-11-26T00:00:00", "x"),  # naive
        _cursor("0001-01-01T00:00:00+01:00", "x"),  # before year 1 in UTC
        _cursor("9999-12-31T23:59:59-01:00", "x"),  # after year 9999 in UTC
        _cursor(12, 13),
        _cursor(["2026-11-26T00:00:00Z"], "x"),
        _cursor("2026-11-26T00:00:00Z", None),
        "not-base64-!!",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        _cursor(*([0] * 2)) + "=",
    ],
    ids=[
        "naive",
        "year-0",
        "year-10000",
        "numbers",
        "list",
        "null-id",
        "garbage",
        "not-utf8",
        "padding",
    ],
)
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/cases",
        "/api/v1/shipments",
        "/api/v1/webhooks/deliveries",
        "/api/v1/integrations/fhir/BiologicallyDerivedProduct",
    ],
)
def test_a_crafted_cursor_is_a_422(api: Api, path: str, cursor: str) -> None:
    sep = "&" if "?" in path else "?"
    param = "_cursor" if "fhir" in path else "cursor"
    r = api.get("admin", f"{path}{sep}{param}={cursor}")
    assert r.status_code in (400, 422), r.text[:300]
    _still_serving(api)


@pytest.mark.parametrize(
    "token",
    [_cursor("0001-01-01T00:00:00+01:00", "x", 0), _cursor("2026-11-26T00:00:00", "x", 0)],
    ids=["year-0", "naive"],
)
def test_a_crafted_epcis_page_token_is_a_422(api: Api, token: str) -> None:
    r = api.get("admin", f"/api/v1/integrations/epcis/events?nextPageToken={token}")
    _refused(r, 400, 422)
    _still_serving(api)


@pytest.mark.parametrize(
    "query",
    [
        "from=9999-12-20",
        "from=9999-12-31&to=9999-12-31",
        "from=0001-01-01",
        "to=0001-01-01",
        "from=2026-11-26&to=9999-12-31",
    ],
)
def test_availability_dates_are_range_checked(api: Api, query: str) -> None:
    r = api.get("admin", f"/api/v1/slots/availability?site=CELLARES-KASHIWA&{query}")
    _refused(r, 422)
    ok = api.get("admin", "/api/v1/slots/availability?site=CELLARES-KASHIWA&from=2026-11-26")
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    "query",
    [
        "from=0001-01-01T00:00:00%2B01:00",
        "to=9999-12-31T23:59:59-01:00",
        "from=0001-01-01",
        "from=9999-12-31",
    ],
)
def test_metrics_instants_are_range_checked(api: Api, query: str) -> None:
    for path in ("/api/v1/metrics/turnaround", "/api/v1/metrics/routes/compare"):
        r = api.get("admin", f"{path}?{query}")
        assert r.status_code in (200, 422), r.text[:300]
        if r.status_code == 422:
            _refused(r, 422)
    _still_serving(api)


def test_the_audit_serialiser_refuses_depth_it_could_not_recurse_through() -> None:
    # Unreachable through the API (the edge caps depth at 32); a defence for internal callers.
    from app.errors import Invalid
    from app.services.audit.chain import JSONABLE_MAX_DEPTH, jsonable

    assert jsonable(_nested(JSONABLE_MAX_DEPTH - 1)) == _nested(JSONABLE_MAX_DEPTH - 1)
    with pytest.raises(Invalid):
        jsonable(_nested(5_000))


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


_TEXT = st.text(alphabet='[]{}"\\ab:,', max_size=6)
_JSON = st.recursive(
    st.none() | st.integers() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=60,
)


@settings(max_examples=400, deadline=None)
@given(value=_JSON, limit=st.integers(min_value=0, max_value=6))
def test_the_depth_scan_agrees_with_the_parsed_depth(value: Any, limit: int) -> None:
    """The edge's byte scan says "too deep" exactly when the parsed document nests deeper
    than the limit, whatever brackets, quotes and escapes its strings hold."""
    body = json.dumps(value).encode()
    assert json_too_deep(body, limit) == (_depth(value) > limit)
