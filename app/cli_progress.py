"""Progress for long ``v2v`` commands: a rich bar on a terminal, plain lines otherwise.

Piped or captured output (CI logs, ``| tee``, tests) never gets cursor-control sequences:
a bar is drawn only when stdout is a TTY.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn


def interactive() -> bool:
    return sys.stdout.isatty()


@contextmanager
def progress(
    console: Console, description: str, *, total: int | None = None
) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(n)``; a bar (a spinner without a total) on a TTY, else two lines."""
    if not interactive():

        def nothing(_n: int = 1) -> None:
            return None

        console.print(f"{description}…", highlight=False)
        yield nothing
        console.print(f"{description}: done", highlight=False)
        return
    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance
