"""``python -m bench [p1 p2 p3 p4] [--strict]``: run benchmarks, print the figures table."""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import signal
import sqlite3
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from bench import (
    harness,
    p1_sqlite_ingest,
    p2_single_reading,
    p3_large_shipment,
    p4_postgres,
    p5_queries,
    p6_sweeps,
    p7_mix,
    p8_turnaround,
    serving,
)
from bench.harness import Figure

BENCHMARKS: dict[str, ModuleType] = {
    m.ID: m
    for m in (
        p1_sqlite_ingest,
        p2_single_reading,
        p3_large_shipment,
        p4_postgres,
        p5_queries,
        p6_sweeps,
        p7_mix,
        p8_turnaround,
    )
}


def _command(argv: Sequence[str]) -> str:
    python = Path(sys.executable)
    try:
        python = python.relative_to(Path.cwd())
    except ValueError:
        pass
    return shlex.join([str(python), "-m", "bench", *argv])


def _header(console: Console, argv: Sequence[str], selected: Sequence[str]) -> None:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    console.rule("[bold]vein2vein benchmarks")
    console.print(f"command   {_command(argv)}")
    console.print(
        f"machine   nproc {os.cpu_count()} (usable {affinity}), {platform.machine()}, "
        f"{platform.system()} {platform.release()}"
    )
    console.print(
        f"python    {platform.python_implementation()} {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}"
        + (f", PostgreSQL {harness.pg_version()}" if "p4" in selected else "")
    )
    console.print(f"load      {_load()} (1, 5, 15 min): other processes on these cores add noise")
    server = serving.server_command(serving.APP, 0)
    console.print(f"server    {shlex.join(server[2:]).replace('--port 0', '--port <free>')}")
    console.print(
        "between   PostgreSQL CHECKPOINT, sync, then up to "
        f"{harness.QUIET_WAIT_S:.0f} s for the cores to be {harness.QUIET_IDLE:.0%} idle"
    )
    console.print("figures   medians over repetitions; ratio = ours / reference\n")


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _load() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "s":
        return f"{value * 1000:,.0f} ms"
    return f"{value:,.0f} {unit}"


def _table(figures: Sequence[Figure], errors: dict[str, str]) -> Table:
    table = Table(title="Results", show_lines=False)
    for name, justify in (
        ("id", "left"),
        ("measure", "left"),
        ("ours", "right"),
        ("reference", "right"),
        ("ratio", "right"),
        ("goal", "center"),
        ("result", "center"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for f in figures:
        ratio = "—" if f.ratio is None else f"{f.ratio:.2f}×"
        verdict = "[green]pass[/green]" if f.passed else "[red]MISS[/red]"
        table.add_row(
            f.id, f.what, _fmt(f.ours, f.unit), _fmt(f.reference, f.unit), ratio, f.goal, verdict
        )
    for bench_id, message in errors.items():
        table.add_row(
            bench_id.upper(),
            f"[red]did not run: {message}[/red]",
            "",
            "",
            "",
            "",
            "[red]ERROR[/red]",
        )
    return table


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "ids",
        nargs="*",
        metavar="ID",
        help=f"benchmarks to run ({', '.join(BENCHMARKS)}); default all",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record each server with py-spy (collapsed stacks, for speedscope or flamegraph.pl)",
    )
    args = parser.parse_args(argv)
    selected = [i.lower() for i in args.ids] or list(BENCHMARKS)
    unknown = [i for i in selected if i not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    selected = [i for i in BENCHMARKS if i in selected]  # run in order, once each
    serving.PROFILE_DIR = args.profile
    # A kill runs the same clean-up as Ctrl-C: servers stopped, bench databases dropped.
    signal.signal(signal.SIGTERM, _terminate)
    console = Console()
    if not console.is_terminal:  # make's output, a pipe or a log: room for the table
        console = Console(width=132)
    _header(console, argv, selected)
    figures: list[Figure] = []
    errors: dict[str, str] = {}
    started = time.perf_counter()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.fields[title]:<26}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
    )
    with progress:
        tasks = {
            i: progress.add_task(
                "waiting", total=BENCHMARKS[i].STEPS, title=BENCHMARKS[i].TITLE, start=False
            )
            for i in selected
        }
        for bench_id in selected:
            module, task = BENCHMARKS[bench_id], tasks[bench_id]
            progress.start_task(task)
            calls = 0

            def step(description: str, task: TaskID = task) -> None:
                nonlocal calls
                progress.update(task, advance=1 if calls else 0, description=description)
                calls += 1

            progress.update(task, description="waiting for the machine to go quiet")
            harness.settle()
            t0 = time.perf_counter()
            try:
                figures.extend(module.run(step))
                done = f"[green]done[/green] in {time.perf_counter() - t0:.0f} s"
            except Exception as exc:
                errors[bench_id] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                console.print(f"[red]{bench_id} failed[/red]\n{traceback.format_exc()}")
                done = "[red]failed[/red]"
            progress.update(task, completed=module.STEPS, description=done)
            progress.stop_task(task)
    console.print()
    console.print(_table(figures, errors))
    for f in figures:
        if f.note:
            console.print(f"  {f.id}: {f.note}")
    met = sum(f.passed for f in figures)
    console.print(
        f"\n{met} of {len(figures)} goals met; {len(errors)} benchmark(s) failed to run; "
        f"{time.perf_counter() - started:.0f} s in all; load now {_load()}"
    )
    if errors:
        return 2
    return 1 if args.strict and met < len(figures) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
