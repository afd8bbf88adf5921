"""The temperature trace drawn on the server: the line follows the readings (a spike survives
downsampling), excursions are shaded where they happened, labels are in the page's language
and the drawing stays small."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from app.web import trace_svg
from app.web.i18n import Lang
from tests.conftest import Api
from tests.web.test_dashboard import (  # noqa: F401  (the fixtures)
    Browser,
    db_url,
    world,
    world_seed,
)

NS = "{http://www.w3.org/2000/svg}"
TOKYO = ZoneInfo("Asia/Tokyo")
SVG_RE = re.compile(r'<svg class="trace".*?</svg>', re.S)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314  (our own output, not untrusted input)


def line(root: ET.Element) -> list[tuple[float, float]]:
    node = root.find(f"{NS}polyline")
    assert node is not None
    return [(float(x), float(y)) for x, y in (p.split(",") for p in node.attrib["points"].split())]


def texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{NS}text")]


def test_a_week_of_readings_keeps_its_spike_and_dip_and_stays_small() -> None:
    start = datetime(2026, 11, 20, tzinfo=UTC)
    temps = [5.0 + 0.4 * ((i // 600) % 3) for i in range(100_000)]  # every 6 s for ~7 days
    temps[50_000], temps[70_000] = 14.2, 1.1  # one reading each
    points = [
        {"t": start + timedelta(seconds=6 * i), "min_c": c, "max_c": c, "mean_c": c, "n": 1}
        for i, c in enumerate(temps)
    ]
    spike_at = points[50_000]["t"]
    excursion = trace_svg.Span(spike_at - timedelta(minutes=2), spike_at, "major", 14.2)
    band = (2.0, 8.0)
    svg = trace_svg.render(
        points,
        bucket_s=6,
        band=band,
        spans=[excursion],
        lang=Lang("en", TOKYO),
        ident="t",
        readings=len(points),
    )
    assert len(svg.encode()) < 60_000
    root = parse(str(svg))
    drawn = line(root)
    assert len(drawn) <= 2 * (trace_svg.X1 - trace_svg.X0)
    scale, _ = trace_svg.scale_for(points, 6, band)
    top = min(drawn, key=lambda p: p[1])
    bottom = max(drawn, key=lambda p: p[1])
    assert top[1] == round(scale.y(14.2), 1) and abs(top[0] - scale.x(spike_at)) <= 1
    assert bottom[1] == round(scale.y(1.1), 1)
    assert abs(bottom[0] - scale.x(points[70_000]["t"])) <= 1
    # Away from the two, the line stays inside 5.0-5.8 °C.
    calm = [y for x, y in drawn if abs(x - top[0]) > 2 and abs(x - bottom[0]) > 2]
    assert min(calm) >= round(scale.y(5.8), 1) and max(calm) <= round(scale.y(5.0), 1)
    shaded = root.find(f"{NS}g[@class='excursion']/{NS}rect")
    assert shaded is not None
    left, width = float(shaded.attrib["x"]), float(shaded.attrib["width"])
    assert left <= top[0] <= left + width + 1
    band_rect = root.find(f"{NS}rect[@class='band']")
    assert band_rect is not None
    assert float(band_rect.attrib["y"]) == round(scale.y(8.0), 1)
    desc = root.find(f"{NS}desc")
    assert desc is not None and "1.1 °C" in str(desc.text) and "14.2 °C" in str(desc.text)


def _svg(browser: Browser, url: str) -> ET.Element:
    page = browser.get(url)
    assert page.status_code == 200, page.text[:2000]
    assert "data-chart" not in page.text  # nothing for dashboard.js (and plotly) to draw
    found = SVG_RE.search(page.text)
    assert found, page.text[:3000]
    return parse(found.group(0))


def test_case_and_shipment_pages_draw_the_readings_in_the_page_language(
    api: Api,
    world: dict[str, Any],  # noqa: F811
) -> None:
    # world's readings, every 10 minutes: 5.0, 5.2, 12.5, 13.0, 12.0, 5.5, 5.1 (one excursion)
    en = Browser(api, "ncc", **{"Accept-Language": "en"})
    root = _svg(en, f"/cases/{world['case_id']}")
    drawn = line(root)
    assert len(drawn) == 7
    order_by_height = sorted(range(7), key=lambda i: drawn[i][1])  # highest first
    assert order_by_height == [3, 2, 4, 5, 1, 6, 0]
    assert [x for x, _ in drawn] == sorted(x for x, _ in drawn)
    shaded = root.findall(f"{NS}g[@class='excursion']")
    assert len(shaded) == 1 and shaded[0].attrib["data-severity"] == "major"
    rect = shaded[0].find(f"{NS}rect")
    assert rect is not None
    left, right = float(rect.attrib["x"]), float(rect.attrib["x"]) + float(rect.attrib["width"])
    assert left <= drawn[3][0] <= right  # the 13.0 °C reading is inside the shading
    assert not left <= drawn[0][0] <= right and not left <= drawn[6][0] <= right
    words = texts(root)
    assert "Temperature (°C)" in words and "Time (Asia/Tokyo, UTC+09:00)" in words

    ja = Browser(api, "ncc", **{"Accept-Language": "ja-JP,ja;q=0.9"})
    for url in (f"/cases/{world['case_id']}", f"/shipments/{world['shipment_id']}"):
        root = _svg(ja, url)
        words = texts(root)
        assert "温度（°C）" in words and "日時（Asia/Tokyo, UTC+09:00）" in words, words
        assert {"温度", "許容範囲", "逸脱"} <= set(words)
        assert not any(w in words for w in ("Temperature", "Allowed range", "Excursion"))
        title, desc = root.find(f"{NS}title"), root.find(f"{NS}desc")
        assert title is not None and "測定値 7 件" in str(title.text)
        assert desc is not None and "13.0 °C" in str(desc.text) and "逸脱" in str(desc.text)
        assert root.attrib["aria-labelledby"].split() == [
            title.attrib["id"],
            desc.attrib["id"],
        ]
