"""HTTP clients that retry whatever was not acknowledged, and the ledger of what was.

A write counts as acknowledged only when a 2xx answered it. Everything else — a refused
connection while the server restarts, a connection cut by SIGKILL mid-request, a 5xx — is
sent again, unchanged (same body, same Idempotency-Key), until acknowledged or the run ends.
"""

from __future__ import annotations

import gc
import itertools
import json
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

RETRY_PAUSE_S = 0.05


class Deadline:
    """When a run ends; it may be set (or moved) while the clients are running."""

    def __init__(self, at: float = float("inf")) -> None:
        self.at = at

    def passed(self) -> bool:
        return time.monotonic() >= self.at

    def end_now(self) -> None:
        self.at = time.monotonic()


class Abandon(Exception):  # noqa: N818 - a control-flow signal, not an error report
    """The run ended, or the server refused a step for good: this client stops its work."""


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


@contextmanager
def collector_paused() -> Iterator[None]:
    """This process's cyclic garbage collector off for a measured window, and run after it.

    A load generator is one Python process of many client threads: a full collection of
    its own (169 ms in one run of the mix, walking all the ledger holds) paused every client
    at once, and every call in flight took the pause into its latency, as if the server had
    stalled. The clients' garbage in cycles (httpx's, a few hundred thousand objects over a
    minute) waits for the window's end.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


@dataclass
class Ledger:
    """What every client sent and what the servers acknowledged (thread-safe)."""

    readings: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    events: set[tuple[str, str, int]] = field(default_factory=set)  # case, type, cycle
    custody: set[tuple[str, str]] = field(default_factory=set)  # shipment, action
    cases: set[str] = field(default_factory=set)
    shipments: set[str] = field(default_factory=set)
    # Every creating call sent, acknowledged or not: the database may hold at most these.
    attempted: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    # When each of those calls was answered (time.monotonic()), in the same order.
    answered: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: list[str] = field(default_factory=list)  # 5xx and unexpected refusals
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counts[name] += n

    def error(self, message: str) -> None:
        with self.lock:
            if len(self.errors) < 1000:
                self.errors.append(message)
            self.counts["errors"] += 1

    def timing(self, op: str, seconds: float) -> None:
        now = time.monotonic()
        with self.lock:
            self.latencies[op].append(seconds)
            self.answered[op].append(now)

    def forget_timings(self) -> None:
        """Drop every latency recorded so far (a setup's, before the measured run)."""
        with self.lock:
            self.latencies.clear()
            self.answered.clear()

    def latencies_after(self, op: str, start: float) -> list[float]:
        """The latencies of the calls of ``op`` sent at or after ``start`` (monotonic)."""
        return [
            latency
            for latency, at in zip(
                self.latencies.get(op, []), self.answered.get(op, []), strict=True
            )
            if at - latency >= start
        ]

    def acknowledged(self) -> dict[str, int]:
        return {
            "readings": sum(len(ts) for ts in self.readings.values()),
            "events": len(self.events),
            "custody scans": len(self.custody),
            "shipments": len(self.shipments),
            "cases": len(self.cases),
        }


class Client:
    """One thread's keep-alive client over one or more servers (round robin per call)."""

    def __init__(
        self,
        urls: Sequence[str],
        ledger: Ledger,
        *,
        deadline: Deadline | float,
        retry: bool = True,
        timeout: float = 30.0,
        offset: int = 0,
    ) -> None:
        self.urls = list(urls)
        self.ledger = ledger
        self.deadline = deadline if isinstance(deadline, Deadline) else Deadline(deadline)
        self.retry = retry
        self._next = itertools.cycle(range(len(self.urls)))
        for _ in range(offset % len(self.urls)):
            next(self._next)
        self.http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def expired(self) -> bool:
        return self.deadline.passed()

    def call(
        self,
        op: str,
        method: str,
        path: str,
        key: str,
        body: Any = None,
        *,
        idempotency_key: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """Send until a response other than 5xx arrives; Abandon when the run is over."""
        headers = {"Authorization": f"Bearer {key}"}
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        attempt = 0
        while True:
            if self.expired():
                raise Abandon(f"{op}: run over")
            if attempt:
                self.ledger.count("resends")
                if attempt == 1:
                    self.ledger.count("requests retried")
                time.sleep(RETRY_PAUSE_S)
            attempt += 1
            url = self.urls[next(self._next)] + path
            self.ledger.count("sent")
            t0 = time.perf_counter()
            try:
                response = self.http.request(
                    method, url, content=content, headers=headers, params=params
                )
            except httpx.TransportError as exc:
                # A refused connection never reached a server; a timeout waited `timeout` s
                # for an answer; any other error dropped the connection mid-request (in
                # flight at a kill, or kept alive across one).
                if isinstance(exc, httpx.ConnectError):
                    self.ledger.count("refused connections")
                elif isinstance(exc, httpx.TimeoutException):
                    self.ledger.count("timeouts")
                    self.ledger.error(f"{op}: no answer within {self.http.timeout.read} s")
                else:
                    self.ledger.count("dropped mid-request")
                if not self.retry:
                    self.ledger.error(f"{op}: {type(exc).__name__}: {exc}")
                    raise Abandon(op) from exc
                continue
            elapsed = time.perf_counter() - t0
            if response.status_code >= 500:
                self.ledger.error(f"{op}: {response.status_code} {response.text[:300]}")
                if not self.retry:
                    raise Abandon(op)
                continue
            self.ledger.timing(op, elapsed)
            if response.headers.get("Idempotent-Replayed") == "true":
                self.ledger.count("replayed")
            return response

    def expect(self, response: httpx.Response, op: str, *statuses: int) -> Any:
        """The JSON body of an expected response; anything else is recorded and abandons."""
        if response.status_code in statuses:
            return response.json()
        self.ledger.error(f"{op}: unexpected {response.status_code} {response.text[:300]}")
        raise Abandon(op)
