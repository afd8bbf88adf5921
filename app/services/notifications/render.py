"""Messages in the recipient's language and time zone, with a link to the case page.

Built from the alert's code and params (app/services/alerts/messages.py) and the case's
COI: never a patient reference, nor anything of a case outside the recipient's scope.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from app.services.alerts import messages
from models.alert import Alert

SEVERITY = {
    "en": {"info": "Info", "warning": "Warning", "major": "Major", "critical": "CRITICAL"},
    "ja": {"info": "情報", "warning": "注意", "major": "重要", "critical": "緊急"},
}
KIND_JA = {
    "temperature_excursion": "温度逸脱",
    "loss_of_signal": "信号途絶",
    "delay_at_risk": "遅延リスク",
    "delay_breached": "遅延",
    "coi_mismatch": "COI 不一致",
    "hold_time_at_risk": "保冷時間リスク",
    "thaw_window": "解凍後の時間枠",
    "slot_conflict": "製造枠の競合",
}
TASK = {
    "en": {
        "apheresis": "Apheresis",
        "pickup": "Pickup awaited",
        "arrival": "Arrival expected",
        "thaw": "Thaw",
        "infusion": "Infusion",
    },
    "ja": {
        "apheresis": "アフェレーシス",
        "pickup": "集荷待ち",
        "arrival": "到着予定",
        "thaw": "解凍",
        "infusion": "投与",
    },
}
WORDS = {
    "en": {
        "escalation": "ESCALATION: not acknowledged",
        "case": "Case",
        "raised": "Raised",
        "ack": "Acknowledge it in vein2vein.",
        "digest": "vein2vein daily digest",
        "tasks": "Today's tasks",
        "alerts": "Open alerts",
        "holds": "Products on hold (do not infuse)",
        "at_risk": "Cases at risk of delay",
        "none": "none",
        "more": "more",
    },
    "ja": {
        "escalation": "エスカレーション：未確認",
        "case": "症例",
        "raised": "発生",
        "ack": "vein2vein で確認してください。",
        "digest": "vein2vein 本日のまとめ",
        "tasks": "本日の作業",
        "alerts": "未対応のアラート",
        "holds": "保留中の製品（投与禁止）",
        "at_risk": "遅延リスクのある症例",
        "none": "なし",
        "more": "件ほか",
    },
}


def _lang(lang: str) -> str:
    return "ja" if lang == "ja" else "en"


def _kind(kind: str, lang: str) -> str:
    return KIND_JA.get(kind, kind) if lang == "ja" else kind.replace("_", " ")


def when(at: datetime | str, zone: str, *, date: bool = True) -> str:
    """An instant in the reader's zone with its abbreviation (JST), as alerts show it."""
    value = datetime.fromisoformat(at) if isinstance(at, str) else at
    local = value.astimezone(ZoneInfo(zone))
    name = local.strftime("%Z")
    if not name.isalpha():
        offset = local.strftime("%z")
        name = f"UTC{offset[:3]}:{offset[3:]}"
    return local.strftime("%Y-%m-%d %H:%M" if date else "%H:%M") + f" {name}"


def case_link(base_url: str, case_id: str) -> str:
    return f"{base_url.rstrip('/')}/cases/{case_id}"


def alert_message(
    alert: Alert,
    *,
    coi: str | None,
    case_id: str | None,
    escalation: bool,
    lang: str,
    zone: str,
    base_url: str,
) -> tuple[str, str]:
    """(subject, body) of one alert notice."""
    lang = _lang(lang)
    w = WORDS[lang]
    severity = SEVERITY[lang].get(alert.severity, alert.severity)
    head = f"[vein2vein] {severity}: {_kind(alert.kind, lang)}"
    if coi:
        head += f" ({w['case']} {coi})"
    if escalation:
        head = f"[vein2vein] {w['escalation']} · " + head.removeprefix("[vein2vein] ")
    code = alert.code or messages.TEXT
    params = alert.params or {"text": alert.message}
    lines = [
        messages.render(code, params, lang="ja" if lang == "ja" else "en", tz=zone),
        "",
        f"{w['raised']}: {when(alert.created_at, zone)}",
    ]
    if case_id:
        lines.append(f"{w['case']}: {case_link(base_url, case_id)}")
    lines.append(w["ack"])
    return head, "\n".join(lines)


def _task_line(task: Mapping[str, Any], lang: str, zone: str, base_url: str) -> str:
    name = TASK[lang].get(task["kind"], task["kind"])
    at = when(task["at"], zone, date=False) if task.get("at") else "—"
    return f"- {at} {name} · {task['coi']} · {case_link(base_url, task['case_id'])}"


def digest_message(
    snapshot: Mapping[str, Any], *, lang: str, zone: str, base_url: str
) -> tuple[str, str]:
    """(subject, body) of the daily digest from its snapshot (digest.snapshot)."""
    lang = _lang(lang)
    w = WORDS[lang]
    subject = f"[vein2vein] {w['digest']} {snapshot['date']}"
    out = [f"{w['digest']} — {snapshot['date']} ({zone})", ""]
    out.append(f"{w['tasks']} ({len(snapshot['tasks'])})")
    out += [_task_line(t, lang, zone, base_url) for t in snapshot["tasks"]] or [f"- {w['none']}"]
    out += ["", f"{w['alerts']} ({snapshot['open_alerts_total']})"]
    for a in snapshot["open_alerts"]:
        severity = SEVERITY[lang].get(a["severity"], a["severity"])
        text = messages.render(a["code"], a["params"], lang="ja" if lang == "ja" else "en", tz=zone)
        out.append(f"- [{severity}] {text}")
    hidden = snapshot["open_alerts_total"] - len(snapshot["open_alerts"])
    if hidden > 0:
        out.append(f"- … {hidden} {w['more']}")
    if not snapshot["open_alerts"]:
        out.append(f"- {w['none']}")
    for title, key in (("holds", "holds"), ("at_risk", "at_risk")):
        items = snapshot[key]
        out += ["", f"{w[title]} ({len(items)})"]
        out += [f"- {c['coi']} · {case_link(base_url, c['case_id'])}" for c in items] or [
            f"- {w['none']}"
        ]
    return subject, "\n".join(out)
