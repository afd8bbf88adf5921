"""P2: single-reading POSTs per second vs a bare FastAPI echo POST in the same server.

Both endpoints live in one uvicorn process (bench/server.py adds ``POST /bench/echo`` to the
app) and receive the same kind of body: ``{"readings": [one reading]}``. Measured with one
sequential client, then with 4 concurrent ones (each its own logger and shipment, so every
logger's clock still moves forward); each trial runs for a fixed time.

With one client, the note also gives the floor of any durable write: ``POST /bench/durable``
(the body committed as one row, nothing else) against the same echo. A single reading can
come no closer to the echo than that.
"""

from __future__ import annotations

import httpx

from bench.harness import (
    BenchError,
    Figure,
    Step,
    median,
    prepare,
    ratio_figure,
    workdir,
)
from bench.p1_sqlite_ingest import ingest_call
from bench.serving import Call, drive, serve
from bench.world import Logger, build_world

ID = "p2"
TITLE = "P2 single-reading POSTs"
CLIENTS = 4
REPS = 5
SECONDS = 2.0
# Issue #16 raised the one-client goal from 0.5x to 0.75x of the echo; 4 clients keep 0.5x.
GOALS = {"1": 0.75, "n": 0.5}
WARM_UP = 200
# Bodies are serialised before the clock starts; a trial ends early if a client runs out.
SEQUENTIAL_BODIES = 3_000
CONCURRENT_BODIES = 1_500
STEPS = 3 + REPS
TRIALS = ("echo 1", "ingest 1", "durable 1", "echo n", "ingest n")


def _echo_check(response: httpx.Response) -> None:
    if response.status_code != 200:
        raise BenchError(f"POST /bench/echo: {response.status_code} {response.text[:300]}")


def _ingest_calls(logger: Logger, count: int) -> list[Call]:
    return [ingest_call(logger.batch(1)) for _ in range(count)]


def _echo_calls(logger: Logger, count: int, path: str = "/bench/echo") -> list[Call]:
    sample = logger.batch(1)  # a reading like the others; the echo stores nothing
    call = Call(path, sample.body, logger.headers, _echo_check)
    return [call] * count


def run(step: Step) -> list[Figure]:
    with workdir(ID) as tmp:
        step("migrate, seed, 4 shipments in transit")
        url = f"sqlite:///{tmp / 'app.sqlite3'}"
        prepare(url)
        loggers = build_world(url, loggers=CLIENTS, label="P2").loggers
        step("start uvicorn on bench.server:app")
        with serve(ID, url, tmp, target="bench.server:app") as server:
            step("warm-up")
            drive(server, [_echo_calls(loggers[0], WARM_UP)])
            drive(server, [_ingest_calls(loggers[0], WARM_UP)])
            rates: dict[str, list[float]] = {name: [] for name in TRIALS}
            cpu: dict[str, list[float]] = {name: [] for name in TRIALS}  # seconds per request
            for rep in range(REPS):
                step(f"trials {rep + 1}/{REPS}")
                trials = {
                    "echo 1": [_echo_calls(loggers[0], SEQUENTIAL_BODIES * 4)],
                    "ingest 1": [_ingest_calls(loggers[0], SEQUENTIAL_BODIES)],
                    "durable 1": [_echo_calls(loggers[0], SEQUENTIAL_BODIES * 2, "/bench/durable")],
                    "echo n": [_echo_calls(g, CONCURRENT_BODIES * 4) for g in loggers],
                    "ingest n": [_ingest_calls(g, CONCURRENT_BODIES) for g in loggers],
                }
                for name in TRIALS if rep % 2 == 0 else reversed(TRIALS):
                    c0 = server.cpu_seconds()
                    result = drive(server, trials[name], seconds=SECONDS)
                    cpu[name].append((server.cpu_seconds() - c0) / len(result.latencies))
                    rates[name].append(result.rate)

    def figure(clients: str, suffix: str, label: str) -> Figure:
        ours, echo = f"ingest {clients}", f"echo {clients}"
        floor = ""
        if clients == "1":
            durable = median(rates["durable 1"]) / median(rates[echo])
            floor = f"; the floor, a bare durable one-row write: {durable:.2f}× of the echo"
        return ratio_figure(
            f"P2 {suffix}",
            f"1-reading POSTs vs bare echo, {label}",
            median(rates[ours]),
            median(rates[echo]),
            "req/s",
            at_least=GOALS[clients],
            note=(
                f"server CPU per request: reading {1000 * median(cpu[ours]):.2f} ms, "
                f"echo {1000 * median(cpu[echo]):.2f} ms{floor}"
            ),
        )

    return [figure("1", "seq", "1 client"), figure("n", f"×{CLIENTS}", f"{CLIENTS} clients")]
