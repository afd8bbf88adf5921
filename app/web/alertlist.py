"""The alerts page: the API's alert list with filters, and excursions awaiting QA."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from app.errors import Invalid
from app.services import alerts
from app.services.coldchain import disposition as excursions
from app.web.roles import Can
from models.alert import AlertKind, AlertStatus, Severity
from models.principal import Principal

PAGE = 50
ALL = "all"


def _choice(value: str | None, enum: Any, name: str) -> Any:
    if not value:
        return None
    try:
        return enum(value)
    except ValueError as exc:
        raise Invalid(
            f"unknown {name} {value!r}", errors=[{"loc": f"query/{name}", "msg": "unknown"}]
        ) from exc


def filters(status: str | None, kind: str | None, severity: str | None) -> dict[str, Any]:
    """The chosen filters; "all" (a link's way of saying no filter) or nothing means any."""
    status, kind, severity = (None if v == ALL else v for v in (status, kind, severity))
    return {
        "status": _choice(status, AlertStatus, "status"),
        "kind": _choice(kind, AlertKind, "kind"),
        "severity": _choice(severity, Severity, "severity"),
    }


def build(
    session: Session,
    principal: Principal,
    can: Can,
    *,
    status: str | None,
    kind: str | None,
    severity: str | None,
    cursor: str | None,
) -> dict[str, Any]:
    chosen = filters(status, kind, severity)
    page = alerts.list_for(
        session,
        actor=principal,
        status=chosen["status"],
        kind=chosen["kind"],
        severity=chosen["severity"],
        case_id=None,
        limit=PAGE,
        cursor=cursor,
    )
    data: dict[str, Any] = {
        "alerts": page.items,
        "next_cursor": page.next_cursor,
        "selected": {k: (v.value if v else "") for k, v in chosen.items()},
        "statuses": [s.value for s in AlertStatus],
        "kinds": [k.value for k in AlertKind],
        "severities": [s.value for s in Severity],
        "pending": [],
        "signed": [],
    }
    if can.shipments:
        found = excursions.list_excursions(
            session, actor=principal, shipment_id=None, status=None, limit=100, cursor=None
        ).items
        data["pending"] = [e for e in found if e.disposition is None]
        data["signed"] = [e for e in found if e.disposition is not None][:10]
    return data
