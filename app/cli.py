"""The ``v2v`` command."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from app.cli_audit import JwksOption, PublicKeyOption, audit_checkpoint
from app.cli_courier import courier_cli
from app.cli_export import export_cli
from app.cli_help import command_index
from app.cli_notify import notify_cli
from app.cli_principals import register as register_principal_commands
from app.cli_progress import progress
from app.cli_readings import readings_cli
from app.config import get_settings
from app.db import Database
from models.principal import Role

cli = typer.Typer(help="vein2vein: vein-to-vein tracking for CAR-T.", no_args_is_help=True)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
principal_cli = typer.Typer(help="API keys.", no_args_is_help=True)
audit_cli = typer.Typer(help="The audit trail.", no_args_is_help=True)
keys_cli = typer.Typer(help="COI signing keys.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(principal_cli, name="principal")
register_principal_commands(principal_cli)
cli.add_typer(audit_cli, name="audit")
cli.add_typer(keys_cli, name="keys")
cli.add_typer(export_cli, name="export")
audit_cli.command("checkpoint")(audit_checkpoint)
cli.add_typer(courier_cli, name="courier")
cli.add_typer(notify_cli, name="notify")
cli.add_typer(readings_cli, name="readings")
console = Console(stderr=True)


def _database() -> Database:
    settings = get_settings()
    return Database(
        settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms, pool_size=2
    )


def _pending_revisions(url: str, target: str) -> list[str]:
    """The revisions an upgrade to ``target`` applies, oldest first (one bar step each)."""
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    from app.migrations import alembic_config, current_revision

    engine = create_engine(url)
    try:
        current = current_revision(engine)
    finally:
        engine.dispose()
    script = ScriptDirectory.from_config(alembic_config())
    return [r.revision for r in reversed(list(script.iterate_revisions(target, current)))]


@db_cli.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Migrate the database to the latest schema."""
    from app.migrations import upgrade

    url = get_settings().database_url
    steps = _pending_revisions(url, revision)
    with progress(console, f"migrating ({len(steps)} steps)", total=len(steps)) as advance:
        for step in steps:
            upgrade(url, step)
            advance(1)
    console.print(f"[green]database at {revision}[/green]")


@cli.command()
def seed() -> None:
    """Load reference data (sites, routes, profiles, products); safe to repeat."""
    from seeds.loader import load_reference

    db = _database()
    with progress(console, "loading reference data"), db.transaction() as session:
        report = load_reference(session)
    db.dispose()
    created = ", ".join(f"{n} {k}" for k, n in sorted(report.created.items())) or "nothing new"
    updated = ", ".join(f"{n} {k}" for k, n in sorted(report.updated.items())) or "nothing"
    console.print(f"reference data: created {created}; updated {updated}")


@cli.command()
def demo(
    cases: Annotated[int, typer.Option(min=0, help="How many cases.")] = 300,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed, the same data.")] = 1,
    now: Annotated[
        str | None, typer.Option(help="Cut-off instant, RFC 3339 (default: the current time).")
    ] = None,
    readings: Annotated[bool, typer.Option(help="Store loggers' 10-minute readings.")] = True,
    if_empty: Annotated[bool, typer.Option(help="Do nothing when cases already exist.")] = False,
) -> None:
    """Load a synthetic demo cohort: two years of cases (refused in production)."""
    from datetime import UTC, datetime

    from rich.progress import Progress

    from seeds import demo as cohort

    settings = get_settings()
    if settings.env == "production":
        console.print("[red]demo data is refused with V2V_ENV=production[/red]")
        raise typer.Exit(2)
    try:
        cutoff = datetime.fromisoformat(now) if now else datetime.now(UTC)
    except ValueError as exc:
        console.print(f"[red]--now is not an RFC 3339 time:[/red] {now}")
        raise typer.Exit(2) from exc
    if cutoff.tzinfo is None:
        console.print("[red]--now needs a UTC offset[/red]")
        raise typer.Exit(2)
    db = _database()
    try:
        if if_empty and cohort.has_cases(db):
            console.print("cases already exist: demo cohort not loaded")
            return
        with Progress(console=console, transient=True) as bar:
            tasks = {stage: bar.add_task(f"cases {stage}", total=cases) for stage in cohort.STAGES}
            report = cohort.generate(
                db,
                cases=cases,
                seed=seed,
                now=cutoff,
                readings=readings,
                progress=lambda stage, done, _: bar.update(tasks[stage], completed=done),
                settings=settings,
            )
    except cohort.DemoRefused as exc:
        console.print(f"[red]refused:[/red] {exc}")
        raise typer.Exit(2) from exc
    finally:
        db.dispose()
    console.print(cohort.summary(report))


@principal_cli.command("create")
def principal_create(
    role: Annotated[
        Role, typer.Option(help="admin, coordinator, courier, manufacturer, qa, viewer, device")
    ],
    name: Annotated[str, typer.Option(help="Who holds the key.")],
    site: Annotated[str | None, typer.Option(help="Coordinator's hospital or factory.")] = None,
    courier: Annotated[str | None, typer.Option(help="Courier organisation.")] = None,
    device: Annotated[str | None, typer.Option(help="Logger id, for role device.")] = None,
) -> None:
    """Create a principal and print its API key (shown this once)."""
    from app.errors import AppError
    from app.services.access import principals
    from app.services.audit import chain as audit
    from models.base import utcnow

    settings = get_settings()
    db = _database()
    try:
        with db.transaction() as session:
            principal, key = principals.create_principal(
                session,
                name=name,
                role=role,
                site=site,
                courier=courier,
                device_id=device,
                secret_key=settings.secret_key.get_secret_value(),
            )
            audit.append(
                session,
                actor="cli",
                action="principal.created",
                entity="principal",
                entity_id=principal.id,
                at=utcnow(),
                after={
                    "name": name,
                    "role": role.value,
                    "site": site,
                    "courier": courier,
                    "device_id": principal.device_id,
                },
            )
    except AppError as exc:
        console.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from exc
    finally:
        db.dispose()
    print(key)


@cli.command("dev-admin")
def dev_admin(key_file: Path = Path("var/admin.key")) -> None:
    """Development only: print the local admin key, creating it on first use."""
    from app.services.access import principals
    from models.base import utcnow

    settings = get_settings()
    if settings.env == "production":
        console.print("[red]dev-admin is refused in production; use `v2v principal create`[/red]")
        raise typer.Exit(2)
    db = _database()
    try:
        with db.transaction() as session:
            if key_file.exists():
                key = key_file.read_text().strip()
                if principals.authenticate(
                    session,
                    api_key=key,
                    secret_key=settings.secret_key.get_secret_value(),
                    now=utcnow(),
                ):
                    print(key)
                    return
            _, key = principals.create_principal(
                session,
                name="local admin",
                role=Role.admin,
                secret_key=settings.secret_key.get_secret_value(),
            )
    finally:
        db.dispose()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key + "\n")
    os.chmod(key_file, 0o600)
    print(key)


@audit_cli.command("verify")
def audit_verify(
    checkpoint: Annotated[
        Path | None, typer.Option(help="Also prove nothing up to its checkpoints was removed.")
    ] = None,
    jwks: JwksOption = None,
    public_key: PublicKeyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
) -> None:
    """Recompute the keyed audit hash chain; exit 1 at the first broken link."""
    import json

    from app.services.audit.chain import verify_chain

    if checkpoint is not None:
        from app.cli_audit import verify_with_checkpoint

        return verify_with_checkpoint(checkpoint, jwks=jwks, public_key=public_key)

    db = _database()
    with progress(console, "verifying the audit chain"), db.session() as session:
        result = verify_chain(session)
    db.dispose()
    if as_json:
        print(
            json.dumps(
                {
                    "ok": result.ok,
                    "entries": result.entries,
                    "first_bad_seq": result.first_bad_seq,
                    "reason": result.reason,
                }
            )
        )
        if not result.ok:
            raise typer.Exit(1)
        return
    if result.ok:
        console.print(f"[green]audit chain intact[/green]: {result.entries} entries")
        return
    console.print(
        f"[red]audit chain broken at seq {result.first_bad_seq}[/red]: {result.reason} "
        f"({result.entries} entries read)"
    )
    raise typer.Exit(1)


@keys_cli.command("generate")
def keys_generate(kid: Annotated[str, typer.Option(help="Key id, e.g. 2027-01.")]) -> None:
    """Print a new COI signing key entry; prepend it to V2V_COI_SIGNING_KEYS to rotate."""
    from app.services.identity.coi import generate_signing_entry

    print(generate_signing_entry(kid))


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    workers: int = 1,
) -> None:
    """Serve the API and dashboard."""
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level=settings.log_level,
    )


@cli.command()
def scheduler() -> None:
    """Run the scheduled jobs alone (one leader among instances on PostgreSQL)."""
    import signal
    import threading

    from app.clock import system_clock
    from app.scheduler import Scheduler

    db = _database()
    runner = Scheduler(db, clock=system_clock)
    runner.start()
    console.print("scheduler running; Ctrl-C to stop")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        runner.shutdown()
        db.dispose()


@cli.command()
def mqtt(
    client_id: Annotated[
        str | None, typer.Option(help="Stable client id (persistent session); one per worker.")
    ] = None,
    group: Annotated[
        str | None, typer.Option(help="Shared-subscription group, to split load among workers.")
    ] = None,
) -> None:
    """Store readings published on v2v/devices/+/readings until SIGTERM or Ctrl-C."""
    import logging
    import signal
    import threading

    from app.clock import system_clock
    from app.workers.mqtt import MqttWorker

    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    db = _database()
    worker = MqttWorker.from_settings(
        db, settings, clock=system_clock, client_id=client_id, shared_group=group
    )
    worker.start()
    console.print(
        f"mqtt worker {worker.client_id}: {worker.subscription} on "
        f"{settings.mqtt_host}:{settings.mqtt_port}; Ctrl-C to stop"
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        worker.stop()
        db.dispose()


cli.info.epilog = command_index(cli)


def main() -> None:
    try:
        cli()
    except ValueError as exc:  # settings refused (e.g. development secrets in production)
        console.print(f"[red]configuration error:[/red] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
