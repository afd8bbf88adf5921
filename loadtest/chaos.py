"""Crash safety: ingest and journeys from several clients while the server is SIGKILLed.

``python -m loadtest.chaos [--db sqlite|postgres|both] [--kills K] [--uptime S]``

Couriers post batches and single readings; walkers take cases through their journeys with
an Idempotency-Key on every event. The API process (uvicorn, tests/servers.py) is killed
with SIGKILL at spread-out instants and restarted at once; clients retry everything not
acknowledged. Afterwards loadtest/invariants.py compares the database with what was
acknowledged. Exit status 1 when anything was lost, duplicated or unexplained.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func
from sqlmodel import select

from app.db import Database
from bench.harness import workdir
from loadtest import invariants
from loadtest.actors import Cases, loggers_in_transit, spawn, upload, walker
from loadtest.client import Client, Deadline, Ledger
from loadtest.cluster import api_server, fresh_database, trouble
from models.case import Case

SIZES = (1, 1, 20, 100, 250, 500)  # readings per call: single readings and batches


@dataclass
class ChaosReport:
    backend: str
    seconds: float
    kills: int
    clients: str
    verdict: invariants.Verdict
    ledger: Ledger
    restart_s: list[float] = field(default_factory=list)
    log_trouble: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verdict.ok and not self.ledger.errors and not self.log_trouble

    def lines(self) -> list[str]:
        c, v = self.ledger.counts, self.verdict
        restart = statistics.median(self.restart_s) if self.restart_s else 0.0
        acked = ", ".join(f"{k} {n:,}" for k, n in v.acknowledged.items())
        return [
            f"chaos {self.backend}: {self.seconds:.0f} s, {self.kills} SIGKILLs "
            f"(back up in {restart:.1f} s median), {self.clients}",
            f"  acknowledged   {acked}",
            f"  retried        {c['requests retried']:,} requests until acknowledged or the "
            f"end ({c['dropped mid-request']:,} connections dropped mid-request, "
            f"{c['refused connections']:,} refused while down; {c['resends']:,} resends in "
            f"{c['sent']:,} sends)",
            f"  replayed       {c['replayed']:,} events answered from their Idempotency-Key, "
            f"{c['readings answered as duplicates']:,} resent readings counted as duplicates",
            f"  lost           {sum(v.lost.values())} ({_nonzero(v.lost)})",
            f"  duplicated     {sum(v.duplicated.values())} ({_nonzero(v.duplicated)})",
            f"  audit chain    {'verifies' if not _broken(v) else 'BROKEN'}, "
            f"{v.audit_entries:,} entries",
            f"  case states    {_unexplained(v)} not explained by their milestones",
            f"  errors         {len(self.ledger.errors)} (5xx or refusals), "
            f"{len(self.log_trouble)} server log lines with a lock error or traceback",
            *[f"  ! {p}" for p in v.problems[:20]],
            *[f"  ! {e}" for e in self.ledger.errors[:20]],
            *[f"  ! {t}" for t in self.log_trouble[:20]],
        ]


def _nonzero(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in counts.items() if n) or "none"


def _broken(v: invariants.Verdict) -> bool:
    return any(p.startswith("audit") or "audit entries" in p for p in v.problems)


def _unexplained(v: invariants.Verdict) -> int:
    return sum(1 for p in v.problems if "milestones" in p and "give" in p)


def run(
    url: str,
    keys: dict[str, str],
    *,
    logdir: Path,
    backend: str,
    kills: int,
    uptime: float,
    tail: float = 2.0,
    uploaders: int = 3,
    walkers: int = 3,
    seed: int = 1,
) -> ChaosReport:
    """One chaos run against the database at `url`; the server is started and stopped here.

    Between kills the server serves for `uptime` seconds on average (0.5-1.5×, at random);
    after the last restart the clients have `tail` seconds to catch up.
    """
    rng = random.Random(seed)  # noqa: S311 - kill timing, not secrets
    run_id = uuid.uuid4().hex[:6]
    log = logdir / f"chaos-{backend}-{run_id}.log"
    server = api_server(url, log)
    ledger = Ledger()
    db = Database(url, pool_size=2)
    restarts: list[float] = []
    deadline = Deadline()
    try:
        with db.session() as session:
            baseline = session.exec(select(func.count()).select_from(Case)).one()
        server.start()
        cases = Cases()
        with Client([server.url], ledger, deadline=time.monotonic() + 120) as setup:
            loggers = loggers_in_transit(setup, keys, cases, run=run_id, count=uploaders)
        t0 = time.monotonic()
        urls = [server.url]
        threads = [
            spawn(upload, urls, ledger, deadline, keys["courier"], logger, SIZES, i)
            for i, logger in enumerate(loggers)
        ]
        threads += [
            spawn(walker, urls, ledger, deadline, keys, cases, run_id) for _ in range(walkers)
        ]
        for _ in range(kills):
            time.sleep(uptime * rng.uniform(0.5, 1.5))
            server.kill()
            time.sleep(rng.uniform(0.0, 0.3))
            started = time.monotonic()
            server.start()
            restarts.append(time.monotonic() - started)
        time.sleep(tail)
        deadline.end_now()
        elapsed = time.monotonic() - t0
        for thread in threads:
            thread.join(timeout=35)
    finally:
        deadline.end_now()
        server.stop()
    try:
        verdict = invariants.check(db, ledger, baseline_cases=baseline)
    finally:
        db.dispose()
    clients = f"{uploaders} couriers + {walkers} journey walkers"
    return ChaosReport(backend, elapsed, kills, clients, verdict, ledger, restarts, trouble([log]))


@contextmanager
def _logdir(keep: Path | None, label: str) -> Iterator[Path]:
    if keep is None:
        with workdir(label) as tmp:
            yield tmp
        return
    keep.mkdir(parents=True, exist_ok=True)
    yield keep


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.chaos", description=__doc__)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--uptime", type=float, default=4.0, help="mean seconds between kills")
    parser.add_argument("--uploaders", type=int, default=4)
    parser.add_argument("--walkers", type=int, default=4)
    parser.add_argument("--logs", type=Path, help="keep the server and scheduler logs here")
    args = parser.parse_args(argv)
    backends = ("sqlite", "postgres") if args.db == "both" else (args.db,)
    ok = True
    for backend in backends:
        with fresh_database(backend) as (url, keys), _logdir(args.logs, "chaos") as logdir:
            report = run(
                url,
                keys,
                logdir=logdir,
                backend=backend,
                kills=args.kills,
                uptime=args.uptime,
                uploaders=args.uploaders,
                walkers=args.walkers,
            )
            print("\n".join(report.lines()), flush=True)
            ok = ok and report.ok
    print("chaos: " + ("PASS — nothing lost, nothing duplicated" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
