"""HL7 FHIR R5 (read-only): products and their infusion for EHRs and cell-therapy systems."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from app.deps import CurrentPrincipal, NowDep, ScopedCase, SessionDep, require_roles
from app.services.interop import fhir as fhir_service
from integrations import fhir
from models.principal import Principal, Role

router = APIRouter(prefix="/integrations/fhir", tags=["interop"])

Reader = Annotated[
    Principal, require_roles(Role.admin, Role.coordinator, Role.manufacturer, Role.qa)
]


class FhirResponse(JSONResponse):
    media_type = fhir.FHIR_JSON


def _content(description: str) -> Any:
    return {200: {"description": description, "content": {fhir.FHIR_JSON: {"schema": {}}}}}


def _base_url(request: Request) -> str:
    return str(request.url_for("fhir_metadata")).removesuffix("/metadata")


@router.get(
    "/metadata",
    response_class=FhirResponse,
    responses=_content("The server's R5 CapabilityStatement."),
)
def fhir_metadata(_principal: CurrentPrincipal, request: Request, now: NowDep) -> FhirResponse:
    """The CapabilityStatement: resource types, interactions and search parameters served."""
    return FhirResponse(fhir_service.capabilities(base_url=_base_url(request), now=now))


@router.get(
    "/BiologicallyDerivedProduct",
    response_class=FhirResponse,
    responses=_content("A `searchset` Bundle of BiologicallyDerivedProducts, newest first."),
)
def search_biologically_derived_products(
    principal: Reader,
    session: SessionDep,
    request: Request,
    now: NowDep,
    identifier: Annotated[
        str | None,
        Query(max_length=200, description="`[system]|COI`, the COI in any scanned form."),
    ] = None,
    count: Annotated[
        int, Query(alias="_count", ge=1, le=fhir_service.MAX_COUNT, description="Page size.")
    ] = 20,
    cursor: Annotated[
        str | None, Query(alias="_cursor", max_length=500, description="From a `next` link.")
    ] = None,
) -> FhirResponse:
    """Search the caller's products by COI (``identifier``), or list them newest first."""
    bundle = fhir_service.search_products(
        session,
        actor=principal,
        identifier=identifier,
        count=count,
        cursor=cursor,
        base_url=_base_url(request),
        search_url=str(request.url.remove_query_params(list(request.query_params))),
        now=now,
    )
    return FhirResponse(bundle)


@router.get(
    "/BiologicallyDerivedProduct/{case_id}",
    response_class=FhirResponse,
    responses=_content("The case's product as an R5 BiologicallyDerivedProduct."),
)
def biologically_derived_product(
    case: ScopedCase, _principal: Reader, session: SessionDep
) -> FhirResponse:
    """The case's product as FHIR R5, at any stage of the journey."""
    return FhirResponse(fhir_service.read_product(session, case=case))


@router.get(
    "/BiologicallyDerivedProductDispense/{case_id}",
    response_class=FhirResponse,
    responses=_content("The infusion as an R5 BiologicallyDerivedProductDispense."),
)
def biologically_derived_product_dispense(
    case: ScopedCase, _principal: Reader, session: SessionDep
) -> FhirResponse:
    """The case's infusion as FHIR R5; not found until the product is infused."""
    return FhirResponse(fhir_service.read_dispense(session, case=case))
