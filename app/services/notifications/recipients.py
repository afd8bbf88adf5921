"""Who hears about what: a person's language, zone, quiet hours and scope."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from app.services.alerts.queries import visible
from models.alert import Alert, Severity
from models.notification import NotificationPrefs
from models.principal import Principal, Role
from models.reference import Site

# People without a site of their own (QA, admins) read Japan's time: the deployment's home,
# as the dashboard's default zone (V2V_DASHBOARD_TIMEZONE) is.
DEFAULT_TZ = "Asia/Tokyo"
RANK = {s.value: i for i, s in enumerate(Severity)}  # info < warning < major < critical


def rank(severity: str) -> int:
    return RANK.get(severity, 0)


def zone_of(session: Session, principal: Principal, prefs: NotificationPrefs | None) -> str:
    """The person's zone: as they set it, else their site's, else Japan's."""
    if prefs is not None and prefs.timezone:
        return prefs.timezone
    if principal.site:
        site = session.get(Site, principal.site)
        if site is not None:
            return site.timezone
    return DEFAULT_TZ


def language_of(prefs: NotificationPrefs | None, zone: str) -> str:
    """As they set it; else Japanese for people in Japan, English elsewhere."""
    if prefs is not None and prefs.language in ("ja", "en"):
        return prefs.language
    return "ja" if zone == "Asia/Tokyo" else "en"


def reachable(principal: Principal | None) -> bool:
    """A person whose key still works (devices never receive messages)."""
    return (
        principal is not None
        and principal.revoked_at is None
        and principal.role not in (Role.device, Role.viewer)
    )


def sees_alert(session: Session, principal: Principal, alert_id: int) -> bool:
    """Whether the alert is on a case or shipment in this person's scope."""
    stmt = select(Alert.id).where(Alert.id == alert_id, visible(principal))
    return session.exec(stmt).first() is not None


def _hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def quiet_until(prefs: NotificationPrefs | None, zone: str, now: datetime) -> datetime | None:
    """The end of the person's quiet hours if ``now`` falls inside them, else None."""
    if prefs is None or not prefs.quiet_from or not prefs.quiet_to:
        return None
    start, end = _hhmm(prefs.quiet_from), _hhmm(prefs.quiet_to)
    if start == end:
        return None
    local = now.astimezone(ZoneInfo(zone))
    at = local.time().replace(tzinfo=None)
    inside = start <= at < end if start < end else (at >= start or at < end)
    if not inside:
        return None
    wake = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if wake <= local:
        wake = (local + timedelta(days=1)).replace(
            hour=end.hour, minute=end.minute, second=0, microsecond=0
        )
    return wake.astimezone(UTC)


def staff(session: Session, roles: tuple[Role, ...]) -> list[Principal]:
    """Every active principal with one of these roles (QA and admins, the last resort)."""
    rows = session.exec(select(Principal).where(col(Principal.role).in_([r.value for r in roles])))
    return sorted((p for p in rows if reachable(p)), key=lambda p: p.id)
