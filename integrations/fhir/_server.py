"""What a FHIR R5 server answers besides resources: searchset Bundles, its
CapabilityStatement and OperationOutcomes (errors)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from app.times import iso_z

FHIR_VERSION = "5.0.0"
# HL7's definition of the identifier search parameter of BiologicallyDerivedProduct.
IDENTIFIER_PARAM = "http://hl7.org/fhir/SearchParameter/BiologicallyDerivedProduct-identifier"
RESTFUL_SECURITY = "http://terminology.hl7.org/CodeSystem/restful-security-service"

# HTTP status → R5 IssueType (http://hl7.org/fhir/issue-type).
ISSUE_TYPES = {
    400: "invalid",
    401: "security",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    413: "too-long",
    415: "not-supported",
    422: "invalid",
    429: "throttled",
    503: "transient",
}


def searchset(
    resources: Sequence[dict[str, Any]],
    *,
    base_url: str,
    total: int,
    self_url: str,
    next_url: str | None,
    now: datetime,
) -> dict[str, Any]:
    """A ``searchset`` Bundle: every resource a match, with its full URL and paging links."""
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": iso_z(now),
        "total": total,
        "link": links,
        "entry": [
            {
                "fullUrl": f"{base_url}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }


def capability_statement(*, base_url: str, software_version: str, date: datetime) -> dict[str, Any]:
    """The CapabilityStatement of this server: two read-only resource types."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": iso_z(date),
        "publisher": "vein2vein",
        "kind": "instance",
        "software": {"name": "vein2vein", "version": software_version},
        # kind = instance requires implementation (R5 invariant cpb-2).
        "implementation": {
            "description": "vein2vein: CAR-T products and their infusion, read-only",
            "url": base_url,
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "service": [{"coding": [{"system": RESTFUL_SECURITY, "code": "OAuth"}]}],
                    "description": "Authorization: Bearer <API key>; each caller sees only "
                    "the cases in its scope (others are not found).",
                },
                "resource": [
                    {
                        "type": "BiologicallyDerivedProduct",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [
                            {
                                "name": "identifier",
                                "definition": IDENTIFIER_PARAM,
                                "type": "token",
                                "documentation": "The chain-of-identity code (ISBT 128 "
                                "DS040) in any scanned form; system, when given, "
                                "urn:oid:2.16.840.1.113883.6.18.",
                            }
                        ],
                    },
                    {
                        "type": "BiologicallyDerivedProductDispense",
                        "interaction": [{"code": "read"}],
                    },
                ],
            }
        ],
    }


def operation_outcome(status: int, detail: str, errors: Sequence[str] = ()) -> dict[str, Any]:
    """An error as an OperationOutcome: one issue for the detail, one per field error."""
    code = ISSUE_TYPES.get(status, "exception" if status >= 500 else "processing")
    issues = [{"severity": "error", "code": code, "diagnostics": detail}]
    issues += [{"severity": "error", "code": code, "diagnostics": e} for e in errors]
    return {"resourceType": "OperationOutcome", "issue": issues}
