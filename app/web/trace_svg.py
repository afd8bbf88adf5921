"""A shipment's temperature trace drawn on the server as one inline SVG (no script to fetch).

The line keeps each pixel column's lowest and highest reading, so a one-minute spike in a
week of readings stays visible however many readings there are: the drawing has at most two
points per column (about 20 KB), whatever the trace holds. Times are the page's zone, labels
the page's language, and a ``<title>``/``<desc>`` pair tells a screen reader what the chart
shows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from babel.dates import format_skeleton
from markupsafe import Markup, escape

from app.web import labels
from app.web.i18n import Lang

WIDTH, HEIGHT = 760, 310
X0, X1 = 62.0, 748.0  # the plot area, in viewBox units (one unit is one column)
Y0, Y1 = 34.0, 244.0
FONT = 13  # viewBox units: about 12 px on a 768 px tablet, 16 px at the widest
TIME_STEPS_S = (300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)
MAX_TIME_TICKS = 7
BAND, LINE = "#1b5e20", "#0b3d7a"
EXCURSION = {"critical": "#a3121a"}  # every other severity is drawn in EXCURSION_OTHER
EXCURSION_OTHER = "#d32f2f"


@dataclass(frozen=True)
class Span:
    """An excursion as drawn: from its start to its end (open ones run to the last reading)."""

    started_at: datetime
    ended_at: datetime | None
    severity: str
    peak_c: float | None


@dataclass(frozen=True)
class Scale:
    """Instants and temperatures to viewBox coordinates."""

    t0: float
    t1: float
    c0: float
    c1: float

    def x(self, at: datetime) -> float:
        return X0 + (at.timestamp() - self.t0) / (self.t1 - self.t0) * (X1 - X0)

    def y(self, c: float) -> float:
        return Y1 - (c - self.c0) / (self.c1 - self.c0) * (Y1 - Y0)


def nice_step(span: float, target: int = 5) -> float:
    """A 1, 2 or 5 × 10^k step that cuts span into about target pieces."""
    raw = span / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def scale_for(
    points: Sequence[Mapping[str, Any]],
    bucket_s: float,
    band: tuple[float | None, float],
    floor_c: float | None = None,
) -> tuple[Scale, float]:
    """The scale that holds every reading and the band, on round temperatures; and the step."""
    start = points[0]["t"].timestamp()
    end = max(points[-1]["t"].timestamp() + bucket_s, start + 60)
    reach = [c for c in (band[0], floor_c) if c is not None] or [band[1]]
    low = min(min(p["min_c"] for p in points), *reach)
    high = max(max(p["max_c"] for p in points), band[1])
    pad = max((high - low) * 0.08, 0.5)
    step = nice_step(high - low + 2 * pad)
    c0 = math.floor((low - pad) / step) * step
    c1 = math.ceil((high + pad) / step) * step
    return Scale(start, end, c0, c1), step


def columns(points: Sequence[Mapping[str, Any]], scale: Scale) -> list[tuple[float, float, float]]:
    """(x, lowest, highest) per pixel column: buckets that share a column are merged."""
    merged: dict[int, list[float]] = {}
    for p in points:
        column = min(int(scale.x(p["t"]) - X0), int(X1 - X0) - 1)
        lo_hi = merged.setdefault(column, [p["min_c"], p["max_c"]])
        lo_hi[0] = min(lo_hi[0], p["min_c"])
        lo_hi[1] = max(lo_hi[1], p["max_c"])
    return [(X0 + c + 0.5, lo, hi) for c, (lo, hi) in sorted(merged.items())]


def polyline(cols: list[tuple[float, float, float]], scale: Scale) -> str:
    """The line through each column's lowest and highest, the nearer one first."""
    out: list[str] = []
    last_y: float | None = None
    for x, lo, hi in cols:
        ys = [scale.y(lo)] if lo == hi else [scale.y(lo), scale.y(hi)]
        if last_y is not None and len(ys) == 2 and abs(ys[1] - last_y) < abs(ys[0] - last_y):
            ys.reverse()
        out.extend(f"{x:.1f},{y:.1f}" for y in ys)
        last_y = ys[-1]
    return " ".join(out)


def time_ticks(scale: Scale, lang: Lang) -> list[datetime]:
    """Round local times (the zone's midnight plus whole steps) across the plot."""
    span = scale.t1 - scale.t0
    step = next((s for s in TIME_STEPS_S if span / s <= MAX_TIME_TICKS), TIME_STEPS_S[-1])
    first = datetime.fromtimestamp(scale.t0, lang.zone)
    tick = first.replace(hour=0, minute=0, second=0, microsecond=0)
    ticks: list[datetime] = []
    while tick.timestamp() <= scale.t1:
        if tick.timestamp() >= scale.t0:
            ticks.append(tick)
        tick = tick + timedelta(seconds=step)  # wall-clock arithmetic in the zone
    return ticks


def text_width(text: str, size: float = FONT) -> float:
    """An estimate: CJK characters are a full em wide, others a bit over half."""
    return sum(size if ord(ch) > 0x2E80 else size * 0.58 for ch in text)


def _text(x: float, y: float, body: str, **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{escape(body)}</text>'


def _tick_label(x: float, y: float, body: str) -> str:
    """Centred under its tick, but kept inside the drawing at either end."""
    half = text_width(body) / 2
    return _text(min(max(x, half + 2), WIDTH - half - 2), y, body, text_anchor="middle")


def _axes(scale: Scale, step: float, lang: Lang) -> list[str]:
    _ = lang.gettext
    out = ['<g class="grid" stroke="#d7dce1" stroke-width="1">']
    labels_y: list[str] = []
    digits = max(0, -math.floor(math.log10(step) + 1e-9))  # 0.5 -> 1, 0.05 -> 2
    value = scale.c0
    while value <= scale.c1 + step / 1000:
        y = scale.y(value)
        out.append(f'<line x1="{X0}" x2="{X1}" y1="{y:.1f}" y2="{y:.1f}"/>')
        labels_y.append(_text(X0 - 6, y + 4, lang.num(value, digits), text_anchor="end"))
        value += step
    out.append("</g>")
    out.append('<g class="axis-y" fill="#3c4650">' + "".join(labels_y) + "</g>")
    ticks = time_ticks(scale, lang)
    daily = len(ticks) > 1 and (ticks[1] - ticks[0]) >= timedelta(days=1)
    parts, previous = [], None
    for tick in ticks:
        x = scale.x(tick)
        day = format_skeleton("MMMd", tick, locale=lang.code)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{Y1}" y2="{Y1 + 5}"/>')
        if daily:
            parts.append(_tick_label(x, Y1 + 19, day))
        else:
            parts.append(_tick_label(x, Y1 + 19, tick.strftime("%H:%M")))
            if day != previous:
                parts.append(_tick_label(x, Y1 + 35, day))
        previous = day
    out.append('<g class="axis-x" stroke="#3c4650" fill="#3c4650">')
    out.append(f'<line x1="{X0}" x2="{X1}" y1="{Y1}" y2="{Y1}"/>')
    out.append('<g stroke="none">' + "".join(parts) + "</g></g>")
    offset = datetime.fromtimestamp(scale.t1, lang.zone).strftime("%z")
    zone = f"{lang.zone.key}, UTC{offset[:3]}:{offset[3:]}"
    out.append(
        _text((X0 + X1) / 2, HEIGHT - 8, _("Time (%(zone)s)", zone=zone), text_anchor="middle")
    )
    mid = (Y0 + Y1) / 2
    title = escape(_("Temperature (°C)"))  # outside the f-string, where pybabel finds it
    out.append(
        f'<text x="14" y="{mid:.1f}" text-anchor="middle" transform="rotate(-90 14 {mid:.1f})">'
        f"{title}</text>"
    )
    return out


def _legend(lang: Lang) -> str:
    _ = lang.gettext
    items = [
        ("line", _("Temperature")),
        ("band", _("Allowed range")),
        ("excursion", _("Excursion")),
    ]
    out, x = ['<g class="legend">'], X0
    for kind, name in items:
        if kind == "line":
            out.append(
                f'<line x1="{x}" x2="{x + 18}" y1="14" y2="14" stroke="{LINE}" stroke-width="2"/>'
            )
        else:
            colour, opacity = (BAND, ".25") if kind == "band" else (EXCURSION_OTHER, ".4")
            out.append(
                f'<rect x="{x}" y="8" width="18" height="12" fill="{colour}" '
                f'fill-opacity="{opacity}"/>'
            )
        out.append(_text(x + 24, 18, name))
        x += 24 + text_width(name) + 18
    out.append("</g>")
    return "".join(out)


def _spans(spans: Sequence[Span], scale: Scale, lang: Lang) -> list[str]:
    out = []
    end = datetime.fromtimestamp(scale.t1, lang.zone)
    for span in spans:
        left = max(X0, scale.x(span.started_at))
        right = min(X1, scale.x(span.ended_at or end))
        width = max(right - left, 2.0)  # a one-minute excursion in a week is still marked
        colour = EXCURSION.get(span.severity, EXCURSION_OTHER)
        note = escape(_span_text(span, lang, end))
        out.append(
            f'<g class="excursion" data-severity="{escape(span.severity)}">'
            f"<title>{note}</title>"
            f'<rect x="{left:.1f}" y="{Y0}" width="{width:.1f}" height="{Y1 - Y0}" '
            f'fill="{colour}" fill-opacity=".2"/>'
            f'<rect x="{left:.1f}" y="{Y0}" width="{width:.1f}" height="4" fill="{colour}"/></g>'
        )
    return out


def _span_text(span: Span, lang: Lang, end: datetime) -> str:
    _ = lang.gettext
    severity = _(labels.SEVERITY.get(span.severity, span.severity))
    return _(
        "%(severity)s excursion from %(start)s to %(end)s, peak %(peak)s",
        severity=severity,
        start=lang.dt(span.started_at),
        end=lang.dt(span.ended_at) if span.ended_at else _("now"),
        peak=lang.temp(span.peak_c),
    )


def describe(
    points: Sequence[Mapping[str, Any]],
    band: tuple[float | None, float],
    spans: Sequence[Span],
    lang: Lang,
    end: datetime,
) -> str:
    """The chart in words, for a screen reader."""
    _ = lang.gettext
    allowed = (
        f"{lang.temp(band[0])} – {lang.temp(band[1])}"
        if band[0] is not None
        else f"≤ {lang.temp(band[1])}"
    )
    text = _(
        "From %(start)s to %(end)s the readings stayed between %(low)s and %(high)s;"
        " allowed range %(band)s.",
        start=lang.dt(points[0]["t"]),
        end=lang.dt(end),
        low=lang.temp(min(p["min_c"] for p in points)),
        high=lang.temp(max(p["max_c"] for p in points)),
        band=allowed,
    )
    if not spans:
        return text + " " + _("No excursion.")
    listed = "; ".join(_span_text(s, lang, end) for s in spans)
    return text + " " + _("Excursions: %(list)s.", list=listed)


def render(
    points: Sequence[Mapping[str, Any]],
    *,
    bucket_s: float,
    band: tuple[float | None, float],
    spans: Sequence[Span],
    lang: Lang,
    ident: str,
    readings: int,
    floor_c: float | None = None,
) -> Markup:
    """The chart as one ``<svg>`` element, sized by its container (viewBox)."""
    _ = lang.gettext
    ident = str(escape(ident))
    title = _(
        "Temperature trace: %(n)s readings, %(k)s excursions",
        n=lang.num(readings, 0),
        k=len(spans),
    )
    head = (
        f'<svg class="trace" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{ident}-title {ident}-desc" font-size="{FONT}" '
        f'data-excursions="{len(spans)}" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{ident}-title">{escape(title)}</title>'
    )
    if not points:
        note = _("no reading yet")
        empty = _text(WIDTH / 2, HEIGHT / 2, note, text_anchor="middle")
        return _markup(f'{head}<desc id="{ident}-desc">{escape(note)}</desc>{empty}</svg>')
    scale, step = scale_for(points, bucket_s, band, floor_c)
    end = datetime.fromtimestamp(scale.t1, lang.zone)
    band_top = scale.y(band[1])
    band_bottom = Y1 if band[0] is None else scale.y(band[0])
    body = [
        head,
        f'<desc id="{ident}-desc">{escape(describe(points, band, spans, lang, end))}</desc>',
        _legend(lang),
        f'<rect class="band" x="{X0}" y="{band_top:.1f}" width="{X1 - X0}" '
        f'height="{max(band_bottom - band_top, 0):.1f}" fill="{BAND}" fill-opacity=".12"/>',
        *_spans(spans, scale, lang),
        *_axes(scale, step, lang),
        f'<polyline class="temperature" fill="none" stroke="{LINE}" stroke-width="1.5" '
        f'stroke-linejoin="round" points="{polyline(columns(points, scale), scale)}"/>',
        "</svg>",
    ]
    return _markup("".join(body))


def _markup(svg: str) -> Markup:
    # Safe: every text and attribute taken from data went through escape() above; the rest
    # are this module's own literals and formatted numbers.
    return Markup(svg)  # noqa: S704
