"""The scale-out shape, in short runs: several processes on one database.

1. Three scheduler instances on PostgreSQL (the production Scheduler and jobs, each job every
   second; loadtest/scheduler_probe.py prints every run): each job runs once per tick, all
   by the leader, and SIGKILLing the leader hands the lock on within one interval.
2. Several API processes and schedulers on one database (two and one on SQLite, three and
   three on PostgreSQL) under a dozen concurrent clients: no 5xx, lock or transport error
   reaches a client, no two unresolved alerts share a dedupe key, no factory is booked
   beyond its positions (loadtest/concurrency.py; ``make load`` runs 50 clients for 60 s).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest import concurrency, failover
from tests.conftest import TEMPLATE_KEYS, pg_copy

pytestmark = pytest.mark.slow

INTERVAL_S = 1.0


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    with pg_copy(pg_template) as url:
        yield url


@pytest.mark.postgres
def test_three_schedulers_run_each_job_once_per_tick_and_fail_over(
    pg_url: str, tmp_path: Path
) -> None:
    report = failover.probe(pg_url, tmp_path, instances=3, interval=INTERVAL_S)
    print("\n".join(report.lines()))
    assert report.notes == []
    assert report.before is not None and report.after is not None
    for window, who in ((report.before, report.leader), (report.after, report.successor)):
        ticks = (window.end - window.start) / INTERVAL_S
        per_job = window.per_job()
        assert len(per_job) == 12  # every job of default_jobs ran
        for job, runs in per_job.items():
            assert set(runs) == {who}, job  # the leader alone
            # At most once per tick; a tick APScheduler misses on a busy machine runs nothing.
            assert 1 <= runs[who] <= ticks + 1, (job, runs, ticks)
        assert window.closest_runs() > INTERVAL_S / 2  # never twice in one tick
    assert report.successor != report.leader
    assert report.failover_s is not None
    assert report.failover_s <= INTERVAL_S + failover.SLACK_S


def test_api_processes_and_schedulers_share_one_database(db_url: str, tmp_path: Path) -> None:
    backend = "postgres" if db_url.startswith("postgres") else "sqlite"
    report = concurrency.run(
        db_url,
        TEMPLATE_KEYS[backend],
        backend=backend,
        logdir=tmp_path,
        clients=12,
        seconds=8,
        interval=INTERVAL_S,
        dashboard_pause=0.25,
    )
    print("\n".join(report.lines()))
    assert report.job_runs > 0 and report.samples > 0
    assert report.ledger.counts["factory full (409)"] > 0  # bookers raced for the last slots
    assert sum(len(v) for v in report.ledger.latencies.values()) > 100
    assert report.transport_errors == 0
    assert report.sampled_problems == []  # duplicate open alerts, overbooked factories
    assert report.verdict.problems == []
    assert sum(report.verdict.lost.values()) + sum(report.verdict.duplicated.values()) == 0
    # Nothing in any process's log: no error, no deadlock, no group of ingest units failed.
    assert report.log_trouble == []
    assert report.ledger.errors == []
