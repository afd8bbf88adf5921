"""The workspace's posts: register a case, record a step, create a shipment, scan custody.

Each is CSRF-checked and calls the use case the API calls, with the logged-in principal, so
the rules, the refusals and the audit entries are the API's. A refusal is shown on the form
(status as the API's); a wrong label, a product on hold or an expired thaw is a stop screen.
A COI mismatch is recorded (critical alert, audit entry) by the service's own refusal hook,
exactly as through the API. The second verifier's key is passed on and never rendered.
"""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Path
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from app.deps import KeyringDep, NowDep, SessionDep, SettingsDep, committing
from app.errors import AppError, Forbidden
from app.services.access.scope import scoped_case, scoped_shipment
from app.services.identity.coi import display
from app.services.journey import cases, events
from app.services.shipments import lifecycle as shipments
from app.web import auth, forms
from app.web.render import View, ViewDep, WebRoute
from app.web.workspace import (
    BEDSIDE,
    STEPS,
    Csrf,
    Field,
    Key,
    Text,
    message_of,
    parse_local,
    stop_of,
)
from models.case import Case, CaseCreate
from models.reference import Site
from models.shipment import CustodyAction, CustodyCreate, ShipmentCreate

router = APIRouter(route_class=WebRoute, include_in_schema=False)
Id = Annotated[str, Path(max_length=64)]
Scan = Annotated[str, Form(max_length=200)]


def _done(view: View, text: str, target: str) -> RedirectResponse:
    auth.flash(view.request, "ok", text)
    return RedirectResponse(target, status_code=303)


def _stop(
    view: View, exc: AppError, *, case: Case, scanned: str, back: str, phone: bool = False
) -> HTMLResponse | None:
    stop = stop_of(exc, case=case, scanned=scanned, lang=view.lang)
    if stop is None:
        return None
    return view.render("forms/stop.html", status=exc.status, stop=stop, back=back, phone=phone)


@router.post("/register", response_model=None)
def register(
    view: ViewDep,
    session: SessionDep,
    settings: SettingsDep,
    keyring: KeyringDep,
    now: NowDep,
    csrf: Csrf = "",
    site: Field = "",
    route: Field = "",
    product: Field = "",
    patient_ref: Field = "",
    planned_infusion_at: Field = "",
) -> Response:
    """Register a case (a coordinator for their own site), then show its COI and label."""
    auth.check_csrf(view.request, csrf)
    actor = forms.registrar(view)
    _ = view.lang.gettext
    if actor.site:
        site = actor.site  # a coordinator's site is theirs, whatever the form said
    row = session.get(Site, site)
    planned = None
    if planned_infusion_at.strip() and row is not None:
        planned = parse_local(planned_infusion_at, ZoneInfo(row.timezone))
    # patient_ref is never put back into the page: it is retyped after a refusal.
    again = {"site": site, "route": route, "product": product}
    again["planned_infusion_at"] = planned_infusion_at
    try:
        body = CaseCreate(
            site=site,
            route=route,
            product=product,
            patient_ref=patient_ref.strip(),
            planned_infusion_at=planned,
        )
    except ValidationError:
        error = _("Choose the route and product and give the patient reference.")
        return forms.render_register(view, session, status=422, error=error, **again)
    try:
        with committing(session):
            case = cases.register(
                session,
                actor=actor,
                site=body.site,
                route=body.route,
                product=body.product,
                patient_ref=body.patient_ref,
                planned_infusion_at=body.planned_infusion_at,
                now=now,
                keyring=keyring,
                patient_key=settings.patient_hash_key.get_secret_value(),
                default_fin=settings.coi_fin,
            )
    except AppError as exc:
        error = message_of(exc, view.lang)
        return forms.render_register(view, session, status=exc.status, error=error, **again)
    text = _("Case registered: chain of identity %(coi)s.", coi=display(case.coi))
    return _done(view, text, f"/cases/{case.id}/steps")


@router.post("/cases/{case_id}/steps/{step}", response_model=None)
def record_step(
    case_id: Id,
    step: Annotated[str, Path(max_length=40)],
    view: ViewDep,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    csrf: Csrf = "",
    coi: Scan = "",
    occurred_at: Field = "",
    note: Text = "",
    verifier_key: Key = "",
) -> Response:
    """Record a journey step after checking the scanned label against the case."""
    auth.check_csrf(view.request, csrf)
    forms.step_case(session, view, case_id, step)
    _ = view.lang.gettext
    case = scoped_case(session, principal=view.user, case_id=case_id, lock=True)
    zone = forms.step_context(session, view, case, step)["where_zone"]
    when = parse_local(occurred_at, zone)

    def again(error: str, status: int) -> HTMLResponse:
        return forms.render_step(
            view, session, case, step, status=status, error=error, occurred=occurred_at, note=note
        )

    if when is None:
        return again(_("Give the date and time of the step."), 422)
    if not coi.strip():
        return again(_("Scan the chain-of-identity label on the bag or container."), 422)
    data: dict[str, Any] | None = None
    if step in BEDSIDE:
        if not verifier_key.strip():
            return again(
                _(
                    "A second person must verify the patient and the label: "
                    "they type or scan their own key."
                ),
                422,
            )
        data = {"verified_by": verifier_key.strip()}
    try:
        with committing(session):
            events.record_event(
                session,
                case=case,
                actor=view.user,
                event_type=step,
                occurred_at=when,
                site=forms.step_context(session, view, case, step)["where"].code,
                coi=coi.strip(),
                note=note.strip() or None,
                data=data,
                now=now,
                future_tolerance_s=settings.future_tolerance_s,
                secret_key=settings.secret_key.get_secret_value(),
            )
    except AppError as exc:
        back = f"/cases/{case.id}/steps/{step}"
        stopped = _stop(view, exc, case=case, scanned=coi, back=back)
        return stopped or again(message_of(exc, view.lang), exc.status)
    text = _("%(step)s recorded for %(coi)s.", step=_(STEPS[step]), coi=display(case.coi))
    return _done(view, text, f"/cases/{case.id}/steps")


def _devices(text: str) -> list[str]:
    return [d for d in text.replace(",", " ").split() if d]


@router.post("/cases/{case_id}/shipments", response_model=None)
def create_shipment(
    case_id: Id,
    view: ViewDep,
    session: SessionDep,
    now: NowDep,
    csrf: Csrf = "",
    direction: Field = "",
    origin: Field = "",
    destination: Field = "",
    profile: Field = "",
    courier: Field = "",
    container_serial: Field = "",
    container_kind: Field = "",
    hold_time_h: Field = "",
    device_ids: Text = "",
    coi: Scan = "",
) -> Response:
    """Create the case's shipment; the sender scans the label on the container."""
    auth.check_csrf(view.request, csrf)
    if direction not in ("to_manufacturing", "to_site"):
        raise Forbidden("choose the shipment's direction from the case page")
    forms.shipment_case(session, view, case_id, direction)
    _ = view.lang.gettext
    case = scoped_case(session, principal=view.user, case_id=case_id, lock=True)
    values = {
        "courier": courier,
        "container_serial": container_serial,
        "container_kind": container_kind,
        "hold_time_h": hold_time_h,
        "device_ids": device_ids,
    }
    try:
        body = ShipmentCreate.model_validate(
            {
                "case_id": case.id,
                "direction": direction,
                "origin": origin,
                "destination": destination,
                "profile": profile,
                "courier": courier,
                "container": {
                    "serial": container_serial.strip(),
                    "kind": container_kind.strip(),
                    "hold_time_h": hold_time_h.strip() or None,
                },
                "device_ids": _devices(device_ids),
                "coi": coi.strip(),
            }
        )
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        error = _("Check these fields: %(fields)s.", fields=", ".join(fields))
        return forms.render_shipment(
            view, session, case, direction, status=422, error=error, **values
        )
    try:
        with committing(session):
            shipment = shipments.create(
                session,
                case_id=case.id,
                actor=view.user,
                direction=body.direction,
                origin=body.origin,
                destination=body.destination,
                profile=body.profile,
                courier=body.courier,
                container_serial=body.container.serial,
                container_kind=body.container.kind,
                hold_time_h=body.container.hold_time_h,
                device_ids=body.device_ids,
                coi=body.coi,
                now=now,
            )
    except AppError as exc:
        back = f"/cases/{case.id}/shipments/new?direction={direction}"
        stopped = _stop(view, exc, case=case, scanned=coi, back=back)
        return stopped or forms.render_shipment(
            view,
            session,
            case,
            direction,
            status=exc.status,
            error=message_of(exc, view.lang),
            **values,
        )
    text = _("Shipment %(id)s created; the courier can collect it.", id=shipment.id[:8])
    return _done(view, text, f"/cases/{case.id}/steps")


@router.post("/courier/{shipment_id}", response_model=None)
def custody(
    shipment_id: Id,
    view: ViewDep,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    csrf: Csrf = "",
    action: Field = "",
    coi: Scan = "",
    from_party: Field = "",
    to_party: Field = "",
    lat: Field = "",
    lon: Field = "",
) -> Response:
    """A custody scan, now: picked up, handed off or delivered, with the label scanned."""
    auth.check_csrf(view.request, csrf)
    forms.custodian(view)
    _ = view.lang.gettext
    shipment = scoped_shipment(session, principal=view.user, shipment_id=shipment_id, lock=True)

    def again(error: str, status: int) -> HTMLResponse:
        return forms.render_custody(view, session, shipment.id, status=status, error=error)

    try:
        body = CustodyCreate.model_validate(
            {
                "action": action,
                # Whole seconds, like the forms' times: a step typed right after stays in order.
                "occurred_at": now.replace(microsecond=0),
                "from_party": from_party.strip(),
                "to_party": to_party.strip(),
                "coi": coi.strip(),
                "lat": lat.strip() or None,
                "lon": lon.strip() or None,
            }
        )
    except ValidationError:
        if not coi.strip():
            return again(_("Scan the chain-of-identity label on the container first."), 422)
        return again(_("Tap picked up, handoff or delivered, and name both parties."), 422)
    case = session.get(Case, shipment.case_id)
    try:
        with committing(session):
            shipments.record_custody(
                session,
                shipment=shipment,
                actor=view.user,
                action=body.action,
                occurred_at=body.occurred_at,
                from_party=body.from_party,
                to_party=body.to_party,
                coi=body.coi,
                lat=body.lat,
                lon=body.lon,
                now=now,
                future_tolerance_s=settings.future_tolerance_s,
            )
    except AppError as exc:
        stopped = (
            _stop(view, exc, case=case, scanned=coi, back=f"/courier/{shipment.id}", phone=True)
            if case
            else None
        )
        return stopped or again(message_of(exc, view.lang), exc.status)
    done = {
        CustodyAction.picked_up: _("Picked up: the shipment is in transit."),
        CustodyAction.handoff: _("Handoff recorded."),
        CustodyAction.delivered: _("Delivered: the receiver now scans it in."),
    }[body.action]
    return _done(view, done, f"/courier/{shipment.id}")
