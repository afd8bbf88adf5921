"""HL7 FHIR R5 exports (interop with EHRs and blood/cell-therapy systems)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.deps import NowDep, ScopedCase, SessionDep, require_roles
from app.services.interop import fhir as fhir_service
from integrations import fhir
from models.principal import Principal, Role

router = APIRouter(prefix="/integrations/fhir", tags=["interop"])

Reader = Annotated[
    Principal, require_roles(Role.admin, Role.coordinator, Role.manufacturer, Role.qa)
]


class FhirResponse(JSONResponse):
    media_type = fhir.FHIR_JSON


_FHIR_CONTENT = {
    200: {
        "description": "A FHIR R5 BiologicallyDerivedProduct, or once infused a `collection` "
        "Bundle holding it and its BiologicallyDerivedProductDispense.",
        "content": {fhir.FHIR_JSON: {"schema": {"type": "object"}}},
    }
}


@router.get(
    "/BiologicallyDerivedProduct/{case_id}",
    response_class=FhirResponse,
    responses=_FHIR_CONTENT,  # type: ignore[arg-type]
)
def biologically_derived_product(
    _principal: Reader, case: ScopedCase, session: SessionDep, request: Request, now: NowDep
) -> FhirResponse:
    """The case's product as FHIR R5; once infused, a Bundle adding its dispense (infusion)."""
    base_url = str(request.url_for("biologically_derived_product", case_id=case.id))
    base_url = base_url.rsplit("/BiologicallyDerivedProduct/", 1)[0]
    return FhirResponse(fhir_service.export_case(session, case=case, base_url=base_url, now=now))
