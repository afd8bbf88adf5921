"""Raising, acknowledging and resolving alerts: one open alert per rule and subject.

Every change of an alert's state is audited (entity ``alert``): raised, escalated (its
severity or code changed), acknowledged and resolved, by a person or by the rule whose
condition ended (actor ``system:<code>``). A sweep refreshing an alert with new figures is
not a change of state and writes no audit entry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from app.errors import Conflict, Forbidden, Invalid, NotFound
from app.services.access import principals
from app.services.alerts import messages
from app.services.alerts.queries import visible
from app.services.audit import chain as audit
from app.services.notifications import events as notifications
from app.services.webhooks import outbox as webhooks
from models.alert import Alert, AlertKind, AlertPublic, AlertStatus, Severity
from models.coldchain import Signature
from models.principal import Principal, Role
from models.webhook import WebhookEvent

# Who may close an alert by hand (within their scope); a coi_mismatch only QA, signed.
RESOLVERS = (Role.admin, Role.qa, Role.coordinator, Role.manufacturer)
COI_RESOLVERS = (Role.qa,)
SYSTEM = "system"
# The unresolved alert of a rule and subject, locked: ingest asks with every batch of a
# shipment whose alerts are due, so the statement is built once (built per call, it and its
# cache key cost about as much CPU as running it).
_OPEN_BY_KEY_UNLOCKED = select(Alert).where(
    Alert.dedupe_key == bindparam("dedupe_key"), col(Alert.status) != AlertStatus.resolved
)
_OPEN_BY_KEY = _OPEN_BY_KEY_UNLOCKED.with_for_update(key_share=True)


def _wording(
    message: str | None, code: str | None, params: dict[str, Any] | None
) -> tuple[str, str, dict[str, Any]]:
    """(message, code, params): the English message is rendered from the code and params."""
    if code is None:
        if message is None:
            raise ValueError("an alert needs a code and params (or at least a message)")
        return message, messages.TEXT, {"text": message}
    if not messages.known(code):
        raise ValueError(f"alert code {code!r} is not in the catalogue (alerts/messages.py)")
    params = dict(params or {})
    rendered = messages.render(code, params, lang="en", tz="UTC")
    if message is not None and message != rendered:
        raise ValueError(f"message {message!r} is not what {code} renders: {rendered!r}")
    return rendered, code, params


def _actor(by: Principal | str, code: str | None) -> Principal | str:
    """The person, or the rule: a bare ``system`` names the alert's code."""
    if by == SYSTEM and code:
        return f"{SYSTEM}:{code}"
    return by


def _audit(
    session: Session,
    *,
    alert: Alert,
    by: Principal | str,
    action: str,
    now: datetime,
    before: dict[str, Any] | None,
    after: dict[str, Any],
    reason: str | None = None,
) -> None:
    audit.append(
        session,
        actor=_actor(by, alert.code),
        action=action,
        entity="alert",
        entity_id=str(alert.id),
        at=now,
        before=before,
        after=after,
        reason=reason,
    )


def raise_alert(
    session: Session,
    *,
    kind: AlertKind,
    severity: Severity,
    now: datetime,
    message: str | None = None,
    code: str | None = None,
    params: dict[str, Any] | None = None,
    case_id: str | None = None,
    shipment_id: str | None = None,
    dedupe_key: str | None = None,
    data: dict[str, Any] | None = None,
    by: Principal | str = SYSTEM,
) -> Alert:
    """Open an alert, or refresh the unresolved one this rule already raised for the subject.

    ``code`` and ``params`` word it (messages.py renders the English ``message`` from them);
    a bare ``message`` is kept as code ``alert.text``. ``by`` is the audit actor (default
    ``system:<code>``).
    """
    message, code, params = _wording(message, code, params)
    if dedupe_key is not None:
        existing = session.exec(_OPEN_BY_KEY, params={"dedupe_key": dedupe_key}).first()
        if existing is not None:
            stored = (existing.message, existing.severity, existing.code, existing.params)
            if stored == (message, severity.value, code, params) and existing.data == data:
                # Ingest re-raises a shipment's alerts with every batch while they are due,
                # mostly unchanged: nothing to write (``updated_at`` is its last change).
                return existing
            # Scheduled sweeps refresh alerts often; only a visible change is news to subscribers.
            changed = (existing.message, existing.severity) != (message, severity.value)
            escalated = (existing.severity, existing.code) != (severity.value, code)
            before = {"severity": existing.severity, "code": existing.code}
            existing.message = message
            existing.severity = severity.value
            existing.code = code
            existing.params = params
            existing.data = data
            existing.updated_at = now
            session.add(existing)
            session.flush()
            if changed:
                webhooks.enqueue_for_alert(
                    session, alert=existing, event=WebhookEvent.alert_updated, now=now
                )
            if escalated:
                _audit(
                    session,
                    alert=existing,
                    by=by,
                    action="alert.changed",
                    now=now,
                    before=before,
                    after={"severity": existing.severity, "code": code, "params": params},
                )
                notifications.alert_changed(
                    session, alert=existing, before_severity=str(before["severity"]), now=now
                )
            return existing
    alert = Alert(
        kind=kind.value,
        severity=severity.value,
        message=message,
        code=code,
        params=params,
        case_id=case_id,
        shipment_id=shipment_id,
        dedupe_key=dedupe_key,
        data=data,
        created_at=now,
        updated_at=now,
    )
    session.add(alert)
    session.flush()
    webhooks.enqueue_for_alert(session, alert=alert, event=WebhookEvent.alert_opened, now=now)
    _audit(
        session,
        alert=alert,
        by=by,
        action="alert.raised",
        now=now,
        before=None,
        after={
            "status": alert.status,
            "kind": alert.kind,
            "severity": alert.severity,
            "code": code,
            "params": params,
            "case_id": case_id,
            "shipment_id": shipment_id,
        },
    )
    notifications.alert_raised(session, alert=alert, now=now)
    return alert


def resolve(
    session: Session,
    *,
    alert: Alert,
    now: datetime,
    by: Principal | str = SYSTEM,
    reason: str | None = None,
    signature: Signature | None = None,
) -> None:
    """Close an alert (its cause is gone, or a person closed it), audited; tell subscribers."""
    if alert.status == AlertStatus.resolved:
        return
    before = {"status": alert.status}
    actor = _actor(by, alert.code)
    alert.status = AlertStatus.resolved.value
    alert.resolved_at = now
    alert.resolved_by = actor.name if isinstance(actor, Principal) else actor
    alert.resolve_reason = reason
    alert.updated_at = now
    session.add(alert)
    session.flush()
    webhooks.enqueue_for_alert(session, alert=alert, event=WebhookEvent.alert_resolved, now=now)
    after: dict[str, Any] = {"status": alert.status, "resolved_by": alert.resolved_by}
    if signature is not None:
        after.update(signed_by=alert.resolved_by, signed_at=now, meaning=signature.meaning)
    _audit(
        session,
        alert=alert,
        by=actor,
        action="alert.resolved",
        now=now,
        before=before,
        after=after,
        reason=reason,
    )
    notifications.alert_settled(session, alert=alert, now=now)


def resolve_key(
    session: Session,
    *,
    dedupe_key: str,
    now: datetime,
    by: Principal | str = SYSTEM,
    reason: str | None = None,
) -> None:
    """Close the unresolved alerts one rule raised for one subject."""
    for alert in session.exec(_OPEN_BY_KEY_UNLOCKED, params={"dedupe_key": dedupe_key}):
        resolve(session, alert=alert, now=now, by=by, reason=reason)


def scoped_alert(session: Session, *, actor: Principal, alert_id: int) -> Alert:
    """The alert, held for a write, if it is on a case or shipment the actor may see; else 404."""
    alert = session.exec(
        select(Alert).where(Alert.id == alert_id, visible(actor)).with_for_update(key_share=True)
    ).first()
    if alert is None:
        raise NotFound("no such alert")
    return alert


def acknowledge(
    session: Session, *, actor: Principal, alert_id: int, note: str | None, now: datetime
) -> AlertPublic:
    """Take an open alert in hand (it stays visible until its cause is resolved); audited."""
    alert = scoped_alert(session, actor=actor, alert_id=alert_id)
    if alert.status != AlertStatus.open:
        raise Conflict(f"the alert is already {alert.status}", code="alert-not-open")
    alert.status = AlertStatus.acknowledged.value
    alert.acknowledged_at = now
    alert.acknowledged_by = actor.name
    alert.ack_note = note
    alert.updated_at = now
    session.add(alert)
    session.flush()
    webhooks.enqueue_for_alert(session, alert=alert, event=WebhookEvent.alert_acknowledged, now=now)
    _audit(
        session,
        alert=alert,
        by=actor,
        action="alert.acknowledged",
        now=now,
        before={"status": AlertStatus.open.value},
        after={"status": alert.status},
        reason=note,
    )
    notifications.alert_settled(session, alert=alert, now=now)
    return AlertPublic.model_validate(alert)


def close(
    session: Session,
    *,
    actor: Principal,
    alert: Alert,
    reason: str,
    signature: Signature | None,
    secret_key: str,
    now: datetime,
) -> AlertPublic:
    """A person closes an alert in their scope (``scoped_alert``) with a reason; a
    coi_mismatch needs QA's signature (the signer's own key, re-entered). Audited and
    announced to subscribers."""
    if actor.role not in RESOLVERS:
        raise Forbidden(f"role {actor.role} may not resolve alerts")
    if alert.kind == AlertKind.coi_mismatch:
        if actor.role not in COI_RESOLVERS:
            raise Forbidden("only QA resolves a chain-of-identity mismatch, with a signature")
        if signature is None:
            raise Invalid(
                "resolving a chain-of-identity mismatch needs QA's signature",
                errors=[{"loc": "body/signature", "msg": "required for a coi_mismatch"}],
            )
    if signature is not None:
        principals.verify_signature(
            session,
            actor=actor,
            credential=signature.password_or_key,
            secret_key=secret_key,
            now=now,
        )
    if alert.status == AlertStatus.resolved:
        raise Conflict(
            f"the alert was already resolved by {alert.resolved_by or 'the system'}",
            code="alert-resolved",
        )
    resolve(session, alert=alert, now=now, by=actor, reason=reason, signature=signature)
    return AlertPublic.model_validate(alert)
