"""Who may see which case and shipment.

Outside its scope a caller is told 404, exactly as if the object did not exist, so nobody
learns that another hospital's patient is in the system.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, bindparam, false, or_, true
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from app.db import hold_row_lock
from app.errors import NotFound
from models.case import Case
from models.principal import Principal, Role
from models.reference import Route, RouteLeg
from models.shipment import Shipment

CASE_READERS = (Role.admin, Role.coordinator, Role.manufacturer, Role.qa)
SHIPMENT_READERS = (Role.admin, Role.coordinator, Role.manufacturer, Role.qa, Role.courier)
ALERT_WATCHERS = (Role.admin, Role.qa, Role.coordinator, Role.manufacturer, Role.courier)
METRICS_VIEWERS = (Role.admin, Role.coordinator, Role.manufacturer, Role.qa, Role.viewer)
DISPOSITION_SIGNERS = (Role.qa,)
# Those who book factory slots or run a factory. QA, viewers, couriers and devices never
# schedule; a factory's load is another hospital's bookings in aggregate.
CAPACITY_PLANNERS = (Role.admin, Role.coordinator, Role.manufacturer)


def case_scope(principal: Principal) -> ColumnElement[bool]:
    """SQL condition on ``Case`` selecting the cases this principal may see."""
    kind, params = _case_kind(principal)
    return _case_condition(kind, params.get(_SITE))


def factory_in_scope(session: Session, *, principal: Principal, code: str) -> bool:
    """Whether this principal may see factory ``code``'s capacity.

    A factory sees its own; a coordinator the factories its site's routes use (a leg from or
    to the site); an admin every one.
    """
    if principal.role == Role.admin:
        return True
    if principal.role == Role.manufacturer:
        return principal.site == code
    if principal.role == Role.coordinator and principal.site:
        site = principal.site
        stmt = (
            select(Route.code)
            .join(RouteLeg, col(RouteLeg.route_code) == col(Route.code))
            .where(
                Route.manufacturing_site == code,
                or_(col(RouteLeg.from_site) == site, col(RouteLeg.to_site) == site),
            )
            .limit(1)
        )
        return session.exec(stmt).first() is not None
    return False


def shipment_scope(principal: Principal) -> ColumnElement[bool]:
    """SQL condition on ``Shipment`` selecting the shipments this principal may see."""
    kind, params = _shipment_kind(principal)
    return _shipment_condition(kind, params.get(_SITE), params.get(_COURIER))


# Who sees what, by kind of caller: a coordinator its site's cases, a factory the cases of
# the routes it manufactures for, a courier its organisation's shipments, admin and QA all,
# anyone else none. A caller without a site or courier matches nothing (every case has a
# site, every route a factory, every shipment a courier). The conditions take the site or
# courier as a value (``case_scope``, in statements built per call) or as a bound parameter
# (the scoped loads of every journey step, built once per kind: a statement built per
# request, its cache key walked anew each time, cost about as much CPU as running it).
_SITE, _COURIER, _RECORD_ID = "scope_site", "scope_courier", "scope_record_id"


def _case_kind(principal: Principal) -> tuple[str, dict[str, Any]]:
    role = principal.role
    if role in (Role.admin, Role.qa):
        return "all", {}
    if role == Role.coordinator:
        return "site", {_SITE: principal.site}
    if role == Role.manufacturer:
        return "factory", {_SITE: principal.site}
    return "none", {}


def _shipment_kind(principal: Principal) -> tuple[str, dict[str, Any]]:
    role = principal.role
    if role in (Role.admin, Role.qa):
        return "all", {}
    if role == Role.courier:
        return "courier", {_COURIER: principal.courier}
    if role in (Role.coordinator, Role.manufacturer):
        return _case_kind(principal)
    return "none", {}


def _case_condition(kind: str, site: Any) -> ColumnElement[bool]:
    """``site``: the caller's site, or a bound parameter standing for it."""
    if kind == "all":
        return true()
    if kind == "site":
        same_site: ColumnElement[bool] = col(Case.site) == site
        return same_site
    if kind == "factory":
        return col(Case.route).in_(select(Route.code).where(Route.manufacturing_site == site))
    return false()


def _shipment_condition(kind: str, site: Any, courier: Any) -> ColumnElement[bool]:
    if kind == "all":
        return true()
    if kind == "courier":
        same_courier: ColumnElement[bool] = col(Shipment.courier) == courier
        return same_courier
    if kind == "none":
        return false()
    return col(Shipment.case_id).in_(select(Case.id).where(_case_condition(kind, site)))


@cache
def _one_case(kind: str, lock: bool) -> SelectOfScalar[Case]:
    where = _case_condition(kind, bindparam(_SITE))
    stmt = select(Case).where(Case.id == bindparam(_RECORD_ID), where)
    return stmt.with_for_update(key_share=True) if lock else stmt


@cache
def _one_shipment(kind: str, lock: bool) -> SelectOfScalar[Shipment]:
    where = _shipment_condition(kind, bindparam(_SITE), bindparam(_COURIER))
    stmt = select(Shipment).where(Shipment.id == bindparam(_RECORD_ID), where)
    return stmt.with_for_update(key_share=True) if lock else stmt


def scoped_case(session: Session, *, principal: Principal, case_id: str, lock: bool) -> Case:
    """The case if the principal may see it, else 404; ``lock`` holds it for a write."""
    kind, params = _case_kind(principal)
    case = session.exec(_one_case(kind, lock), params={_RECORD_ID: case_id, **params}).first()
    if case is None:
        raise NotFound("no such case")
    if lock:
        hold_row_lock(session, "cases", case.id)
    return case


def scoped_shipment(
    session: Session, *, principal: Principal, shipment_id: str, lock: bool
) -> Shipment:
    """The shipment if the principal may see it, else 404; ``lock`` holds it for a write."""
    kind, params = _shipment_kind(principal)
    stmt = _one_shipment(kind, lock)
    shipment = session.exec(stmt, params={_RECORD_ID: shipment_id, **params}).first()
    if shipment is None:
        raise NotFound("no such shipment")
    return shipment
