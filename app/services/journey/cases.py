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
from app.services.audit import chain as audit
from app.services.delays.targets import DURATIONS
from app.services.identity.coi import Keyring, check_char, next_coi
from app.times import hours_between
from models.case import Case, CaseStatus, Milestone
from models.principal import Principal, Role
from models.reference import Product, Route, Site

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
    site_row = session.get(Site, site)
    if site_row is None or site_row.kind not in CASE_SITE_KINDS:
        raise Invalid(
            f"unknown treatment or apheresis site {site!r}",
            errors=[{"loc": "body/site", "msg": "unknown site"}],
        )
    if session.get(Route, route) is None:
        raise Invalid(f"unknown route {route!r}", errors=[{"loc": "body/route", "msg": "unknown"}])
    if session.get(Product, product) is None:
        raise Invalid(
            f"unknown product {product!r}", errors=[{"loc": "body/product", "msg": "unknown"}]
        )
    digest = patient_hash(key=patient_key, site=site, patient_ref=patient_ref)
    _refuse_open_duplicate(session, digest=digest, product=product)
    year = now.astimezone(ZoneInfo(site_row.timezone)).year
    coi = next_coi(session, fin=site_row.fin or default_fin, year=year)
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


def _refuse_open_duplicate(session: Session, *, digest: str, product: str) -> None:
    existing = session.exec(
        select(Case.id).where(
            Case.patient_hash == digest, Case.product == product, col(Case.closed_at).is_(None)
        )
    ).first()
    if existing is not None:
        raise Conflict(
            "an open case already exists for this patient and product",
            code="duplicate-case",
            extra={"case_id": existing},
        )


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
