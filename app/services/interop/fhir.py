"""Cases as FHIR R5: read, search and the server's capabilities.

Each case is read into the snapshot ``integrations.fhir`` maps to resources. Scope is the
cases one's (``case_scope``): a case outside it is not found on read and absent from search.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import and_, func, or_
from sqlmodel import Session, col, select

from app import __version__
from app.errors import Invalid, NotFound
from app.pagination import encode_cursor, time_cursor
from app.services.access.scope import case_scope
from app.services.identity.coi import CoiFormatError, check_char, parse_scan
from app.services.journey import cases
from integrations import fhir
from integrations.fhir import Place, Snapshot
from models.case import Case, CaseStatus
from models.principal import Principal
from models.reference import Product, Profile, Route, Site
from models.shipment import Direction, Shipment

MAX_COUNT = 100  # each match is a handful of reads


def _place(session: Session, code: str) -> Place:
    site = session.get(Site, code)
    return Place(code=code, name=site.name if site is not None else code)


def _snapshot(session: Session, *, case: Case) -> Snapshot:
    """The case, its product, factory, outbound storage range and latest-cycle milestones."""
    route = session.get(Route, case.route)
    product = session.get(Product, case.product)
    if route is None or product is None:  # guaranteed by foreign keys
        raise RuntimeError("inconsistent data: route or product missing")
    # The outbound shipment's profile when one exists (what the frozen product travels in),
    # otherwise the route's outbound profile.
    outbound = session.exec(
        select(Shipment.profile)
        .where(Shipment.case_id == case.id, Shipment.direction == Direction.to_site.value)
        .order_by(col(Shipment.created_at).desc())
    ).first()
    profile = session.get(Profile, outbound or route.outbound_profile)
    if profile is None:  # guaranteed by foreign keys
        raise RuntimeError("inconsistent data: profile missing")
    at: dict[str, datetime] = {}
    for milestone in cases.milestones(session, case_id=case.id):
        if milestone.cycle == case.cycle and milestone.status != "voided":
            at[milestone.type] = milestone.occurred_at
    return Snapshot(
        case_id=case.id,
        coi=case.coi,
        status=case.status,
        cycle=case.cycle,
        product_code=product.code,
        product_name=product.name,
        thaw_expiry_min=product.thaw_expiry_min,
        factory=_place(session, route.manufacturing_site),
        treatment_site=_place(session, case.site),
        storage_min_c=profile.min_c,
        storage_max_c=profile.max_c,
        milestones=at,
        coi_check_char=check_char(case.coi),
    )


def read_product(session: Session, *, case: Case) -> dict[str, Any]:
    """The case's product as an R5 BiologicallyDerivedProduct (whatever its stage)."""
    return fhir.product(_snapshot(session, case=case))


def read_dispense(session: Session, *, case: Case) -> dict[str, Any]:
    """The infusion as an R5 BiologicallyDerivedProductDispense; 404 until infused."""
    snap = _snapshot(session, case=case)
    if snap.status != CaseStatus.infused or "infused" not in snap.milestones:
        raise NotFound("no dispense: the product has not been infused")
    return fhir.dispense(snap)


def _identifier_coi(identifier: str) -> str:
    """The COI of a token search ``[system]|value`` or ``value`` (any scanned form)."""
    system, bar, value = identifier.partition("|")
    if not bar:
        system, value = "", identifier
    if system and system != fhir.ISBT128_SYSTEM:
        raise Invalid(
            f"identifier system must be {fhir.ISBT128_SYSTEM} (ISBT 128) or omitted",
            errors=[{"loc": "query/identifier", "msg": "unknown identifier system"}],
        )
    try:
        return parse_scan(value).coi
    except CoiFormatError as exc:
        raise Invalid(
            f"identifier: {exc}", errors=[{"loc": "query/identifier", "msg": str(exc)}]
        ) from None


def search_products(
    session: Session,
    *,
    actor: Principal,
    identifier: str | None,
    count: int,
    cursor: str | None,
    base_url: str,
    search_url: str,
    now: datetime,
) -> dict[str, Any]:
    """A searchset Bundle of the actor's cases' products, newest first, ``count`` a page."""
    where = [case_scope(actor)]
    params: dict[str, str] = {}
    if identifier is not None:
        where.append(col(Case.coi) == _identifier_coi(identifier))
        params["identifier"] = identifier
    total = session.exec(select(func.count()).select_from(Case).where(*where)).one()
    stmt = select(Case).where(*where)
    after = time_cursor(cursor)
    if after is not None:
        at, case_id = after
        stmt = stmt.where(
            or_(col(Case.created_at) < at, and_(col(Case.created_at) == at, col(Case.id) < case_id))
        )
    newest_first = (col(Case.created_at).desc(), col(Case.id).desc())
    rows = list(session.exec(stmt.order_by(*newest_first).limit(count + 1)))
    page = rows[:count]
    params["_count"] = str(count)
    self_query = {**params, **({"_cursor": cursor} if cursor else {})}
    next_url = None
    if len(rows) > count:
        last = page[-1]
        token = encode_cursor(last.created_at.isoformat(), last.id)
        next_url = f"{search_url}?{urlencode({**params, '_cursor': token})}"
    return fhir.searchset(
        [fhir.product(_snapshot(session, case=c)) for c in page],
        base_url=base_url,
        total=int(total),
        self_url=f"{search_url}?{urlencode(self_query)}",
        next_url=next_url,
        now=now,
    )


def capabilities(*, base_url: str, now: datetime) -> dict[str, Any]:
    """The CapabilityStatement of what this server serves."""
    return fhir.capability_statement(base_url=base_url, software_version=__version__, date=now)
