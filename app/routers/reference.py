"""Reference data: sites, routes, temperature profiles and products."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from app.deps import CurrentPrincipal, NowDep, SessionDep, committing, require_roles
from app.services.reference import catalogue, sites
from models.base import Page
from models.principal import Principal, Role
from models.reference import ProductBase, ProfileBase, RoutePublic, SiteCreate, SitePublic

router = APIRouter(tags=["reference data"])
CodePath = Annotated[str, Path(max_length=32)]


@router.get("/sites", response_model=Page[SitePublic])
def list_sites(session: SessionDep, _principal: CurrentPrincipal) -> Page[SitePublic]:
    """All sites: hospitals, factories, airports and courier hubs."""
    return Page(items=catalogue.list_sites(session))


@router.post("/sites", status_code=201, response_model=SitePublic)
def create_site(
    admin: Annotated[Principal, require_roles(Role.admin)],
    body: SiteCreate,
    request: Request,
    session: SessionDep,
    now: NowDep,
) -> SitePublic:
    """Add a site; without lat/lon its address is geocoded (422 when that is not possible)."""
    # Geocode before the write transaction starts: a slow geocoder must not hold the lock.
    lat, lon = sites.resolve_coordinates(body, request.app.state.geocoder)
    with committing(session):
        site = sites.create(session, actor=admin, body=body, lat=lat, lon=lon, now=now)
        out = SitePublic.model_validate(site, from_attributes=True)
    return out


@router.get("/sites/{code}", response_model=SitePublic)
def get_site(code: CodePath, session: SessionDep, _principal: CurrentPrincipal) -> SitePublic:
    """One site."""
    return catalogue.get_site(session, code=code)


@router.get("/routes", response_model=Page[RoutePublic])
def list_routes(session: SessionDep, _principal: CurrentPrincipal) -> Page[RoutePublic]:
    """All routes (collection site → factory → treatment site) with legs and targets."""
    return Page(items=catalogue.list_routes(session))


@router.get("/routes/{code}", response_model=RoutePublic)
def get_route(code: CodePath, session: SessionDep, _principal: CurrentPrincipal) -> RoutePublic:
    """One route with its legs and milestone targets."""
    return catalogue.get_route(session, code=code)


@router.get("/profiles", response_model=Page[ProfileBase])
def list_profiles(session: SessionDep, _principal: CurrentPrincipal) -> Page[ProfileBase]:
    """Temperature profiles and their alarm rules."""
    return Page(items=catalogue.list_profiles(session))


@router.get("/products", response_model=Page[ProductBase])
def list_products(session: SessionDep, _principal: CurrentPrincipal) -> Page[ProductBase]:
    """Products and their thaw windows."""
    return Page(items=catalogue.list_products(session))
