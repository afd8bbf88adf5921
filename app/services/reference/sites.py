"""Adding sites: validated reference data, coordinates given or geocoded from an address."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from app.errors import Conflict, Invalid
from app.services.audit import chain as audit
from integrations.geocoding import GeocodingFailed, SiteGeocoder
from models.principal import Principal
from models.reference import Site, SiteCreate


def resolve_coordinates(body: SiteCreate, geocoder: SiteGeocoder | None) -> tuple[float, float]:
    """The site's coordinates: as given, else geocoded from its address (never hangs)."""
    if body.lat is not None and body.lon is not None:
        return body.lat, body.lon
    missing = [{"loc": "body/lat", "msg": "required"}, {"loc": "body/lon", "msg": "required"}]
    if not body.address:
        raise Invalid("give lat and lon, or an address to geocode", errors=missing)
    if geocoder is None:
        raise Invalid("geocoding is switched off here: give lat and lon", errors=missing)
    try:
        return geocoder.locate(body.address)
    except GeocodingFailed as exc:
        raise Invalid(f"{exc}: give lat and lon", code="geocoding-failed", errors=missing) from exc


def create(
    session: Session, *, actor: Principal, body: SiteCreate, lat: float, lon: float, now: datetime
) -> Site:
    if session.get(Site, body.code) is not None:
        raise Conflict(f"site {body.code} already exists", code="site-exists")
    site = Site(
        code=body.code,
        name=body.name,
        kind=body.kind.value,
        lat=lat,
        lon=lon,
        timezone=body.timezone,
        country=body.country,
        fin=body.fin,
        address=body.address,
        shuttles=body.shuttles,
        positions_per_shuttle=body.positions_per_shuttle,
    )
    session.add(site)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="site.created",
        entity="site",
        entity_id=site.code,
        at=now,
        after=site.model_dump(),
    )
    return site
