"""The alert catalogue: each alert's ``code`` and ``params`` worded in English or Japanese.

An alert stores a stable dotted ``code`` and JSON ``params`` (numbers at the precision the
message shows, ids, instants as ISO 8601 with ``Z``). Its English ``message`` is rendered
from them here when it is raised, so the text and the structured form cannot drift; pages
render the same pair in the reader's language and time zone.

The code ``alert.text`` carries a message with no catalogue entry (``params.text``), shown
as written in every language.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from app.times import iso_z

Lang = Literal["en", "ja"]
Params = Mapping[str, Any]
TEXT = "alert.text"

# Milestones, legs and identity steps by the names the rules use.
_MILESTONE_JA = {
    "collected": "アフェレーシス採取",
    "received_at_manufacturing": "製造施設での受領",
    "manufacturing_started": "製造開始",
    "qc_released": "QC 出荷判定",
    "received_at_site": "病院での受領",
    "thawed": "解凍",
    "infused": "投与",
}
_LEG_JA = {
    "collection_to_receipt_h": "採取から受領まで",
    "receipt_to_start_h": "受領から製造開始まで",
    "start_to_release_d": "製造開始から出荷判定まで",
    "release_to_site_h": "出荷判定から病院到着まで",
    "site_to_infusion_d": "病院到着から投与まで",
    "vein_to_vein_d": "採取から投与まで（vein-to-vein）",
}
_LEG_EN = {
    "collection_to_receipt_h": "collection-to-receipt",
    "receipt_to_start_h": "receipt-to-start",
    "start_to_release_d": "start-to-release",
    "release_to_site_h": "release-to-hospital",
    "site_to_infusion_d": "hospital-to-infusion",
    "vein_to_vein_d": "vein-to-vein",
}
_STEP_JA = {
    **_MILESTONE_JA,
    "shipment to_manufacturing": "製造施設への輸送登録",
    "shipment to_site": "病院への輸送登録",
    "custody picked_up": "集荷",
    "custody handoff": "引き渡し",
    "custody delivered": "配達",
}
_EXCURSION_JA = {
    "high": "高温",
    "low": "低温",
    "critical_high": "重大な高温",
    "critical_low": "重大な低温",
}


def instant(value: datetime) -> str:
    """An instant as a params value: ISO 8601 in UTC with ``Z``."""
    return iso_z(value)


def _when(value: str, tz: str, *, seconds: bool = False) -> str:
    """An ISO instant in the reader's time zone, with the zone's name (or its offset)."""
    at = datetime.fromisoformat(value).astimezone(ZoneInfo(tz))
    abbreviation = at.strftime("%Z")
    if not abbreviation.isalpha():
        offset = at.strftime("%z")
        abbreviation = f"UTC{offset[:3]}:{offset[3:]}"
    return at.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + f" {abbreviation}"


def _leg_en(target: str) -> str:
    return _LEG_EN.get(target, target.replace("_", " "))


def _ship(p: Params) -> str:
    return str(p["shipment_id"])[:8]


def _words(name: str) -> str:
    return name.replace("_", " ")


def _ja(table: Mapping[str, str], name: str) -> str:
    return table.get(name, name)


# Each code: (English, Japanese), each a function of (params, time zone).
Template = Callable[[Params, str], str]
CATALOGUE: dict[str, tuple[Template, Template]] = {
    "coldchain.excursion": (
        lambda p, tz: (
            f"{_words(p['excursion_kind'])} temperature excursion on shipment {_ship(p)} "
            f"({p['profile']}): peak {p['peak_c']:.1f} °C, {p['duration_min']:.0f} min, "
            f"{'closed' if p['closed'] else 'ongoing'}"
        ),
        lambda p, tz: (
            f"輸送 {_ship(p)}（{p['profile']}）で{_ja(_EXCURSION_JA, p['excursion_kind'])}の"
            f"温度逸脱：最高 {p['peak_c']:.1f} °C、{p['duration_min']:.0f} 分、"
            f"{'終了' if p['closed'] else '継続中'}"
        ),
    ),
    "coldchain.reassessment": (
        lambda p, tz: (
            f"late readings change signed excursion {p['refers_to_id']} on shipment {_ship(p)} "
            f"({p['profile']}): now {_words(p['excursion_kind'])}, peak {p['peak_c']:.1f} °C, "
            f"{p['duration_min']:.0f} min, {p['severity']} (signed: peak "
            f"{p['signed_peak_c']:.1f} °C, {p['signed_severity']}); product on hold until QA "
            "re-assesses"
        ),
        lambda p, tz: (
            f"遅れて届いた記録が署名済みの温度逸脱 {p['refers_to_id']}（輸送 {_ship(p)}、"
            f"{p['profile']}）を変えます：現在 {_ja(_EXCURSION_JA, p['excursion_kind'])}、最高 "
            f"{p['peak_c']:.1f} °C、{p['duration_min']:.0f} 分（署名時：最高 "
            f"{p['signed_peak_c']:.1f} °C）。QA の再評価まで製品は保留です"
        ),
    ),
    "coldchain.budget": (
        lambda p, tz: (
            f"shipment {_ship(p)} has been out of range {p['out_of_range_min']:.0f} min in "
            f"total (budget {p['budget_min']:.0f} min)"
        ),
        lambda p, tz: (
            f"輸送 {_ship(p)} の温度範囲外の累計が {p['out_of_range_min']:.0f} 分に達しました"
            f"（許容 {p['budget_min']:.0f} 分）"
        ),
    ),
    "coldchain.mkt": (
        lambda p, tz: (
            f"mean kinetic temperature of shipment {_ship(p)} is {p['mkt_c']:.2f} °C "
            f"(limit {p['limit_c']:.1f} °C)"
        ),
        lambda p, tz: (
            f"輸送 {_ship(p)} の平均キネティック温度が {p['mkt_c']:.2f} °C です"
            f"（上限 {p['limit_c']:.1f} °C）"
        ),
    ),
    "coldchain.loss_of_signal": (
        lambda p, tz: (
            f"no reading from shipment {_ship(p)} for {p['silent_min']:.0f} min "
            f"(limit {p['limit_min']:.0f} min)"
        ),
        lambda p, tz: (
            f"輸送 {_ship(p)} から {p['silent_min']:.0f} 分間測定値が届いていません"
            f"（上限 {p['limit_min']:.0f} 分）"
        ),
    ),
    "coldchain.hold_time": (
        lambda p, tz: (
            f"dry shipper on shipment {_ship(p)}: {p['elapsed_h']:.0f} h elapsed "
            f"+ {p['remaining_h']:.0f} h to go exceeds {p['safe_pct']:.0f}% of its "
            f"{p['hold_h']:.0f} h hold time"
        ),
        lambda p, tz: (
            f"輸送 {_ship(p)} のドライシッパー：経過 {p['elapsed_h']:.0f} 時間 + 残り "
            f"{p['remaining_h']:.0f} 時間が保冷時間 {p['hold_h']:.0f} 時間の "
            f"{p['safe_pct']:.0f}% を超えます"
        ),
    ),
    "coldchain.fresh_stability": (
        lambda p, tz: (
            f"fresh apheresis material for case {p['coi']}: {p['age_h']:.1f} h "
            f"since collection, {p['remaining_h']:.1f} h to go, "
            f"stability limit {p['limit_h']:.0f} h"
        ),
        lambda p, tz: (
            f"症例 {p['coi']} の新鮮アフェレーシス材料：採取から {p['age_h']:.1f} 時間、"
            f"残り {p['remaining_h']:.1f} 時間、安定性の上限 {p['limit_h']:.0f} 時間"
        ),
    ),
    "coldchain.thaw_window.late": (
        lambda p, tz: (
            f"case {p['coi']}: product thawed {p['minutes']:.0f} min ago is past its "
            f"infusion start window (start within {p['start_min']:.0f} min, expires after "
            f"{p['expiry_min']:.0f} min)"
        ),
        lambda p, tz: (
            f"症例 {p['coi']}：{p['minutes']:.0f} 分前に解凍した製品が投与開始の時間枠を"
            f"過ぎています（{p['start_min']:.0f} 分以内に開始、{p['expiry_min']:.0f} 分で"
            "期限切れ）"
        ),
    ),
    "coldchain.thaw_window.expired": (
        lambda p, tz: (
            f"case {p['coi']}: product thawed {p['minutes']:.0f} min ago has expired "
            f"(start within {p['start_min']:.0f} min, expires after {p['expiry_min']:.0f} min)"
        ),
        lambda p, tz: (
            f"症例 {p['coi']}：{p['minutes']:.0f} 分前に解凍した製品は期限切れです"
            f"（{p['start_min']:.0f} 分以内に開始、{p['expiry_min']:.0f} 分で期限切れ）"
        ),
    ),
    "delay.at_risk": (
        lambda p, tz: (
            f"case {p['coi']}: {_words(p['milestone'])} predicted "
            f"{_when(p['predicted_at'], tz)}, after its {_leg_en(p['target'])} target "
            f"{_when(p['target_at'], tz)}"
        ),
        lambda p, tz: (
            f"症例 {p['coi']}：{_ja(_MILESTONE_JA, p['milestone'])}の予測 "
            f"{_when(p['predicted_at'], tz)} は{_ja(_LEG_JA, p['target'])}の目標 "
            f"{_when(p['target_at'], tz)} より後です"
        ),
    ),
    "delay.breached": (
        lambda p, tz: (
            f"case {p['coi']}: {_words(p['milestone'])} was due by "
            f"{_when(p['target_at'], tz)} ({_leg_en(p['target'])} target) "
            "and has not happened"
        ),
        lambda p, tz: (
            f"症例 {p['coi']}：{_ja(_MILESTONE_JA, p['milestone'])}の期限 "
            f"{_when(p['target_at'], tz)}（{_ja(_LEG_JA, p['target'])}の目標）を過ぎても"
            "記録されていません"
        ),
    ),
    "delay.slot_conflict": (
        lambda p, tz: (
            f"case {p['coi']}: material predicted at the factory "
            f"{_when(p['predicted_at'], tz)}, its manufacturing slot opens "
            f"{_when(p['slot_start_at'], tz)}"
        ),
        lambda p, tz: (
            f"症例 {p['coi']}：材料の製造施設到着予測 {_when(p['predicted_at'], tz)}、"
            f"製造枠の開始 {_when(p['slot_start_at'], tz)}"
        ),
    ),
    "identity.coi_mismatch": (
        lambda p, tz: (
            f"COI mismatch at {p['step']}: label {p['presented']} presented for case "
            f"COI {p['expected']}"
        ),
        lambda p, tz: (
            f"{_ja(_STEP_JA, p['step'])}で COI 不一致：症例の COI {p['expected']} に対し"
            f"ラベル {p['presented']} が提示されました"
        ),
    ),
    "interop.epcis_alarm": (
        lambda p, tz: (
            f"EPCIS {p['exception']} from the {p['measurement']} sensor {p['device_id']} "
            f"at {_when(p['at'], tz, seconds=True)}"
            + (f" ({p['detail']})" if p.get("detail") else "")
        ),
        lambda p, tz: (
            f"EPCIS {p['exception']}：{p['measurement']} センサー {p['device_id']}、"
            f"{_when(p['at'], tz, seconds=True)}"
            + (f"（{p['detail']}）" if p.get("detail") else "")
        ),
    ),
}


def render(code: str, params: Params, *, lang: Lang = "en", tz: str = "UTC") -> str:
    """The alert worded in ``lang``, its instants in the time zone ``tz`` (an IANA name)."""
    if code == TEXT:
        return str(params["text"])
    english, japanese = CATALOGUE[code]
    return (japanese if lang == "ja" else english)(params, tz)


def known(code: str) -> bool:
    """Whether the catalogue words this code (``alert.text`` included)."""
    return code == TEXT or code in CATALOGUE
