"""Annotated dependencies: sessions, the caller, role checks and scoped loaders."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, TypeVar

from anyio import to_thread
from fastapi import Depends, Header, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlmodel import Session, SQLModel

from app.config import Settings, is_loopback
from app.db import Database
from app.errors import AppError, Forbidden, Unauthorized
from app.services.access import principals
from app.services.access.idempotency import Idempotency, request_hash
from app.services.access.scope import (
    CASE_READERS,
    SHIPMENT_READERS,
    scoped_case,
    scoped_shipment,
)
from app.services.audit import chain as audit
from app.services.identity.coi import Keyring
from models.case import Case
from models.principal import Principal, Role
from models.shipment import Shipment

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CASE_READERS = frozenset(CASE_READERS)
_SHIPMENT_READERS = frozenset(SHIPMENT_READERS)


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


# Dependencies that do no I/O are coroutines: FastAPI runs a plain ``def`` dependency in the
# thread pool, a hop that costs more than these functions themselves.
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_keyring(request: Request) -> Keyring:
    keyring: Keyring = request.app.state.keyring
    return keyring


async def get_now(request: Request) -> datetime:
    now: datetime = request.app.state.clock()
    return now


async def get_session(request: Request) -> AsyncIterator[Session]:
    """The request's session. Making one does no I/O, nor does closing one whose transaction
    has ended (committed, or never begun), so both stay on the event loop: a ``def``
    dependency with ``yield`` costs two thread hops per request. A session still in a
    transaction (a read, or a write an error interrupted) is closed in a worker thread, as
    its rollback may wait for the database."""
    # Writes take SQLite's writer lock up front (BEGIN IMMEDIATE); reads never block.
    write = request.method not in READ_METHODS
    session = get_db(request).session(write=write, hold=write)
    try:
        yield session
    finally:
        if session.in_transaction():
            await to_thread.run_sync(session.close)
        else:
            session.close()


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
KeyringDep = Annotated[Keyring, Depends(get_keyring)]
NowDep = Annotated[datetime, Depends(get_now)]


def bearer_token(request: Request) -> str:
    """The API key of the Authorization header (401 without one)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized()
    return token.strip()


def authenticate(request: Request, session: Session, token: str) -> Principal:
    """The principal holding this key, checked in the given session (401 if none)."""
    return authenticate_along(request, session, token)[0]


def authenticate_along(
    request: Request,
    session: Session,
    token: str,
    along: Sequence[tuple[str, Sequence[Any]]] = (),
) -> tuple[Principal, list[list[tuple[Any, ...]]]]:
    """``authenticate``, and the rows of the reads ``along`` sent with the key's check in one
    round trip (``principals.authenticate_along``)."""
    settings: Settings = request.app.state.settings
    principal, rows = principals.authenticate_along(
        session,
        api_key=token,
        secret_key=settings.secret_key.get_secret_value(),
        now=request.app.state.clock(),
        along=along,
    )
    if principal is None:
        raise Unauthorized("invalid or revoked API key")
    request.state.principal = principal
    return principal, rows


def ensure_role(principal: Principal, allowed: frozenset[Role]) -> Principal:
    if principal.role not in allowed:
        raise Forbidden(f"role {principal.role} may not use this operation")
    return principal


def caller_in(request: Request, session: Session) -> Principal:
    """The request's caller, checking its key in ``session`` unless already checked.

    A scoped loader (``load_case``) is the request's first dependency to use the database
    and runs in a worker thread: it checks the key there, in the session it loads the
    record with, and the role checks that follow find the caller known (``get_caller``)
    instead of checking the key in a thread of their own first.
    """
    known: Principal | None = getattr(request.state, _CALLER, None)
    if known is not None:
        return known
    principal = authenticate(request, session, bearer_token(request))
    setattr(request.state, _CALLER, principal)
    return principal


_CALLER = "v2v_api_caller"  # set only by an API key checked for this request


def _caller_checked(request: Request, session: Session) -> Principal:
    """``caller_in`` for ``get_caller``, in a worker thread."""
    db = get_db(request)
    if db.dialect == "sqlite" and request.method not in READ_METHODS:
        # A short read session of its own: the request's write transaction (and SQLite's
        # writer lock) starts only when the handler writes, not while a key is being checked.
        with db.session() as read:
            return caller_in(request, read)
    # Elsewhere the request's own session: no second connection, ping and BEGIN/ROLLBACK.
    return caller_in(request, session)


async def get_caller(request: Request, session: SessionDep) -> Principal:
    """Whoever holds the key, device keys included; routes admit roles by name."""
    known: Principal | None = getattr(request.state, _CALLER, None)
    if known is not None:  # a scoped loader checked it (no trip to a worker thread)
        return known
    return await to_thread.run_sync(_caller_checked, request, session)


Caller = Annotated[Principal, Depends(get_caller)]


async def get_principal(caller: Caller) -> Principal:
    """A person's key. A device key (a logger's credential, possibly extracted from the
    hardware) reaches only the ingest routes that name the device role: 403 elsewhere."""
    if caller.role == Role.device:
        raise Forbidden("a device key may only send readings")
    return caller


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require_roles(*roles: Role) -> Any:
    """A dependency admitting only these roles (403 for the others)."""
    allowed = frozenset(roles)

    async def check(principal: Caller) -> Principal:
        return ensure_role(principal, allowed)

    check.allowed_roles = allowed  # type: ignore[attr-defined]
    return Depends(check)


Loaded = TypeVar("Loaded", bound=SQLModel)


def scoped_record(
    request: Request,
    session: Session,
    readers: frozenset[Role],
    load: Callable[[Session, Principal, bool], Loaded],
) -> Loaded:
    """A record in the caller's scope (404 otherwise), for a read or, locked, for a write.

    The caller's key is checked here, in the session the record is read in, unless an
    earlier dependency checked it (``caller_in``); a role outside ``readers`` gets 403.

    On SQLite a write locks the whole database (``BEGIN IMMEDIATE`` behind the writer gate)
    from its first statement to its commit, so a dependency must not be that statement: the
    lock would be held while FastAPI hops back to the event loop and waits for a worker
    thread to run the handler (a queue every other writer then waits behind; with every
    worker thread waiting for the gate, the holder would wait for a thread until the busy
    timeout). The key and scope checks run in a short read session instead, and the record
    joins the request's session expired: its first use in the handler reloads it, inside
    the write transaction, under the lock. PostgreSQL locks the row alone (``FOR NO KEY
    UPDATE``) in the request's transaction, which blocks only writers of the same record.
    """

    def admitted(s: Session) -> Principal:
        # The route's own roles first: a role it does not admit gets 403 wherever the record
        # is (API.md), before its scope could answer 404.
        principal = caller_in(request, s)
        ensure_role(principal, route_roles(request))
        return ensure_role(principal, readers)

    if request.method in READ_METHODS:
        return load(session, admitted(session), False)
    db = get_db(request)
    if db.dialect != "sqlite":
        return load(session, admitted(session), True)
    with db.session() as read:
        found = load(read, admitted(read), False)
    session.add(found)
    session.expire(found)
    return found


def route_roles(request: Request) -> frozenset[Role]:
    """The roles the request's route admits: those of every ``require_roles`` among its
    dependencies (all of them must admit a role); every role if it has none. Worked out on
    a route's first request and kept on the route."""
    route = request.scope.get("route")
    found: frozenset[Role] | None = getattr(route, _ROUTE_ROLES, None)
    if found is None:
        found = frozenset(Role)
        dependant = getattr(route, "dependant", None)
        pending = list(dependant.dependencies) if dependant is not None else []
        while pending:
            dependency = pending.pop()
            pending.extend(dependency.dependencies)
            allowed = getattr(dependency.call, "allowed_roles", None)
            if allowed is not None:
                found &= allowed
        if route is not None:
            setattr(route, _ROUTE_ROLES, found)
    return found


_ROUTE_ROLES = "v2v_roles"


def load_case(
    case_id: Annotated[str, Path(max_length=64)], request: Request, session: SessionDep
) -> Case:
    """The case of the path, in the caller's scope; declared before the route's own role
    check, it is where the caller's key is checked (one worker thread for both)."""

    def load(s: Session, principal: Principal, lock: bool) -> Case:
        return scoped_case(s, principal=principal, case_id=case_id, lock=lock)

    return scoped_record(request, session, _CASE_READERS, load)


ScopedCase = Annotated[Case, Depends(load_case)]


def load_shipment(
    shipment_id: Annotated[str, Path(max_length=64)], request: Request, session: SessionDep
) -> Shipment:
    """The shipment of the path, in the caller's scope (see ``load_case``)."""

    def load(s: Session, principal: Principal, lock: bool) -> Shipment:
        return scoped_shipment(s, principal=principal, shipment_id=shipment_id, lock=lock)

    return scoped_record(request, session, _SHIPMENT_READERS, load)


ScopedShipment = Annotated[Shipment, Depends(load_shipment)]


async def get_idempotency(
    request: Request,
    principal: Caller,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Idempotency:
    body = await request.body()
    return Idempotency(
        key=idempotency_key,
        principal_id=principal.id,
        fingerprint=request_hash(request.method, request.url.path, body),
    )


IdempotencyDep = Annotated[Idempotency, Depends(get_idempotency)]


@contextmanager
def committing(session: Session) -> Iterator[None]:
    """One commit per request; a refusal rolls back, then commits what its service records."""
    try:
        yield
        session.commit()
    except AppError as exc:
        session.rollback()
        if exc.on_refusal is not None:
            exc.on_refusal(session)
            session.commit()
        raise
    except BaseException:
        session.rollback()
        raise


def replay_response(stored: tuple[int, Any]) -> JSONResponse:
    status, body = stored
    return JSONResponse(body, status_code=status, headers={"Idempotent-Replayed": "true"})


Out = TypeVar("Out", bound=BaseModel)


def answer(model: BaseModel, *, status_code: int = 200) -> JSONResponse:
    """A sync endpoint's model as its JSON response, rendered in the endpoint's worker thread.

    Returned as a model, it would be validated again (it was built by validation) and
    serialised by FastAPI in a second trip through the thread pool: under load each trip
    waits for the event loop and a worker in turn, a few milliseconds each. The route's
    ``response_model`` still documents the body; the model returned must be of that class.
    """
    return JSONResponse(model.model_dump(mode="json", by_alias=True), status_code=status_code)


def created_once(
    session: Session, idem: Idempotency, create: Callable[[], Out], *, status_code: int = 201
) -> JSONResponse:
    """Run a creating request in one commit; its Idempotency-Key replays the first answer,
    byte for byte (both render the stored body; see ``answer`` for why it is JSON here)."""
    with committing(session):
        if (stored := idem.begin(session)) is not None:
            return replay_response(stored)
        body = create().model_dump(mode="json", by_alias=True)
        # The response to replay is stored in the round trip that takes the audit chain's lock.
        # ... and on PostgreSQL the COMMIT goes in the round trip that inserts the entries.
        audit.seal(session, first=idem.finishing(status_code=status_code, body=body), commit=True)
    return JSONResponse(body, status_code=status_code)


def require_metrics_access(request: Request) -> None:
    """Prometheus scrapes: the configured bearer token, or without one loopback clients only.

    Loopback means the peer address of the connection is a loopback IP (127.0.0.0/8, ::1);
    TestClient's "testclient" and any name are not. Behind a proxy on the same host every
    client looks local, so such deployments set ``V2V_METRICS_TOKEN``.
    """
    settings: Settings = request.app.state.settings
    if settings.metrics_token is not None:
        expected = settings.metrics_token.get_secret_value().encode()
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
            raise Unauthorized("the metrics token is required")
        return
    host = request.client.host if request.client else ""
    if host == "localhost" or not is_loopback(host):
        raise Forbidden("metrics are served to loopback clients only; set V2V_METRICS_TOKEN")


MetricsAccess = Depends(require_metrics_access)
