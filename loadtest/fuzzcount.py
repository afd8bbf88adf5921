"""pytest plugin for ``make fuzz``: count the requests the fuzz test really sent.

``pytest -p loadtest.fuzzcount tests/reliability/test_fuzz.py``

While each test runs, every ``httpx.Client.send`` (the TestClient the fuzz test calls is an
``httpx.Client``) is counted against the test's backend and operation. The terminal summary
prints the totals and the failed test cases; with ``V2V_FUZZ_MIN_REQUESTS`` set, a session
that sent fewer requests fails. Works with and without pytest-xdist (workers report their
counts to the controller).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import httpx
import pytest

COUNTS: Counter[str] = Counter()  # "backend operation" -> requests
FAILED: list[str] = []
_SEND = httpx.Client.send


def _key(item: pytest.Item) -> str:
    # test_x[POST /api/v1/readings][sqlite] -> "sqlite POST /api/v1/readings"
    parts = item.nodeid.split("[")
    backend = parts[-1].rstrip("]") if len(parts) > 2 else "?"
    operation = parts[1].rstrip("]") if len(parts) > 1 else item.name
    return f"{backend} {operation}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    sent = 0

    def counting(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        nonlocal sent
        sent += 1
        return _SEND(self, request, **kwargs)

    httpx.Client.send = counting  # type: ignore[method-assign]
    try:
        yield
    finally:
        httpx.Client.send = _SEND  # type: ignore[method-assign]
        COUNTS[_key(item)] += sent


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        FAILED.append(f"{report.nodeid} ({report.when})")


def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: add a worker's counts."""
    COUNTS.update(json.loads(node.workeroutput.get("fuzzcount", "{}")))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workeroutput"):  # an xdist worker: hand the counts over
        config.workeroutput["fuzzcount"] = json.dumps(COUNTS)
        return
    minimum = int(os.environ.get("V2V_FUZZ_MIN_REQUESTS", "0"))
    if sum(COUNTS.values()) < minimum and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    if hasattr(config, "workeroutput"):
        return
    per_backend: Counter[str] = Counter()
    for key, n in COUNTS.items():
        per_backend[key.split(" ", 1)[0]] += n
    total = sum(COUNTS.values())
    operations = len({key.split(" ", 1)[1] for key in COUNTS})
    write = terminalreporter.write_line
    terminalreporter.section("fuzz requests")
    write(
        f"fuzz: {total:,} requests sent over {operations} operations ("
        + ", ".join(f"{b} {n:,}" for b, n in sorted(per_backend.items()))
        + f"); {len(FAILED)} failed test cases"
    )
    fewest = sorted(COUNTS.items(), key=lambda kv: kv[1])[:5]
    write("fewest requests: " + ", ".join(f"{k} {n}" for k, n in fewest))
    for failure in FAILED[:50]:
        write(f"FAILED {failure}")
    minimum = int(os.environ.get("V2V_FUZZ_MIN_REQUESTS", "0"))
    if total < minimum:
        write(f"fuzz: fewer requests than V2V_FUZZ_MIN_REQUESTS={minimum}: FAIL")
