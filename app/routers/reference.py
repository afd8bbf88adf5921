"""Reference data: sites, routes, temperature profiles and products."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from sqlmodel import Session, col, select

from app.deps import CurrentPrincipal, NowDep, SessionDep, committing, require_roles
from app.errors import NotFound
from app.services.reference import sites
from models.base import Page
from models.principal import Principal, Role
from models.reference import (
    LegPublic,
    Product,
    ProductBase,
    Profile,
    ProfileBase,
    Route,
    RouteLeg,
    RoutePublic,
    Site,
    SiteCreate,
    SitePublic,
)

router = APIRouter(tags=["reference data"])
CodePath = Annotated[str, Path(max_length=32)]


@router.get("/sites", response_model=Page[SitePublic])
def list_sites(session: SessionDep, _principal: CurrentPrincipal) -> Any:
    """All sites: hospitals, factories, airports and courier hubs."""
    return {"items": session.exec(select(Site).order_by(col(Site.code))).all()}


@router.post("/sites", status_code=201, response_model=SitePublic)
def create_site(
    admin: Annotated[Principal, require_roles(Role.admin)],
    body: SiteCreate,
    request: Request,
    session: SessionDep,
    now: NowDep,
) -> Any:
    """Add a site; without lat/lon its address is geocoded (422 when that is not possible)."""
    # Geocode before the write transaction starts: a slow geocoder must not hold the lock.
    lat, lon = sites.resolve_coordinates(body, request.app.state.geocoder)
    with committing(session):
        site = sites.create(session, actor=admin, body=body, lat=lat, lon=lon, now=now)
        out = SitePublic.model_validate(site, from_attributes=True)
    return out


@router.get("/sites/{code}", response_model=SitePublic)
def get_site(code: CodePath, session: SessionDep, _principal: CurrentPrincipal) -> Any:
    """One site."""
    site = session.get(Site, code)
    if site is None:
        raise NotFound(f"no site {code!r}")
    return site


def _route(session: Session, route: Route) -> dict[str, Any]:
    legs = session.exec(
        select(RouteLeg)
        .where(RouteLeg.route_code == route.code)
        .order_by(col(RouteLeg.direction), col(RouteLeg.seq))
    ).all()
    return {
        **route.model_dump(),
        "legs": [LegPublic.model_validate(leg, from_attributes=True) for leg in legs],
    }


@router.get("/routes", response_model=Page[RoutePublic])
def list_routes(session: SessionDep, _principal: CurrentPrincipal) -> Any:
    """All routes (collection site → factory → treatment site) with legs and targets."""
    routes = session.exec(select(Route).order_by(col(Route.code))).all()
    return {"items": [_route(session, r) for r in routes]}


@router.get("/routes/{code}", response_model=RoutePublic)
def get_route(code: CodePath, session: SessionDep, _principal: CurrentPrincipal) -> Any:
    """One route with its legs and milestone targets."""
    route = session.get(Route, code)
    if route is None:
        raise NotFound(f"no route {code!r}")
    return _route(session, route)


@router.get("/profiles", response_model=Page[ProfileBase])
def list_profiles(session: SessionDep, _principal: CurrentPrincipal) -> Any:
    """Temperature profiles and their alarm rules."""
    return {"items": session.exec(select(Profile).order_by(col(Profile.code))).all()}


@router.get("/products", response_model=Page[ProductBase])
def list_products(session: SessionDep, _principal: CurrentPrincipal) -> Any:
    """Products and their thaw windows."""
    return {"items": session.exec(select(Product).order_by(col(Product.code))).all()}
