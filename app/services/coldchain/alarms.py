"""Every cold-chain alert rule, as pure functions: facts in, an alert specification out.

No session and no clock: ingest (``evaluate``), replay (``engine.reevaluate``), the sweeps
(``sweeps``) and the demo generator get the same alert (kind, severity, dedupe key, message,
data) from the same facts, and raise it with ``raise_spec`` or write it as they must.

- ``excursion(shipment_id=, case_id=, profile=, rules=, exc=)``: one temperature excursion
  (out of range for the dwell time, critical, or in a cryogenic warning band).
- ``budget(shipment_id=, case_id=, rules=, state=)``: the cumulative out-of-range budget spent.
- ``mkt(shipment_id=, case_id=, rules=, state=)``: mean kinetic temperature over its limit.
- ``shipment_level(...)``: ``budget`` and ``mkt`` together, as the detector raises them;
  ``budget_used_up`` / ``mkt_over_limit`` say whether either is due.
- ``loss_of_signal(shipment_id=, case_id=, last_at=, max_gap_min=, now=)``: no reading for
  longer than the profile's gap.
- ``hold_time(shipment_id=, case_id=, elapsed_h=, remaining_h=, hold_h=)``: a dry shipper's
  rated hold time at risk before arrival.
- ``fresh_stability(shipment_id=, case_id=, coi=, age_h=, remaining_h=, limit_h=)``: fresh
  apheresis material past, or bound to pass, its stability limit on arrival.
- ``thaw_window(case_id=, coi=, minutes=, start_min=, expiry_min=)``: thawed product not
  infused within its start window, then expired.

Each returns None when its rule does not fire.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from app.services.alerts import lifecycle, messages
from app.services.coldchain.detector import Exc, Rules, State
from app.times import from_ms
from models.alert import Alert, AlertKind, Severity

MKT_MIN_SPAN_MS = 60 * 60_000  # MKT over less than an hour of data is not judged
HOLD_SAFETY_FACTOR = 0.7  # real dry shippers vary by up to 40 % from their rated hold time


@dataclass(frozen=True)
class AlertSpec:
    """An alert as a rule words it; ``raise_spec`` opens or refreshes it.

    ``message`` is ``code`` and ``params`` rendered in English (``worded`` builds it so).
    """

    kind: AlertKind
    severity: Severity
    dedupe_key: str
    message: str
    case_id: str | None = None
    shipment_id: str | None = None
    data: dict[str, Any] | None = None
    code: str | None = None
    params: dict[str, Any] | None = None

    @classmethod
    def worded(
        cls,
        *,
        kind: AlertKind,
        severity: Severity,
        dedupe_key: str,
        code: str,
        params: dict[str, Any],
        case_id: str | None = None,
        shipment_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> AlertSpec:
        """The spec of a catalogued alert, its English message rendered from code and params."""
        return cls(
            kind=kind,
            severity=severity,
            dedupe_key=dedupe_key,
            message=messages.render(code, params, lang="en", tz="UTC"),
            case_id=case_id,
            shipment_id=shipment_id,
            data=data,
            code=code,
            params=params,
        )


def raise_spec(session: Session, spec: AlertSpec, *, now: datetime) -> Alert:
    """Open the alert, or refresh the unresolved one with the same dedupe key (flushes)."""
    return lifecycle.raise_alert(
        session,
        kind=spec.kind,
        severity=spec.severity,
        message=spec.message,
        code=spec.code,
        params=spec.params,
        now=now,
        case_id=spec.case_id,
        shipment_id=spec.shipment_id,
        dedupe_key=spec.dedupe_key,
        data=spec.data,
    )


def excursion(
    *, shipment_id: str, case_id: str | None, profile: str, rules: Rules, exc: Exc
) -> AlertSpec | None:
    """The alert of one excursion, or None for a short blip."""
    # Short out-of-range blips (door openings) are recorded but do not alarm; the dwell
    # time exists for that. A cryogenic warning band does warn.
    warn_band = not exc.out_of_spec and rules.warn_above_c is not None
    if exc.severity == "warning" and not warn_band:
        return None
    minutes = exc.duration_ms / 60_000
    return AlertSpec.worded(
        kind=AlertKind.temperature_excursion,
        severity=Severity(exc.severity),
        dedupe_key=f"excursion:{shipment_id}:{exc.started_ms}",
        code="coldchain.excursion",
        params={
            "shipment_id": shipment_id,
            "profile": profile,
            "excursion_kind": exc.kind,
            "started_at": messages.instant(from_ms(exc.started_ms)),
            "peak_c": round(exc.peak_c, 1),
            "duration_min": round(minutes),
            "closed": exc.ended_ms is not None,
        },
        case_id=case_id,
        shipment_id=shipment_id,
        data={
            "started_at": from_ms(exc.started_ms).isoformat(),
            "peak_c": exc.peak_c,
            "duration_min": round(minutes, 2),
            "kind": exc.kind,
        },
    )


def budget_used_up(rules: Rules, state: State) -> bool:
    """The shipment's cumulative out-of-range budget is spent."""
    return rules.budget_ms is not None and state.oor_total_ms() >= rules.budget_ms


def mkt_over_limit(rules: Rules, state: State) -> bool:
    """The trip's mean kinetic temperature, over at least an hour of data, is over its limit."""
    mkt_c = state.mkt_c()
    return (
        rules.mkt_limit_c is not None
        and mkt_c is not None
        and state.mkt_w >= MKT_MIN_SPAN_MS
        and mkt_c > rules.mkt_limit_c
    )


def budget(
    *, shipment_id: str, case_id: str | None, rules: Rules, state: State
) -> AlertSpec | None:
    """The shipment has been out of range longer, in total, than its profile's budget."""
    if rules.budget_ms is None or not budget_used_up(rules, state):
        return None
    total = state.oor_total_ms()
    return AlertSpec.worded(
        kind=AlertKind.temperature_excursion,
        severity=Severity.major,
        dedupe_key=f"budget:{shipment_id}",
        code="coldchain.budget",
        params={
            "shipment_id": shipment_id,
            "out_of_range_min": round(total / 60_000),
            "budget_min": round(rules.budget_ms / 60_000),
        },
        case_id=case_id,
        shipment_id=shipment_id,
    )


def mkt(*, shipment_id: str, case_id: str | None, rules: Rules, state: State) -> AlertSpec | None:
    """The trip's mean kinetic temperature is over the profile's limit."""
    mkt_c = state.mkt_c()
    if rules.mkt_limit_c is None or mkt_c is None or not mkt_over_limit(rules, state):
        return None
    return AlertSpec.worded(
        kind=AlertKind.temperature_excursion,
        severity=Severity(rules.mkt_severity),
        dedupe_key=f"mkt:{shipment_id}",
        code="coldchain.mkt",
        params={
            "shipment_id": shipment_id,
            "mkt_c": round(mkt_c, 2),
            "limit_c": round(rules.mkt_limit_c, 1),
        },
        case_id=case_id,
        shipment_id=shipment_id,
    )


def shipment_level(
    *, shipment_id: str, case_id: str | None, rules: Rules, state: State
) -> list[AlertSpec]:
    """The shipment-wide alerts due (budget, then MKT)."""
    specs = (
        budget(shipment_id=shipment_id, case_id=case_id, rules=rules, state=state),
        mkt(shipment_id=shipment_id, case_id=case_id, rules=rules, state=state),
    )
    return [spec for spec in specs if spec is not None]


def loss_of_signal(
    *,
    shipment_id: str,
    case_id: str | None,
    last_at: datetime | None,
    max_gap_min: float,
    now: datetime,
) -> AlertSpec | None:
    """No reading (or no pickup) since longer than the profile's maximum gap."""
    if last_at is None or now - last_at <= timedelta(minutes=max_gap_min):
        return None
    minutes = (now - last_at).total_seconds() / 60
    return AlertSpec.worded(
        kind=AlertKind.loss_of_signal,
        severity=Severity.major,
        dedupe_key=signal_key(shipment_id),
        code="coldchain.loss_of_signal",
        params={
            "shipment_id": shipment_id,
            "last_reading_at": messages.instant(last_at),
            "silent_min": round(minutes),
            "limit_min": round(max_gap_min),
        },
        case_id=case_id,
        shipment_id=shipment_id,
        data={"last_reading_at": last_at.isoformat()},
    )


def signal_key(shipment_id: str) -> str:
    return f"signal:{shipment_id}"


def hold_time(
    *, shipment_id: str, case_id: str, elapsed_h: float, remaining_h: float, hold_h: float
) -> AlertSpec | None:
    """The trip, as planned, outlasts the safe share of a dry shipper's hold time."""
    if elapsed_h + remaining_h <= hold_h * HOLD_SAFETY_FACTOR:
        return None
    return AlertSpec.worded(
        kind=AlertKind.hold_time_at_risk,
        severity=Severity.major,
        dedupe_key=f"hold:{shipment_id}",
        code="coldchain.hold_time",
        params={
            "shipment_id": shipment_id,
            "elapsed_h": round(elapsed_h),
            "remaining_h": round(remaining_h),
            "safe_pct": round(HOLD_SAFETY_FACTOR * 100),
            "hold_h": round(hold_h),
        },
        case_id=case_id,
        shipment_id=shipment_id,
    )


def fresh_stability(
    *,
    shipment_id: str,
    case_id: str,
    coi: str,
    age_h: float,
    remaining_h: float,
    limit_h: float,
) -> AlertSpec | None:
    """Fresh material arrives past its stability limit (critical once already past it)."""
    if age_h + remaining_h <= limit_h:
        return None
    return AlertSpec.worded(
        kind=AlertKind.hold_time_at_risk,
        severity=Severity.critical if age_h > limit_h else Severity.major,
        dedupe_key=f"fresh:{shipment_id}",
        code="coldchain.fresh_stability",
        params={
            "shipment_id": shipment_id,
            "coi": coi,
            "age_h": round(age_h, 1),
            "remaining_h": round(remaining_h, 1),
            "limit_h": round(limit_h),
        },
        case_id=case_id,
        shipment_id=shipment_id,
    )


def thaw_window(
    *, case_id: str, coi: str, minutes: float, start_min: float, expiry_min: float
) -> AlertSpec | None:
    """Thawed product not yet infused: late to start, then expired."""
    if minutes > expiry_min:
        severity, code = Severity.critical, "coldchain.thaw_window.expired"
    elif minutes > start_min:
        severity, code = Severity.major, "coldchain.thaw_window.late"
    else:
        return None
    return AlertSpec.worded(
        kind=AlertKind.thaw_window,
        severity=severity,
        dedupe_key=f"thaw:{case_id}",
        code=code,
        params={
            "coi": coi,
            "minutes": round(minutes),
            "start_min": round(start_min),
            "expiry_min": round(expiry_min),
        },
        case_id=case_id,
    )


def reassessment(
    *,
    shipment_id: str,
    case_id: str | None,
    profile: str,
    exc: Exc,
    dedupe_key: str,
    signed_id: int,
    signed_peak_c: float,
    signed_severity: str,
) -> AlertSpec:
    """Late readings would change a signed excursion: its referring excursion's alert, for QA
    to re-assess (always raised; the product is on hold meanwhile)."""
    minutes = exc.duration_ms / 60_000
    data = {
        "refers_to_id": signed_id,
        "started_at": from_ms(exc.started_ms).isoformat(),
        "peak_c": exc.peak_c,
        "duration_min": round(minutes, 2),
        "kind": exc.kind,
        "severity": exc.severity,
        "signed_peak_c": signed_peak_c,
        "signed_severity": signed_severity,
    }
    return AlertSpec.worded(
        kind=AlertKind.temperature_excursion,
        severity=Severity.critical if exc.severity == "critical" else Severity.major,
        dedupe_key=dedupe_key,
        code="coldchain.reassessment",
        params={
            "refers_to_id": signed_id,
            "shipment_id": shipment_id,
            "profile": profile,
            "excursion_kind": exc.kind,
            "peak_c": round(exc.peak_c, 1),
            "duration_min": round(minutes),
            "severity": exc.severity,
            "signed_peak_c": round(signed_peak_c, 1),
            "signed_severity": signed_severity,
        },
        case_id=case_id,
        shipment_id=shipment_id,
        data=data,
    )
