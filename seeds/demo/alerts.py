"""The cold-chain alerts of a demo shipment, as the detector's rules would raise them.

``detector_alerts`` copies the wording and thresholds of the cold-chain alert rules
(excursion, out-of-range budget, mean kinetic temperature): it is the one place to switch to
the service's own rules. ``alert_rows`` turns its specs into alert rows, open while the case
is in flight, acknowledged and resolved at QA review once it is closed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.services.coldchain.detector import Exc, Rules, State
from app.services.coldchain.engine import MKT_MIN_SPAN_MS
from app.times import from_ms
from models.alert import AlertKind, AlertStatus, Severity
from seeds.demo.readings import UPLOAD_DELAY_MS

# (first ms, last ms, severity, dedupe key, message, data)
AlertSpec = tuple[int, int, str, str, str, dict[str, Any] | None]


def alert_rows(
    *,
    case_id: str,
    shipment_id: str,
    profile: str,
    rules: Rules,
    state: State,
    excursions: list[Exc],
    historic: bool,
    reviewed: datetime,
    now_ms: int,
) -> list[dict[str, Any]]:
    """Alert rows for a shipment's detector results; closed cases' ones reviewed by QA."""
    rows = []
    for first_ms, last_ms, severity, key, message, data in detector_alerts(
        shipment_id=shipment_id, profile=profile, rules=rules, state=state, excursions=excursions
    ):
        updated = from_ms(min(last_ms + UPLOAD_DELAY_MS, now_ms))
        done = max(reviewed, updated) if historic else None
        rows.append(
            {
                "kind": AlertKind.temperature_excursion.value,
                "severity": severity,
                "status": AlertStatus.resolved.value if historic else AlertStatus.open.value,
                "case_id": case_id,
                "shipment_id": shipment_id,
                "dedupe_key": key,
                "message": message,
                "data": data,
                "created_at": from_ms(min(first_ms + UPLOAD_DELAY_MS, now_ms)),
                "updated_at": done or updated,
                "acknowledged_at": done,
                "acknowledged_by": "demo QA" if historic else None,
                "ack_note": None,
                "resolved_at": done,
            }
        )
    return rows


def detector_alerts(
    *, shipment_id: str, profile: str, rules: Rules, state: State, excursions: list[Exc]
) -> list[AlertSpec]:
    """The alerts a shipment's detector results raise, exactly as the cold-chain engine's
    _excursion_alert and _shipment_alerts word them."""
    out: list[AlertSpec] = []
    for exc in excursions:
        # Short blips do not alarm; a cryogenic warning band does.
        warn_band = not exc.out_of_spec and rules.warn_above_c is not None
        if exc.severity == "warning" and not warn_band:
            continue
        minutes = exc.duration_ms / 60_000
        message = (
            f"{exc.kind.replace('_', ' ')} temperature excursion on shipment {shipment_id[:8]} "
            f"({profile}): peak {exc.peak_c:.1f} °C, {minutes:.0f} min, "
            + ("closed" if exc.ended_ms is not None else "ongoing")
        )
        data = {
            "started_at": from_ms(exc.started_ms).isoformat(),
            "peak_c": exc.peak_c,
            "duration_min": round(minutes, 2),
            "kind": exc.kind,
        }
        last = exc.ended_ms or exc.last_ms
        out.append(
            (
                exc.started_ms,
                last,
                exc.severity,
                f"excursion:{shipment_id}:{exc.started_ms}",
                message,
                data,
            )
        )
    last_ms = state.last_ts_ms or 0
    total = state.oor_total_ms()
    if rules.budget_ms is not None and total >= rules.budget_ms:
        message = (
            f"shipment {shipment_id[:8]} has been out of range {total / 60_000:.0f} min in "
            f"total (budget {rules.budget_ms / 60_000:.0f} min)"
        )
        out.append((last_ms, last_ms, Severity.major.value, f"budget:{shipment_id}", message, None))
    mkt = state.mkt_c()
    if (
        rules.mkt_limit_c is not None
        and mkt is not None
        and state.mkt_w >= MKT_MIN_SPAN_MS
        and mkt > rules.mkt_limit_c
    ):
        message = (
            f"mean kinetic temperature of shipment {shipment_id[:8]} is {mkt:.2f} °C "
            f"(limit {rules.mkt_limit_c:.1f} °C)"
        )
        out.append((last_ms, last_ms, rules.mkt_severity, f"mkt:{shipment_id}", message, None))
    return out
