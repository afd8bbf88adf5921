"""Server CPU per call, one client at a time: what each kind of call costs without contention.

``python -m loadtest.percall [--db sqlite|postgres] [--seconds 8] [--rounds 1]``

The mix's figures (``python -m loadtest.load``) move with everything else running beside
the server; a change that saves a millisecond of CPU per journey write is lost in that
noise. This runs one client alone against one uvicorn process (``bench.server:app``) for
each kind of call in turn and divides the server's CPU (all threads, from /proc) by the
calls answered. It also reports the CPU of the server's main thread, the event loop, where
every request's parsing, routing and answer happen.

To compare two commits: ``--against DIR`` (another checkout, e.g. ``git worktree add
/tmp/base main``) serves that checkout's code beside this one's, each with a database and a
client of its own, and runs every kind of call on both at the same time: both servers see
the same machine, whose speed drifts by half over an hour (run one after the other, two
checkouts' figures differed by more than the change being measured). It prints each side's
CPU per call and their ratio, the median over rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

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


Work = Callable[[Client, Deadline], None]


def _works(server: Server, keys: dict[str, str]) -> list[Work]:
    """A journey walker, single readings, 100-reading batches and echo, against ``server``
    (its two loggers' shipments set up first)."""
    run = uuid.uuid4().hex[:6]
    cases = Cases()
    with Client([server.base], Ledger(), deadline=time.monotonic() + 120) as setup:
        # The first logger runs an excursion for 15 minutes of every hour, the second none.
        batch, single = loggers_in_transit(setup, keys, cases, run=run, count=2)

    def walk(client: Client, _: Deadline) -> None:
        walker(client, keys, cases, run)

    def readings(logger: Logger, size: int) -> Work:
        return lambda client, _: upload(client, keys["courier"], logger, (size,), 0)

    return [
        walk,
        readings(single, 1),
        readings(batch, 100),
        lambda client, _: echo(client, keys["courier"]),
    ]


def measure(
    url: str, keys: dict[str, str], seconds: float, step: Callable[[str], None] = print
) -> list[PerCall]:
    """One server; a journey walker, single readings, 100-reading batches, then echo
    (``step`` is told each kind as it starts)."""
    os.environ["V2V_RATE_LIMIT_INGEST_PER_MIN"] = "0"
    target = "bench.server:app"
    with workdir("percall") as logdir, serve("percall", url, logdir, target=target) as s:
        out = []
        for name, fn in zip(KINDS, _works(s, keys), strict=True):
            step(name)
            out.append(_one(s, name, seconds, fn))
        return out


def _one_into(
    found: dict[str, PerCall], label: str, server: Server, name: str, seconds: float, work: Work
) -> None:
    found[label] = _one(server, name, seconds, work)


def measure_against(
    db: str, other: Path, seconds: float, rounds: int, step: Callable[[str], None] = print
) -> list[list[tuple[PerCall, PerCall]]]:
    """This checkout's server and ``other``'s, side by side: per round and kind of call,
    (this, other), both measured over the same seconds. Each round starts both afresh (new
    databases, new processes), in turn first: a pair of servers kept for several rounds
    carried its own bias from round to round (an A/A run: 1.17x and 1.04x)."""
    os.environ["V2V_RATE_LIMIT_INGEST_PER_MIN"] = "0"
    target = "bench.server:app"
    out = []
    for r in range(rounds):
        step(f"round {r + 1}/{rounds}: starting both servers")
        with ExitStack() as stack:
            logdir = stack.enter_context(workdir("percall"))
            sides: dict[str, tuple[Server, list[Work]]] = {}
            for label, root in [("this", None), ("other", other)][:: 1 if r % 2 == 0 else -1]:
                url, keys = stack.enter_context(fresh_database(db))
                server = stack.enter_context(serve(label, url, logdir, target=target, root=root))
                sides[label] = (server, _works(server, keys))
            pairs = []
            for k, name in enumerate(KINDS):
                step(f"round {r + 1}/{rounds}: {name}")
                found: dict[str, PerCall] = {}
                threads = [
                    threading.Thread(
                        target=_one_into, args=(found, label, server, name, seconds, works[k])
                    )
                    for label, (server, works) in sides.items()
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                if len(found) != 2:
                    raise RuntimeError(f"{name}: a side did not finish")
                pairs.append((found["this"], found["other"]))
            out.append(pairs)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.percall", description=__doc__)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--seconds", type=float, default=8.0, help="per kind of call")
    parser.add_argument("--rounds", type=int, default=1, help="fresh server each; medians")
    parser.add_argument(
        "--against",
        type=Path,
        metavar="DIR",
        help="another checkout, served beside this one at the same time: the ratio per call",
    )
    args = parser.parse_args(argv)
    if args.against is not None:
        return _main_against(args)
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


def _main_against(args: argparse.Namespace) -> int:
    other: Path = args.against.resolve()
    if not (other / "app" / "main.py").is_file():
        print(f"--against {other}: not a checkout of this project (no app/main.py)")
        return 2
    with Console(stderr=True).status("starting") as status:
        rounds = measure_against(args.db, other, args.seconds, args.rounds, status.update)
    print(
        f"server CPU per call, this checkout beside {other} at the same time, {args.db}, "
        f"{args.rounds} round(s), medians"
    )
    print(f"  {'call':<20} {'this ms':>8} {'other ms':>9} {'ratio':>6}  per round")
    for k, name in enumerate(KINDS):
        pairs = [r[k] for r in rounds]
        ratios = [this.cpu_ms / theirs.cpu_ms for this, theirs in pairs]
        print(
            f"  {name:<20} {statistics.median(p[0].cpu_ms for p in pairs):>8.2f} "
            f"{statistics.median(p[1].cpu_ms for p in pairs):>9.2f} "
            f"{statistics.median(ratios):>5.2f}x  " + " ".join(f"{x:.2f}" for x in ratios)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
