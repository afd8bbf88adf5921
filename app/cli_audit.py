"""``v2v audit checkpoint`` and ``v2v audit verify --checkpoint``: signed heads, offline.

Registered on the ``audit`` command group of ``app.cli``. Verifying against a checkpoint
reads the database directly and trusts the public keys of a JWKS given as a file or URL
(``--jwks``) or one public key (``--public-key``); without either, this installation's own
COI key ring.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from app.config import get_settings
from app.db import Database

if TYPE_CHECKING:
    from app.services.audit.signing import PublicKeys

console = Console(stderr=True)

JwksOption = Annotated[
    str | None,
    typer.Option("--jwks", help="Trusted JWKS: a file or a URL (…/api/v1/coi/jwks)."),
]
PublicKeyOption = Annotated[
    str | None,
    typer.Option("--public-key", help="Trusted Ed25519 public key: base64url x, or a PEM file."),
]


def _database() -> Database:
    settings = get_settings()
    return Database(
        settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms, pool_size=2
    )


def trusted_keys(jwks: str | None, public_key: str | None) -> PublicKeys:
    """The verifier's public keys, from the options or this installation's key ring."""
    from app.services.audit.signing import PublicKeys, load_jwks
    from app.services.identity.coi import Keyring

    if public_key is not None:
        path = Path(public_key)
        return PublicKeys.from_public_key(path.read_text() if path.is_file() else public_key)
    if jwks is not None:
        return PublicKeys.from_jwks(load_jwks(jwks))
    settings = get_settings()
    ring = Keyring(settings.coi_signing_keys.get_secret_value(), settings.coi_verify_keys)
    return PublicKeys.from_jwks(ring.jwks())


def audit_checkpoint(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Append it to this JSON-lines file (idempotent)."),
    ] = None,
) -> None:
    """Sign the verified audit chain's head; print it, or append it to a file."""
    from app.errors import AppError
    from app.services.audit import checkpoint as checkpoints
    from app.services.audit.keys import keys_of
    from app.services.identity.coi import Keyring
    from models.base import utcnow

    settings = get_settings()
    ring = Keyring(settings.coi_signing_keys.get_secret_value(), settings.coi_verify_keys)
    db = _database()
    try:
        with db.session() as session:
            if out is None:
                cp = checkpoints.sign_head(
                    session, keyring=ring, now=utcnow(), keys=keys_of(settings)
                )
                print(json.dumps(cp.as_json()))
                return
            written = checkpoints.write_to_file(
                session, keyring=ring, path=out, now=utcnow(), keys=keys_of(settings)
            )
    except AppError as exc:
        console.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(1) from exc
    finally:
        db.dispose()
    if written is None:
        console.print(f"{out}: its last checkpoint already holds the chain's head")
    else:
        console.print(f"{out}: checkpoint of seq {written.seq} appended")


def verify_with_checkpoint(
    path: Path, *, jwks: str | None = None, public_key: str | None = None
) -> None:
    """Verify the chain against every checkpoint of a file; exit 1 at the first failure."""
    from app.services.audit import checkpoint as checkpoints
    from app.services.audit.keys import keys_of

    try:
        found = checkpoints.read_file(path)
        keys = trusted_keys(jwks, public_key)
    except (OSError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if not found:
        console.print(f"[red]error:[/red] {path} holds no checkpoint")
        raise typer.Exit(2)
    db = _database()
    try:
        with db.session() as session:
            result = checkpoints.verify_checkpoints(
                session, checkpoints=found, public_keys=keys, keys=keys_of(get_settings())
            )
    finally:
        db.dispose()
    if result.ok:
        newest = max(cp.seq for cp in found)
        console.print(
            f"[green]audit chain intact[/green]: {result.entries} entries; "
            f"{len(found)} checkpoint(s) up to seq {newest} match"
        )
        return
    where = f" at seq {result.first_bad_seq}" if result.first_bad_seq is not None else ""
    console.print(f"[red]audit chain broken{where}[/red]: {result.reason}")
    raise typer.Exit(1)
