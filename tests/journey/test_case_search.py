"""Finding a case: by a scanned or typed COI, by the hospital's patient reference (compared
as its keyed hash, never echoed), by registration date, always inside the caller's scope."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from app.services.identity.coi import check_char
from tests.conftest import NOW, Api
from tests.helpers import iso, register


def search(api: Api, persona: str, **params: Any) -> Any:
    return api.get(persona, "/api/v1/cases", params=params)


def ids(r: Any) -> list[str]:
    assert r.status_code == 200, r.text
    return [c["id"] for c in r.json()["items"]]


@pytest.mark.parametrize(
    "form",
    ["&/{coi}", "{coi}", "{coi}{k}", "{coi} {k}", " {spaced} ", "=+02000&/{coi}=%0000"],
)
def test_q_finds_a_case_by_its_coi_in_any_scanned_form(api: Api, form: str) -> None:
    case = register(api, patient="MRN-S1")
    register(api, patient="MRN-S2")
    coi = case["coi"]
    typed = form.format(coi=coi, k=check_char(coi), spaced=f"{coi[:5]} {coi[5:9]} {coi[9:]}")
    assert ids(search(api, "ncc", q=typed)) == [case["id"]]


def test_q_with_part_of_a_coi_finds_the_cases_containing_it(api: Api) -> None:
    first = register(api, patient="MRN-S1")
    second = register(api, patient="MRN-S2")
    assert set(ids(search(api, "ncc", q=first["coi"][:9]))) == {first["id"], second["id"]}
    assert ids(search(api, "ncc", q=second["coi"][-6:])) == [second["id"]]


def test_a_wrong_check_character_or_junk_is_a_clear_422(api: Api) -> None:
    case = register(api, patient="MRN-S1")
    k = check_char(case["coi"])
    wrong = "0" if k != "0" else "1"
    for bad in (f"{case['coi']} {wrong}", "x", "%%%"):
        r = search(api, "ncc", q=bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["loc"].endswith("q")


def test_patient_ref_finds_the_case_by_keyed_hash_and_is_never_echoed(api: Api) -> None:
    case = register(api, patient="MRN-0420")
    register(api, patient="MRN-0421")
    r = search(api, "ncc", patient_ref="MRN-0420")
    assert ids(r) == [case["id"]]
    assert "MRN-0420" not in r.text
    assert ids(search(api, "ncc", patient_ref="MRN-9999")) == []
    # QA (no site) finds it too: the hash is computed for every site in scope.
    assert ids(search(api, "qa", patient_ref="MRN-0420")) == [case["id"]]


def test_search_never_reaches_outside_the_callers_scope(api: Api) -> None:
    case = register(api, patient="MRN-0420")
    assert ids(search(api, "utokyo", q=case["coi"])) == []
    assert ids(search(api, "utokyo", patient_ref="MRN-0420")) == []
    # The same MRN at another hospital is another patient: another hash.
    other = register(api, patient="MRN-0420", persona="utokyo", site="UTOKYO-HOSP")
    assert ids(search(api, "utokyo", patient_ref="MRN-0420")) == [other["id"]]
    assert ids(search(api, "ncc", patient_ref="MRN-0420")) == [case["id"]]


def test_from_and_to_filter_by_registration_time(api: Api) -> None:
    case = register(api, patient="MRN-S1")
    before, after = NOW - timedelta(days=1), NOW + timedelta(days=1)
    assert ids(search(api, "ncc", **{"from": iso(before), "to": iso(after)})) == [case["id"]]
    assert ids(search(api, "ncc", **{"from": iso(after)})) == []
    assert ids(search(api, "ncc", to=iso(before))) == []
    naive = search(api, "ncc", **{"from": "2026-11-26T09:00:00"})
    assert naive.status_code == 422
