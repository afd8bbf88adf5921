"""Who may see which case and shipment.

Outside its scope a caller is told 404, exactly as if the object did not exist, so nobody
learns that another hospital's patient is in the system.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, false, true
from sqlmodel import col, select

from models.case import Case
from models.principal import Principal, Role
from models.reference import Route
from models.shipment import Shipment

CASE_READERS = (Role.admin, Role.coordinator, Role.manufacturer, Role.qa)
SHIPMENT_READERS = (Role.admin, Role.coordinator, Role.manufacturer, Role.qa, Role.courier)
ALERT_WATCHERS = (Role.admin, Role.qa, Role.coordinator, Role.manufacturer, Role.courier)
METRICS_VIEWERS = (Role.admin, Role.coordinator, Role.manufacturer, Role.qa, Role.viewer)
DISPOSITION_SIGNERS = (Role.qa,)


def case_scope(principal: Principal) -> ColumnElement[bool]:
    """SQL condition on ``Case`` selecting the cases this principal may see."""
    role = principal.role
    if role in (Role.admin, Role.qa):
        return true()
    if role == Role.coordinator:
        return col(Case.site) == principal.site
    if role == Role.manufacturer:
        routes = select(Route.code).where(Route.manufacturing_site == principal.site)
        return col(Case.route).in_(routes)
    return false()


def shipment_scope(principal: Principal) -> ColumnElement[bool]:
    """SQL condition on ``Shipment`` selecting the shipments this principal may see."""
    if principal.role in (Role.admin, Role.qa):
        return true()
    if principal.role == Role.courier:
        return col(Shipment.courier) == principal.courier
    if principal.role in (Role.coordinator, Role.manufacturer):
        cases = select(Case.id).where(case_scope(principal))
        return col(Shipment.case_id).in_(cases)
    return false()
