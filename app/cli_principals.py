"""``v2v principal revoke|rotate``: the key lifecycle from the command line.

The same use cases as ``POST /principals/{id}/revoke`` and ``…/rotate-key``, audited with
the actor ``cli``. ``app.cli`` registers these on its ``principal`` group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from sqlmodel import Session

from app.config import get_settings
from app.db import Database

console = Console(stderr=True)
T = TypeVar("T")

PrincipalId = Annotated[str, typer.Argument(help="The principal's id (see GET /principals).")]
Reason = Annotated[str | None, typer.Option(help="Why, for the audit trail.")]


def _run(work: Callable[[Session], T]) -> T:
    """One transaction; a refused change (unknown id, already revoked) exits with status 2."""
    from app.errors import AppError

    settings = get_settings()
    db = Database(
        settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms, pool_size=2
    )
    try:
        with db.transaction() as session:
            return work(session)
    except AppError as exc:
        console.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from exc
    finally:
        db.dispose()


def principal_revoke(principal_id: PrincipalId, reason: Reason = None) -> None:
    """Revoke a key now: its next API call is 401 and its dashboard sessions end."""
    from app.services.access import lifecycle
    from models.base import utcnow

    principal = _run(
        lambda session: lifecycle.revoke(
            session, actor="cli", principal_id=principal_id, now=utcnow(), reason=reason
        )
    )
    console.print(f"[green]revoked[/green] {principal.name} ({principal.role}, {principal.id})")


def principal_rotate(principal_id: PrincipalId, reason: Reason = None) -> None:
    """Replace a key and print the new one (shown this once); the old one stops now."""
    from app.services.access import lifecycle
    from models.base import utcnow

    secret_key = get_settings().secret_key.get_secret_value()
    principal, key = _run(
        lambda session: lifecycle.rotate_key(
            session,
            actor="cli",
            principal_id=principal_id,
            secret_key=secret_key,
            now=utcnow(),
            reason=reason,
        )
    )
    console.print(f"new key for {principal.name} ({principal.role}, {principal.id}):")
    print(key)


def register(group: typer.Typer) -> None:
    """Add ``revoke`` and ``rotate`` to the ``v2v principal`` group."""
    group.command("revoke")(principal_revoke)
    group.command("rotate")(principal_rotate)
