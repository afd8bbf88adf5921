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
    role = principal.role
    if role in (Role.admin, Role.qa):
        return true()
    if role == Role.coordinator:
        return col(Case.site) == principal.site
    if role == Role.manufacturer:
        routes = select(Route.code).where(Route.manufacturing_site == principal.site)
        return col(Case.route).in_(routes)
    return false()


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
    if principal.role in (Role.admin, Role.qa):
        return true()
    if principal.role == Role.courier:
        return col(Shipment.courier) == principal.courier
    if principal.role in (Role.coordinator, Role.manufacturer):
        cases = select(Case.id).where(case_scope(principal))
        return col(Shipment.case_id).in_(cases)
    return false()


# The scoped loads of every journey step, built once per kind of caller with the caller's
# site or courier as a bound parameter: a statement built per request (and its cache key,
# walked anew each time) cost about as much CPU as running it. Same conditions as
# ``case_scope`` and ``shipment_scope`` (a caller without a site or courier matches
# nothing either way: every case has a site, every route a factory, every shipment a
# courier).
_RECORD_ID = "scope_record_id"


def _case_kind(principal: Principal) -> tuple[str, dict[str, Any]]:
    role = principal.role
    if role in (Role.admin, Role.qa):
        return "all", {}
    if role == Role.coordinator:
        return "site", {"scope_site": principal.site}
    if role == Role.manufacturer:
        return "factory", {"scope_site": principal.site}
    return "none", {}


def _shipment_kind(principal: Principal) -> tuple[str, dict[str, Any]]:
    role = principal.role
    if role in (Role.admin, Role.qa):
        return "all", {}
    if role == Role.courier:
        return "courier", {"scope_courier": principal.courier}
    if role in (Role.coordinator, Role.manufacturer):
        return _case_kind(principal)
    return "none", {}


def _case_condition(kind: str) -> ColumnElement[bool]:
    if kind == "all":
        return true()
    if kind == "site":
        return col(Case.site) == bindparam("scope_site")
    if kind == "factory":
        factory = select(Route.code).where(Route.manufacturing_site == bindparam("scope_site"))
        return col(Case.route).in_(factory)
    return false()


@cache
def _one_case(kind: str, lock: bool) -> SelectOfScalar[Case]:
    stmt = select(Case).where(Case.id == bindparam(_RECORD_ID), _case_condition(kind))
    return stmt.with_for_update(key_share=True) if lock else stmt


@cache
def _one_shipment(kind: str, lock: bool) -> SelectOfScalar[Shipment]:
    if kind == "all":
        scope: ColumnElement[bool] = true()
    elif kind == "courier":
        scope = col(Shipment.courier) == bindparam("scope_courier")
    elif kind == "none":
        scope = false()
    else:
        scope = col(Shipment.case_id).in_(select(Case.id).where(_case_condition(kind)))
    stmt = select(Shipment).where(Shipment.id == bindparam(_RECORD_ID), scope)
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
