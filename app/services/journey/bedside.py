"""Bedside rules for thaw and infusion: the product hold, the thaw expiry, the second verifier.

Each rule refuses the step before anything is written, so a refused thaw or infusion leaves
the case exactly as it was.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func
from sqlmodel import Session, col, select

from app.errors import Conflict, Invalid
from app.services.access import principals
from app.services.journey import holds
from app.times import as_utc, iso_z
from models.case import Case, Milestone
from models.principal import Principal, Role
from models.reference import Product, Site

BEDSIDE_STEPS = frozenset({"thawed", "infused"})
VERIFIER_LOC = "body/data/verified_by"


class ThawExpired(Conflict):
    code, title = "thaw-expired", "The thawed product has expired"


def check(
    session: Session,
    *,
    case: Case,
    actor: Principal,
    event_type: str,
    occurred_at: datetime,
    data: dict[str, Any] | None,
    secret_key: str,
    now: datetime,
) -> dict[str, Any] | None:
    """Refuse a thaw or infusion the rules forbid; return the milestone data to store.

    ``data.verified_by`` arrives as the second person's API key and leaves as who they are
    (``{id, name}``): the key itself is never stored or echoed.
    """
    if event_type not in BEDSIDE_STEPS:
        if data and "verified_by" in data:  # a key would be stored where nobody checks it
            raise _invalid(f"verified_by is for thawed and infused, not {event_type}")
        return data
    holds.refuse_if_on_hold(case, step=event_type)
    if event_type == "infused":
        refuse_if_thaw_expired(session, case=case, infused_at=occurred_at)
    return _with_verifier(
        session, case=case, actor=actor, data=data, secret_key=secret_key, now=now
    )


# Asked at every thaw and infusion, so built once (built per call, a statement and its cache
# key cost about as much CPU as running it): when the case's product was thawed in this
# cycle, how long a thawed product keeps, whether the site wants a second person.
_THAWED_AT = select(func.max(Milestone.occurred_at)).where(
    Milestone.case_id == bindparam("case_id"),
    Milestone.cycle == bindparam("cycle"),
    Milestone.type == "thawed",
    col(Milestone.status) != "voided",
)
_THAW_EXPIRY = select(Product.thaw_expiry_min).where(Product.code == bindparam("code"))
_SECOND_VERIFIER = select(Site.require_second_verifier).where(Site.code == bindparam("code"))


def refuse_if_thaw_expired(session: Session, *, case: Case, infused_at: datetime) -> None:
    """An expired thawed product is never infused (the product's ``thaw_expiry_min``)."""
    thawed_at = session.exec(_THAWED_AT, params={"case_id": case.id, "cycle": case.cycle}).one()
    expiry_min = session.exec(_THAW_EXPIRY, params={"code": case.product}).first()
    if thawed_at is None or expiry_min is None:
        return
    minutes = (infused_at - as_utc(thawed_at)).total_seconds() / 60
    if minutes > expiry_min:
        raise ThawExpired(
            f"infusion refused: the product thawed at {iso_z(as_utc(thawed_at))} expired "
            f"{expiry_min:g} min after thawing ({minutes:.0f} min had passed)",
            extra={
                "case_id": case.id,
                "thawed_at": iso_z(as_utc(thawed_at)),
                "thaw_expiry_min": expiry_min,
            },
        )


def _with_verifier(
    session: Session,
    *,
    case: Case,
    actor: Principal,
    data: dict[str, Any] | None,
    secret_key: str,
    now: datetime,
) -> dict[str, Any] | None:
    key = (data or {}).get("verified_by")
    if key is None:
        if session.exec(_SECOND_VERIFIER, params={"code": case.site}).first():
            raise _invalid(f"site {case.site} requires a second verifier at the bedside")
        return data
    if not isinstance(key, str) or not key.strip():
        raise _invalid("verified_by must be the second person's API key")
    verifier = principals.authenticate(session, api_key=key.strip(), secret_key=secret_key, now=now)
    if verifier is None:
        raise _invalid("verified_by is not a valid, active API key")
    if verifier.id == actor.id:
        raise _invalid("the second verifier must be another person than the recorder")
    if verifier.role != Role.admin and verifier.site != case.site:
        raise _invalid(f"the second verifier must belong to the case's site {case.site}")
    return {**(data or {}), "verified_by": {"id": verifier.id, "name": verifier.name}}


def _invalid(detail: str) -> Invalid:
    # The message never repeats the key that was given.
    return Invalid(detail, code="bad-verifier", errors=[{"loc": VERIFIER_LOC, "msg": detail}])
