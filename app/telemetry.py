"""Prometheus metrics, in a registry of our own so tests can build many apps."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from app import gctune

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "v2v_http_requests_total",
    "HTTP requests by method, route template and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "v2v_http_request_duration_seconds",
    "HTTP request latency by route template.",
    ["method", "route"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
READINGS = Counter("v2v_readings_ingested_total", "Temperature readings stored.", registry=REGISTRY)
JOB_RUNS = Counter(
    "v2v_job_runs_total",
    "Scheduled job runs by job and outcome.",
    ["job", "outcome"],
    registry=REGISTRY,
)

# SQLite's one writer lock (``app.sqlite_gate``): how long writers wait for it and hold it,
# by writer ("ingest" for the ingest writer's turns, "other" for requests, jobs and the CLI).
# A lock held most of the time is what makes everyone wait; these show it.
_LOCK_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
WRITER_WAIT = Histogram(
    "v2v_sqlite_writer_wait_seconds",
    "Time a SQLite writer waited for the process's writer lock, by writer.",
    ["writer"],
    registry=REGISTRY,
    buckets=_LOCK_BUCKETS,
)
WRITER_HOLD = Histogram(
    "v2v_sqlite_writer_hold_seconds",
    "Time a SQLite writer held the process's writer lock, by writer.",
    ["writer"],
    registry=REGISTRY,
    buckets=_LOCK_BUCKETS,
)

# The cyclic collector's pauses (app/gctune.py counts them from inside each collection).
REGISTRY.register(gctune.PAUSES)
