"""``v2v notify show|set|outbox``: a person's notification settings and the outbox, through
the same service functions as ``/api/v1/principals/{id}/notifications`` and
``/api/v1/notifications/deliveries``.

Contact points may hold tokens (a LINE or Teams URL), so they are read from an option, a
hidden prompt (``--contact -``) or ``V2V_NOTIFY_CONTACTS`` and only ever printed masked.
Changes are audited with the actor ``cli``, as every other command-line change is: the
operator is not a principal, and recording the person whose settings changed as the actor
would tell the audit trail something that did not happen.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from app.cli_progress import interactive
from app.config import get_settings
from app.db import Database
from models.notification import NotificationSettingsPublic, NotificationStatus

notify_cli = typer.Typer(help="Notification settings and the outbox.", no_args_is_help=True)
console = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)

PrincipalId = Annotated[str, typer.Argument(help="The person's principal id.")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")]


def _database() -> Database:
    settings = get_settings()
    return Database(
        settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms, pool_size=2
    )


def _fail(message: str, problems: list[str] | None = None) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", markup=True, highlight=False)
    for line in problems or []:
        console.print(f"  {line}", markup=False, highlight=False)
    return typer.Exit(2)


def _where(loc: Any) -> str:
    return ".".join(str(part) for part in loc if part != "body") or "settings"


def _print_settings(found: NotificationSettingsPublic, as_json: bool) -> None:
    data = found.model_dump(mode="json", by_alias=True)
    if as_json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return
    quiet = f"{found.quiet_hours.from_}-{found.quiet_hours.to}" if found.quiet_hours else "none"
    rules = [
        f"{', '.join(s.kinds) or 'every kind'} at {s.min_severity} and above"
        for s in found.subscriptions
    ]
    rows = [("principal", found.principal_id)]
    rows += [("contact", f"{c.target} ({c.kind}, {c.fingerprint})") for c in found.contacts]
    rows += [("subscription", rule) for rule in rules] or [("subscription", "none")]
    rows += [
        ("quiet hours", quiet),
        ("language", found.language),
        ("time zone", found.timezone),
        ("digest", "daily" if found.digest else "off"),
    ]
    if not interactive():  # one plain line per field for pipes and logs
        for name, value in rows:
            print(f"{name}\t{value}")
        return
    table = Table("setting", "value", title=f"notifications of {found.principal_id}")
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)


@notify_cli.command("show")
def notify_show(principal_id: PrincipalId, as_json: AsJson = False) -> None:
    """A person's contact points (masked), subscriptions, quiet hours, language, digest."""
    from app.errors import AppError
    from app.services.notifications import preferences

    db = _database()
    try:
        with db.session() as session:
            found = preferences.read(session, principal_id=principal_id)
    except AppError as exc:
        raise _fail(exc.detail) from exc
    finally:
        db.dispose()
    _print_settings(found, as_json)


def _quiet(value: str | None) -> dict[str, str] | None:
    if value is None or value.strip().lower() in ("", "none", "off"):
        return None
    start, sep, end = value.strip().partition("-")
    if not sep:
        raise _fail("--quiet must look like 22:00-07:00 (local time, from-to), or none")
    return {"from": start.strip(), "to": end.strip()}


def _contacts(given: list[str]) -> list[str]:
    """The targets, asking for each ``-`` at a hidden prompt; the values are never echoed."""
    targets: list[str] = []
    for value in given:
        if value.strip() == "-":
            value = typer.prompt("contact point", hide_input=True)
        targets.append(value.strip())
    return targets


@notify_cli.command("set")
def notify_set(
    principal_id: PrincipalId,
    contact: Annotated[
        list[str] | None,
        typer.Option(
            envvar="V2V_NOTIFY_CONTACTS",
            help="An e-mail address or Apprise URL (repeatable; '-' asks at a hidden prompt; "
            "or V2V_NOTIFY_CONTACTS, separated by spaces). Printed only masked.",
            show_default=False,
        ),
    ] = None,
    keep: Annotated[
        list[str] | None,
        typer.Option(help="Keep a contact already set, by the fingerprint `show` lists."),
    ] = None,
    kinds: Annotated[
        str | None,
        typer.Option(help="Alert kinds, comma-separated (default: every kind)."),
    ] = None,
    min_severity: Annotated[
        str | None,
        typer.Option(help="info, warning, major or critical (default: warning)."),
    ] = None,
    quiet: Annotated[
        str | None, typer.Option(help="Quiet hours in the person's zone, e.g. 22:00-07:00.")
    ] = None,
    language: Annotated[str | None, typer.Option(help="ja or en.")] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA zone, e.g. Asia/Tokyo.")] = None,
    digest: Annotated[bool, typer.Option(help="The daily digest at 07:00 local time.")] = False,
    as_json: AsJson = False,
) -> None:
    """Replace a person's settings: contacts not given (--contact) or kept (--keep) go."""
    from app.errors import AppError
    from app.services.notifications import preferences
    from models.base import utcnow
    from models.notification import NotificationSettingsIn

    subscriptions: list[dict[str, Any]] = []
    if kinds is not None or min_severity is not None:
        rule: dict[str, Any] = {"kinds": [k.strip() for k in (kinds or "").split(",") if k.strip()]}
        if min_severity is not None:
            rule["min_severity"] = min_severity.strip()
        subscriptions.append(rule)
    raw = {
        "contacts": [{"fingerprint": f.strip()} for f in keep or []]
        + [{"target": t} for t in _contacts(contact or [])],
        "subscriptions": subscriptions,
        "quiet_hours": _quiet(quiet),
        "language": language,
        "timezone": timezone,
        "digest": digest,
    }
    try:
        body = NotificationSettingsIn.model_validate(raw)
    except ValidationError as exc:
        # loc and msg only: pydantic's own text repeats the input, which may be a token.
        problems = [f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors(include_input=False)]
        raise _fail("settings refused, nothing changed", problems) from exc
    settings = get_settings()
    db = _database()
    try:
        with db.transaction() as session:
            found = preferences.update(
                session,
                actor="cli",
                principal_id=principal_id,
                body=body,
                allow_private=settings.notify_allow_private,
                now=utcnow(),
            )
    except AppError as exc:
        problems = [f"{_where(str(e['loc']).split('/'))}: {e['msg']}" for e in exc.errors or []]
        raise _fail(f"{exc.detail}; nothing changed", problems) from exc
    finally:
        db.dispose()
    console.print(f"[green]notification settings of {principal_id} replaced[/green]")
    _print_settings(found, as_json)


@notify_cli.command("outbox")
def notify_outbox(
    status: Annotated[
        NotificationStatus | None,
        typer.Option(help="Only this status: pending, sent, dead (dead letters) or skipped."),
    ] = None,
    principal: Annotated[str | None, typer.Option(help="Only this person's messages.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 50,
    as_json: AsJson = False,
) -> None:
    """The notification outbox, newest first (targets masked); --status dead: dead letters."""
    from app.services.notifications import reads

    db = _database()
    try:
        with db.session() as session:
            rows = reads.list_deliveries(
                session,
                status=status,
                alert_id=None,
                principal_id=principal,
                after=None,
                limit=limit,
            )[:limit]
            items = [reads.public(n) for n in rows]
    finally:
        db.dispose()
    if as_json:
        print(json.dumps([i.model_dump(mode="json") for i in items], indent=2))
        return
    table = Table("created", "status", "kind", "alert", "person", "target", "tries", "last error")
    for n in items:
        cells = (
            n.created_at.isoformat(timespec="seconds"),
            n.status,
            f"{n.kind}/{n.reason}",
            str(n.alert_id) if n.alert_id is not None else "-",
            n.principal_id,
            n.target,
            str(n.attempts),
            n.last_error or "-",
        )
        if not interactive():
            print("\t".join(cells))
        table.add_row(*cells)
    if interactive():
        out.print(table)
    elif not items:
        print("no notifications")
