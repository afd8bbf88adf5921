"""Reading the reference data: sites, routes with their legs, profiles and products."""

from __future__ import annotations

from sqlmodel import Session, col, select

from app.errors import NotFound
from models.reference import (
    Courier,
    LegPublic,
    Product,
    ProductBase,
    Profile,
    ProfileBase,
    Route,
    RouteLeg,
    RoutePublic,
    Site,
    SitePublic,
)


def list_sites(session: Session) -> list[SitePublic]:
    """All sites by code."""
    rows = session.exec(select(Site).order_by(col(Site.code))).all()
    return [SitePublic.model_validate(s, from_attributes=True) for s in rows]


def get_site(session: Session, *, code: str) -> SitePublic:
    """One site (404 if unknown)."""
    site = session.get(Site, code)
    if site is None:
        raise NotFound(f"no site {code!r}")
    return SitePublic.model_validate(site, from_attributes=True)


def _public(session: Session, route: Route) -> RoutePublic:
    legs = session.exec(
        select(RouteLeg)
        .where(RouteLeg.route_code == route.code)
        .order_by(col(RouteLeg.direction), col(RouteLeg.seq))
    ).all()
    return RoutePublic.model_validate(
        {
            **route.model_dump(),
            "legs": [LegPublic.model_validate(leg, from_attributes=True) for leg in legs],
        }
    )


def list_routes(session: Session) -> list[RoutePublic]:
    """All routes by code, with their legs and targets."""
    return [_public(session, r) for r in session.exec(select(Route).order_by(col(Route.code)))]


def get_route(session: Session, *, code: str) -> RoutePublic:
    """One route with its legs and targets (404 if unknown)."""
    route = session.get(Route, code)
    if route is None:
        raise NotFound(f"no route {code!r}")
    return _public(session, route)


def list_profiles(session: Session) -> list[ProfileBase]:
    """Temperature profiles by code."""
    rows = session.exec(select(Profile).order_by(col(Profile.code))).all()
    return [ProfileBase.model_validate(p, from_attributes=True) for p in rows]


def list_products(session: Session) -> list[ProductBase]:
    """Products by code."""
    rows = session.exec(select(Product).order_by(col(Product.code))).all()
    return [ProductBase.model_validate(p, from_attributes=True) for p in rows]


def list_couriers(session: Session) -> list[Courier]:
    """Courier organisations by code."""
    return list(session.exec(select(Courier).order_by(col(Courier.code))))
