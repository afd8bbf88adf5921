"""The turnaround filters of the API contract (product, route, site) and per-product
comparisons, against a hand count over the cases the test walks; bad codes are 422."""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import NOW, Api, Seeded, seeded
from tests.helpers import ROUTE_PARTIES, Journey, register
from tests.metrics.test_metrics import v2v_days
from tests.metrics.test_metrics import walk_to_infusion as walk
from tests.web.test_dashboard import Browser

CD19, BCMA = "CART-CD19", "CART-BCMA"
# (route, product, days from qc start to release) of each infused case.
COHORT = (
    ("KASHIWA-LOCAL", CD19, 10),
    ("KASHIWA-LOCAL", CD19, 12),
    ("KASHIWA-LOCAL", BCMA, 15),
    ("KASHIWA-LOCAL", BCMA, 16),
    ("KASHIWA-LOCAL", BCMA, 20),
    ("JP-US-EWR", CD19, 30),
    ("JP-US-EWR", BCMA, 33),
    ("JP-US-EWR", BCMA, 35),
    ("TOKYO-KASHIWA", CD19, 11),
)


def product_journey(
    api: Api, *, route: str, product: str, patient: str, start: datetime
) -> Journey:
    """A Journey whose case is of ``product`` (the shared helper registers CD19 only)."""
    j = Journey.__new__(Journey)
    j.api, j.route, j.t = api, route, start
    (j.coord, j.site, j.maker, j.factory, j.courier, j.courier_org) = ROUTE_PARTIES[route]
    j.case = register(
        api, route=route, patient=patient, persona=j.coord, site=j.site, product=product
    )
    j.coi, j.inbound, j.outbound = j.case["coi"], None, None
    return j


def build_products(api: Api) -> dict[str, Any]:
    base = NOW - timedelta(days=150)
    for i, (route, product, days) in enumerate(COHORT):
        j = product_journey(
            api, route=route, product=product, patient=f"P{i}", start=base + timedelta(days=2 * i)
        )
        walk(j, 24 * days)
    # A BCMA case collected and cancelled at NCC East: attrition for BCMA only.
    c = product_journey(
        api, route="KASHIWA-LOCAL", product=BCMA, patient="PC", start=base + timedelta(days=40)
    )
    c.schedule()
    c.step("collected")
    c.step("cancelled", coi=False)
    return {}


products_seed = seeded("products", build_products)


@pytest.fixture
def db_url(request: pytest.FixtureRequest, products_seed: Seeded, tmp_path: Path) -> Iterator[str]:
    """A test with the products gets its own copy of them (what it writes, no other test sees)."""
    yield from products_seed.db_url(request, tmp_path)


@pytest.fixture
def products(api: Api, products_seed: Seeded) -> None:
    products_seed.data(api)


def v2v(*, route: str | None = None, product: str | None = None) -> list[float]:
    """The hand count: each matching case's V2V in days."""
    return [
        v2v_days(24 * d)
        for r, p, d in COHORT
        if (route is None or r == route) and (product is None or p == product)
    ]


def groups(api: Api, persona: str, query: str) -> dict[str, dict[str, object]]:
    r = api.get(persona, f"/api/v1/metrics/turnaround?{query}")
    assert r.status_code == 200, r.text
    return {g["key"]: g for g in r.json()["groups"]}


def test_product_groups_and_the_product_filter_match_a_hand_count(api: Api, products: None) -> None:
    by_product = groups(api, "viewer", "group_by=product")
    assert set(by_product) == {CD19, BCMA}
    for code in (CD19, BCMA):
        stats = by_product[code]["vein_to_vein_d"]
        assert isinstance(stats, dict)
        assert stats["p50"] == pytest.approx(statistics.median(v2v(product=code)), abs=1e-3)
        assert stats["mean"] == pytest.approx(statistics.fmean(v2v(product=code)), abs=1e-3)
    assert by_product[CD19]["n"] == 4 and by_product[BCMA]["n"] == 6  # the cancelled one too
    assert by_product[CD19]["attrition_rate"] == 0
    assert by_product[BCMA]["attrition_rate"] == pytest.approx(1 / 6, abs=1e-4)

    bcma = groups(api, "viewer", f"group_by=route&product={BCMA}")
    cd19 = groups(api, "viewer", f"group_by=route&product={CD19}")
    assert set(bcma) == {"KASHIWA-LOCAL", "JP-US-EWR"}
    assert set(cd19) == {"KASHIWA-LOCAL", "JP-US-EWR", "TOKYO-KASHIWA"}
    for route, got in (*((r, bcma[r]) for r in bcma),):
        want = statistics.median(v2v(route=route, product=BCMA))
        assert got["vein_to_vein_d"]["p50"] == pytest.approx(want, abs=1e-3)  # type: ignore[index]
    local_bcma = bcma["KASHIWA-LOCAL"]["vein_to_vein_d"]["p50"]  # type: ignore[index]
    local_cd19 = cd19["KASHIWA-LOCAL"]["vein_to_vein_d"]["p50"]  # type: ignore[index]
    assert local_bcma - local_cd19 == pytest.approx(16 - 11, abs=1e-3)


def test_route_and_site_filters(api: Api, products: None) -> None:
    only = groups(api, "viewer", "group_by=product&route=JP-US-EWR")
    assert {k: g["n"] for k, g in only.items()} == {CD19: 1, BCMA: 2}
    assert only[BCMA]["vein_to_vein_d"]["p50"] == pytest.approx(  # type: ignore[index]
        statistics.median(v2v(route="JP-US-EWR", product=BCMA)), abs=1e-3
    )
    tokyo = groups(api, "viewer", "group_by=route&site=UTOKYO-HOSP")
    assert list(tokyo) == ["TOKYO-KASHIWA"] and tokyo["TOKYO-KASHIWA"]["n"] == 1
    ncc = groups(api, "viewer", "group_by=site&site=NCC-EAST")
    assert list(ncc) == ["NCC-EAST"] and ncc["NCC-EAST"]["n"] == 9
    both = groups(api, "viewer", f"group_by=route&site=NCC-EAST&route=KASHIWA-LOCAL&product={CD19}")
    assert both["KASHIWA-LOCAL"]["n"] == 2


def test_filters_never_widen_a_callers_scope(api: Api, products: None) -> None:
    # A coordinator asking for another hospital's site sees nothing, as with no filter.
    assert groups(api, "ncc", "site=UTOKYO-HOSP") == {}
    assert set(groups(api, "ncc", "group_by=site&site=NCC-EAST")) == {"NCC-EAST"}
    assert groups(api, "utokyo", "route=KASHIWA-LOCAL") == {}
    # A factory asking for a route made elsewhere sees nothing.
    assert groups(api, "kashiwa", "route=JP-US-EWR") == {}
    assert groups(api, "bridgewater", f"product={BCMA}")["JP-US-EWR"]["n"] == 2


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("product=CART-NOPE", "product"),
        ("route=NOWHERE", "route"),
        ("site=NO-SUCH-SITE", "site"),
        ("product=" + "X" * 40, "product"),
        ("group_by=patient", "group_by"),
    ],
)
def test_unknown_codes_are_a_422_naming_the_parameter(api: Api, query: str, name: str) -> None:
    r = api.get("viewer", f"/api/v1/metrics/turnaround?{query}")
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert any(name in str(e.get("loc")) for e in r.json()["errors"]), r.text


def test_compare_observes_each_product_apart(api: Api, products: None) -> None:
    def compare(product: str) -> dict[str, dict[str, object]]:
        r = api.get(
            "viewer",
            "/api/v1/metrics/routes/compare?site=NCC-EAST&routes=KASHIWA-LOCAL,JP-US-EWR"
            f"&product={product}",
        )
        assert r.status_code == 200, r.text
        return {x["route"]: x["observed"] for x in r.json()["routes"]}

    cd19, bcma = compare(CD19), compare(BCMA)
    for route in ("KASHIWA-LOCAL", "JP-US-EWR"):
        for product, got in ((CD19, cd19), (BCMA, bcma)):
            stats = got[route]["vein_to_vein_d"]
            want = v2v(route=route, product=product)
            assert stats["p50"] == pytest.approx(statistics.median(want), abs=1e-3)  # type: ignore[index]
            assert got[route]["n_infused"] == len(want)
    assert cd19["KASHIWA-LOCAL"]["n"] == 2 and bcma["KASHIWA-LOCAL"]["n"] == 4
    bad = api.get("viewer", "/api/v1/metrics/routes/compare?routes=KASHIWA-LOCAL&product=NOPE")
    assert bad.status_code == 422


def test_the_routes_page_product_selector_changes_the_figures(api: Api, products: None) -> None:
    viewer = Browser(api, "viewer")

    def cases_infused(product: str) -> list[str]:
        page = viewer.get(f"/routes?product={product}")
        assert page.status_code == 200
        row = re.search(r"Cases infused</th>(.*?)</tr>", page.text, re.S)
        assert row, page.text[:500]
        return re.findall(r'<td class="num">([^<]*)</td>', row.group(1))

    cd19, bcma = cases_infused(CD19), cases_infused(BCMA)
    assert cd19 != bcma
    # Routes in page order: local ones first (KASHIWA-LOCAL, TOKYO-KASHIWA), then overseas.
    assert cd19 == ["2", "1", "1"] and bcma == ["3", "0", "2"]
