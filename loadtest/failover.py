"""Scheduler leadership among instances on one PostgreSQL database.

``python -m loadtest.failover [--instances 3] [--interval 1] [--cli]``

Probe mode (default): `instances` processes of loadtest/scheduler_probe.py — the production
Scheduler and jobs, each job every `interval` seconds — print every run they make. Over a
window, each job must run once per tick, all runs by one instance (the leader). The leader
is then SIGKILLed; the failover time is from the kill to the first run by another instance,
and must stay within one interval (plus scheduling slack).

``--cli``: the same with ``v2v scheduler`` itself (production intervals, shortest 10 s). Its
runs are not printed, so the leader is read from ``pg_locks`` (connections are named with
PGAPPNAME) and the failover time is from the kill until another instance holds the lock.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from app.db import Database
from app.scheduler import LEADER_LOCK_KEY
from bench.harness import workdir
from loadtest.cluster import Process, cli_scheduler, fresh_database, leader, scheduler_probe
from loadtest.cluster import wait_until as _wait

CLI_INTERVAL_S = 10.0  # the shortest interval in app/scheduler.py default_jobs (reevaluate)
SLACK_S = 1.0  # APScheduler's own timing and a loaded machine's


@dataclass(frozen=True)
class JobRun:
    job: str
    who: str
    at: float


@dataclass
class Window:
    """The runs seen between two instants."""

    start: float
    end: float
    runs: list[JobRun]

    def per_job(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = defaultdict(Counter)
        for r in self.runs:
            out[r.job][r.who] += 1
        return out

    def closest_runs(self) -> float:
        """The shortest gap between two runs of one job (two runs in a tick would be ~0)."""
        gaps = [float("inf")]
        by_job: dict[str, list[float]] = defaultdict(list)
        for r in self.runs:
            by_job[r.job].append(r.at)
        for times in by_job.values():
            times.sort()
            gaps += [b - a for a, b in zip(times, times[1:], strict=False)]
        return min(gaps)


@dataclass
class FailoverReport:
    mode: str
    instances: int
    interval: float
    before: Window | None = None
    after: Window | None = None
    leader: str = ""
    successor: str = ""
    failover_s: float | None = None
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            f"failover ({self.mode}): {self.instances} scheduler instances on PostgreSQL, "
            f"job interval {self.interval:g} s"
        ]
        for label, window in (("before the kill", self.before), ("after the kill", self.after)):
            if window is None:
                continue
            ticks = (window.end - window.start) / self.interval
            runs = ", ".join(
                f"{job} {sum(c.values())}" + ("" if len(c) == 1 else f" by {len(c)} instances")
                for job, c in sorted(window.per_job().items())
            )
            out.append(
                f"  {label}: {window.end - window.start:.1f} s ≈ {ticks:.1f} ticks; runs per job: "
                f"{runs}; closest two runs of one job {window.closest_runs():.2f} s apart"
            )
        handover = "none" if self.failover_s is None else f"{self.failover_s:.2f} s"
        out.append(f"  leader {self.leader} SIGKILLed; {self.successor} took over in {handover}")
        return out + [f"  ! {n}" for n in self.notes]


def runs_of(procs: dict[str, Process]) -> list[JobRun]:
    out = []
    for who, proc in procs.items():
        for line in proc.text().splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[0] == "RUN":
                out.append(JobRun(parts[1], who, float(parts[3])))
    return out


def probe(url: str, logdir: Path, *, instances: int = 3, interval: float = 1.0) -> FailoverReport:
    """Count runs per tick before and after the leader is SIGKILLed; measure the handover."""
    report = FailoverReport("scheduler probe", instances, interval)
    procs = {
        f"sched-{i}": scheduler_probe(
            url, logdir / f"sched-{i}.log", name=f"sched-{i}", interval=interval
        )
        for i in range(instances)
    }
    try:
        for proc in procs.values():
            proc.start()
        if _wait(lambda: all("READY" in p.text() for p in procs.values()), 60) is None:
            report.notes.append("instances did not start")
            return report
        if _wait(lambda: runs_of(procs), 10 * interval + 10) is None:
            report.notes.append("no instance ever ran a job")
            return report
        w0 = time.time() + interval  # skip the first, partial tick
        time.sleep(interval * 5)
        w1 = time.time()
        report.before = Window(w0, w1, [r for r in runs_of(procs) if w0 <= r.at < w1])
        leaders = {r.who for r in report.before.runs}
        report.leader = ",".join(sorted(leaders))
        if len(leaders) != 1:
            report.notes.append(f"runs by {len(leaders)} instances in one window")
            return report
        killed = time.time()
        procs[report.leader].kill()

        # Another instance's runs: the killed one may have printed a last run as it died,
        # and what it printed may not be there on a second read.
        def taken_over() -> list[JobRun]:
            return [r for r in runs_of(procs) if r.at > killed and r.who != report.leader]

        if _wait(taken_over, 3 * interval + 10) is None or not (runs := taken_over()):
            report.notes.append("no instance took over")
            return report
        first = min(runs, key=lambda r: r.at)
        report.successor, report.failover_s = first.who, first.at - killed
        a0 = first.at + interval
        time.sleep(max(0.0, a0 + interval * 4 - time.time()))
        a1 = time.time()
        report.after = Window(a0, a1, [r for r in runs_of(procs) if a0 <= r.at < a1])
    finally:
        for proc in procs.values():
            proc.stop()
    return report


def cli(url: str, logdir: Path, *, instances: int = 3) -> FailoverReport:
    """``v2v scheduler`` processes: the lock holder from pg_locks, killed, and its successor."""
    report = FailoverReport("v2v scheduler", instances, CLI_INTERVAL_S)
    procs = {
        f"sched-{i}": cli_scheduler(url, logdir / f"cli-{i}.log", name=f"sched-{i}")
        for i in range(instances)
    }
    db = Database(url, pool_size=1)
    try:
        for proc in procs.values():
            proc.start()
        if _wait(lambda: leader(db, LEADER_LOCK_KEY), CLI_INTERVAL_S * 3 + 30, 0.2) is None:
            report.notes.append("no instance took the leader lock")
            return report
        report.leader = leader(db, LEADER_LOCK_KEY) or ""
        killed = time.monotonic()
        procs[report.leader].kill()
        took = _wait(lambda: leader(db, LEADER_LOCK_KEY) not in (None, report.leader), 60, 0.05)
        if took is None:
            report.notes.append("no instance took over within 60 s")
            return report
        report.failover_s = time.monotonic() - killed
        report.successor = leader(db, LEADER_LOCK_KEY) or ""
    finally:
        for proc in procs.values():
            proc.stop()
        db.dispose()
    return report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.failover", description=__doc__)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--cli", action="store_true", help="run `v2v scheduler` itself")
    args = parser.parse_args(argv)
    with fresh_database("postgres") as (url, _), workdir("failover") as logdir:
        if args.cli:
            report = cli(url, logdir, instances=args.instances)
        else:
            report = probe(url, logdir, instances=args.instances, interval=args.interval)
    print("\n".join(report.lines()), flush=True)
    limit = report.interval + SLACK_S
    ok = not report.notes and report.failover_s is not None and report.failover_s <= limit
    print(
        f"failover: {'PASS' if ok else 'FAIL'} (limit one interval + {SLACK_S:g} s = {limit:g} s)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
