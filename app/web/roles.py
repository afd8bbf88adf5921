"""What each role may see on the dashboard: exactly what the API lets it call.

The role sets are the application layer's (``app.services.access.scope``), the same the API's
dependencies admit, so a change to an API rule changes the dashboard with it. Object scope
(site, factory, courier) comes from the services too: outside it a page is a 404, as in the
API.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import Forbidden
from app.services.access.scope import (
    ALERT_WATCHERS,
    CASE_READERS,
    DISPOSITION_SIGNERS,
    METRICS_VIEWERS,
    SHIPMENT_READERS,
)
from models.principal import Principal, Role

CASES = frozenset(CASE_READERS)
SHIPMENTS = frozenset(SHIPMENT_READERS)
ALERTS = frozenset(ALERT_WATCHERS)
METRICS = frozenset(METRICS_VIEWERS)
DISPOSITION = frozenset(DISPOSITION_SIGNERS)
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
