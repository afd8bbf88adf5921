"""Server CPU per call, one client at a time: what each kind of call costs without contention.

``python -m loadtest.percall [--db sqlite|postgres] [--seconds 8] [--rounds 1]``

The mix's figures (``python -m loadtest.load``) move with everything else running beside
the server; a change that saves a millisecond of CPU per journey write is lost in that
noise. This runs one client alone against one uvicorn process (``bench.server:app``) for
each kind of call in turn and divides the server's CPU (all threads, from /proc) by the
calls answered. It also reports the CPU of the server's main thread, the event loop, where
every request's parsing, routing and answer happen.

To compare two commits, run this from each checkout in turn (``git worktree add``),
interleaved, and compare medians: this machine's speed drifts by half over an hour.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.harness import workdir
from bench.serving import Server, serve
from loadtest.actors import Cases, Logger, loggers_in_transit, upload, walker
from loadtest.client import Abandon, Client, Deadline, Ledger
from loadtest.cluster import fresh_database
from loadtest.load import echo


@dataclass(frozen=True)
class PerCall:
    name: str
    calls: int
    cpu_ms: float  # server CPU per call, all threads
    loop_ms: float  # of it, the main thread's (the event loop)
    latency_ms: float  # median, as the client saw it


def _one(
    server: Server, name: str, seconds: float, work: Callable[[Client, Deadline], None]
) -> PerCall:
    ledger = Ledger()
    deadline = Deadline()
    with Client([server.base], ledger, deadline=deadline, retry=False) as client:
        cpu0 = server.cpu_seconds()
        loop0 = server.thread_cpu_seconds(server.pid)
        deadline.at = time.monotonic() + seconds
        try:
            work(client, deadline)
        except Abandon:
            pass
        cpu = server.cpu_seconds() - cpu0
        loop = server.thread_cpu_seconds(server.pid) - loop0
    if ledger.errors:
        raise RuntimeError(f"{name}: {ledger.errors[0]}")
    latencies = [x for values in ledger.latencies.values() for x in values]
    calls = len(latencies)
    if not calls:
        raise RuntimeError(f"{name}: no call answered in {seconds} s")
    return PerCall(
        name, calls, 1000 * cpu / calls, 1000 * loop / calls, 1000 * statistics.median(latencies)
    )


KINDS = ("journey write", "single reading", "100-reading batch", "echo")


def measure(
    url: str, keys: dict[str, str], seconds: float, step: Callable[[str], None] = print
) -> list[PerCall]:
    """One server; a journey walker, single readings, 100-reading batches, then echo
    (``step`` is told each kind as it starts)."""
    os.environ["V2V_RATE_LIMIT_INGEST_PER_MIN"] = "0"
    run = uuid.uuid4().hex[:6]
    cases = Cases()
    target = "bench.server:app"
    with workdir("percall") as logdir, serve("percall", url, logdir, target=target) as s:
        with Client([s.base], Ledger(), deadline=time.monotonic() + 120) as setup:
            # The first logger runs an excursion for 15 minutes of every hour, the second none.
            batch, single = loggers_in_transit(setup, keys, cases, run=run, count=2)

        def walk(client: Client, _: Deadline) -> None:
            walker(client, keys, cases, run)

        def readings(logger: Logger, size: int) -> Callable[[Client, Deadline], None]:
            return lambda client, _: upload(client, keys["courier"], logger, (size,), 0)

        work: list[Callable[[Client, Deadline], None]] = [
            walk,
            readings(single, 1),
            readings(batch, 100),
            lambda client, _: echo(client, keys["courier"]),
        ]
        out = []
        for name, fn in zip(KINDS, work, strict=True):
            step(name)
            out.append(_one(s, name, seconds, fn))
        return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.percall", description=__doc__)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--seconds", type=float, default=8.0, help="per kind of call")
    parser.add_argument("--rounds", type=int, default=1, help="fresh server each; medians")
    args = parser.parse_args(argv)
    rounds: list[list[PerCall]] = []
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with progress:
        task = progress.add_task("fresh database", total=args.rounds * len(KINDS))
        with fresh_database(args.db) as (url, keys):
            for r in range(args.rounds):

                def step(name: str, r: int = r) -> None:
                    done = r * len(KINDS) + KINDS.index(name)
                    label = f"round {r + 1}/{args.rounds}: {name}, {args.seconds:g} s"
                    progress.update(task, completed=done, description=label)

                rounds.append(measure(url, keys, args.seconds, step))
    print(f"server CPU per call, one client alone, {args.db}, {args.rounds} round(s), medians")
    print(f"  {'call':<20} {'calls':>7} {'CPU ms':>8} {'loop ms':>8} {'p50 ms':>8}")
    for i, first in enumerate(rounds[0]):
        column = [r[i] for r in rounds]
        print(
            f"  {first.name:<20} {sum(c.calls for c in column):>7,} "
            f"{statistics.median(c.cpu_ms for c in column):>8.2f} "
            f"{statistics.median(c.loop_ms for c in column):>8.2f} "
            f"{statistics.median(c.latency_ms for c in column):>8.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
