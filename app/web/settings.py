"""The signed-in person's notification settings (``/settings/notifications``).

The page reads and saves through the use cases behind ``/api/v1/me/notifications``
(``preferences.read`` and ``preferences.update``) with the same request model, so the rules,
the masking and the audit entry are the API's. A contact point may hold a token: the page
shows it masked, keeps it by fingerprint and never puts a typed target back into the form.
Viewers are never notified (``recipients.reachable``), so the page is for the roles that
watch alerts.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from app.deps import NowDep, SessionDep, SettingsDep, committing
from app.errors import AppError
from app.services.notifications import preferences
from app.services.reference import catalogue
from app.web import auth
from app.web.i18n import N_
from app.web.labels import ALERT_KIND, SEVERITY
from app.web.render import View, ViewDep, WebRoute
from app.web.roles import require
from app.web.workspace import Csrf, Field
from models.alert import AlertKind, Severity
from models.notification import NotificationSettingsIn, NotificationSettingsPublic

router = APIRouter(route_class=WebRoute, include_in_schema=False)
PAGE = "/settings/notifications"
Many = Annotated[list[str], Form()]
Target = Annotated[str, Form(max_length=2000)]

KINDS = [k.value for k in AlertKind]
SEVERITIES = [s.value for s in Severity]
CHANNELS = {
    "email": N_("E-mail"),
    "line": "LINE",
    "msteams": "Microsoft Teams",
    "workflow": "Microsoft Teams",
    "slack": "Slack",
}
# Field -> what a person is told when the request model refuses it.
ADVICE = {
    "new_contact": N_("Not an e-mail address or a notification URL we can send to."),
    "contacts": N_("At most 10 contact points; remove one first."),
    "kinds": N_("Choose alert kinds from the list."),
    "min_severity": N_("Choose a severity from the list."),
    "quiet": N_("Give both times as HH:MM (for example 22:00 and 07:00), or leave both empty."),
    "language": N_("Choose English or Japanese."),
    "timezone": N_("Not a time zone we know; choose one from the list."),
}


def _hhmm(value: str) -> str:
    """``7:00``, ``0700`` or ``07:00`` as ``07:00``; anything else as typed, for the model
    to refuse."""
    match = re.fullmatch(r"([0-9]{1,2}):?([0-9]{2})", value.strip())
    return f"{int(match.group(1)):02d}:{match.group(2)}" if match else value.strip()


def _person(view: View) -> None:
    require(view.can.alerts, "notification settings")


def _zones(session: Any, current: str) -> list[str]:
    zones = {s.timezone for s in catalogue.list_sites(session)} | {"UTC", current}
    return sorted(zones)


def _form_of(found: NotificationSettingsPublic) -> dict[str, Any]:
    first = found.subscriptions[0] if found.subscriptions else None
    return {
        "remove": set(),
        # An empty list of kinds is every kind: every box ticked.
        "kinds": set(first.kinds or KINDS) if first else set(),
        "min_severity": first.min_severity if first else Severity.warning.value,
        "quiet_from": found.quiet_hours.from_ if found.quiet_hours else "",
        "quiet_to": found.quiet_hours.to if found.quiet_hours else "",
        "language": found.language,
        "timezone": found.timezone,
        "digest": found.digest,
    }


def _render(
    view: View,
    session: Any,
    found: NotificationSettingsPublic,
    form: dict[str, Any],
    *,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    _ = view.lang.gettext
    errors = errors or {}
    return view.render(
        "settings_notifications.html",
        status=status,
        found=found,
        form=form,
        errors=errors,
        # A refusal that names no field is the summary itself.
        error=errors.get("form") or (_("Not saved: check the marked fields.") if errors else None),
        kinds=[(k, _(ALERT_KIND.get(k, k))) for k in KINDS],
        severities=[(s, _(SEVERITY[s])) for s in SEVERITIES],
        channels={c.fingerprint: _(CHANNELS.get(c.kind, c.kind)) for c in found.contacts},
        extra_rules=found.subscriptions[1:],
        zones=_zones(session, form["timezone"] or found.timezone),
    )


@router.get(PAGE)
def settings_page(view: ViewDep, session: SessionDep) -> HTMLResponse:
    """The signed-in person's contact points (masked), alert kinds, severity, quiet hours."""
    _person(view)
    found = preferences.read(session, principal_id=view.user.id)
    return _render(view, session, found, _form_of(found))


def _field(loc: tuple[Any, ...] | list[Any], new_index: int) -> str:
    """The form field a request-model error belongs to."""
    head = str(loc[0]) if loc else "timezone"  # the model's one whole-body check is the zone
    if head == "contacts":
        return "new_contact" if len(loc) > 1 and loc[1] == new_index else "contacts"
    if head == "subscriptions":
        return "min_severity" if "min_severity" in loc else "kinds"
    return {"quiet_hours": "quiet"}.get(head, head)


@router.post(PAGE, response_model=None)
def save_settings(
    view: ViewDep,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    csrf: Csrf = "",
    remove: Many = [],  # noqa: B006 - FastAPI copies defaults
    kinds: Many = [],  # noqa: B006
    new_contact: Target = "",
    min_severity: Field = "warning",
    quiet_from: Field = "",
    quiet_to: Field = "",
    language: Field = "",
    timezone: Field = "",
    digest: Field = "",
) -> Response:
    """Replace the person's settings through the API's use case; a refusal saves nothing."""
    auth.check_csrf(view.request, csrf)
    _person(view)
    _ = view.lang.gettext
    found = preferences.read(session, principal_id=view.user.id)
    removed = set(remove)
    form = {
        "remove": removed,
        "kinds": set(kinds),
        "min_severity": min_severity,
        "quiet_from": _hhmm(quiet_from),
        "quiet_to": _hhmm(quiet_to),
        "language": language,
        "timezone": timezone.strip(),
        "digest": bool(digest),
    }
    kept = [c.fingerprint for c in found.contacts if c.fingerprint not in removed]
    contacts: list[dict[str, str]] = [{"fingerprint": f} for f in kept]
    if new_contact.strip():
        contacts.append({"target": new_contact.strip()})
    # No box ticked: no alerts by this rule. Every box: every kind, also kinds added later.
    rule_kinds = [] if form["kinds"] == set(KINDS) else kinds
    rules = [{"kinds": rule_kinds, "min_severity": min_severity}] if kinds else []
    rules += [s.model_dump() for s in found.subscriptions[1:]]  # rules set through the API
    errors: dict[str, str] = {}
    quiet = None
    if form["quiet_from"] or form["quiet_to"]:
        if not (form["quiet_from"] and form["quiet_to"]):
            errors["quiet"] = _(ADVICE["quiet"])
        quiet = {"from": form["quiet_from"], "to": form["quiet_to"]}
    body = None
    try:
        body = NotificationSettingsIn.model_validate(
            {
                "contacts": contacts,
                "subscriptions": rules,
                "quiet_hours": quiet,
                "language": language or None,
                "timezone": form["timezone"] or None,
                "digest": form["digest"],
            }
        )
    except ValidationError as exc:
        for e in exc.errors(include_input=False):
            field = _field(e["loc"], len(kept))
            errors.setdefault(field, _(ADVICE[field]) if field in ADVICE else str(e["msg"]))
    if body is not None and not errors:
        try:
            with committing(session):
                preferences.update(
                    session,
                    actor=view.user,
                    principal_id=view.user.id,
                    body=body,
                    allow_private=settings.notify_allow_private,
                    now=now,
                )
        except AppError as exc:
            errors = _refusal(exc, view, len(kept))
        else:
            auth.flash(view.request, "ok", _("Notification settings saved."))
            return RedirectResponse(PAGE, status_code=303)
    return _render(view, session, found, form, errors=errors, status=422)


def _refusal(exc: AppError, view: View, new_index: int) -> dict[str, str]:
    """The service's refusal beside its field: a short reason, then the service's words."""
    _ = view.lang.gettext
    if not exc.errors:
        return {"form": _("Not saved.") + f" ({exc.detail})"}
    errors: dict[str, str] = {}
    for e in exc.errors:
        loc = [int(p) if p.isdigit() else p for p in str(e["loc"]).split("/")[1:]]
        field = _field(loc, new_index)
        if field == "contacts":
            lead = _("This contact point is no longer set; reload the page.")
        else:
            lead = _(ADVICE.get(field, N_("Not saved.")))
        errors.setdefault(field, f"{lead} ({e['msg']})")
    return errors
