"""The access matrix: every operation of the app × every role × in- and out-of-scope objects.

Operations are enumerated from the app's own OpenAPI document (built from its routes), so a
new route without a rule here fails ``test_every_operation_has_a_rule``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from models.principal import Role
from tests.conftest import Api, Seeded, seeded
from tests.helpers import Journey

# Every person's role. Device keys (a logger's credential) are in none of these sets: they
# reach only the ingest routes that name them, 403 everywhere else.
ALL = {"admin", "coordinator", "manufacturer", "courier", "qa", "viewer"}
CASE_READERS = {"admin", "coordinator", "manufacturer", "qa"}
INGEST = {"admin", "courier", "device"}
PUBLIC = {"anonymous", "device"} | ALL

# (method, path) -> (roles admitted past the role check, whether the object is scoped).
RULES: dict[tuple[str, str], tuple[set[str], bool]] = {
    ("GET", "/healthz"): (PUBLIC, False),
    ("GET", "/readyz"): (PUBLIC, False),
    # Prometheus: its own bearer token (V2V_METRICS_TOKEN), never an API key (TOKEN_ONLY).
    ("GET", "/metrics"): (set(), False),
    ("GET", "/api/v1/coi/jwks"): (PUBLIC, False),
    ("POST", "/api/v1/coi/verify"): (PUBLIC, False),
    ("GET", "/api/v1/sites"): (ALL, False),
    ("POST", "/api/v1/sites"): ({"admin"}, False),
    ("GET", "/api/v1/sites/{code}"): (ALL, False),
    ("GET", "/api/v1/routes"): (ALL, False),
    ("GET", "/api/v1/routes/{code}"): (ALL, False),
    ("GET", "/api/v1/profiles"): (ALL, False),
    ("GET", "/api/v1/products"): (ALL, False),
    ("GET", "/api/v1/me"): (ALL, False),
    ("GET", "/api/v1/principals"): ({"admin"}, False),
    ("POST", "/api/v1/principals"): ({"admin"}, False),
    ("POST", "/api/v1/principals/{principal_id}/revoke"): ({"admin"}, False),
    ("POST", "/api/v1/principals/{principal_id}/rotate-key"): ({"admin"}, False),
    ("POST", "/api/v1/cases"): ({"admin", "coordinator"}, False),
    ("GET", "/api/v1/cases"): (CASE_READERS, False),
    ("GET", "/api/v1/cases/{case_id}"): (CASE_READERS, True),
    ("GET", "/api/v1/cases/{case_id}/label"): (CASE_READERS, True),
    ("POST", "/api/v1/cases/{case_id}/schedule"): ({"admin", "coordinator"}, True),
    ("POST", "/api/v1/cases/{case_id}/events"): ({"admin", "coordinator", "manufacturer"}, True),
    ("POST", "/api/v1/cases/{case_id}/milestones/{milestone_id}/corrections"): (
        CASE_READERS,
        True,
    ),
    ("POST", "/api/v1/cases/{case_id}/hold"): ({"admin", "qa"}, True),
    ("POST", "/api/v1/shipments"): ({"admin", "coordinator", "manufacturer"}, True),
    ("GET", "/api/v1/shipments"): (CASE_READERS | {"courier"}, False),
    ("GET", "/api/v1/shipments/{shipment_id}"): (CASE_READERS | {"courier"}, True),
    ("POST", "/api/v1/shipments/{shipment_id}/cancel"): (
        {"admin", "coordinator", "manufacturer"},
        True,
    ),
    ("POST", "/api/v1/devices"): ({"admin", "courier"}, False),
    ("POST", "/api/v1/shipments/{shipment_id}/custody"): (
        {"admin", "coordinator", "manufacturer", "courier"},
        True,
    ),
    ("GET", "/api/v1/alerts"): ({"admin", "qa", "coordinator", "manufacturer", "courier"}, False),
    ("POST", "/api/v1/alerts/{alert_id}/ack"): (
        {"admin", "qa", "coordinator", "manufacturer", "courier"},
        True,
    ),
    ("POST", "/api/v1/alerts/{alert_id}/resolve"): (
        {"admin", "qa", "coordinator", "manufacturer"},
        True,
    ),
    # Planners and factories only; the factory scope is tested in test_operations_scope.py.
    ("GET", "/api/v1/slots/availability"): ({"admin", "coordinator", "manufacturer"}, False),
    ("GET", "/api/v1/metrics/turnaround"): (ALL - {"courier"}, False),
    ("GET", "/api/v1/metrics/routes/compare"): (ALL - {"courier"}, False),
    ("POST", "/api/v1/readings"): (INGEST, False),
    ("GET", "/api/v1/shipments/{shipment_id}/readings"): (CASE_READERS | {"courier"}, True),
    ("GET", "/api/v1/excursions"): (CASE_READERS | {"courier"}, False),
    ("POST", "/api/v1/excursions/{excursion_id}/disposition"): ({"qa"}, True),
    ("GET", "/api/v1/audit"): ({"admin", "qa"}, False),
    ("GET", "/api/v1/audit/verify"): ({"admin", "qa"}, False),
    ("POST", "/api/v1/audit/verify"): ({"admin", "qa"}, False),
    ("GET", "/api/v1/audit/checkpoint"): ({"admin", "qa"}, False),
    ("POST", "/api/v1/webhooks"): ({"admin"}, False),
    ("GET", "/api/v1/webhooks"): ({"admin"}, False),
    ("GET", "/api/v1/webhooks/deliveries"): ({"admin"}, False),
    ("POST", "/api/v1/webhooks/deliveries/{delivery_id}/retry"): ({"admin"}, False),
    ("PATCH", "/api/v1/webhooks/{webhook_id}"): ({"admin"}, False),
    ("DELETE", "/api/v1/webhooks/{webhook_id}"): ({"admin"}, False),
    ("POST", "/api/v1/webhooks/{webhook_id}/rotate-secret"): ({"admin"}, False),
    # Notifications: one's own settings; anyone's, the outbox and rotas for admins.
    ("GET", "/api/v1/me/notifications"): (ALL, False),
    ("PUT", "/api/v1/me/notifications"): (ALL, False),
    ("GET", "/api/v1/principals/{principal_id}/notifications"): ({"admin"}, False),
    ("PUT", "/api/v1/principals/{principal_id}/notifications"): ({"admin"}, False),
    ("GET", "/api/v1/notifications/deliveries"): ({"admin"}, False),
    ("GET", "/api/v1/alerts/{alert_id}/notifications"): (
        {"admin", "qa", "coordinator", "manufacturer", "courier"},
        True,
    ),
    ("GET", "/api/v1/sites/{code}/on-call"): ({"admin"}, False),
    ("PUT", "/api/v1/sites/{code}/on-call"): ({"admin"}, False),
    ("GET", "/api/v1/integrations/fhir/BiologicallyDerivedProduct/{case_id}"): (
        CASE_READERS,
        True,
    ),
    ("GET", "/api/v1/integrations/fhir/BiologicallyDerivedProduct"): (CASE_READERS, False),
    # The fixture case is not infused (404 in scope too), so its scope is in test_fhir.py.
    ("GET", "/api/v1/integrations/fhir/BiologicallyDerivedProductDispense/{case_id}"): (
        CASE_READERS,
        False,
    ),
    ("GET", "/api/v1/integrations/fhir/metadata"): (ALL, False),
    ("POST", "/api/v1/integrations/courier/feeds"): ({"admin"}, False),
    ("GET", "/api/v1/integrations/courier/feeds"): ({"admin"}, False),
    ("PATCH", "/api/v1/integrations/courier/feeds/{courier}"): ({"admin"}, False),
    ("POST", "/api/v1/integrations/epcis/capture"): (INGEST, False),
    # The case is a query parameter (?case_id=), so its scope is tested in test_epcis.py.
    ("GET", "/api/v1/integrations/epcis/events"): (CASE_READERS, False),
    # Everyone with work; each sees only its scope's tasks (tests/tasks/test_tasks.py).
    ("GET", "/api/v1/tasks"): (ALL - {"viewer"}, False),
}
# Operations admitted by a token of their own rather than a role: every API key is a 401.
TOKEN_ONLY = {("GET", "/metrics")}

# Personas in scope of the fixture case (NCC East, Kashiwa factory, Kashiwa courier) and out.
IN_SCOPE = {
    "admin": "admin",
    "coordinator": "ncc",
    "manufacturer": "kashiwa",
    "courier": "courier",
    "qa": "qa",
    "viewer": "viewer",
    "device": "logger",
}
OUT_OF_SCOPE = {"coordinator": "kyoto", "manufacturer": "bridgewater", "courier": "global"}
ROLE_OF = {**{v: k for k, v in IN_SCOPE.items()}, **{v: k for k, v in OUT_OF_SCOPE.items()}}


def _operations(api: Api) -> set[tuple[str, str]]:
    spec = api.client.get("/openapi.json").json()
    return {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}


def test_every_operation_has_a_rule(api: Api) -> None:
    ops = _operations(api)
    assert ops - set(RULES) == set(), "new operations need an access rule"
    assert set(RULES) - ops == set(), "rules for operations that no longer exist"


def build_world(api: Api) -> dict[str, Any]:
    """A local case in transit with a shipment and a COI-mismatch alert."""
    j = Journey(api)
    j.schedule()
    j.step("collected")
    shipment = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(shipment, "picked_up")
    bad = api.post(
        "ncc",
        f"/api/v1/cases/{j.case['id']}/events",
        {
            "type": "thawed",
            "occurred_at": j.t.isoformat(),
            "site": "NCC-EAST",
            "coi": "CHJ100126999999",
        },
    )
    assert bad.status_code in (409, 422)
    wrong = api.post(
        "courier",
        f"/api/v1/shipments/{shipment['id']}/custody",
        {
            "action": "handoff",
            "occurred_at": j.t.isoformat(),
            "from_party": "a",
            "to_party": "b",
            "coi": "CHJ100126999999",
        },
    )
    assert wrong.status_code == 409
    alerts = api.get("admin", "/api/v1/alerts").json()["items"]
    api.key("logger", Role.device, courier="KASHIWA-COLD", device_id="LOG-MATRIX-1")
    api.key("revocable", Role.viewer)  # revoked and rotated by the admin's calls
    return {
        "principal_id": api.get("revocable", "/api/v1/me").json()["id"],
        "case_id": j.case["id"],
        "shipment_id": shipment["id"],
        "alert_id": alerts[0]["id"],
        "code": "NCC-EAST",
        "coi": j.coi,
        "t": j.t,
        "delivery_id": "0" * 32,
        "webhook_id": "0" * 32,
        "excursion_id": 1,
        "milestone_id": 1,
        "courier": "KASHIWA-COLD",
    }


world_seed = seeded("world", build_world)


@pytest.fixture
def db_url(request: pytest.FixtureRequest, world_seed: Seeded, tmp_path: Path) -> Iterator[str]:
    """A test with the world gets its own copy of it (what it writes, no other test sees)."""
    yield from world_seed.db_url(request, tmp_path)


@pytest.fixture
def world(api: Api, world_seed: Seeded) -> dict[str, Any]:
    return world_seed.data(api)


def _body(path: str, persona: str | None, w: dict[str, Any]) -> dict[str, Any]:
    """Mostly empty bodies (an admitted caller then gets 404/409/422, never 401/403).

    Creating a shipment names its case in the body, so that body must be valid for the
    scope check to be reached; the case is already in transit, so in scope it is a 409.
    """
    if path != "/api/v1/shipments":
        return {}
    maker = ROLE_OF.get(persona or "") == "manufacturer"
    return {
        "case_id": w["case_id"],
        "direction": "to_site" if maker else "to_manufacturing",
        "origin": "NCC-EAST",
        "destination": "CELLARES-KASHIWA",
        "profile": "FRESH_2_8",
        "courier": "KASHIWA-COLD",
        "container": {"serial": "X", "kind": "box"},
        "coi": w["coi"],
    }


def _call(api: Api, persona: str | None, method: str, path: str, w: dict[str, Any]) -> int:
    url = path.format(**w)
    headers = api.headers(persona) if persona else {}
    body = _body(path, persona, w)
    if method == "GET":
        return int(api.client.get(url, headers=headers).status_code)
    return int(api.client.request(method, url, json=body, headers=headers).status_code)


@pytest.mark.parametrize("op", sorted(RULES), ids=lambda op: f"{op[0]} {op[1]}")
def test_access_matrix(api: Api, world: dict[str, Any], op: tuple[str, str]) -> None:
    method, path = op
    allowed, scoped = RULES[op]
    anonymous = _call(api, None, method, path, world)
    if "anonymous" in allowed:
        assert anonymous not in (401, 403)
    else:
        assert anonymous == 401
    for role, persona in IN_SCOPE.items():
        status = _call(api, persona, method, path, world)
        if role in allowed:
            assert status not in (401, 403), (persona, status)
            if scoped and method == "GET":
                assert status == 200, (persona, status)
        else:
            assert status == (401 if op in TOKEN_ONLY else 403), (persona, status)
    for role, persona in OUT_OF_SCOPE.items():
        status = _call(api, persona, method, path, world)
        if role not in allowed:
            assert status == (401 if op in TOKEN_ONLY else 403), (persona, status)
        elif scoped:
            assert status == 404, (persona, status)
        else:
            assert status not in (401, 403), (persona, status)


def test_out_of_scope_lists_are_empty_not_errors(api: Api, world: dict[str, Any]) -> None:
    assert api.get("kyoto", "/api/v1/cases").json()["items"] == []
    assert api.get("bridgewater", "/api/v1/cases").json()["items"] == []
    assert api.get("global", "/api/v1/alerts").json()["items"] == []
    assert [c["id"] for c in api.get("ncc", "/api/v1/cases").json()["items"]] == [world["case_id"]]
    assert [c["id"] for c in api.get("kashiwa", "/api/v1/cases").json()["items"]] == [
        world["case_id"]
    ]


def test_out_of_scope_404_is_indistinguishable_from_a_missing_case(
    api: Api, world: dict[str, Any]
) -> None:
    foreign = api.get("kyoto", f"/api/v1/cases/{world['case_id']}")
    missing = api.get("kyoto", "/api/v1/cases/" + "0" * 32)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()


def test_courier_sees_the_coi_but_no_patient_data(api: Api, world: dict[str, Any]) -> None:
    body = api.get("courier", f"/api/v1/shipments/{world['shipment_id']}").json()
    assert body["coi"] == world["coi"]
    assert "patient" not in str(body)
    assert api.get("courier", f"/api/v1/cases/{world['case_id']}").status_code == 403


def test_viewer_never_sees_a_coi(api: Api, world: dict[str, Any]) -> None:
    for method, path in RULES:
        if method != "GET" or path.startswith("/openapi"):
            continue
        r = api.get("viewer", path.format(**world))
        assert world["coi"] not in r.text, path
