"""On-call rotas and the escalation of critical alerts nobody acknowledges.

A site's rota is a list of steps ``{principal_ids, after_min}``. When a critical alert on
one of its cases opens (or an alert becomes critical), step 0 is told at once; if the
alert is still open (not acknowledged, not resolved) ``after_min`` later, the next step is
told, and after the last step QA and every admin. Acknowledging or resolving stops it.
Each step, and the stop, is audited on the alert.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from app.errors import Invalid, NotFound
from app.services.audit import chain as audit
from app.services.notifications import outbox, recipients
from models.alert import Alert, AlertStatus, Severity
from models.case import Case
from models.notification import (
    AlertEscalation,
    NotificationKind,
    NotificationPrefs,
    OnCall,
    OnCallStepIn,
)
from models.principal import Principal, Role
from models.reference import Site
from models.shipment import Shipment

LAST_RESORT = (Role.qa, Role.admin)


def _may_hear(principal: Principal, site: str) -> bool:
    """Someone who may see the site's cases: its coordinators, QA, admins."""
    if principal.role in (Role.admin, Role.qa):
        return True
    return principal.role == Role.coordinator and principal.site == site


def set_on_call(
    session: Session, *, actor: Principal, site: str, steps: Sequence[OnCallStepIn], now: datetime
) -> OnCall:
    """Replace a site's rota (admin); every person named must be able to see its cases."""
    if session.get(Site, site) is None:
        raise NotFound("no such site")
    errors = []
    for i, step in enumerate(steps):
        for j, pid in enumerate(step.principal_ids):
            principal = session.get(Principal, pid)
            if principal is None or not recipients.reachable(principal):
                errors.append({"loc": f"body/steps/{i}/principal_ids/{j}", "msg": "no such person"})
            elif not _may_hear(principal, site):
                errors.append(
                    {
                        "loc": f"body/steps/{i}/principal_ids/{j}",
                        "msg": "may not see this site's cases (its coordinators, QA or admins)",
                    }
                )
    if errors:
        raise Invalid("the rota names people who cannot be on call here", errors=errors)
    rota = session.get(OnCall, site)
    before = {"steps": rota.steps} if rota is not None else None
    if rota is None:
        rota = OnCall(site=site, updated_by=actor.name)
    rota.steps = [
        {"principal_ids": list(dict.fromkeys(s.principal_ids)), "after_min": s.after_min}
        for s in steps
    ]
    rota.updated_at = now
    rota.updated_by = actor.name
    session.add(rota)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="site.on_call_set",
        entity="site",
        entity_id=site,
        at=now,
        before=before,
        after={"steps": rota.steps},
    )
    return rota


def get_on_call(session: Session, *, site: str) -> OnCall | None:
    """A site's rota, None when it has none (404 for an unknown site)."""
    if session.get(Site, site) is None:
        raise NotFound("no such site")
    return session.get(OnCall, site)


def site_of(session: Session, alert: Alert) -> str | None:
    """The hospital whose case the alert is about."""
    case_id = alert.case_id
    if case_id is None and alert.shipment_id is not None:
        shipment = session.get(Shipment, alert.shipment_id)
        case_id = shipment.case_id if shipment is not None else None
    case = session.get(Case, case_id) if case_id else None
    return case.site if case is not None else None


def _tell(
    session: Session, *, alert: Alert, people: Sequence[Principal], reason: str, now: datetime
) -> list[dict[str, Any]]:
    """Queue the escalation notice for each person in scope; what happened to each."""
    if alert.id is None:
        return []
    told = []
    for person in people:
        if not recipients.reachable(person) or not recipients.sees_alert(session, person, alert.id):
            continue
        if reason == "step:0" and outbox.already_told(
            session, alert_id=alert.id, principal_id=person.id
        ):
            told.append({"principal_id": person.id, "name": person.name, "messages": 0})
            continue
        rows = outbox.queue(
            session,
            principal=person,
            prefs=session.get(NotificationPrefs, person.id),
            kind=NotificationKind.escalation,
            reason=reason,
            now=now,
            alert=alert,
            urgent=True,
        )
        told.append({"principal_id": person.id, "name": person.name, "messages": len(rows)})
    return told


def _people(session: Session, ids: Sequence[str]) -> list[Principal]:
    return [p for pid in ids if (p := session.get(Principal, pid)) is not None]


def _audit_step(
    session: Session, *, esc: AlertEscalation, told: list[dict[str, Any]], now: datetime
) -> None:
    audit.append(
        session,
        actor=outbox.ACTOR,
        action="alert.escalated",
        entity="alert",
        entity_id=str(esc.alert_id),
        at=now,
        after={"site": esc.site, "step": esc.step, "told": told, "next_at": esc.next_at},
    )


def start(session: Session, *, alert: Alert, now: datetime) -> AlertEscalation | None:
    """A critical alert opened: page the site's first on-call step and start the clock."""
    if alert.severity != Severity.critical or alert.status != AlertStatus.open:
        return None
    if alert.id is None:
        return None
    site = site_of(session, alert)
    rota = session.get(OnCall, site) if site else None
    if site is None or rota is None or not rota.steps:
        return None
    if session.get(AlertEscalation, alert.id) is not None:
        return None
    first = rota.steps[0]
    esc = AlertEscalation(
        alert_id=alert.id,
        site=site,
        step=0,
        started_at=now,
        next_at=now + timedelta(minutes=int(first["after_min"])),
    )
    session.add(esc)
    session.flush()
    told = _tell(
        session,
        alert=alert,
        people=_people(session, first["principal_ids"]),
        reason="step:0",
        now=now,
    )
    _audit_step(session, esc=esc, told=told, now=now)
    return esc


def stop(session: Session, *, alert: Alert, now: datetime, reason: str) -> None:
    """The alert was acknowledged or resolved: no further step is told."""
    if alert.id is None:
        return
    esc = session.get(AlertEscalation, alert.id)
    if esc is None or esc.ended_at is not None:
        return
    _end(session, esc=esc, now=now, reason=reason)


def _end(session: Session, *, esc: AlertEscalation, now: datetime, reason: str) -> None:
    esc.ended_at = now
    esc.end_reason = reason
    esc.next_at = None
    session.add(esc)
    session.flush()
    audit.append(
        session,
        actor=outbox.ACTOR,
        action="alert.escalation_stopped",
        entity="alert",
        entity_id=str(esc.alert_id),
        at=now,
        after={"site": esc.site, "step": esc.step},
        reason=reason,
    )


def sweep(session: Session, *, now: datetime, limit: int = 100) -> int:
    """Tell the next step of every escalation that is due; returns steps taken."""
    due = session.exec(
        select(AlertEscalation)
        .where(col(AlertEscalation.ended_at).is_(None), col(AlertEscalation.next_at) <= now)
        .order_by(col(AlertEscalation.next_at))
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    taken = 0
    for esc in due:
        alert = session.get(Alert, esc.alert_id)
        if alert is None or alert.status != AlertStatus.open:
            _end(session, esc=esc, now=now, reason=alert.status if alert else "gone")
            continue
        rota = session.get(OnCall, esc.site)
        steps = rota.steps if rota is not None else []
        esc.step += 1
        if esc.step < len(steps):
            people = _people(session, steps[esc.step]["principal_ids"])
            esc.next_at = now + timedelta(minutes=int(steps[esc.step]["after_min"]))
            reason = f"step:{esc.step}"
        else:
            people = recipients.staff(session, LAST_RESORT)
            esc.step = len(steps)
            esc.next_at = None
            esc.ended_at = now
            esc.end_reason = "rota_exhausted"
            reason = "qa_admin"
        session.add(esc)
        session.flush()
        told = _tell(session, alert=alert, people=people, reason=reason, now=now)
        _audit_step(session, esc=esc, told=told, now=now)
        taken += 1
    return taken
