"""The cold-chain alerts of a demo shipment, as the detector's rules would raise them.

``detector_alerts`` takes the wording and thresholds from the cold-chain alert rules
(``app/services/coldchain/alarms.py``: excursion, out-of-range budget, mean kinetic
temperature), the same functions ingest, replay and the sweeps use. ``alert_rows`` turns
its specs into alert rows, open while the case is in flight, acknowledged and resolved at QA
review once it is closed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.services.coldchain import alarms
from app.services.coldchain.detector import Exc, Rules, State
from app.times import from_ms
from models.alert import AlertKind, AlertStatus
from seeds.demo.readings import UPLOAD_DELAY_MS

# (first ms, last ms, severity, dedupe key, message, data, code, params)
AlertSpec = tuple[int, int, str, str, str, dict[str, Any] | None, str | None, dict[str, Any] | None]


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
    for first_ms, last_ms, severity, key, message, data, code, params in detector_alerts(
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
                "code": code,
                "params": params,
                "data": data,
                "created_at": from_ms(min(first_ms + UPLOAD_DELAY_MS, now_ms)),
                "updated_at": done or updated,
                "acknowledged_at": done,
                "acknowledged_by": "demo QA" if historic else None,
                "ack_note": None,
                "resolved_at": done,
                "resolved_by": "demo QA" if historic else None,
                "resolve_reason": "excursion reviewed and dispositioned" if historic else None,
            }
        )
    return rows


def detector_alerts(
    *, shipment_id: str, profile: str, rules: Rules, state: State, excursions: list[Exc]
) -> list[AlertSpec]:
    """The alerts a shipment's detector results raise, from the cold-chain rules themselves
    (app/services/coldchain/alarms.py), with the readings' instants they belong to."""
    out: list[AlertSpec] = []
    for exc in excursions:
        spec = alarms.excursion(
            shipment_id=shipment_id, case_id=None, profile=profile, rules=rules, exc=exc
        )
        if spec is not None:
            last = exc.ended_ms or exc.last_ms
            out.append(
                (
                    exc.started_ms,
                    last,
                    spec.severity.value,
                    spec.dedupe_key,
                    spec.message,
                    spec.data,
                    spec.code,
                    spec.params,
                )
            )
    last_ms = state.last_ts_ms or 0
    for spec in alarms.shipment_level(
        shipment_id=shipment_id, case_id=None, rules=rules, state=state
    ):
        out.append(
            (
                last_ms,
                last_ms,
                spec.severity.value,
                spec.dedupe_key,
                spec.message,
                spec.data,
                spec.code,
                spec.params,
            )
        )
    return out
