"""A person's notification settings: targets validated, kept as given, shown masked."""

from __future__ import annotations

import pytest

from integrations.notify import InvalidTarget, validate
from tests.conftest import Api
from tests.notifications.flows import principal_id

LINE = "line://SECRETTOKEN1234567890/"


def test_settings_round_trip_with_masked_targets(api: Api) -> None:
    body = {
        "contacts": [{"target": "coordinator@ncc.example.jp"}, {"target": LINE}],
        "subscriptions": [{"kinds": ["loss_of_signal", "coi_mismatch"], "min_severity": "major"}],
        "quiet_hours": {"from": "22:00", "to": "07:00"},
        "language": "ja",
        "digest": True,
    }
    r = api.client.put("/api/v1/me/notifications", json=body, headers=api.headers("ncc"))
    assert r.status_code == 200, r.text
    got = api.get("ncc", "/api/v1/me/notifications").json()
    assert got == r.json()
    assert [c["target"] for c in got["contacts"]] == [
        "c…@ncc.example.jp",
        got["contacts"][1]["target"],
    ]
    assert got["contacts"][1]["target"].startswith("line://…")
    assert "SECRETTOKEN" not in r.text
    assert got["quiet_hours"] == {"from": "22:00", "to": "07:00"}
    assert (got["language"], got["timezone"], got["digest"]) == ("ja", "Asia/Tokyo", True)
    # Kept by fingerprint without re-sending the token; the admin sees the same, masked.
    keep = {"contacts": [{"fingerprint": got["contacts"][1]["fingerprint"]}]}
    r = api.client.put("/api/v1/me/notifications", json=keep, headers=api.headers("ncc"))
    assert [c["kind"] for c in r.json()["contacts"]] == ["line"]
    pid = principal_id(api, "ncc")
    admin_view = api.get("admin", f"/api/v1/principals/{pid}/notifications").json()
    assert admin_view == r.json()
    assert api.get("ncc", f"/api/v1/principals/{pid}/notifications").status_code == 403
    trail = api.get("admin", f"/api/v1/audit?entity=principal&entity_id={pid}").json()["items"]
    assert trail and "SECRETTOKEN" not in str(trail)


@pytest.mark.parametrize(
    "target",
    [
        "file:///etc/passwd",
        "windows://",
        "not an address",
        "mailto://user:pw@example.org?pgpprv=/etc/ssl/private/key.pem",
        "javascript://alert(1)",
    ],
)
def test_unsafe_or_unknown_targets_are_refused(api: Api, target: str) -> None:
    body = {"contacts": [{"target": target}]}
    r = api.client.put("/api/v1/me/notifications", json=body, headers=api.headers("ncc"))
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"].endswith("contacts/0/target")
    assert api.get("ncc", "/api/v1/me/notifications").json()["contacts"] == []


def test_private_hosts_need_the_setting() -> None:
    for target in ("json://127.0.0.1:8080/x", "json://169.254.169.254/", "form://10.0.0.5/"):
        with pytest.raises(InvalidTarget):
            validate(target)
        assert validate(target, allow_private=True) == target
    assert validate("json://hooks.example.org/v2v") == "json://hooks.example.org/v2v"


def test_teams_is_reached_through_workflows_and_a_retired_connector_url_says_so(api: Api) -> None:
    workflow = "workflow://prod-01.westus.logic.azure.com:443/wf0123456789/sig0123456789"
    body = {"contacts": [{"target": workflow}]}
    r = api.client.put("/api/v1/me/notifications", json=body, headers=api.headers("ncc"))
    assert r.status_code == 200, r.text
    assert r.json()["contacts"][0]["kind"] == "workflow"
    assert "wf0123456789" not in r.text
    old = {"contacts": [{"target": "msteams://team/tokenA/tokenB/tokenC/"}]}
    r = api.client.put("/api/v1/me/notifications", json=old, headers=api.headers("ncc"))
    assert r.status_code == 422
    assert "workflow://" in r.json()["errors"][0]["msg"]
    kept = api.get("ncc", "/api/v1/me/notifications").json()["contacts"]
    assert [c["kind"] for c in kept] == ["workflow"]
