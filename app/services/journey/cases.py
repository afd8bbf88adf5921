"""Registering cases and reading them back with milestones and durations."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.errors import Conflict, Forbidden, Invalid
from app.raw import Raw
from app.services.audit import chain as audit
from app.services.delays.targets import DURATIONS
from app.services.identity.coi import Keyring, check_char, next_coi
from app.times import hours_between
from models.case import Case, CaseStatus, Milestone
from models.principal import Principal, Role

CASE_SITE_KINDS = ("apheresis_center", "treatment_center")


def patient_hash(*, key: str, site: str, patient_ref: str) -> str:
    """Keyed hash of the hospital's patient reference; MRNs are only unique per hospital."""
    message = f"{site}\x1f{patient_ref.strip()}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def register(
    session: Session,
    *,
    actor: Principal,
    site: str,
    route: str,
    product: str,
    patient_ref: str,
    planned_infusion_at: datetime | None,
    now: datetime,
    keyring: Keyring,
    patient_key: str,
    default_fin: str,
) -> Case:
    """Register a case, issue its COI and signed token; refuse a second open case."""
    if actor.role == Role.coordinator and actor.site != site:
        raise Forbidden("coordinators register cases for their own site only")
    digest = patient_hash(key=patient_key, site=site, patient_ref=patient_ref)
    timezone, fin = _check_reference(
        session, site=site, route=route, product=product, digest=digest
    )
    year = now.astimezone(ZoneInfo(timezone)).year
    coi = next_coi(session, fin=fin or default_fin, year=year)
    case = Case(
        coi=coi,
        coi_check="",
        coi_token="",
        site=site,
        route=route,
        product=product,
        patient_hash=digest,
        status=CaseStatus.registered.value,
        planned_infusion_at=planned_infusion_at,
        created_at=now,
        updated_at=now,
    )
    case.coi_check = check_char(coi)
    case.coi_token = keyring.sign(coi=coi, case_id=case.id, issued_at=now)
    session.add(case)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent registration won the race
        raise Conflict(
            "an open case already exists for this patient and product",
            code="duplicate-case",
        ) from exc
    audit.append(
        session,
        actor=actor,
        action="case.registered",
        entity="case",
        entity_id=case.id,
        at=now,
        after={
            "coi": coi,
            "site": site,
            "route": route,
            "product": product,
            "status": case.status,
            "planned_infusion_at": planned_infusion_at,
        },
    )
    return case


# A registration's site, route and product, and an open case of the same patient and
# product, in one statement (four round trips on PostgreSQL before).
_REFERENCE = """
SELECT site.kind, site.timezone, site.fin,
    EXISTS (SELECT 1 FROM route WHERE code = ?), EXISTS (SELECT 1 FROM product WHERE code = ?),
    (SELECT id FROM cases WHERE patient_hash = ? AND product = ? AND closed_at IS NULL LIMIT 1)
FROM (SELECT 1 AS one) AS one LEFT JOIN site ON site.code = ?
"""


def _check_reference(
    session: Session, *, site: str, route: str, product: str, digest: str
) -> tuple[str, str | None]:
    """Refuse an unknown site (or one that takes no patients), route or product, and a
    second open case of this patient and product; the site's timezone and FIN."""
    row = Raw.of(session).one(_REFERENCE, (route, product, digest, product, site))
    if row is None:  # the outer join always gives one row
        raise RuntimeError("the reference check returned nothing")
    kind, timezone, fin, route_known, product_known, existing = row
    if kind not in CASE_SITE_KINDS:  # None: no such site
        raise Invalid(
            f"unknown treatment or apheresis site {site!r}",
            errors=[{"loc": "body/site", "msg": "unknown site"}],
        )
    if not route_known:
        raise Invalid(f"unknown route {route!r}", errors=[{"loc": "body/route", "msg": "unknown"}])
    if not product_known:
        raise Invalid(
            f"unknown product {product!r}", errors=[{"loc": "body/product", "msg": "unknown"}]
        )
    if existing is not None:
        raise Conflict(
            "an open case already exists for this patient and product",
            code="duplicate-case",
            extra={"case_id": existing},
        )
    return str(timezone), fin


def milestones(session: Session, *, case_id: str) -> list[Milestone]:
    return list(
        session.exec(
            select(Milestone)
            .where(Milestone.case_id == case_id)
            .order_by(col(Milestone.occurred_at), col(Milestone.id))
        )
    )


def durations(rows: list[Milestone], *, now: datetime) -> dict[str, Any]:
    """Leg durations of the latest collection cycle, and vein-to-vein once infused, from the
    valid and amended milestones (an amended row holds its corrected time).

    vein_to_vein_d = infused − collected (the collection that made the infused product);
    first_collection_to_infusion_d also counts failed earlier cycles, as the patient waited.
    """
    rows = [m for m in rows if m.status != "voided"]  # a voided record counts for nothing
    if not rows:
        return {}
    cycle = max(m.cycle for m in rows)
    at: dict[str, datetime] = {}
    first_collected: datetime | None = None
    for m in rows:
        if m.type == "collected" and first_collected is None:
            first_collected = m.occurred_at
        if m.cycle == cycle:
            at[m.type] = m.occurred_at
    out: dict[str, Any] = {}
    for name, start, end, per in DURATIONS:
        if start in at and end in at:
            out[name] = round(hours_between(at[start], at[end]) / per, 4)
    if first_collected is not None and "infused" in at:
        out["first_collection_to_infusion_d"] = round(
            hours_between(first_collected, at["infused"]) / 24, 4
        )
    if "collected" in at and "infused" not in at:
        out["since_collection_d"] = round(hours_between(at["collected"], now) / 24, 4)
    return out
