"""Each person's notification settings: contact points, subscriptions, quiet hours,
language and digest. Targets are kept as given and only ever shown masked."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from app.errors import Invalid, NotFound
from app.services.audit import chain as audit
from app.services.notifications import recipients
from integrations.notify import InvalidTarget, fingerprint, mask, target_kind, validate
from models.notification import (
    ContactPublic,
    NotificationPrefs,
    NotificationSettingsIn,
    NotificationSettingsPublic,
    QuietHoursPublic,
    SubscriptionPublic,
)
from models.principal import Principal, Role


def _public(
    session: Session, principal: Principal, prefs: NotificationPrefs | None
) -> NotificationSettingsPublic:
    zone = recipients.zone_of(session, principal, prefs)
    contacts = prefs.contacts if prefs else []
    quiet = None
    if prefs is not None and prefs.quiet_from and prefs.quiet_to:
        quiet = QuietHoursPublic(from_=prefs.quiet_from, to=prefs.quiet_to)
    return NotificationSettingsPublic(
        principal_id=principal.id,
        contacts=[
            ContactPublic(target=mask(t), fingerprint=fingerprint(t), kind=target_kind(t))
            for t in contacts
        ],
        subscriptions=[
            SubscriptionPublic(kinds=list(s.get("kinds") or []), min_severity=s["min_severity"])
            for s in (prefs.subscriptions if prefs else [])
        ],
        quiet_hours=quiet,
        language=recipients.language_of(prefs, zone),
        timezone=zone,
        digest=bool(prefs and prefs.digest),
    )


def _person(session: Session, principal_id: str) -> Principal:
    principal = session.get(Principal, principal_id)
    if principal is None or principal.role == Role.device:
        raise NotFound("no such principal")
    return principal


def read(session: Session, *, principal_id: str) -> NotificationSettingsPublic:
    """A person's settings (contacts masked)."""
    principal = _person(session, principal_id)
    return _public(session, principal, session.get(NotificationPrefs, principal.id))


def _contacts(body: NotificationSettingsIn, kept: list[str], *, allow_private: bool) -> list[str]:
    by_print = {fingerprint(t): t for t in kept}
    out: list[str] = []
    errors: list[dict[str, Any]] = []
    for i, contact in enumerate(body.contacts):
        if contact.fingerprint is not None:
            existing = by_print.get(contact.fingerprint)
            if existing is None:
                errors.append({"loc": f"body/contacts/{i}/fingerprint", "msg": "no such contact"})
            elif existing not in out:
                out.append(existing)
            continue
        if contact.target is None:  # the schema gives one or the other
            continue
        try:
            target = validate(contact.target, allow_private=allow_private)
        except InvalidTarget as exc:
            errors.append({"loc": f"body/contacts/{i}/target", "msg": str(exc)})
            continue
        if target not in out:
            out.append(target)
    if errors:
        raise Invalid("invalid contact points", errors=errors)
    return out


def update(
    session: Session,
    *,
    actor: Principal | str,
    principal_id: str,
    body: NotificationSettingsIn,
    allow_private: bool,
    now: datetime,
) -> NotificationSettingsPublic:
    """Replace a person's settings (their own, or anyone's by an admin, or by the operator's
    command line: ``actor="cli"``, as the other CLI commands audit); audited, masked."""
    principal = _person(session, principal_id)
    prefs = session.get(NotificationPrefs, principal.id)
    before = _public(session, principal, prefs).model_dump(mode="json") if prefs else None
    if prefs is None:
        prefs = NotificationPrefs(principal_id=principal.id)
    prefs.contacts = _contacts(body, list(prefs.contacts), allow_private=allow_private)
    prefs.subscriptions = [
        {"kinds": sorted({k.value for k in s.kinds}), "min_severity": s.min_severity.value}
        for s in body.subscriptions
    ]
    prefs.quiet_from = body.quiet_hours.from_ if body.quiet_hours else None
    prefs.quiet_to = body.quiet_hours.to if body.quiet_hours else None
    prefs.language = body.language
    prefs.timezone = body.timezone
    prefs.digest = body.digest
    prefs.updated_at = now
    session.add(prefs)
    session.flush()
    out = _public(session, principal, prefs)
    audit.append(
        session,
        actor=actor,
        action="principal.notifications_set",
        entity="principal",
        entity_id=principal.id,
        at=now,
        before=before,
        after=out.model_dump(mode="json"),
    )
    return out
