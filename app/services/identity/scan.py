"""Checking the scanned chain-of-identity label against the case at each handoff."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from sqlmodel import Session

from app.errors import CoiMismatch, Invalid
from app.services.alerts import lifecycle as alerts
from app.services.audit import chain as audit
from app.services.identity.coi import CoiFormatError, parse_scan
from models.alert import AlertKind, Severity
from models.case import Case
from models.principal import Principal


@dataclass(frozen=True)
class Mismatch:
    """A readable label of another case, presented at a step that was refused."""

    case_id: str
    expected: str
    presented: str
    step: str
    actor: Principal
    at: datetime
    shipment_id: str | None


def require_coi(
    *,
    case: Case,
    scanned: str | None,
    step: str,
    actor: Principal,
    now: datetime,
    shipment_id: str | None = None,
) -> None:
    """Refuse the step unless the scanned label is this case's COI.

    A missing or unreadable scan is invalid input (422); a readable label of another case is a
    chain-of-identity mismatch (409) that raises a critical alert and is written to the audit
    log even though the step itself is refused and changes nothing.
    """
    if not scanned:
        raise Invalid(
            f"{step} is identity-bearing: scan the chain-of-identity label (coi)",
            errors=[{"loc": "body/coi", "msg": "required for this step"}],
        )
    try:
        presented = parse_scan(scanned)
    except CoiFormatError as exc:
        raise Invalid(str(exc), errors=[{"loc": "body/coi", "msg": str(exc)}]) from exc
    if hmac.compare_digest(presented.coi, case.coi):
        return
    mismatch = Mismatch(
        case_id=case.id,
        expected=case.coi,
        presented=presented.coi,
        step=step,
        actor=actor,
        at=now,
        shipment_id=shipment_id,
    )
    raise CoiMismatch(
        f"the scanned label {presented.coi} is not this case's chain of identity; "
        f"{step} refused — quarantine the material and verify the label",
        on_refusal=partial(record_mismatch, mismatch=mismatch),
    )


def record_mismatch(session: Session, *, mismatch: Mismatch) -> None:
    """Record a refused scan: one critical alert and one audit entry (after the rollback)."""
    m = mismatch
    facts = {"step": m.step, "presented": m.presented, "expected": m.expected}
    alerts.raise_alert(
        session,
        kind=AlertKind.coi_mismatch,
        severity=Severity.critical,
        code="identity.coi_mismatch",
        params=dict(facts),
        now=m.at,
        case_id=m.case_id,
        shipment_id=m.shipment_id,
        data=dict(facts),
    )
    audit.append(
        session,
        actor=m.actor,
        action="coi.mismatch",
        entity="case",
        entity_id=m.case_id,
        at=m.at,
        after=facts,
        reason="scanned label does not match the case; step refused",
    )
