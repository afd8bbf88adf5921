"""Building FHIR R5 resources (plain JSON) from a snapshot of one case.

No patient data ever appears: the patient is a placeholder reference identified by the COI
alone, which is all that may cross a border (APPI) and all a product label carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.times import iso_z
from models.case import CaseStatus

FHIR_JSON = "application/fhir+json"
# HL7's OID for ISBT 128 (ICCBBA); sub-arcs name its data structures (e.g. .2.1 the DIN).
ISBT128_SYSTEM = "urn:oid:2.16.840.1.113883.6.18"
UCUM = "http://unitsofmeasure.org"
PRODUCT_CATEGORY = "http://hl7.org/fhir/product-category"
PRODUCT_STATUS = "http://hl7.org/fhir/biologicallyderived-product-status"
ORIGIN_RELATIONSHIP = "http://hl7.org/fhir/biologicallyderivedproductdispense-origin-relationship"
# Our own naming systems, code systems and extensions.
V2V = "urn:v2v:fhir:"
EXT_CHECK_CHARACTER = V2V + "StructureDefinition:coi-check-character"
EXT_JOURNEY_STATUS = V2V + "StructureDefinition:journey-status"
SITE_SYSTEM = V2V + "NamingSystem:site"
COLLECTION_SYSTEM = V2V + "NamingSystem:collection"
PRODUCT_SYSTEM = V2V + "CodeSystem:product"
PROPERTY_SYSTEM = V2V + "CodeSystem:product-property"

# A released product is available until it is infused; before release there is nothing to
# use, and a failed, cancelled or infused case has no usable product.
AVAILABLE = frozenset(
    {CaseStatus.released, CaseStatus.in_transit_to_site, CaseStatus.at_site, CaseStatus.thawed}
)


@dataclass(frozen=True)
class Place:
    code: str
    name: str


@dataclass(frozen=True)
class Snapshot:
    """What the export needs to know about one case, read in one session."""

    case_id: str
    coi: str
    status: str
    cycle: int
    product_code: str
    product_name: str
    thaw_expiry_min: float
    factory: Place
    treatment_site: Place
    storage_min_c: float | None
    storage_max_c: float
    milestones: dict[str, datetime]  # latest collection cycle: type -> occurred_at
    coi_check_char: str  # ISO/IEC 7064 MOD 37-2, as printed beside the barcode


def product_status(status: str) -> str:
    """The R5 BiologicallyDerivedProductStatus code for a journey status."""
    return "available" if CaseStatus(status) in AVAILABLE else "unavailable"


def coi_identifier(coi: str, check_char: str) -> dict[str, Any]:
    return {
        "use": "official",
        "type": {"text": "ISBT 128 chain of identity identifier (Data Structure 040)"},
        "system": ISBT128_SYSTEM,
        "value": coi,
        # The eye-readable check character (ISO/IEC 7064 MOD 37-2) printed beside the code.
        "extension": [{"url": EXT_CHECK_CHARACTER, "valueString": check_char}],
    }


def patient_placeholder(coi: str) -> dict[str, Any]:
    """A logical reference to the patient by COI only: no name, MRN or birth date leaves."""
    return {
        "type": "Patient",
        "identifier": {"system": ISBT128_SYSTEM, "value": coi},
        "display": f"Autologous patient of chain of identity {coi}",
    }


def _site_reference(place: Place, kind: str) -> dict[str, Any]:
    return {
        "type": kind,
        "identifier": {"system": SITE_SYSTEM, "value": place.code},
        "display": place.name,
    }


def _celsius(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "°C", "system": UCUM, "code": "Cel"}


def _property(code: str, display: str, **value: Any) -> dict[str, Any]:
    coding = {"system": PROPERTY_SYSTEM, "code": code, "display": display}
    return {"type": {"coding": [coding]}, **value}


def _properties(snap: Snapshot) -> list[dict[str, Any]]:
    at = snap.milestones
    out = [_property("collection-cycle", "Collection cycle", valueInteger=snap.cycle)]
    if "received_at_manufacturing" in at:
        received = iso_z(at["received_at_manufacturing"])  # an instant: start = end
        period = {"start": received, "end": received}
        out.append(_property("received-at-factory", "Received at factory", valuePeriod=period))
    if "manufacturing_started" in at:
        period = {"start": iso_z(at["manufacturing_started"])}
        if "qc_released" in at:
            period["end"] = iso_z(at["qc_released"])
        out.append(_property("manufacturing", "Manufacturing to QC release", valuePeriod=period))
    return out


def product(snap: Snapshot) -> dict[str, Any]:
    """The case's product as an R5 BiologicallyDerivedProduct."""
    at = snap.milestones
    storage: dict[str, Any] = {"high": _celsius(snap.storage_max_c)}
    if snap.storage_min_c is not None:
        storage["low"] = _celsius(snap.storage_min_c)
    resource: dict[str, Any] = {
        "resourceType": "BiologicallyDerivedProduct",
        "id": snap.case_id,
        "extension": [{"url": EXT_JOURNEY_STATUS, "valueCode": snap.status}],
        "productCategory": {"system": PRODUCT_CATEGORY, "code": "cells", "display": "Cells"},
        "productCode": {
            "coding": [
                {"system": PRODUCT_SYSTEM, "code": snap.product_code, "display": snap.product_name}
            ],
            "text": snap.product_name,
        },
        "identifier": [coi_identifier(snap.coi, snap.coi_check_char)],
        "biologicalSourceEvent": {
            "system": COLLECTION_SYSTEM,
            "value": f"{snap.coi}-{snap.cycle}",
        },
        "processingFacility": [_site_reference(snap.factory, "Organization")],
        "productStatus": {"system": PRODUCT_STATUS, "code": product_status(snap.status)},
        "storageTempRequirements": storage,
        "property": _properties(snap),
    }
    if "collected" in at:
        resource["collection"] = {
            "source": patient_placeholder(snap.coi),
            "collectedDateTime": iso_z(at["collected"]),
        }
    if "thawed" in at:
        # Once thawed the product must be infused within its window (DESIGN.md, thaw clock).
        expiry = at["thawed"] + timedelta(minutes=snap.thaw_expiry_min)
        resource["expirationDate"] = iso_z(expiry)
    return resource


def dispense(snap: Snapshot) -> dict[str, Any]:
    """The infusion as an R5 BiologicallyDerivedProductDispense (needs ``infused``)."""
    at = snap.milestones
    resource: dict[str, Any] = {
        "resourceType": "BiologicallyDerivedProductDispense",
        "id": snap.case_id,
        # R5 has no "completed": "issued" is its terminal code for a product handed over.
        "status": "issued",
        "originRelationshipType": {
            "coding": [
                {"system": ORIGIN_RELATIONSHIP, "code": "autologous", "display": "Autologous"}
            ]
        },
        "product": {"reference": f"BiologicallyDerivedProduct/{snap.case_id}"},
        "patient": patient_placeholder(snap.coi),
        "location": _site_reference(snap.treatment_site, "Location"),
        "whenHandedOver": iso_z(at["infused"]),
    }
    if "thawed" in at:
        resource["preparedDate"] = iso_z(at["thawed"])
    return resource
