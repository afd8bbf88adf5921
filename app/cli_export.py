"""``v2v export``: portable SQLite files for auditors, tech transfer and analysis."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from app.cli_audit import JwksOption, PublicKeyOption
from app.cli_progress import progress
from app.config import get_settings
from app.db import Database

export_cli = typer.Typer(help="Portable SQLite exports.", no_args_is_help=True)
console = Console(stderr=True)


def _database() -> Database:
    settings = get_settings()
    return Database(
        settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms, pool_size=2
    )


@export_cli.command("case")
def export_case(
    case_id: Annotated[str, typer.Argument(help="The case id.")],
    out: Annotated[Path, typer.Option("--out", help="SQLite file to write (replaced).")],
    archive_dir: Annotated[
        Path | None,
        typer.Option(
            "--archive", help="Directory of `v2v readings archive` files, if the case's are."
        ),
    ] = None,
) -> None:
    """One case's whole record, with its audit entries, the chain's hashes and a manifest
    of every table signed with the service's Ed25519 key."""
    from app.errors import AppError
    from app.services.audit import chain as audit
    from app.services.audit import dossier as export
    from app.services.identity.coi import Keyring
    from models.base import utcnow

    settings = get_settings()
    keyring = Keyring(settings.coi_signing_keys.get_secret_value(), settings.coi_verify_keys)
    db = _database()
    try:
        with progress(console, f"exporting case {case_id}"), db.transaction() as session:
            counts = export.export_case(
                session,
                case_id=case_id,
                out=out,
                actor="cli",
                now=utcnow(),
                keyring=keyring,
                archive_dir=archive_dir,
            )
            audit.append(
                session,
                actor="cli",
                action="case.exported",
                entity="case",
                entity_id=case_id,
                at=utcnow(),
                after={"file": out.name, **counts},
            )
    except AppError as exc:
        console.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from exc
    finally:
        db.dispose()
    console.print(f"wrote {out}: " + ", ".join(f"{n} {t}" for t, n in counts.items()))


@export_cli.command("analytics")
def export_analytics(
    out: Annotated[Path, typer.Option("--out", help="SQLite file to write (replaced).")],
) -> None:
    """A pseudonymised dataset (no COI, no patient reference) with full-text alert search."""
    from app.services.audit import dossier as export
    from models.base import utcnow

    settings = get_settings()
    db = _database()
    try:
        with progress(console, "exporting the analytics dataset"), db.session() as session:
            counts = export.export_analytics(
                session, out=out, key=settings.secret_key.get_secret_value(), now=utcnow()
            )
    finally:
        db.dispose()
    console.print(f"wrote {out}: " + ", ".join(f"{n} {t}" for t, n in counts.items()))


@export_cli.command("verify")
def verify(
    path: Annotated[Path, typer.Argument(help="A case dossier file.")],
    jwks: JwksOption = None,
    public_key: PublicKeyOption = None,
    audit_keys: Annotated[
        bool,
        typer.Option(help="Also recompute each entry's keyed hash (needs V2V_AUDIT_KEYS)."),
    ] = False,
) -> None:
    """Check a case dossier offline: its signed manifest against the JWKS (or a public key;
    by default this installation's), every table, and its audit entries against the chain."""
    from app.cli_audit import trusted_keys
    from app.services.audit.dossier import verify_dossier
    from app.services.audit.keys import keys_of

    try:
        keys = trusted_keys(jwks, public_key)
    except (OSError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    ok, message = verify_dossier(
        path, public_keys=keys, audit_keys=keys_of(get_settings()) if audit_keys else None
    )
    console.print(("[green]ok[/green]: " if ok else "[red]broken[/red]: ") + message)
    if not ok:
        raise typer.Exit(1)
