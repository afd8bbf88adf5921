"""``v2v courier feed add|list|pause|resume``: courier feeds, through the same service
functions as ``/api/v1/integrations/courier/feeds``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.cli_progress import interactive
from app.config import get_settings
from app.db import Database

courier_cli = typer.Typer(help="Courier tracking feeds.", no_args_is_help=True)
feed_cli = typer.Typer(help="Add, list, pause and resume courier feeds.", no_args_is_help=True)
courier_cli.add_typer(feed_cli, name="feed")
console = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)


def _database() -> Database:
    settings = get_settings()
    return Database(
        settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms, pool_size=2
    )


@feed_cli.command("add")
def feed_add(
    courier: Annotated[str, typer.Argument(help="The courier organisation's code.")],
    base_url: Annotated[str, typer.Option("--url", help="Its event API: GET {url}/events.")],
    token: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            envvar="V2V_COURIER_TOKEN",
            help="Bearer token for the courier (prompted, or V2V_COURIER_TOKEN); never shown.",
        ),
    ],
    paused: Annotated[bool, typer.Option(help="Add it paused.")] = False,
) -> None:
    """Add a courier's feed; the poller reads it from the start of its stream."""
    from app.errors import AppError
    from app.services.interop import courier_feeds as feeds
    from models.base import utcnow

    db = _database()
    try:
        with db.transaction() as session:
            feeds.add_feed(
                session,
                courier=courier,
                base_url=base_url,
                auth_token=token,
                actor="cli",
                now=utcnow(),
                active=not paused,
            )
    except AppError as exc:
        console.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from exc
    finally:
        db.dispose()
    console.print(f"feed for {courier} added" + (" (paused)" if paused else ""))


def _set_active(courier: str, active: bool) -> None:
    from app.errors import AppError
    from app.services.interop import courier_feeds as feeds
    from models.base import utcnow

    db = _database()
    try:
        with db.transaction() as session:
            feeds.set_feed_active(
                session, courier=courier, active=active, actor="cli", now=utcnow()
            )
    except AppError as exc:
        console.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from exc
    finally:
        db.dispose()
    console.print(f"feed for {courier} {'resumed' if active else 'paused'}")


@feed_cli.command("pause")
def feed_pause(courier: Annotated[str, typer.Argument(help="The courier's code.")]) -> None:
    """Stop polling a feed; its cursor stays where it is."""
    _set_active(courier, False)


@feed_cli.command("resume")
def feed_resume(courier: Annotated[str, typer.Argument(help="The courier's code.")]) -> None:
    """Poll a paused feed again from its cursor."""
    _set_active(courier, True)


@feed_cli.command("list")
def feed_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
) -> None:
    """Each feed's state, cursor, lag, last success and last error."""
    from app.services.interop import courier_feeds as feeds
    from models.base import utcnow
    from models.courier_feed import CourierFeedPublic

    db = _database()
    try:
        with db.session() as session:
            rows = [
                CourierFeedPublic.model_validate(f, from_attributes=True)
                for f in feeds.list_feeds(session, now=utcnow())
            ]
    finally:
        db.dispose()
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    table = Table("courier", "state", "cursor", "lag", "last success", "last error")
    for r in rows:
        lag = f"{r.lag_s / 60:.0f} min" if r.lag_s is not None else "-"
        success = r.last_success_at.isoformat() if r.last_success_at else "never"
        state = "active" if r.active else "paused"
        cells = (r.courier, state, r.cursor or "-", lag, success, r.last_error or "-")
        if not interactive():  # one plain line per feed for pipes and logs
            print("\t".join(cells))
        table.add_row(*cells)
    if interactive():
        out.print(table)
    elif not rows:
        print("no courier feeds")
