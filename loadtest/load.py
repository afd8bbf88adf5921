"""A realistic mix against one uvicorn server, beside the same server's bare echo endpoint.

``python -m loadtest.load [--db sqlite|postgres|both] [--seconds 30] [--demo-cases 300]``

The server is ``uvicorn bench.server:app`` (the app plus ``POST /bench/echo``) on 127.0.0.1,
one process, ingest rate limits off. The database holds the seeded reference data and a
demo cohort (``v2v demo``, without readings) so dashboards have real cases to aggregate.

1. echo alone: one client posts a single-reading body to /bench/echo (the framework's floor);
2. the mix, closed loop (each client sends its next request when the last one is answered):
   couriers posting 100-reading batches, loggers posting single readings, coordinators and
   factories walking cases through their journeys (register, schedule, events, shipments,
   custody), dashboards polling turnaround metrics, open alerts and factory availability,
   and one echo client in the same run. Throughput and p50/p99 latency per operation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from bench.harness import ROOT, workdir
from bench.serving import serve
from loadtest.actors import Cases, dashboard, loggers_in_transit, spawn, upload, walker
from loadtest.client import Abandon, Client, Deadline, Ledger, collector_paused
from loadtest.cluster import fresh_database, trouble
from loadtest.report import latency_table

ECHO_BODY = json.dumps(
    {"readings": [{"device_id": "LOG-ECHO", "ts": "2026-01-01T00:00:00.000+00:00", "temp_c": 5.1}]}
).encode()


@dataclass
class Mix:
    batch_couriers: int = 6
    single_loggers: int = 6
    walkers: int = 4
    dashboards: int = 4
    batch: int = 100
    dashboard_pause_ms: int = 1000
    echo_pause_ms: int = 50

    def describe(self) -> str:
        return (
            f"{self.batch_couriers} couriers posting {self.batch}-reading batches and "
            f"{self.single_loggers} loggers posting single readings, {self.walkers} journey "
            f"walkers (all back to back), {self.dashboards} dashboards (a poll, then "
            f"{self.dashboard_pause_ms} ms pause), 1 echo client (a call, then "
            f"{self.echo_pause_ms} ms pause)"
        )


def echo(client: Client, key: str, pause: float = 0.0) -> None:
    while not client.expired():
        response = client.call("echo POST /bench/echo", "POST", "/bench/echo", key, ECHO_BODY)
        client.expect(response, "echo", 200)
        time.sleep(pause)


def demo_cohort(url: str, cases: int) -> str:
    """Load the demo cohort with `v2v demo`; a note on what happened."""
    if cases <= 0:
        return "no demo cohort"
    env = {**os.environ, "V2V_DATABASE_URL": url}
    command = [sys.executable, "-m", "app.cli", "demo", "--cases", str(cases), "--no-readings"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, check=False)  # noqa: S603
    if done.returncode:
        return f"demo cohort not loaded (v2v demo exited {done.returncode})"
    return f"{cases} demo cases (v2v demo --no-readings)"


@dataclass
class MixRun:
    """What one run of the mix measured: latencies per operation, CPU, counts, trouble."""

    backend: str
    split: bool
    echo_alone: list[float]
    alone_s: float
    ledger: Ledger
    elapsed: float
    cpu: float  # server CPU seconds (all processes) during the mix
    problems: list[str]
    started: float = 0.0  # time.monotonic() when every client was let go at once

    @property
    def calls(self) -> int:
        return sum(len(v) for v in self.ledger.latencies.values())

    def readings(self) -> dict[str, int]:
        return {op: self.ledger.counts[f"readings via {op}"] for op in self.ledger.latencies}


def measure(
    url: str,
    keys: dict[str, str],
    *,
    backend: str,
    seconds: float,
    mix: Mix,
    split: bool = False,
) -> MixRun:
    """Serve, measure echo alone, then the mix.

    `split`: the couriers' readings go to a second uvicorn process of their own (as an nginx
    location for /api/v1/readings would send them), everything else to the first.
    """
    os.environ["V2V_RATE_LIMIT_INGEST_PER_MIN"] = "0"  # read by the server we start
    run_id = uuid.uuid4().hex[:6]
    with ExitStack() as stack:
        logdir = stack.enter_context(workdir("load"))
        server = stack.enter_context(
            serve(f"load-{backend}", url, logdir, target="bench.server:app")
        )
        ingest = server
        if split:
            ingest = stack.enter_context(
                serve(f"ingest-{backend}", url, logdir, target="bench.server:app")
            )
        urls = [server.base]
        alone = Ledger()
        a0 = time.monotonic()
        with Client(urls, alone, deadline=a0 + min(5.0, seconds / 4)) as c:
            try:
                echo(c, keys["courier"])
            except Abandon:
                pass
        alone_s = time.monotonic() - a0
        echo_alone = alone.latencies.pop("echo POST /bench/echo")
        ledger = Ledger()
        cases = Cases()
        with Client(urls, ledger, deadline=time.monotonic() + 120) as setup:
            loggers = loggers_in_transit(
                setup, keys, cases, run=run_id, count=mix.batch_couriers + mix.single_loggers
            )
        ledger.forget_timings()
        ledger.counts.clear()
        deadline = Deadline()
        servers = [server] if ingest is server else [server, ingest]
        with collector_paused():  # the clients' pauses are not the server's latency
            cpu0 = sum(s.cpu_seconds() for s in servers)
            t0 = time.monotonic()
            deadline.at = t0 + seconds
            args = (urls, ledger, deadline)
            courier = keys["courier"]
            threads = [
                spawn(upload, [ingest.base], ledger, deadline, courier, lg, _sizes(i, mix), i)
                for i, lg in enumerate(loggers)
            ]
            threads += [spawn(walker, *args, keys, cases, run_id) for _ in range(mix.walkers)]
            pause = mix.dashboard_pause_ms / 1000
            threads += [spawn(dashboard, *args, keys["ncc"], pause) for _ in range(mix.dashboards)]
            threads.append(spawn(echo, *args, keys["courier"], mix.echo_pause_ms / 1000))
            for thread in threads:
                thread.join(timeout=seconds + 60)
            elapsed = time.monotonic() - t0
            cpu = sum(s.cpu_seconds() for s in servers) - cpu0
        problems = trouble(list(logdir.glob("uvicorn-*.log")))
    return MixRun(backend, split, echo_alone, alone_s, ledger, elapsed, cpu, problems, t0)


def run(
    url: str,
    keys: dict[str, str],
    *,
    backend: str,
    seconds: float,
    mix: Mix,
    split: bool = False,
) -> list[str]:
    """Serve, measure echo alone, then the mix; the report's lines."""
    m = measure(url, keys, backend=backend, seconds=seconds, mix=mix, split=split)
    shape = (
        "two uvicorn processes, readings to one, the rest to the other"
        if split
        else "one uvicorn process"
    )
    readings = m.readings()
    total = sum(readings.values())
    c = m.ledger.counts
    transport = c["refused connections"] + c["dropped mid-request"] + c["timeouts"]
    return [
        f"load {backend}: {shape} (bench.server:app), {seconds:.0f} s, {mix.describe()}",
        *latency_table({"echo POST /bench/echo, alone": m.echo_alone}, m.alone_s),
        *latency_table(m.ledger.latencies, m.elapsed, readings=readings),
        f"  total {m.calls / m.elapsed:,.0f} calls/s and {total / m.elapsed:,.0f} readings/s; "
        f"server CPU {m.cpu / m.elapsed:.0%} of one core{' (both)' if split else ''}; "
        f"{m.calls / m.cpu:,.0f} calls per CPU second; "
        f"{len(m.ledger.errors)} errors, {transport} transport errors, "
        f"{len(m.problems)} server log lines with an error",
        *[f"  ! {e}" for e in m.ledger.errors[:10]],
        *[f"  ! {p}" for p in m.problems[:10]],
    ]


def _sizes(i: int, mix: Mix) -> Sequence[int]:
    return (mix.batch,) if i < mix.batch_couriers else (1,)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.load", description=__doc__)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--demo-cases", type=int, default=300)
    for name, default in vars(Mix()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)
    parser.add_argument(
        "--split", action="store_true", help="readings to a second uvicorn process of their own"
    )
    args = parser.parse_args(argv)
    mix = Mix(**{name: getattr(args, name) for name in vars(Mix())})
    failed = False
    for backend in ("sqlite", "postgres") if args.db == "both" else (args.db,):
        with fresh_database(backend) as (url, keys):
            note = demo_cohort(url, args.demo_cases)
            lines = run(url, keys, backend=backend, seconds=args.seconds, mix=mix, split=args.split)
        print("\n".join([*lines[:1], f"  database: {note}", *lines[1:]]), flush=True)
        failed = failed or any(line.startswith("  !") for line in lines)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
