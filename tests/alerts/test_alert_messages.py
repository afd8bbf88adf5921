"""The alert catalogue: each code's English rendering is the stored message, and Japanese
words every code itself, its instants in the reader's time zone."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from app.services.alerts import messages
from app.services.coldchain import alarms
from app.services.coldchain.detector import Exc, Rules, evaluate
from tests.coldchain.test_excursion_engine import PROFILES

SHIPMENT = "0123456789abcdef0123456789abcdef"
COI = "CHW123426000123"
AT = datetime(2026, 11, 26, 0, 30, tzinfo=UTC)


def _rule_specs() -> list[alarms.AlertSpec]:
    """A spec from every cold-chain rule, as ingest and the sweeps word them."""
    rules = Rules.from_profile(PROFILES["FRESH_2_8"])
    state, excursions = evaluate(rules, [(i * 600_000, t) for i, t in enumerate([5, *(9,) * 15])])
    open_exc: Exc = excursions[-1]
    specs = [
        alarms.excursion(
            shipment_id=SHIPMENT, case_id="c", profile="FRESH_2_8", rules=rules, exc=open_exc
        ),
        *alarms.shipment_level(shipment_id=SHIPMENT, case_id="c", rules=rules, state=state),
        alarms.loss_of_signal(
            shipment_id=SHIPMENT, case_id="c", last_at=AT, max_gap_min=30, now=AT.replace(hour=2)
        ),
        alarms.hold_time(
            shipment_id=SHIPMENT, case_id="c", elapsed_h=150.4, remaining_h=40, hold_h=240
        ),
        alarms.fresh_stability(
            shipment_id=SHIPMENT, case_id="c", coi=COI, age_h=28.25, remaining_h=3.05, limit_h=30
        ),
        alarms.thaw_window(case_id="c", coi=COI, minutes=45.5, start_min=30, expiry_min=180),
        alarms.thaw_window(case_id="c", coi=COI, minutes=200, start_min=30, expiry_min=180),
    ]
    return [spec for spec in specs if spec is not None]


SAMPLES: dict[str, dict[str, Any]] = {
    "coldchain.reassessment": {
        "refers_to_id": 23,
        "shipment_id": "0123456789abcdef0123456789abcdef",
        "profile": "CRYO_LN2",
        "excursion_kind": "critical_high",
        "peak_c": -120.4,
        "duration_min": 22,
        "severity": "critical",
        "signed_peak_c": -149.0,
        "signed_severity": "major",
    },
    "delay.at_risk": {
        "coi": COI,
        "milestone": "received_at_manufacturing",
        "target": "collection_to_receipt_h",
        "target_at": "2026-11-26T06:00:00Z",
        "predicted_at": "2026-11-26T07:15:30.250000Z",
    },
    "delay.breached": {
        "coi": COI,
        "milestone": "qc_released",
        "target": "start_to_release_d",
        "target_at": "2026-11-26T15:00:00Z",
    },
    "delay.slot_conflict": {
        "coi": COI,
        "predicted_at": "2026-11-27T10:00:00Z",
        "slot_start_at": "2026-11-26T09:00:00Z",
    },
    "identity.coi_mismatch": {"step": "custody delivered", "presented": "X", "expected": COI},
    "interop.epcis_alarm": {
        "exception": "ALARM_CONDITION",
        "measurement": "Temperature",
        "device_id": "LOG-1",
        "at": "2026-11-26T00:30:05.000Z",
        "detail": None,
    },
}


def _samples() -> list[tuple[str, dict[str, Any], str | None]]:
    """(code, params, the message stored with them if a rule produced it)."""
    out: list[tuple[str, dict[str, Any], str | None]] = []
    for spec in _rule_specs():
        assert spec.code is not None and spec.params is not None
        out.append((spec.code, spec.params, spec.message))
    out += [(code, params, None) for code, params in SAMPLES.items()]
    return out


def test_every_catalogued_code_has_a_sample() -> None:
    assert {code for code, _, _ in _samples()} == set(messages.CATALOGUE)


@pytest.mark.parametrize(("code", "params", "stored"), _samples(), ids=lambda v: str(v)[:30])
def test_english_in_utc_is_the_stored_message_and_survives_json(
    code: str, params: dict[str, Any], stored: str | None
) -> None:
    back = json.loads(json.dumps(params))  # as the params column returns them
    rendered = messages.render(code, back, lang="en", tz="UTC")
    assert rendered == messages.render(code, params)
    if stored is not None:
        assert rendered == stored


@pytest.mark.parametrize(("code", "params", "_stored"), _samples(), ids=lambda v: str(v)[:30])
def test_japanese_words_every_code_without_english(
    code: str, params: dict[str, Any], _stored: str | None
) -> None:
    english = messages.render(code, params, lang="en", tz="UTC")
    japanese = messages.render(code, params, lang="ja", tz="Asia/Tokyo")
    assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", japanese), japanese
    # No English word of the template survives (words of the parameters may, like "EPCIS").
    from_params = {w.lower() for v in params.values() for w in re.findall(r"[A-Za-z]+", str(v))}
    template_words = {w for w in re.findall(r"[a-z]{3,}", english) if w not in from_params}
    leaked = {w for w in template_words if re.search(rf"\b{w}\b", japanese)}
    assert not leaked, (japanese, leaked)


def test_instants_are_shown_in_the_readers_time_zone() -> None:
    params = SAMPLES["delay.slot_conflict"]
    assert messages.render("delay.slot_conflict", params) == (
        f"case {COI}: material predicted at the factory 2026-11-27 10:00 UTC, "
        "its manufacturing slot opens 2026-11-26 09:00 UTC"
    )
    tokyo = messages.render("delay.slot_conflict", params, lang="ja", tz="Asia/Tokyo")
    assert "2026-11-27 19:00 JST" in tokyo and "2026-11-26 18:00 JST" in tokyo
    english_in_tokyo = messages.render("delay.slot_conflict", params, tz="Asia/Tokyo")
    assert "2026-11-27 19:00 JST" in english_in_tokyo
    # A zone whose abbreviation is only an offset shows it as one.
    assert "2026-11-27 07:00 UTC-03:00" in messages.render(
        "delay.slot_conflict", params, tz="America/Sao_Paulo"
    )
    alarm = messages.render("interop.epcis_alarm", SAMPLES["interop.epcis_alarm"], tz="UTC")
    assert alarm.endswith("at 2026-11-26 00:30:05 UTC")


def test_a_bare_message_is_kept_as_text_in_every_language() -> None:
    params = {"text": "courier reports a damaged box"}
    assert messages.render(messages.TEXT, params, lang="ja", tz="Asia/Tokyo") == params["text"]
    assert messages.known(messages.TEXT) and not messages.known("nope")


def test_delay_alerts_name_their_leg_in_words_not_by_its_code() -> None:
    for code in ("delay.at_risk", "delay.breached"):
        params = {**SAMPLES[code], "target": "vein_to_vein_d"}
        english = messages.render(code, params)
        assert "vein-to-vein target" in english and "vein_to_vein_d" not in english
        japanese = messages.render(code, params, lang="ja", tz="Asia/Tokyo")
        assert "採取から投与まで" in japanese and "vein_to_vein_d" not in japanese
