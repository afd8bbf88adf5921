"""Issue #12 item 7 through HTTP, on both databases: offline API docs, compression and cache
headers, the shipment's case link, the live excursions table, ``/alerts?status=all``, one unit
per leg column, HTML error pages for the workspace and a way to every page from the menu."""

from __future__ import annotations

import gzip
import re
from typing import Any

import pytest

from app.web.vendor import PLOTLY_JS, URL
from tests.conftest import Api
from tests.web.test_dashboard import (  # noqa: F401  (the fixtures)
    Browser,
    db_url,
    world,
    world_seed,
)

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.I)


def raw(api: Api, url: str, **headers: str) -> tuple[Any, bytes]:
    """The response and its body exactly as sent (still compressed)."""
    with api.client.stream("GET", url, headers=headers) as r:
        return r, b"".join(r.iter_raw())


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_api_docs_load_their_assets_from_this_server(api: Api, path: str) -> None:
    page = api.client.get(path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not EXTERNAL.search(page.text), "the page names another origin"
    assert "cdn.jsdelivr.net" not in page.text and "fonts.googleapis" not in page.text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert assets and all(a.startswith("/static/apidocs/") for a in assets), assets
    for asset in assets:
        r, body = raw(api, asset, **{"Accept-Encoding": "gzip"})
        assert r.status_code == 200, asset
        assert "immutable" in r.headers["cache-control"], asset
        if asset.split("?")[0].endswith((".js", ".css")):
            assert r.headers["content-encoding"] == "gzip", asset
            assert len(gzip.decompress(body)) > len(body)
    assert "/openapi.json" in page.text


def test_api_docs_assets_missing_answer_problem_json(api: Api) -> None:
    r = api.client.get("/static/apidocs/nothing-here.js")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


def test_plotly_is_served_gzipped_with_a_long_lived_versioned_url(api: Api) -> None:
    original = PLOTLY_JS.read_bytes()
    r, body = raw(api, URL, **{"Accept-Encoding": "gzip, deflate"})
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "accept-encoding" in r.headers["vary"].lower()
    assert len(body) < 1_600_000 < len(original)  # 4.8 MB plain, about 1.47 MB on the wire
    assert gzip.decompress(body) == original
    plain, plain_body = raw(api, URL, **{"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain_body == original
    again = api.client.get(URL, headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_pages_static_files_and_api_bodies_are_compressed(
    api: Api,
    world: dict[str, Any],  # noqa: F811
) -> None:
    ncc = Browser(api, "ncc")
    page = ncc.client.get("/", headers={"Accept-Encoding": "gzip"})
    assert page.status_code == 200 and page.headers["content-encoding"] == "gzip"
    for url in ("/static/dashboard.css", "/static/dashboard.js"):
        r, body = raw(api, url, **{"Accept-Encoding": "gzip"})
        assert r.headers["content-encoding"] == "gzip", url
        assert len(body) < len(gzip.decompress(body)), url
    listed, _ = raw(api, "/openapi.json", **{"Accept-Encoding": "gzip"})
    assert listed.headers["content-encoding"] == "gzip"
    # Below the minimum size a body goes as it is.
    small, _ = raw(api, "/healthz", **{"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers


def test_only_pages_with_a_chart_name_plotly(
    api: Api,
    world: dict[str, Any],  # noqa: F811
) -> None:
    ncc = Browser(api, "ncc")
    for url in ("/", "/cases", "/alerts", f"/shipments/{world['shipment_id']}", "/routes"):
        text = ncc.get(url).text
        assert "plotly" not in " ".join(re.findall(r"<script[^>]*>", text)), url
    # Only the route comparison draws with plotly; the temperature traces come as SVG.
    assert 'data-chart="legs"' in ncc.get("/routes").text
    for url in (f"/shipments/{world['shipment_id']}", f"/cases/{world['case_id']}"):
        text = ncc.get(url).text
        assert "data-chart=" not in text and '<svg class="trace"' in text, url


def test_shipment_links_its_case_by_the_chain_of_identity(
    api: Api,
    world: dict[str, Any],  # noqa: F811
) -> None:
    page = Browser(api, "ncc").get(f"/shipments/{world['shipment_id']}").text
    link = re.search(r'id="shipment-case"><a href="/cases/([^"]+)">([^<]+)</a>', page)
    assert link, page[:3000]
    assert link.group(1) == world["case_id"]
    assert re.sub(r"\W", "", link.group(2)).startswith(world["coi"])
    # A courier may open the shipment, not the case: the COI shows without a link.
    courier = Browser(api, "courier").get(f"/shipments/{world['shipment_id']}").text
    assert 'id="shipment-case"><a' not in courier and "Case status" not in courier


def test_excursions_table_is_a_live_region(
    api: Api,
    world: dict[str, Any],  # noqa: F811
) -> None:
    ncc = Browser(api, "ncc")
    url = f"/shipments/{world['shipment_id']}"
    page = ncc.get(url).text
    assert f'data-live="{url}?part=excursions"' in page
    part = ncc.get(f"{url}?part=excursions")
    assert part.status_code == 200 and "<html" not in part.text
    assert '<table id="excursions">' in part.text and "data-excursion-id=" in part.text


def test_case_alerts_are_a_live_region(
    api: Api,
    world: dict[str, Any],  # noqa: F811
) -> None:
    ncc = Browser(api, "ncc")
    url = f"/cases/{world['case_id']}"
    assert f'data-live="{url}?part=alerts"' in ncc.get(url).text
    part = ncc.get(f"{url}?part=alerts")
    assert part.status_code == 200 and "<html" not in part.text
    assert f'data-alert-id="{world["alert_id"]}"' in part.text
    # A role that watches no alert gets no alert list, as on the whole page.
    assert Browser(api, "viewer").get(f"{url}?part=alerts").status_code == 403


@pytest.mark.parametrize("status", ["all", ""])
def test_alerts_page_shows_every_status(
    api: Api,
    world: dict[str, Any],  # noqa: F811
    status: str,
) -> None:
    ncc = Browser(api, "ncc")
    r = api.post("ncc", f"/api/v1/alerts/{world['alert_id']}/ack", {"note": "seen"})
    assert r.status_code == 200, r.text
    page = ncc.get(f"/alerts?status={status}")
    assert page.status_code == 200, page.text[:2000]
    assert f'data-alert-id="{world["alert_id"]}" data-status="acknowledged"' in page.text
    assert ncc.get(f"/alerts?status={status}&part=list").status_code == 200
    # Only the open ones by default, and an unknown status stays a clear 422 page.
    assert f'data-alert-id="{world["alert_id"]}"' not in ncc.get("/alerts").text
    bad = ncc.get("/alerts?status=sideways")
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/html")


def test_each_leg_column_has_one_unit_named_in_its_header(
    api: Api,
    world: dict[str, Any],  # noqa: F811
) -> None:
    page = Browser(api, "ncc").get("/routes").text
    table = page[page.index('<table id="legs">') : page.index("</table>", page.index('id="legs"'))]
    heads = re.findall(r'<th scope="col" class="num" data-unit="(h|d)">(.*?)</th>', table, re.S)
    assert [u for u, _ in heads] == ["h", "h", "d", "h", "d"]
    for unit, text in heads:
        assert ("hours" if unit == "h" else "days") in text
    body = table[table.index("<tbody>") :]
    cells = re.findall(r'<td class="num">(.*?)</td>', body, re.S)
    assert cells and not any(re.search(r"\d\s*(h|d)\b", c) for c in cells), cells


def test_unknown_workspace_urls_answer_html_and_the_api_json(
    api: Api,
    world: dict[str, Any],  # noqa: F811
) -> None:
    ncc = Browser(api, "ncc")
    for url in ("/no/such/page", "/cases/x/nothing", "/alerts/x"):
        r = ncc.get(url)
        assert r.status_code in (404, 405), url
        assert r.headers["content-type"].startswith("text/html"), url
        assert "Back to the overview" in r.text and 'aria-label="Main"' in r.text, url
    ja = Browser(api, "ncc", **{"Accept-Language": "ja"})
    page = ja.get("/no/such/page")
    assert "見つかりません" in page.text and "このアドレスにページはありません。" in page.text
    anonymous = api.client.get("/no/such/page")
    assert anonymous.status_code == 404 and anonymous.headers["content-type"].startswith("text/")
    for url in ("/api/v1/no-such-thing", "/api/nothing"):
        r = api.client.get(url)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    # A role outside a page: an HTML 403 in the workspace, problem JSON on the API.
    viewer = Browser(api, "viewer")
    page = viewer.get(f"/cases/{world['case_id']}")
    assert page.status_code == 403 and page.headers["content-type"].startswith("text/html")
    assert "Not available for your role" in page.text
    r = api.get("viewer", f"/api/v1/cases/{world['case_id']}")
    assert r.status_code in (403, 404) and r.headers["content-type"] == "application/problem+json"


def _nav(page: str) -> set[str]:
    nav = page[page.index('class="main-nav"') : page.index("</nav>", page.index("main-nav"))]
    return set(re.findall(r'href="([^"]+)"', nav))


@pytest.mark.parametrize(
    ("persona", "expected"),
    [
        ("ncc", {"/", "/cases", "/register", "/courier", "/alerts", "/routes"}),
        ("kashiwa", {"/", "/cases", "/courier", "/factory", "/alerts", "/routes"}),
        ("courier", {"/", "/courier", "/alerts"}),
        ("qa", {"/", "/cases", "/alerts", "/routes"}),
        ("viewer", {"/", "/routes"}),
        ("admin", {"/", "/cases", "/register", "/courier", "/factory", "/alerts", "/routes"}),
    ],
)
def test_the_menu_reaches_each_page_its_role_may_open(
    api: Api,
    world: dict[str, Any],  # noqa: F811
    persona: str,
    expected: set[str],
) -> None:
    person = Browser(api, persona)
    links = _nav(person.get("/").text)
    assert links == expected
    for url in links:
        assert person.get(url).status_code == 200, (persona, url)


def test_case_page_leads_to_its_steps_and_the_calendar(api: Api) -> None:
    ncc = Browser(api, "ncc")
    r = api.post(
        "ncc",
        "/api/v1/cases",
        {"site": "NCC-EAST", "route": "KASHIWA-LOCAL", "product": "CART-CD19", "patient_ref": "M1"},
    )
    assert r.status_code == 201, r.text
    case_id = r.json()["id"]
    page = ncc.get(f"/cases/{case_id}").text
    assert f'href="/cases/{case_id}/steps"' in page
    steps = ncc.get(f"/cases/{case_id}/steps").text
    assert f'href="/cases/{case_id}/schedule"' in steps
    assert ncc.get(f"/cases/{case_id}/schedule").status_code == 200
