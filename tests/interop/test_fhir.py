"""FHIR R5 export: the product (and, once infused, its dispense) validated with fhir.resources."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.biologicallyderivedproduct import BiologicallyDerivedProduct
from fhir.resources.biologicallyderivedproductdispense import BiologicallyDerivedProductDispense
from fhir.resources.bundle import Bundle

from app.services.identity.coi import check_char
from integrations import fhir
from models.case import CaseStatus
from tests.conftest import NOW, Api
from tests.helpers import Journey

URL = "/api/v1/integrations/fhir/BiologicallyDerivedProduct/{}"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def milestone_at(api: Api, case_id: str, type_: str) -> datetime:
    case = api.get("admin", f"/api/v1/cases/{case_id}").json()
    return utc(next(m["occurred_at"] for m in case["milestones"] if m["type"] == type_))


def get_fhir(api: Api, persona: str, case_id: str) -> dict[str, Any]:
    r = api.get(persona, URL.format(case_id))
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


def test_an_infused_case_is_a_bundle_with_the_product_and_its_dispense(api: Api) -> None:
    j = Journey(api)
    j.to_infusion()
    body = get_fhir(api, "ncc", j.case["id"])
    bundle = Bundle.model_validate(body)
    assert bundle.type == "collection"
    assert [e.resource.get_resource_type() for e in bundle.entry] == [
        "BiologicallyDerivedProduct",
        "BiologicallyDerivedProductDispense",
    ]
    product = BiologicallyDerivedProduct.model_validate(body["entry"][0]["resource"])
    disp = BiologicallyDerivedProductDispense.model_validate(body["entry"][1]["resource"])
    assert bundle.entry[0].fullUrl.endswith(f"/BiologicallyDerivedProduct/{j.case['id']}")
    assert bundle.entry[0].fullUrl.startswith("http://testserver/api/v1/integrations/fhir/")
    assert product.productStatus.code == "unavailable"
    assert product.extension[0].valueCode == "infused"
    thawed = milestone_at(api, j.case["id"], "thawed")
    infused = milestone_at(api, j.case["id"], "infused")
    assert product.expirationDate == thawed + timedelta(minutes=180)

    assert disp.status == "issued"
    assert disp.product.reference == f"BiologicallyDerivedProduct/{j.case['id']}"
    assert disp.whenHandedOver == infused
    assert disp.preparedDate == thawed
    assert disp.location.type == "Location"
    assert disp.location.identifier.value == "NCC-EAST"
    assert disp.location.display == "National Cancer Center Hospital East"
    assert disp.patient.identifier.value == j.coi
    assert disp.originRelationshipType.coding[0].code == "autologous"
    assert "MRN-0001" not in str(body)


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
