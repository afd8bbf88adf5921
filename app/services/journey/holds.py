"""Product holds: QA stops thaw and infusion of a case's product until a signed release.

A hold is placed by hand (QA or admin, signed), by a ``reject`` or ``quarantine``
disposition of one of the case's excursions, or when late readings would change a signed
excursion. Each action is a new ``product_hold`` row (never changed); ``Case.hold_status``
is the latest action's state, so every read of the case sees the hold at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from app.errors import Conflict, Forbidden
from app.services.access import principals
from app.services.audit import chain as audit
from app.services.webhooks import outbox as webhooks
from models.case import Case, HoldRequest, ProductHold
from models.principal import Principal, Role
from models.webhook import WebhookEvent

ON_HOLD = "on_hold"
RELEASED = "released"
# Who places and releases a hold by hand: QA, and an admin standing in for QA.
HOLD_SIGNERS = (Role.qa, Role.admin)


class ProductOnHold(Conflict):
    code, title = "product-on-hold", "The product is on hold"


def latest(session: Session, *, case_id: str) -> ProductHold | None:
    """The newest hold action of the case, or None if it was never held."""
    return session.exec(
        select(ProductHold)
        .where(ProductHold.case_id == case_id)
        .order_by(col(ProductHold.id).desc())
        .limit(1)
    ).first()


def state(session: Session, *, case: Case) -> dict[str, Any] | None:
    """The case resource's ``hold``: ``{status, reason, since, by, source}`` or None."""
    if case.hold_status is None:
        return None
    row = latest(session, case_id=case.id)
    if row is None:  # the column and the table are written together
        return None
    return _shape(case, row)


def _shape(case: Case, row: ProductHold) -> dict[str, Any]:
    return {
        "status": case.hold_status,
        "reason": row.reason,
        "since": row.at,
        "by": row.by,
        "source": row.source,
    }


def refuse_if_on_hold(case: Case, *, step: str) -> None:
    """Thaw and infusion are refused while the product is on hold (409, nothing changed)."""
    if case.hold_status == ON_HOLD:
        raise ProductOnHold(
            f"{step} refused: the product of case {case.id} is on hold until QA releases it "
            "with a signature",
            extra={"case_id": case.id},
        )


def act(
    session: Session,
    *,
    actor: Principal,
    case: Case,
    request: HoldRequest,
    secret_key: str,
    now: datetime,
) -> ProductHold:
    """QA's (or an admin's) signed hand on a case's hold: ``place`` it or ``release`` it."""
    if actor.role not in HOLD_SIGNERS:
        raise Forbidden(f"role {actor.role} may not place or release a product hold")
    # 21 CFR 11.200: the signer re-enters their own credential for each signing.
    principals.verify_signature(
        session,
        actor=actor,
        credential=request.signature.password_or_key,
        secret_key=secret_key,
        now=now,
    )
    if request.action == "release":
        return release(
            session,
            case=case,
            by=actor,
            reason=request.reason,
            meaning=request.signature.meaning,
            now=now,
        )
    return place(
        session,
        case=case,
        by=actor,
        reason=request.reason,
        source="manual",
        meaning=request.signature.meaning,
        now=now,
    )


def place(
    session: Session,
    *,
    case: Case,
    by: Principal | str,
    reason: str,
    source: str,
    meaning: str | None,
    now: datetime,
) -> ProductHold:
    """Put the case's product on hold (again, if it is already held: each reason is kept)."""
    return _act(
        session,
        case=case,
        by=by,
        action="place",
        reason=reason,
        source=source,
        meaning=meaning,
        now=now,
    )


def release(
    session: Session, *, case: Case, by: Principal, reason: str, meaning: str, now: datetime
) -> ProductHold:
    """Lift the hold; the caller has verified the releaser's signature."""
    if case.hold_status != ON_HOLD:
        raise Conflict(f"case {case.id} is not on hold", code="not-on-hold")
    return _act(
        session,
        case=case,
        by=by,
        action="release",
        reason=reason,
        source="manual",
        meaning=meaning,
        now=now,
    )


def _act(
    session: Session,
    *,
    case: Case,
    by: Principal | str,
    action: str,
    reason: str,
    source: str,
    meaning: str | None,
    now: datetime,
) -> ProductHold:
    before = {"hold_status": case.hold_status}
    row = ProductHold(
        case_id=case.id,
        action=action,
        reason=reason,
        source=source,
        by=by.name if isinstance(by, Principal) else by,
        by_id=by.id if isinstance(by, Principal) else None,
        signature_meaning=meaning,
        at=now,
    )
    case.hold_status = ON_HOLD if action == "place" else RELEASED
    case.updated_at = now
    session.add(row)
    session.add(case)
    session.flush()
    audit.append(
        session,
        actor=by,
        action=f"case.hold.{action}",
        entity="case",
        entity_id=case.id,
        at=now,
        before=before,
        after={"hold_status": case.hold_status, "source": source, "meaning": meaning},
        reason=reason,
    )
    webhooks.enqueue_for_case(
        session,
        case=case,
        event=WebhookEvent.case_hold,
        body={"hold": _shape(case, row)},
        now=now,
    )
    return row
