"""What each role may see on the dashboard: exactly what the API lets it call.

The role sets are read from the API's own dependencies (``require_roles`` records them), so
a change to an API rule changes the dashboard with it. Object scope (site, factory,
courier) comes from ``app.services.access``: outside it a page is a 404, as in the API.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

from sqlalchemy import ColumnElement, true

from app.errors import Forbidden
from app.routers import alerts as alerts_api
from app.routers import excursions as readings_api
from app.routers import metrics as metrics_api
from app.services.access.scope import CASE_READERS, SHIPMENT_READERS, case_scope
from models.principal import Principal, Role


def _roles(annotated: object) -> frozenset[Role]:
    """The roles a ``require_roles`` dependency admits."""
    dependency = typing.get_args(annotated)[1].dependency
    roles: frozenset[Role] = dependency.allowed_roles
    return roles


CASES = frozenset(CASE_READERS)
SHIPMENTS = frozenset(SHIPMENT_READERS)
ALERTS = frozenset(alerts_api.ALERT_ROLES)
METRICS = _roles(metrics_api.Viewer)
DISPOSITION = _roles(readings_api.QA)
# Device keys are a logger's credential, not a person's: they never open the dashboard.
DASHBOARD = CASES | SHIPMENTS | ALERTS | METRICS


@dataclass(frozen=True)
class Can:
    """The dashboard sections a principal may open."""

    cases: bool
    shipments: bool
    alerts: bool
    metrics: bool
    dispose: bool

    @classmethod
    def of(cls, principal: Principal) -> Can:
        role = Role(principal.role)
        return cls(
            cases=role in CASES,
            shipments=role in SHIPMENTS,
            alerts=role in ALERTS,
            metrics=role in METRICS,
            dispose=role in DISPOSITION,
        )


def require(allowed: bool, what: str) -> None:
    if not allowed:
        raise Forbidden(f"your role may not open {what}")


def aggregate_scope(principal: Principal) -> ColumnElement[bool]:
    """Cases counted in aggregates: the case scope, and every case for a viewer.

    A viewer's metrics cover every site (``/metrics/turnaround`` does not filter them), so
    the counts a viewer sees here do not either; they never list a case.
    """
    if principal.role == Role.viewer:
        return true()
    return case_scope(principal)
