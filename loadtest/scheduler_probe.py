"""A scheduler instance whose job runs can be counted from outside.

``python -m loadtest.scheduler_probe --name s1 --interval 1``

The production ``Scheduler`` (APScheduler wiring and the PostgreSQL advisory-lock leader)
with the production jobs of ``default_jobs``, every one at `interval` seconds instead of its
10-300 s, so that a test sees many ticks in a few seconds. Each run the leader makes prints
``RUN <job> <name> <epoch seconds>`` before the job and ``END ...`` after it; followers
print nothing. ``v2v scheduler`` is this with the production intervals and no printing.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from datetime import datetime

import httpx

from app.clock import system_clock
from app.config import get_settings
from app.db import Database
from app.scheduler import Job, Scheduler, default_jobs


def traced(name: str, who: str, job: Job) -> Job:
    def run(db: Database, now: datetime) -> None:
        print(f"RUN {name} {who} {time.time():.3f}", flush=True)
        try:
            job(db, now)
        finally:
            print(f"END {name} {who} {time.time():.3f}", flush=True)

    return run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.scheduler_probe")
    parser.add_argument("--name", required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    settings = get_settings()
    db = Database(
        settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms, pool_size=2
    )
    client = httpx.Client(timeout=5.0)
    jobs = {
        name: (traced(name, args.name, job), args.interval)
        for name, (job, _) in default_jobs(client).items()
    }
    scheduler = Scheduler(db, clock=system_clock, jobs=jobs, client=client)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    scheduler.start()
    print(f"READY {args.name} {time.time():.3f}", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        scheduler.shutdown()
        db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
