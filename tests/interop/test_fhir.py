"""FHIR R5 read, search and metadata, every resource validated with fhir.resources (R5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.biologicallyderivedproduct import BiologicallyDerivedProduct
from fhir.resources.biologicallyderivedproductdispense import BiologicallyDerivedProductDispense
from fhir.resources.bundle import Bundle
from fhir.resources.capabilitystatement import CapabilityStatement
from fhir.resources.operationoutcome import OperationOutcome

from app.services.identity.coi import check_char
from integrations import fhir
from models.case import CaseStatus
from tests.conftest import NOW, Api
from tests.helpers import Journey

BASE = "/api/v1/integrations/fhir"
URL = BASE + "/BiologicallyDerivedProduct/{}"
DISPENSE = BASE + "/BiologicallyDerivedProductDispense/{}"
SEARCH = BASE + "/BiologicallyDerivedProduct"
ISBT = "urn:oid:2.16.840.1.113883.6.18"
FHIR_ACCEPT = {"Accept": "application/fhir+json"}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def milestone_at(api: Api, case_id: str, type_: str) -> datetime:
    case = api.get("admin", f"/api/v1/cases/{case_id}").json()
    return utc(next(m["occurred_at"] for m in case["milestones"] if m["type"] == type_))


def get_fhir(api: Api, persona: str, case_id: str, url: str = URL) -> dict[str, Any]:
    r = api.get(persona, url.format(case_id))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    return dict(r.json())


def released(api: Api) -> Journey:
    j = Journey(api)
    j.schedule()
    j.step("collected", hours=2)
    inbound = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(inbound, "picked_up")
    j.custody(inbound, "delivered", hours=2)
    j.step("received_at_manufacturing", hours=0.5)
    j.step("manufacturing_started", hours=12, coi=False)
    j.step("qc_released", hours=24 * 9, coi=False)
    return j


def test_a_released_product_maps_to_an_available_r5_product(api: Api) -> None:
    j = released(api)
    body = get_fhir(api, "kashiwa", j.case["id"])
    res = BiologicallyDerivedProduct.model_validate(body)
    coi = j.coi

    assert res.id == j.case["id"]
    assert res.productCategory.system == "http://hl7.org/fhir/product-category"
    assert res.productCategory.code == "cells"
    assert res.productCode.coding[0].code == "CART-CD19"
    assert res.productCode.text == "Autologous anti-CD19 CAR-T cells"
    (ident,) = res.identifier
    assert ident.system == "urn:oid:2.16.840.1.113883.6.18"
    assert ident.value == coi
    assert ident.extension[0].url == fhir.EXT_CHECK_CHARACTER
    assert ident.extension[0].valueString == check_char(coi)
    assert f"{coi} {ident.extension[0].valueString}" == j.case["coi_display"]
    assert res.biologicalSourceEvent.value == f"{coi}-1"
    (facility,) = res.processingFacility
    assert facility.type == "Organization"
    assert facility.identifier.value == "CELLARES-KASHIWA"
    assert "Kashiwa" in facility.display
    assert res.productStatus.system == "http://hl7.org/fhir/biologicallyderived-product-status"
    assert res.productStatus.code == "available"
    assert res.extension[0].valueCode == "released"
    # CRYO_LN2: at or below -150 °C, no lower bound.
    assert res.storageTempRequirements.low is None
    high = res.storageTempRequirements.high
    assert (float(high.value), high.system, high.code) == (
        -150.0,
        "http://unitsofmeasure.org",
        "Cel",
    )
    collected = milestone_at(api, j.case["id"], "collected")
    assert res.collection.collectedDateTime == collected
    assert res.collection.source.type == "Patient"
    assert res.collection.source.identifier.value == coi
    assert res.collection.source.reference is None
    props = {p.type.coding[0].code: p for p in res.property}
    assert props["collection-cycle"].valueInteger == 1
    received = props["received-at-factory"].valuePeriod
    assert (
        received.start
        == received.end
        == milestone_at(api, j.case["id"], "received_at_manufacturing")
    )
    manufacturing = props["manufacturing"].valuePeriod
    assert manufacturing.start == milestone_at(api, j.case["id"], "manufacturing_started")
    assert manufacturing.end == milestone_at(api, j.case["id"], "qc_released")
    assert res.expirationDate is None
    assert "MRN-0001" not in str(body) and "patient_hash" not in str(body)


def test_an_infused_case_reads_as_a_product_and_a_dispense(api: Api) -> None:
    # Until #15 the read answered a collection Bundle once infused; a read is now always
    # the resource asked for, and the dispense has its own read.
    j = Journey(api)
    j.to_infusion()
    body = get_fhir(api, "ncc", j.case["id"])
    product = BiologicallyDerivedProduct.model_validate(body)
    disp_body = get_fhir(api, "ncc", j.case["id"], DISPENSE)
    disp = BiologicallyDerivedProductDispense.model_validate(disp_body)
    assert product.productStatus.code == "unavailable"
    assert product.extension[0].valueCode == "infused"
    thawed = milestone_at(api, j.case["id"], "thawed")
    infused = milestone_at(api, j.case["id"], "infused")
    assert product.expirationDate == thawed + timedelta(minutes=180)

    assert disp.id == j.case["id"]
    assert disp.status == "issued"
    assert disp.product.reference == f"BiologicallyDerivedProduct/{j.case['id']}"
    assert disp.whenHandedOver == infused
    assert disp.preparedDate == thawed
    assert disp.location.type == "Location"
    assert disp.location.identifier.value == "NCC-EAST"
    assert disp.location.display == "National Cancer Center Hospital East"
    assert disp.patient.identifier.value == j.coi
    assert disp.originRelationshipType.coding[0].code == "autologous"
    assert "MRN-0001" not in str(body) + str(disp_body)
    for persona in ("kyoto", "bridgewater"):
        foreign = api.get(persona, DISPENSE.format(j.case["id"]))
        missing = api.get(persona, DISPENSE.format("0" * 32))
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json() == missing.json()


def test_the_dispense_is_not_found_before_infusion(api: Api) -> None:
    j = released(api)
    r = api.get("kashiwa", DISPENSE.format(j.case["id"]))
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    r = api.client.get(
        DISPENSE.format(j.case["id"]), headers={**api.headers("kashiwa"), **FHIR_ACCEPT}
    )
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/fhir+json")
    outcome = OperationOutcome.model_validate(r.json())
    assert outcome.issue[0].code == "not-found"
    assert outcome.issue[0].severity == "error"
    assert "infused" in outcome.issue[0].diagnostics


def search(api: Api, persona: str, url: str, **params: Any) -> dict[str, Any]:
    r = api.get(persona, url, params=params) if params else api.get(persona, url)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    body = dict(r.json())
    bundle = Bundle.model_validate(body)
    assert bundle.type == "searchset"
    for entry in body["entry"]:
        BiologicallyDerivedProduct.model_validate(entry["resource"])
        assert entry["search"] == {"mode": "match"}
        assert entry["fullUrl"] == (
            f"http://testserver{BASE}/BiologicallyDerivedProduct/{entry['resource']['id']}"
        )
    return body


def test_search_by_identifier_finds_the_case_in_any_scanned_form(api: Api) -> None:
    j = released(api)
    other = Journey(api, patient="MRN-OTHER")
    coi, cc = j.coi, check_char(j.coi)
    for value in (f"{ISBT}|{coi}", f"|{coi}", coi, f"&/{coi}", f"{coi} {cc}", f"{coi}{cc}"):
        body = search(api, "ncc", SEARCH, identifier=value)
        assert body["total"] == 1, value
        assert [e["resource"]["id"] for e in body["entry"]] == [j.case["id"]]
        (self_link,) = [x for x in body["link"] if x["relation"] == "self"]
        assert self_link["url"].startswith(f"http://testserver{SEARCH}?identifier=")
    assert other.case["id"] not in str(search(api, "ncc", SEARCH, identifier=coi))
    # Out of scope: absent, exactly as a COI nobody has.
    for persona in ("kyoto", "bridgewater"):
        body = search(api, persona, SEARCH, identifier=coi)
        assert body["total"] == 0 and body.get("entry", []) == []


def test_search_refuses_another_system_and_a_misread_code(api: Api) -> None:
    j = released(api)
    wrong_check = "A" if check_char(j.coi) != "A" else "B"
    for value in (f"http://example.org|{j.coi}", f"{j.coi}{wrong_check}", "CH-nonsense"):
        r = api.get("ncc", SEARCH, params={"identifier": value})
        assert r.status_code == 422, value
        assert r.headers["content-type"].startswith("application/problem+json")
        headers = {**api.headers("ncc"), **FHIR_ACCEPT}
        r = api.client.get(SEARCH, params={"identifier": value}, headers=headers)
        assert r.status_code == 422
        outcome = OperationOutcome.model_validate(r.json())
        assert {i.code for i in outcome.issue} == {"invalid"}


def test_search_without_identifier_pages_the_callers_cases_newest_first(api: Api) -> None:
    ids = [Journey(api, patient=f"MRN-P{i}").case["id"] for i in range(5)]
    Journey(api, route="JP-US-EWR", patient="MRN-US")  # also NCC's, not Kashiwa's
    body = search(api, "kashiwa", SEARCH, _count=2)
    assert body["total"] == 5
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        seen += [e["resource"]["id"] for e in body["entry"]]
        nxt = [x["url"] for x in body["link"] if x["relation"] == "next"]
        if not nxt:
            break
        assert "_count=2" in nxt[0]
        body = search(api, "kashiwa", nxt[0].removeprefix("http://testserver"))
    assert pages == 3
    assert sorted(seen) == sorted(ids) and len(set(seen)) == 5
    # Newest first: cases created at the same instant fall back to the id, descending.
    cases = [api.get("admin", f"/api/v1/cases/{i}").json() for i in seen]
    keys = [(c["created_at"], c["id"]) for c in cases]
    assert keys == sorted(keys, reverse=True)
    assert search(api, "ncc", SEARCH)["total"] == 6


def test_metadata_is_an_r5_capability_statement_for_any_principal(api: Api) -> None:
    for persona in ("viewer", "courier", "admin"):
        r = api.get(persona, BASE + "/metadata")
        assert r.status_code == 200, persona
        assert r.headers["content-type"].startswith("application/fhir+json")
    cap = CapabilityStatement.model_validate(r.json())
    assert (cap.status, cap.kind, cap.fhirVersion, cap.format) == (
        "active",
        "instance",
        "5.0.0",
        ["json"],
    )
    (rest,) = cap.rest
    assert rest.mode == "server"
    served = {r.type: r for r in rest.resource}
    assert set(served) == {"BiologicallyDerivedProduct", "BiologicallyDerivedProductDispense"}
    product = served["BiologicallyDerivedProduct"]
    assert {i.code for i in product.interaction} == {"read", "search-type"}
    assert [(p.name, p.type) for p in product.searchParam] == [("identifier", "token")]
    assert {i.code for i in served["BiologicallyDerivedProductDispense"].interaction} == {"read"}
    assert api.client.get(BASE + "/metadata").status_code == 401


def test_fhir_errors_are_operation_outcomes_only_for_fhir_clients(api: Api) -> None:
    j = released(api)
    cases = {
        (None, URL.format(j.case["id"])): (401, "security"),
        ("viewer", URL.format(j.case["id"])): (403, "forbidden"),
        ("kyoto", URL.format(j.case["id"])): (404, "not-found"),
        ("ncc", SEARCH + "?_count=0"): (422, "invalid"),
        ("ncc", BASE + "/Patient/1"): (404, "not-found"),
    }
    for (persona, url), (status, code) in cases.items():
        auth = api.headers(persona) if persona else {}
        plain = api.client.get(url, headers=auth)
        assert plain.status_code == status, url
        assert plain.headers["content-type"].startswith("application/problem+json")
        fhir_r = api.client.get(url, headers={**auth, **FHIR_ACCEPT})
        assert fhir_r.status_code == status, url
        assert fhir_r.headers["content-type"].startswith("application/fhir+json")
        outcome = OperationOutcome.model_validate(fhir_r.json())
        assert outcome.issue[0].code == code
        assert outcome.issue[0].diagnostics == plain.json()["detail"]
    # Elsewhere the Accept header changes nothing.
    r = api.client.get("/api/v1/cases/" + "0" * 32, headers={**api.headers("ncc"), **FHIR_ACCEPT})
    assert r.headers["content-type"].startswith("application/problem+json")


def test_an_overseas_case_names_its_factory_and_a_new_case_has_no_collection(api: Api) -> None:
    j = Journey(api, route="JP-US-EWR", patient="MRN-F2")
    body = get_fhir(api, "qa", j.case["id"])
    res = BiologicallyDerivedProduct.model_validate(body)
    assert res.processingFacility[0].identifier.value == "CELLARES-BRIDGEWATER"
    assert res.productStatus.code == "unavailable"
    assert res.collection is None
    assert [p.type.coding[0].code for p in res.property] == ["collection-cycle"]


@pytest.mark.parametrize("status", list(CaseStatus))
def test_every_journey_status_maps_to_an_r5_product_status(status: CaseStatus) -> None:
    available = {"released", "in_transit_to_site", "at_site", "thawed"}
    expected = "available" if status.value in available else "unavailable"
    assert fhir.product_status(status.value) == expected


def test_a_dispense_alone_validates() -> None:
    at = {"collected": NOW - timedelta(days=20), "thawed": NOW, "infused": NOW}
    snap = fhir.Snapshot(
        case_id="c" * 32,
        coi="CHJ100126000001",
        status="infused",
        cycle=2,
        product_code="P",
        product_name="Product",
        thaw_expiry_min=180,
        factory=fhir.Place("F", "Factory"),
        treatment_site=fhir.Place("S", "Site"),
        storage_min_c=2,
        storage_max_c=8,
        milestones=at,
        coi_check_char="X",
    )
    disp = BiologicallyDerivedProductDispense.model_validate(fhir.dispense(snap))
    assert disp.whenHandedOver == NOW
    res = BiologicallyDerivedProduct.model_validate(fhir.product(snap))
    assert float(res.storageTempRequirements.low.value) == 2.0
    assert res.biologicalSourceEvent.value == "CHJ100126000001-2"


def test_viewers_and_couriers_are_refused_and_other_sites_see_nothing(api: Api) -> None:
    j = released(api)
    url = URL.format(j.case["id"])
    for persona in ("viewer", "courier", "global"):
        r = api.get(persona, url)
        assert r.status_code == 403, persona
        assert r.headers["content-type"].startswith("application/problem+json")
    assert api.client.get(url).status_code == 401
    for persona in ("kyoto", "bridgewater"):
        foreign = api.get(persona, url)
        missing = api.get(persona, URL.format("0" * 32))
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json() == missing.json()
        assert j.coi not in foreign.text
