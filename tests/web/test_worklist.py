"""The worklist page on both databases: COI in any form, patient reference never echoed,
the viewer's scope, the stage filters the overview links to, paging, HTML 404s."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.services.identity.coi import check_char, display
from tests.conftest import Api, Seeded, seeded
from tests.helpers import Journey, register
from tests.web.test_dashboard import Browser

ROW_RE = re.compile(r'<tr data-case-id="([0-9a-f]+)"')


def listed(page: Any) -> list[str]:
    assert page.status_code == 200, page.text[:2000]
    return ROW_RE.findall(page.text)


def build_cases(api: Api) -> dict[str, Any]:
    """Two NCC East cases (one collected), and one of the University of Tokyo Hospital."""
    first = Journey(api, patient="MRN-WL-1")
    first.schedule()
    first.step("collected", hours=2)
    second = register(api, patient="MRN-WL-2")
    other = register(
        api, route="TOKYO-KASHIWA", patient="MRN-WL-3", persona="utokyo", site="UTOKYO-HOSP"
    )
    return {"first": first.case, "second": second, "other": other}


cases_seed = seeded("cases", build_cases)


@pytest.fixture
def db_url(request: pytest.FixtureRequest, cases_seed: Seeded, tmp_path: Path) -> Iterator[str]:
    """A test with the cases gets its own copy of them (writes stay private)."""
    yield from cases_seed.db_url(request, tmp_path)


@pytest.fixture
def cases(api: Api, cases_seed: Seeded) -> dict[str, Any]:
    return cases_seed.data(api)


@pytest.mark.parametrize(
    "form",
    ["&/{coi}", "{coi}", "{coi}{k}", "{coi} {k}", " {spaced} ", "{display}", "=+02000&/{coi}"],
)
def test_a_coi_in_any_form_finds_its_case(api: Api, cases: dict[str, Any], form: str) -> None:
    coi = cases["first"]["coi"]
    typed = form.format(
        coi=coi,
        k=check_char(coi),
        spaced=f"{coi[:5]} {coi[5:9]} {coi[9:]}",
        display=display(coi),
    )
    page = Browser(api, "ncc").get("/cases", params={"q": typed})
    assert listed(page) == [cases["first"]["id"]]
    row = page.text.split('id="worklist"', 1)[1]
    assert display(coi) in row and 'href="/cases/' + cases["first"]["id"] + '"' in row
    assert "Collected" in row and "Picked up for the factory" in row  # stage and next step
    assert "KASHIWA-LOCAL" in row and "National Cancer Center Hospital East" in row


def test_a_wrong_check_character_says_so_and_lists_nothing(api: Api, cases: dict[str, Any]) -> None:
    coi = cases["first"]["coi"]
    wrong = "0" if check_char(coi) != "0" else "1"
    page = Browser(api, "ncc").get("/cases", params={"q": f"{coi} {wrong}"})
    assert listed(page) == []
    assert 'id="worklist-error"' in page.text and "Nothing found for this search" in page.text


def test_patient_reference_finds_the_case_and_is_never_shown_back(
    api: Api, cases: dict[str, Any]
) -> None:
    ncc = Browser(api, "ncc")
    r = ncc.post("/cases", {"patient_ref": "MRN-WL-2"}, page="/cases")
    assert listed(r) == [cases["second"]["id"]]
    assert "MRN-WL-2" not in r.text
    assert 'name="patient_ref" type="password" value=""' in r.text
    assert "for the patient reference entered" in r.text
    # The form posts; the reference never becomes part of an address.
    assert 'method="post" action="/cases"' in r.text and "patient_ref=" not in r.text
    assert ncc.client.post("/cases", data={"patient_ref": "MRN-WL-2"}).status_code == 403
    # Another hospital's coordinator finds nothing with the same reference.
    utokyo = Browser(api, "utokyo")
    assert listed(utokyo.post("/cases", {"patient_ref": "MRN-WL-2"}, page="/cases")) == []


def test_another_sites_cases_are_never_listed(api: Api, cases: dict[str, Any]) -> None:
    mine = listed(Browser(api, "ncc").get("/cases"))
    assert set(mine) == {cases["first"]["id"], cases["second"]["id"]}
    page = Browser(api, "ncc").get("/cases", params={"q": cases["other"]["coi"]})
    assert listed(page) == [] and 'id="worklist-empty"' in page.text
    assert cases["other"]["id"] not in page.text
    assert listed(Browser(api, "utokyo").get("/cases")) == [cases["other"]["id"]]
    assert listed(Browser(api, "admin").get("/cases")).__len__() == 3
    viewer = Browser(api, "viewer")
    assert viewer.get("/cases").status_code == 403
    assert 'href="/cases?status=' not in viewer.get("/").text  # counts only, no links


def test_stage_counts_link_to_the_filtered_worklist(api: Api, cases: dict[str, Any]) -> None:
    ncc = Browser(api, "ncc")
    stages = ncc.get("/?part=stages").text
    link = re.search(r'<a href="(/cases\?status=collected)">', stages)
    assert link is not None
    assert listed(ncc.get(link.group(1))) == [cases["first"]["id"]]
    assert listed(ncc.get("/cases?status=registered")) == [cases["second"]["id"]]
    page = ncc.get("/cases?status=collected")
    assert '<option value="collected" selected>' in page.text
    assert listed(ncc.get("/cases?route=JP-US-EWR")) == []
    assert "Check the filters" in ncc.get("/cases?status=nonsense").text


def test_registration_dates_filter_in_the_page_zone(api: Api, cases: dict[str, Any]) -> None:
    ncc = Browser(api, "ncc")
    # NOW is 2026-11-26 00:00 UTC, 09:00 in Tokyo: every case was registered that JST day.
    assert len(listed(ncc.get("/cases?from=2026-11-26&to=2026-11-26"))) == 2
    assert listed(ncc.get("/cases?from=2026-11-27")) == []
    assert listed(ncc.get("/cases?to=2026-11-25")) == []
    assert "Check the filters" in ncc.get("/cases?from=26/11/2026").text


def test_pages_follow_the_services_keyset(api: Api, cases: dict[str, Any]) -> None:
    ncc = Browser(api, "ncc")
    first = ncc.get("/cases?limit=1")
    link = re.search(r'href="/cases\?(limit=1&amp;cursor=[^"]+)" id="next-page"', first.text)
    assert link is not None
    second = ncc.get("/cases?" + link.group(1).replace("&amp;", "&"))
    assert len(listed(first)) == len(listed(second)) == 1
    assert set(listed(first) + listed(second)) == {cases["first"]["id"], cases["second"]["id"]}
    assert 'id="next-page"' not in second.text and 'id="first-page"' in second.text


def test_unknown_workspace_urls_answer_html_and_the_api_keeps_json(api: Api) -> None:
    ncc = Browser(api, "ncc")
    for url in ("/no-such-page", "/cases/x/y/z"):
        r = ncc.get(url)
        assert r.status_code == 404, url
        assert r.headers["content-type"].startswith("text/html"), url
        assert "Not found" in r.text and "No page at this address." in r.text
        assert 'href="/cases"' in r.text  # the logged-in menu
    ja = Browser(api, "ncc", **{"Accept-Language": "ja"}).get("/no-such-page")
    assert ja.status_code == 404 and "このアドレスにページはありません。" in ja.text
    anonymous = Browser(api).get("/nowhere")
    assert anonymous.status_code == 404 and "text/html" in anonymous.headers["content-type"]
    api_404 = api.get("ncc", "/api/v1/nowhere")
    assert api_404.status_code == 404
    assert api_404.headers["content-type"] == "application/problem+json"
    assert Browser(api).get("/healthz/nope").headers["content-type"].endswith("json")
