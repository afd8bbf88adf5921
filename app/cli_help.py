"""The index of every ``v2v`` command, sub-commands included, for ``v2v --help``."""

from __future__ import annotations

import typer


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _walk(app: typer.Typer, prefix: str) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for command in app.registered_commands:
        callback = command.callback
        name = command.name or (callback.__name__.replace("_", "-") if callback else "")
        rows.append(
            (f"{prefix}{name}", _first_line(command.help or (callback and callback.__doc__)))
        )
    for group in app.registered_groups:
        if group.typer_instance is not None:
            rows += _walk(group.typer_instance, f"{prefix}{group.name} ")
    return rows


def command_index(app: typer.Typer) -> str:
    """One line per command: ``v2v <command>`` and the first line of its help."""
    rows = _walk(app, "v2v ")
    width = max(len(name) for name, _ in rows)
    return "Every command:\n\n" + "\n".join(f"{n.ljust(width)}  {h}" for n, h in rows)
