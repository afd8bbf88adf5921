"""The dashboard's pages through TestClient, on both databases: login, scope, CSRF, languages."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from app.db import Database
from models.alert import Alert
from models.principal import Principal, Role
from tests.coldchain.test_readings import in_transit, post, readings
from tests.conftest import NOW, Api, Seeded, seeded
from tests.helpers import Journey

COI_RE = re.compile(r"CH[A-NP-Z1-9][A-NP-Z0-9]{2}[0-9]{4}[A-Z0-9]{6}")
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """One person's cookie jar on the app, logging in through the form as a person would."""

    def __init__(self, api: Api, persona: str | None = None, **headers: str) -> None:
        self.client = TestClient(api.client.app, follow_redirects=False, headers=headers)
        self.api = api
        if persona is not None:
            r = self.login(api.keys[persona])
            assert r.status_code == 303, r.text

    def csrf(self, url: str = "/") -> str:
        match = CSRF_RE.search(self.client.get(url).text)
        assert match, url
        return match.group(1)

    def login(self, key: str, next_: str = "/") -> Any:
        token = self.csrf("/login")
        return self.client.post("/login", data={"api_key": key, "csrf_token": token, "next": next_})

    def get(self, url: str, **kw: Any) -> Any:
        return self.client.get(url, **kw)

    def post(self, url: str, data: dict[str, str], page: str = "/") -> Any:
        return self.client.post(url, data={"csrf_token": self.csrf(page), **data})


def build_world(api: Api) -> dict[str, Any]:
    """An NCC East case in transit with an excursion, and an infused case on each route."""
    j, shipment, t0 = in_transit(api, patient="MRN-WEB-1")
    device = shipment["device_ids"][0]
    post(api, "courier", readings(device, t0, [5.0, 5.2, 12.5, 13.0, 12.0, 5.5, 5.1]))
    for route, patient in (("KASHIWA-LOCAL", "MRN-WEB-2"), ("JP-US-EWR", "MRN-WEB-3")):
        Journey(api, route=route, patient=patient, start=NOW - timedelta(days=60)).to_infusion()
    with api.database.session() as session:
        alert = session.exec(select(Alert).where(Alert.shipment_id == shipment["id"])).first()
    assert alert is not None
    return {
        "case_id": j.case["id"],
        "coi": j.coi,
        "shipment_id": shipment["id"],
        "alert_id": alert.id,
    }


world_seed = seeded("world", build_world)


@pytest.fixture
def db_url(request: pytest.FixtureRequest, world_seed: Seeded, tmp_path: Path) -> Iterator[str]:
    """A test with the world gets its own copy of it (what it writes, no other test sees)."""
    yield from world_seed.db_url(request, tmp_path)


@pytest.fixture
def world(api: Api, world_seed: Seeded) -> dict[str, Any]:
    return world_seed.data(api)


def test_every_page_renders_for_a_coordinator(api: Api, world: dict[str, Any]) -> None:
    ncc = Browser(api, "ncc")
    pages = {
        "/": ["Open alerts", "Shipments in transit", "Cases by journey stage", "KASHIWA-LOCAL"],
        f"/cases/{world['case_id']}": [world["coi"], "Journey against targets", "Chain of custody"],
        f"/shipments/{world['shipment_id']}": ["Mean kinetic temperature", "Out of range"],
        "/routes": ["Side by side", "JP-US-EWR", "Predicted for a case collected today"],
        "/alerts": ["Temperature excursion", "Acknowledge"],
    }
    for url, needles in pages.items():
        r = ncc.get(url)
        assert r.status_code == 200, (url, r.text[:2000])
        assert r.headers["content-type"].startswith("text/html")
        for needle in needles:
            assert needle in r.text, (url, needle)


def test_every_page_renders_for_qa_manufacturer_and_courier(
    api: Api, world: dict[str, Any]
) -> None:
    qa = Browser(api, "qa")
    r = qa.get("/alerts")
    assert r.status_code == 200 and 'action="/excursions/' in r.text
    assert 'name="signature_key"' in r.text and 'type="password"' in r.text
    assert qa.get(f"/cases/{world['case_id']}").status_code == 200
    kashiwa = Browser(api, "kashiwa")
    assert kashiwa.get(f"/cases/{world['case_id']}").status_code == 200
    assert 'action="/excursions/' not in kashiwa.get("/alerts").text
    courier = Browser(api, "courier")
    page = courier.get("/")
    assert page.status_code == 200 and world["shipment_id"][:8] in page.text
    assert 'href="/routes"' not in page.text and 'href="/cases/' not in page.text
    assert courier.get(f"/shipments/{world['shipment_id']}").status_code == 200
    for url in (f"/cases/{world['case_id']}", "/routes"):
        assert courier.get(url).status_code == 403, url


def test_live_regions_are_fragments_and_need_a_session(api: Api, world: dict[str, Any]) -> None:
    ncc = Browser(api, "ncc")
    for url in (
        "/?part=alerts",
        "/?part=shipments",
        "/?part=stages",
        f"/cases/{world['case_id']}?part=timeline",
        f"/shipments/{world['shipment_id']}?part=live",
        "/alerts?status=open&part=list",
    ):
        r = ncc.get(url)
        assert r.status_code == 200, url
        assert "<html" not in r.text, url
        assert any(tag in r.text for tag in ("<table", "<dl", "<ol", "<ul")), url
    assert ncc.get("/?part=nope").status_code == 404
    assert 'data-live="/?part=alerts"' in ncc.get("/").text
    anonymous = Browser(api)
    assert anonymous.get("/?part=alerts", headers={"X-Requested-With": "fetch"}).status_code == 401
    r = anonymous.get(f"/cases/{world['case_id']}")
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=%2Fcases%2F")
    viewer = Browser(api, "viewer")
    assert viewer.get("/?part=alerts").status_code == 403


def test_login_cookie_is_signed_httponly_strict_and_holds_no_key(
    api: Api, world: dict[str, Any]
) -> None:
    browser = Browser(api)
    r = browser.login(api.keys["ncc"], next_=f"/cases/{world['case_id']}")
    assert r.status_code == 303 and r.headers["location"] == f"/cases/{world['case_id']}"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("v2v_session=")
    flags = cookie.lower()
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    payload = json.loads(base64.b64decode(value.split(".", 1)[0]))
    assert set(payload) == {"sid", "csrf"}
    assert api.keys["ncc"] not in cookie and api.keys["ncc"] not in json.dumps(payload)
    # The cookie is signed: a changed session id is not accepted.
    forged = base64.b64encode(json.dumps({**payload, "sid": "x" * 43}).encode()).decode()
    tampered = TestClient(api.client.app, follow_redirects=False)
    tampered.cookies.set("v2v_session", forged + "." + value.split(".", 1)[1])
    assert tampered.get("/").status_code == 303
    # A login form posted elsewhere than to this site's own page is refused.
    other = Browser(api)
    refused = other.client.post("/login", data={"api_key": api.keys["ncc"], "csrf_token": "x"})
    assert refused.status_code == 403


def test_bad_keys_device_keys_and_open_redirects_are_refused(
    api: Api, world: dict[str, Any]
) -> None:
    browser = Browser(api)
    r = browser.login("v2v_nope_nope")
    assert r.status_code == 401 and "not valid for the dashboard" in r.text
    api.key("logger", Role.device, courier="KASHIWA-COLD", device_id="LOG-WEB-1")
    assert browser.login(api.keys["logger"]).status_code == 401
    r = browser.login(api.keys["ncc"], next_="//evil.example/")
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_a_revoked_key_loses_its_session_at_the_next_click(
    api: Api, database: Database, world: dict[str, Any]
) -> None:
    ncc = Browser(api, "ncc")
    assert ncc.get("/").status_code == 200
    with database.transaction() as session:
        principal = session.exec(select(Principal).where(Principal.name == "ncc")).one()
        principal.revoked_at = NOW - timedelta(minutes=1)
        session.add(principal)
    r = ncc.get("/")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_logout_ends_the_session(api: Api, world: dict[str, Any]) -> None:
    ncc = Browser(api, "ncc")
    assert ncc.client.post("/logout", data={"csrf_token": "wrong"}).status_code == 403
    assert ncc.get("/").status_code == 200
    r = ncc.post("/logout", {})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert ncc.get("/").status_code == 303


def test_coordinator_of_another_hospital_gets_404(api: Api, world: dict[str, Any]) -> None:
    kyoto = Browser(api, "kyoto")
    foreign = kyoto.get(f"/cases/{world['case_id']}")
    missing = kyoto.get("/cases/" + "0" * 32)
    assert foreign.status_code == missing.status_code == 404
    assert world["coi"] not in foreign.text
    assert kyoto.get(f"/shipments/{world['shipment_id']}").status_code == 404
    overview = kyoto.get("/").text
    assert world["coi"] not in overview and world["shipment_id"][:8] not in overview
    assert "No open alerts." in overview
    r = kyoto.post(f"/alerts/{world['alert_id']}/ack", {"next": "/"})
    assert r.status_code == 303
    assert "Not acknowledged: no such alert" in kyoto.get("/").text
    assert api.get("ncc", "/api/v1/alerts?status=open").json()["items"]
    bridgewater = Browser(api, "bridgewater")
    assert bridgewater.get(f"/cases/{world['case_id']}").status_code == 404


def test_viewer_sees_aggregates_only_and_no_coi(api: Api, world: dict[str, Any]) -> None:
    viewer = Browser(api, "viewer")
    for url in ("/", "/routes", "/?part=shipments", "/?part=stages"):
        r = viewer.get(url)
        assert r.status_code == 200, url
        assert not COI_RE.search(r.text), url
        assert world["shipment_id"][:8] not in r.text
    assert "Cases by journey stage" in viewer.get("/").text
    for url in (
        f"/cases/{world['case_id']}",
        f"/shipments/{world['shipment_id']}",
        "/alerts",
    ):
        r = viewer.get(url)
        assert r.status_code == 403, url
        assert not COI_RE.search(r.text)
    assert viewer.post(f"/alerts/{world['alert_id']}/ack", {}).status_code == 403


def test_forms_without_the_session_token_are_refused(
    api: Api, database: Database, world: dict[str, Any]
) -> None:
    ncc = Browser(api, "ncc")
    url = f"/alerts/{world['alert_id']}/ack"
    assert ncc.client.post(url, data={"next": "/"}).status_code == 403
    assert ncc.client.post(url, data={"csrf_token": "forged", "next": "/"}).status_code == 403
    qa = Browser(api, "qa")
    stolen = ncc.csrf()  # another session's token is no good either
    assert qa.client.post(url, data={"csrf_token": stolen}).status_code == 403
    with database.session() as session:
        alert = session.get(Alert, world["alert_id"])
        assert alert is not None and alert.status == "open"
    r = ncc.post(url, {"next": "/"})
    assert r.status_code == 303 and r.headers["location"] == "/"
    page = ncc.get("/").text
    assert "Alert acknowledged." in page
    acked = page.split('id="acknowledged-alerts"', 1)[1]
    assert f'data-alert-id="{world["alert_id"]}"' in acked
    body = api.get("ncc", "/api/v1/alerts?status=acknowledged").json()["items"]
    assert [a["id"] for a in body] == [world["alert_id"]]
    assert body[0]["acknowledged_by"] == "ncc"
    audit = api.get("admin", f"/api/v1/audit?entity=alert&entity_id={world['alert_id']}")
    assert audit.json()["items"][-1]["action"] == "alert.acknowledged"


def test_qa_signs_a_disposition_with_their_own_key_only(api: Api, world: dict[str, Any]) -> None:
    excursion = api.get("qa", "/api/v1/excursions").json()["items"][0]
    url = f"/excursions/{excursion['id']}/disposition"
    form = {"decision": "quarantine", "reason": "warm dock", "meaning": "approval"}
    ncc = Browser(api, "ncc")
    assert ncc.post(url, {**form, "signature_key": api.keys["ncc"]}).status_code == 403
    qa = Browser(api, "qa")
    qa.post(url, {**form, "signature_key": api.keys["admin"]}, page="/alerts")
    assert "Not signed" in qa.get("/alerts").text
    qa.post(url, {**form, "reason": " ", "signature_key": api.keys["qa"]}, page="/alerts")
    assert "Not signed: choose a decision and give a reason." in qa.get("/alerts").text
    r = qa.post(url, {**form, "signature_key": api.keys["qa"]}, page="/alerts")
    assert r.status_code == 303
    page = qa.get("/alerts").text
    assert "Disposition signed." in page and "Signed by qa" in page
    signed = api.get("qa", "/api/v1/excursions").json()["items"][0]
    assert signed["disposition"] == "quarantine"
    assert signed["signature_meaning"] == "Approval of the disposition"
    assert api.keys["qa"] not in page


def test_japanese_labels_and_jst_times(api: Api, world: dict[str, Any]) -> None:
    ja = Browser(api, "qa", **{"Accept-Language": "ja-JP,ja;q=0.9,en;q=0.5"})
    page = ja.get("/").text
    assert '<html lang="ja">' in page
    for label in ("概要", "未確認のアラート", "輸送中の便", "工程別の症例数", "ログアウト"):
        assert label in page, label
    assert "Asia/Tokyo (UTC+09:00)" in page
    times = re.findall(r"<time datetime=\"([^\"]+)\">([^<]+)</time>", page)
    assert times and all(iso.endswith("+09:00") and text.endswith("+09:00") for iso, text in times)
    assert "2026/11/26 09:00 +09:00" in page  # NOW in JST, in the Japanese date format
    case = ja.get(f"/cases/{world['case_id']}").text
    assert "目標に対する工程の進捗" in case and "予定" in case
    assert "平均キネティック温度" in ja.get(f"/shipments/{world['shipment_id']}").text
    routes = ja.get("/routes").text
    assert "国内" in routes and "海外" in routes and "￥400,000" in routes
    # The switch beats Accept-Language and stays for the next pages.
    r = ja.get("/lang/en?next=/routes")
    assert r.status_code == 303 and r.headers["location"] == "/routes"
    assert '<html lang="en">' in ja.get("/").text
    assert "¥400,000" in ja.get("/routes").text
    assert ja.get("/lang/xx?next=https://evil.example/").headers["location"] == "/"


def test_english_coordinator_sees_their_site_time_zone(api: Api, world: dict[str, Any]) -> None:
    page = Browser(api, "bridgewater").get("/").text
    assert "America/New_York (UTC-05:00)" in page
    assert "Nov 25, 2026 19:00 -05:00" in page  # NOW in New York


def test_web_routes_stay_out_of_the_openapi_schema(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    assert all(p.startswith(("/api/", "/healthz", "/readyz", "/metrics")) for p in paths)


def test_charts_use_the_locally_served_plotly(api: Api, world: dict[str, Any]) -> None:
    from app.web.vendor import URL

    js = api.client.get(URL)
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert len(js.content) > 1_000_000
    assert api.client.get("/static/dashboard.js").status_code == 200
    page = Browser(api, "ncc").get("/routes")
    scripts = re.findall(r"<script[^>]*src=\"([^\"]+)\"", page.text)
    # dashboard.js loads plotly itself, from the address the page names, when it has a chart.
    assert f'data-plotly="{URL}"' in page.text and URL not in scripts
    assert scripts and all(s.startswith("/static/") for s in scripts)
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    legs = json.loads(
        re.search(
            r'<script type="application/json" id="chart-legs-data">(.*?)</script>', page.text, re.S
        ).group(1)  # type: ignore[union-attr]
    )
    assert "KASHIWA-LOCAL" in legs["routes"] and legs["legs"]


def test_no_message_is_marked_inside_an_f_string() -> None:
    """pybabel does not look inside f-strings: a message marked there is never extracted,
    and `make messages` then drops its translation from the catalog."""
    import ast

    from app.web.i18n import TRANSLATIONS

    hidden = []
    for path in sorted(TRANSLATIONS.parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.JoinedStr):
                continue
            for inner in ast.walk(node):
                if (
                    isinstance(inner, ast.Call)
                    and isinstance(inner.func, ast.Name)
                    and inner.func.id in {"_", "N_", "gettext"}
                ):
                    hidden.append(f"{path.name}:{inner.lineno}")
    assert hidden == [], "mark these outside the f-string"


def test_every_message_has_a_japanese_translation() -> None:
    from babel.messages.extract import extract_from_dir
    from babel.messages.pofile import read_po

    from app.web.i18n import TRANSLATIONS

    web = TRANSLATIONS.parent
    found = {
        message
        for _, _, message, _, _ in extract_from_dir(
            str(web),
            method_map=[("templates/**.html", "jinja2"), ("**.py", "python")],
            keywords={"_": None, "N_": None, "gettext": None},
        )
    }
    with (TRANSLATIONS / "ja" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalog = read_po(handle)
    missing = sorted(m for m in found if not catalog.get(m) or not catalog.get(m).string)
    assert missing == [], "run `make messages` and translate"
    for message in catalog:
        if message.id:
            names = re.findall(r"%\((\w+)\)s", str(message.id))
            assert sorted(names) == sorted(re.findall(r"%\((\w+)\)s", str(message.string)))
