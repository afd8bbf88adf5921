"""Checking the scanned chain-of-identity label against the case at each handoff."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import datetime

from sqlmodel import Session

from app.errors import CoiMismatch, Invalid
from app.services.alerts import lifecycle as alerts
from app.services.audit import chain as audit
from app.services.identity.coi import CoiFormatError, parse_scan
from models.alert import AlertKind, Severity
from models.case import Case
from models.principal import Principal


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
    raise CoiMismatch(
        f"the scanned label {presented.coi} is not this case's chain of identity; "
        f"{step} refused — quarantine the material and verify the label",
        on_refusal=_record_mismatch(case, presented.coi, step, actor, now, shipment_id),
    )


def _record_mismatch(
    case: Case, presented: str, step: str, actor: Principal, now: datetime, shipment_id: str | None
) -> Callable[[Session], None]:
    case_id, expected = case.id, case.coi

    def record(session: Session) -> None:
        alerts.raise_alert(
            session,
            kind=AlertKind.coi_mismatch,
            severity=Severity.critical,
            message=f"COI mismatch at {step}: label {presented} presented for case COI {expected}",
            now=now,
            case_id=case_id,
            shipment_id=shipment_id,
            data={"step": step, "presented": presented, "expected": expected},
        )
        audit.append(
            session,
            actor=actor,
            action="coi.mismatch",
            entity="case",
            entity_id=case_id,
            at=now,
            after={"step": step, "presented": presented, "expected": expected},
            reason="scanned label does not match the case; step refused",
        )

    return record
