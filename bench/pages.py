"""Workspace page timings in headless Chromium: ``python -m bench.pages [--cases N]``.

Not a test (timings belong here, not in the suite). A fresh SQLite database gets the demo
cohort (10,000 cases by default, with their loggers' readings), a real uvicorn serves it
(``bench.serving``), and Debian's chromium, driven by Playwright as the browser suite does,
loads each page as NCC East's coordinator would. Each figure is the median of 5 loads:

- the worklist, a case page and the slot calendar after a first visit (the browser has the
  scripts and styles cached, as on a coordinator's second click), goal 300 ms;
- the first chart page in a browser with an empty cache, goal 600 ms to its first chart drawn;
- the route comparison in a browser with an empty cache, for comparison: its two charts
  are still drawn by plotly.js (4.8 MB, fetched after the load event), not one of the goals.

"Load" is the page's load event (navigation start to the end of ``load``, Navigation Timing).
A chart is "drawn" at the first animation frame after the one in which its box (a plotly
``[data-chart]`` div or a server-drawn ``.chart-svg``) holds an ``<svg>`` with a size: that
frame has been painted. One script watches from the start of the document, the same for
both kinds, and stamps the first chart and the last one (performance.now(), from
navigation start, like the load figure).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from app.config import Settings
from app.db import Database
from app.services.access import principals
from app.web.vendor import URL as PLOTLY
from bench.harness import prepare, workdir
from bench.serving import serve
from models.principal import Role
from seeds import demo

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
RUNS = 5
WARM_GOAL_MS = 300.0
COLD_CHART_GOAL_MS = 600.0
FIRST_CHART = "first chart page (cold cache)"
LOAD_MS = """() => { const n = performance.getEntriesByType('navigation')[0];
  return n.loadEventEnd - n.startTime; }"""
# Runs before the page's own scripts (an init script): each animation frame it looks for
# drawn charts, and stamps them one frame later, once the frame that showed them is painted.
WATCH_CHARTS = """(() => {
  const marks = window.__charts = { first: null, all: null, count: 0 };
  const drawn = box => { const svg = box.querySelector('svg');
    if (!svg) { return false; } const r = svg.getBoundingClientRect();
    return r.width > 0 && r.height > 0; };
  let seenFirst = false, seenAll = false;
  const frame = now => {
    if (seenFirst && marks.first === null) { marks.first = now; }
    if (seenAll && marks.all === null) { marks.all = now; return; }
    const boxes = [...document.querySelectorAll('[data-chart], .chart-svg')];
    const done = boxes.filter(drawn).length;
    marks.count = boxes.length;
    seenFirst = seenFirst || done > 0;
    seenAll = done > 0 && done === boxes.length && document.readyState !== 'loading';
    if (document.readyState === 'complete' && boxes.length === 0) { return; }
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
})()"""
CHARTS_DRAWN = "() => window.__charts.all !== null && window.__charts"


@dataclass(frozen=True)
class Timing:
    """Page loads, and for chart pages when the first and the last chart were drawn. The
    goal applies to the load, or with on_chart to the first chart drawn."""

    name: str
    goal_ms: float | None
    load_ms: list[float]
    first_chart_ms: list[float]
    charts_ms: list[float]
    on_chart: bool = False

    @property
    def median(self) -> float:
        return statistics.median(self.first_chart_ms if self.on_chart else self.load_ms)

    @property
    def ok(self) -> bool:
        return self.goal_ms is None or self.median <= self.goal_ms

    def line(self) -> str:
        what = "first chart drawn" if self.on_chart else "load"
        goal = (
            f"(goal ≤ {self.goal_ms:.0f} ms: {'ok' if self.ok else 'MISSED'})"
            if self.goal_ms is not None
            else "(for comparison, no goal)"
        )
        extra = [] if not self.on_chart else [f"load {statistics.median(self.load_ms):.0f} ms"]
        if self.charts_ms:
            if not self.on_chart:
                extra.append(f"first chart {statistics.median(self.first_chart_ms):.0f} ms")
            extra.append(f"all charts {statistics.median(self.charts_ms):.0f} ms")
        runs = ", ".join(
            f"{v:.0f}" for v in (self.first_chart_ms if self.on_chart else self.load_ms)
        )
        return (
            f"{self.name:<34} {what} {self.median:6.0f} ms {goal}"
            + (f"; {', '.join(extra)}" if extra else "")
            + f"\n{'':<34} runs ({what}): {runs}"
        )


def build(url: str, cases: int) -> dict[str, str]:
    """Migrate, seed, write the cohort and two people; return their keys."""
    prepare(url)
    settings = Settings(database_url=url, env="test")
    db = Database(url, pool_size=1)
    try:
        demo.generate(db, cases=cases, seed=7, now=datetime.now(UTC), settings=settings)
        secret = settings.secret_key.get_secret_value()
        with db.transaction() as session:
            _, admin = principals.create_principal(
                session, name="bench admin", role=Role.admin, secret_key=secret
            )
            _, ncc = principals.create_principal(
                session, name="bench ncc", role=Role.coordinator, site="NCC-EAST", secret_key=secret
            )
    finally:
        db.dispose()
    return {"admin": admin, "ncc": ncc}


def targets(base: str, keys: dict[str, str]) -> dict[str, str]:
    """The pages to load, found through the API as a client would."""
    headers = {"Authorization": f"Bearer {keys['ncc']}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as api:
        moving = api.get("/api/v1/shipments", params={"status": "in_transit", "limit": 20})
        moving.raise_for_status()
        charted = [s for s in moving.json()["items"] if s.get("picked_up_at")]
        if not charted:
            raise SystemExit("the cohort has no shipment in transit at NCC East to chart")
        body = {
            "site": "NCC-EAST",
            "route": "KASHIWA-LOCAL",
            "product": "CART-CD19",
            "patient_ref": f"BENCH-{datetime.now(UTC):%H%M%S%f}",
        }
        created = api.post("/api/v1/cases", json=body)
        created.raise_for_status()
    return {
        "worklist": "/cases",
        "case": f"/cases/{charted[0]['case_id']}",
        "calendar": f"/cases/{created.json()['id']}/schedule",
    }


def login(browser: Any, base: str, key: str) -> Any:
    context = browser.new_context(base_url=base, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/")
    state = context.storage_state()
    context.close()
    return state


def measure(page: Any, url: str) -> tuple[float, float | None, float | None]:
    """The load, first-chart and all-charts times (ms from navigation start) of one visit."""
    page.goto(url, wait_until="load")
    load = float(page.evaluate(LOAD_MS))
    marks = page.wait_for_function(CHARTS_DRAWN, timeout=60_000) if _charted(page) else None
    if marks is None:
        return load, None, None
    drawn = marks.json_value()
    return load, float(drawn["first"]), float(drawn["all"])


def _charted(page: Any) -> bool:
    return bool(page.locator("[data-chart], .chart-svg").count())


def _context(browser: Any, base: str, state: Any) -> Any:
    context = browser.new_context(base_url=base, storage_state=state)
    context.add_init_script(WATCH_CHARTS)
    return context


def warm(browser: Any, base: str, state: Any, name: str, url: str) -> Timing:
    context = _context(browser, base, state)
    try:
        page = context.new_page()
        measure(page, url)  # the first visit fills the cache; it is not counted
        runs = [measure(page, url) for _ in range(RUNS)]
    finally:
        context.close()
    return _timing(name, WARM_GOAL_MS, runs)


def cold(browser: Any, base: str, state: Any, name: str, url: str, goal: float | None) -> Timing:
    runs = []
    for _ in range(RUNS):
        context = _context(browser, base, state)  # an empty cache
        try:
            runs.append(measure(context.new_page(), url))
        finally:
            context.close()
    return _timing(name, goal, runs, on_chart=True)


def _timing(
    name: str,
    goal: float | None,
    runs: list[tuple[float, float | None, float | None]],
    on_chart: bool = False,
) -> Timing:
    return Timing(
        name,
        goal,
        [r[0] for r in runs],
        [r[1] for r in runs if r[1] is not None],
        [r[2] for r in runs if r[2] is not None],
        on_chart,
    )


def run(cases: int, log: Callable[[str], None] = print) -> list[Timing]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing (apt-get install chromium)")
    with workdir("pages") as tmp:
        url = f"sqlite:///{tmp / 'v2v.sqlite3'}"
        log(f"writing the demo cohort: {cases:,} cases with readings …")
        started = datetime.now(UTC)
        keys = build(url, cases)
        log(f"  done in {(datetime.now(UTC) - started) / timedelta(seconds=1):.0f} s")
        with serve("pages", url, tmp) as server, sync_playwright() as playwright:
            pages = targets(server.base, keys)
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                admin = login(browser, server.base, keys["admin"])
                ncc = login(browser, server.base, keys["ncc"])
                # The chart pages first, in browsers with empty caches; the server has already
                # packed plotly.js once (its first request is not a browser's cost).
                httpx.get(server.base + PLOTLY, headers={"Accept-Encoding": "gzip"}, timeout=30)
                results = [
                    cold(browser, server.base, ncc, FIRST_CHART, pages["case"], COLD_CHART_GOAL_MS),
                    cold(
                        browser,
                        server.base,
                        ncc,
                        "routes page (plotly, cold cache)",
                        "/routes",
                        None,
                    ),
                ]
                results.append(
                    warm(browser, server.base, admin, f"worklist ({cases:,} cases)", "/cases")
                )
                results.append(warm(browser, server.base, ncc, "case page", pages["case"]))
                results.append(warm(browser, server.base, ncc, "slot calendar", pages["calendar"]))
            finally:
                browser.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pages", description=__doc__)
    parser.add_argument("--cases", type=int, default=10_000, help="demo cohort size")
    args = parser.parse_args(argv)
    results = run(args.cases)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"\nmedian of {RUNS} loads, headless chromium on this machine (load average {load}):")
    for timing in results:
        print(timing.line())
    return 0 if all(t.ok for t in results) else 1


if __name__ == "__main__":
    sys.exit(main())
