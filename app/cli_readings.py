"""``v2v readings partitions|archive``: the monthly partitions of ``reading`` (PostgreSQL).

``archive --before YYYY-MM`` exports every month wholly before that one to a file per month
(``app/services/coldchain/archive.py`` says what makes a month archivable and how a case
dossier still verifies afterwards), then detaches it. The detached table stays in the
database until an operator drops it (``DROP TABLE reading_yYYYYmMM``), once the files are
copied somewhere safe. SQLite keeps one table: both commands say so and exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from app.cli_progress import interactive, progress
from app.config import get_settings
from app.db import Database

readings_cli = typer.Typer(
    help="Reading storage: monthly partitions and their archive (PostgreSQL).",
    no_args_is_help=True,
)
console = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")]
SQLITE = (
    "reading partitions and their archive are PostgreSQL's: on SQLite readings stay in one "
    "table of one file (see README, Scale-out and operations)"
)


def _database() -> Database:
    settings = get_settings()
    db = Database(
        settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms, pool_size=2
    )
    if db.dialect != "postgresql":
        db.dispose()
        console.print(f"[yellow]not applicable:[/yellow] {SQLITE}")
        raise typer.Exit(2)
    return db


@readings_cli.command("partitions")
def list_partitions(as_json: JsonOption = False) -> None:
    """The attached partitions of ``reading``: bounds, estimated rows, size on disk."""
    from app.services.coldchain import partitions
    from app.times import from_ms

    db = _database()
    try:
        with db.session() as session:
            parts = partitions.list_partitions(session)
    finally:
        db.dispose()
    rows: list[dict[str, Any]] = [
        {
            "partition": p.name,
            "from": from_ms(p.from_ms).isoformat() if p.from_ms is not None else None,
            "until": from_ms(p.until_ms).isoformat() if p.until_ms is not None else None,
            "rows_estimate": max(p.rows, 0),
            "bytes": p.bytes,
        }
        for p in parts
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("partition", "from", "until", "rows (est.)", "MB")
    for r in rows:
        cells = [
            str(r["partition"]),
            str(r["from"] or "DEFAULT"),
            str(r["until"] or "-"),
            f"{r['rows_estimate']:,}",
            f"{int(r['bytes']) / 1e6:,.1f}",
        ]
        if not interactive():
            print("\t".join(cells))
        table.add_row(*cells)
    if interactive():
        out.print(table)


def _report(months: list[Any], *, before: str, dry_run: bool, as_json: bool, done: bool) -> None:
    if as_json:
        document = {
            "before": before,
            "dry_run": dry_run,
            "archived": done,
            "months": [m.public() for m in months],
        }
        print(json.dumps(document, indent=2))
        return
    if not months:
        console.print(f"no attached month partition ends before {before}: nothing to archive")
    for m in months:
        p = m.public()
        state = "archived" if done else "blocked" if m.blockers else "would archive"
        line = f"{p['partition']}: {state}, {p['rows']:,} readings of {p['shipments']} shipments"
        if m.file:
            line += f" -> {m.file} (sha256 {m.sha256})"
        console.print(line, highlight=False)
        for blocker in m.blockers:
            console.print(f"  [red]blocked:[/red] {blocker}", highlight=False)


@readings_cli.command("archive")
def archive_months(
    before: Annotated[
        str, typer.Option("--before", help="Archive the months wholly before this one (YYYY-MM).")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the archive files.")] = Path(
        "."
    ),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be archived; change nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Export the readings of months whose shipments are all settled to one file per month
    (with per-shipment digests a case dossier verifies against), then detach those months.
    Refuses, changing nothing, while any of their shipments may still take readings."""
    from app.errors import AppError
    from app.services.coldchain import archive
    from models.base import utcnow

    settings = get_settings()
    late_bound_ms = int(settings.reading_late_bound_h * 3_600_000)
    db = _database()
    now = utcnow()
    try:
        month = archive.parse_month(before)
        with db.session() as session:
            months = archive.plan(session, before=month, now=now, late_bound_ms=late_bound_ms)
        if dry_run or any(m.blockers for m in months) or not months:
            _report(months, before=before, dry_run=dry_run, as_json=as_json, done=False)
            if any(m.blockers for m in months):
                raise typer.Exit(1)
            return
        total = sum(m.rows for m in months)
        with (
            progress(console, f"archiving {len(months)} months", total=total) as advance,
            db.transaction() as session,
        ):
            months = archive.archive(
                session,
                before=month,
                now=now,
                late_bound_ms=late_bound_ms,
                out_dir=out_dir,
                actor="cli",
                advance=advance,
            )
    except archive.Blocked as exc:  # something changed since the plan
        _report(exc.months, before=before, dry_run=False, as_json=as_json, done=False)
        raise typer.Exit(1) from exc
    except AppError as exc:
        console.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from exc
    finally:
        db.dispose()
    _report(months, before=before, dry_run=False, as_json=as_json, done=True)
    if not as_json:
        console.print(
            "detached; the tables stay in the database until dropped (DROP TABLE <partition>) "
            "once the files are kept safe"
        )
