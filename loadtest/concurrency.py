"""Several API processes and scheduler instances on one database, many clients at once.

``python -m loadtest.concurrency [--db sqlite|postgres|both] [--clients 50] [--seconds 60]
[--interval S] [--dashboard-pause S]``

SQLite: two API processes and one scheduler on one file. PostgreSQL: three API processes
and three scheduler instances (one leads through the advisory lock). The schedulers are
``v2v scheduler`` itself, or with ``--interval S`` loadtest/scheduler_probe.py: the
production Scheduler and jobs with every job each S seconds, so sweeps race the API all the
time. Clients: couriers (two loggers per shipment, on different API processes), bookers
racing for the last positions of a factory window booked to two short of full beforehand
(409 factory-full, then the next available time; cancellations free positions to race for
again), journey walkers (all of these back to back) and dashboards (a poll, then
``--dashboard-pause``). Goals: no 5xx, no lock error, no transport error reaches a client;
at most one unresolved alert per dedupe key and no factory booked beyond its positions,
checked every second during the run and at the end.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.db import Database
from bench.harness import workdir
from loadtest import invariants
from loadtest.actors import (
    Cases,
    booker,
    dashboard,
    loggers_in_transit,
    positions,
    prefill,
    spawn,
    upload,
    walker,
)
from loadtest.client import Client, Deadline, Ledger
from loadtest.cluster import (
    Process,
    api_server,
    cli_scheduler,
    fresh_database,
    scheduler_probe,
    trouble,
)
from loadtest.report import latency_table
from tests.servers import Server

SIZES = (1, 1, 10, 50, 200)
SHAPES = {"sqlite": (2, 1), "postgres": (3, 3)}  # (API processes, scheduler instances)


@dataclass
class ConcurrencyReport:
    backend: str
    shape: str
    seconds: float
    ledger: Ledger
    verdict: invariants.Verdict
    samples: int = 0
    sampled_problems: list[str] = field(default_factory=list)
    log_trouble: list[str] = field(default_factory=list)
    job_runs: int = 0
    peaks: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def transport_errors(self) -> int:
        c = self.ledger.counts
        return c["refused connections"] + c["dropped mid-request"] + c["timeouts"]

    @property
    def ok(self) -> bool:
        return (
            self.verdict.ok
            and not self.ledger.errors
            and not self.transport_errors
            and not self.sampled_problems
            and not self.log_trouble
        )

    def lines(self) -> list[str]:
        c = self.ledger.counts
        five = sum(1 for e in self.ledger.errors if re.search(r": 5\d\d ", e[:80]))
        causes = Counter(
            t.split(": ", 2)[-1].split(" [SQL")[0][:110]
            for t in self.log_trouble
            if ": sqlalchemy.exc." in t
        )
        failed_requests = sum("Exception in ASGI application" in t for t in self.log_trouble)
        failed_jobs = sum(" ERROR job " in t for t in self.log_trouble)
        peaks = ", ".join(f"{s} {p} of {n}" for s, (p, n) in self.peaks.items()) or "none"
        return [
            f"concurrency {self.backend}: {self.shape}, {self.seconds:.0f} s",
            *latency_table(self.ledger.latencies, self.seconds),
            f"  client-visible errors: {five} 5xx, "
            f"{self.transport_errors} transport errors ({c['timeouts']} without an answer in "
            f"30 s), {len(self.ledger.errors) - five - c['timeouts']} unexpected refusals; "
            f"{c['factory full (409)']:,} bookings answered 409 factory-full",
            f"  server and scheduler logs: {failed_requests} requests failed (500), "
            f"{failed_jobs} scheduled job runs failed"
            + (f" of {self.job_runs:,}" if self.job_runs else "")
            + "; causes (each logged once or twice):",
            *[f"    {n} × {cause}" for cause, n in causes.most_common(5)],
            f"  alerts: at most one unresolved per dedupe key — {self.samples} samples during "
            f"the run and one after, {len(self.sampled_problems)} violations",
            f"  slots: peak positions booked at any instant per factory: {peaks}",
            f"  writes: lost {sum(self.verdict.lost.values())}, duplicated "
            f"{sum(self.verdict.duplicated.values())}; {len(self.verdict.problems)} problems",
            *[f"  ! {p}" for p in (self.verdict.problems + self.sampled_problems)[:20]],
            *[f"  ! {e}" for e in self.ledger.errors[:20]],
            *[f"  ! {t}" for t in self.log_trouble[:20]],
        ]


def _monitor(db: Database, deadline: Deadline, report: ConcurrencyReport) -> None:
    while not deadline.passed():
        with db.session() as session:
            found = invariants.shared_state_problems(session)
        report.samples += 1
        report.sampled_problems += [f"during the run: {p}" for p in found]
        time.sleep(1.0)


def _start_all(servers: list[Server]) -> None:
    threads = [threading.Thread(target=s.start) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def run(
    url: str,
    keys: dict[str, str],
    *,
    backend: str,
    logdir: Path,
    clients: int,
    seconds: float,
    interval: float | None = 1.0,
    dashboard_pause: float = 0.0,
) -> ConcurrencyReport:
    """One run on the database at `url`; every process is started and stopped here.

    `interval`: the schedulers run every job that often (loadtest/scheduler_probe.py); None
    runs ``v2v scheduler`` itself, with the production intervals (10 s to 5 min).
    """
    n_api, n_sched = SHAPES[backend]
    run_id = uuid.uuid4().hex[:6]
    servers = [api_server(url, logdir / f"api-{run_id}-{i}.log") for i in range(n_api)]
    scheds: list[Process] = [
        cli_scheduler(url, logdir / f"sched-{run_id}-{i}.log", name=f"s{i}")
        if interval is None
        else scheduler_probe(
            url, logdir / f"sched-{run_id}-{i}.log", name=f"s{i}", interval=interval
        )
        for i in range(n_sched)
    ]
    jobs = "production intervals" if interval is None else f"every job each {interval:g} s"
    kind = "v2v scheduler" if interval is None else "scheduler instance"
    shape = (
        f"{n_api} API processes + {n_sched} {kind}{'s' * (n_sched > 1)} ({jobs}), {clients} clients"
    )
    couriers = max(2, 2 * round(clients * 0.2))
    bookers = max(2, round(clients * 0.2))
    walkers = max(1, round(clients * 0.16))
    dashboards = max(1, clients - couriers - bookers - walkers)
    ledger = Ledger()
    db = Database(url, pool_size=2)
    deadline = Deadline()
    report = ConcurrencyReport(backend, shape, seconds, ledger, invariants.Verdict({}))
    try:
        _start_all(servers)
        for proc in scheds:
            proc.start()
        urls = [s.url for s in servers]
        cases = Cases()
        with Client(urls, ledger, deadline=time.monotonic() + 120) as setup:
            loggers = loggers_in_transit(setup, keys, cases, run=run_id, count=couriers // 2, per=2)
            opens = datetime.now(UTC) + timedelta(days=30)
            prefill(setup, keys, f"{run_id}p", opens, positions(db) - 2)
        ledger.forget_timings()  # the setup is not part of the measured run
        ledger.counts.clear()
        t0 = time.monotonic()
        deadline.at = t0 + seconds
        args = (urls, ledger, deadline)
        threads = [
            spawn(upload, *args, keys["courier"], lg, SIZES, i, offset=i)
            for i, lg in enumerate(loggers)
        ]
        threads += [
            spawn(booker, *args, keys, f"{run_id}b{i}", i, opens, offset=i) for i in range(bookers)
        ]
        threads += [spawn(walker, *args, keys, cases, run_id, offset=i) for i in range(walkers)]
        threads += [
            spawn(dashboard, *args, keys["ncc"], dashboard_pause, offset=i)
            for i in range(dashboards)
        ]
        monitor = threading.Thread(target=_monitor, args=(db, deadline, report), daemon=True)
        monitor.start()
        time.sleep(seconds)
        deadline.end_now()
        report.seconds = time.monotonic() - t0
        for thread in [*threads, monitor]:
            thread.join(timeout=60)
    finally:
        deadline.end_now()
        for proc in scheds:
            proc.stop()
        for server in servers:
            server.stop()
    try:
        report.verdict = invariants.check(db, ledger)
        report.peaks = invariants.peak_loads(db)
    finally:
        db.dispose()
    report.log_trouble = trouble([*(s.log for s in servers if s.log), *(p.log for p in scheds)])
    report.job_runs = sum(line.startswith("RUN ") for p in scheds for line in p.text().splitlines())
    return report


@contextmanager
def _logdir(keep: Path | None, label: str) -> Iterator[Path]:
    if keep is None:
        with workdir(label) as tmp:
            yield tmp
        return
    keep.mkdir(parents=True, exist_ok=True)
    yield keep


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.concurrency", description=__doc__)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--interval",
        type=float,
        default=None,
        help="run every scheduled job this often (s); default: `v2v scheduler` itself",
    )
    parser.add_argument(
        "--dashboard-pause", type=float, default=0.0, help="seconds between a dashboard's polls"
    )
    parser.add_argument("--logs", type=Path, help="keep the server and scheduler logs here")
    args = parser.parse_args(argv)
    ok = True
    for backend in ("sqlite", "postgres") if args.db == "both" else (args.db,):
        with fresh_database(backend) as (url, keys), _logdir(args.logs, "concurrency") as logdir:
            report = run(
                url,
                keys,
                backend=backend,
                logdir=logdir,
                clients=args.clients,
                seconds=args.seconds,
                interval=args.interval,
                dashboard_pause=args.dashboard_pause,
            )
        print("\n".join(report.lines()), flush=True)
        ok = ok and report.ok
    print("concurrency: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
