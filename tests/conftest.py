"""Fixtures: a fresh, migrated and seeded database per test on SQLite and on PostgreSQL.

SQLite: the template file is migrated and seeded once per session and copied per test.
PostgreSQL: a template database is migrated and seeded once; each test gets
``CREATE DATABASE … TEMPLATE``. Under ``CI=true`` an unreachable PostgreSQL fails the run.
"""

from __future__ import annotations

import copy
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from app.clock import FrozenClock
from app.config import Settings
from app.db import Database
from app.main import create_app
from app.migrations import upgrade
from app.services.access import principals
from models.principal import Role
from seeds.loader import load_reference

PG_ADMIN_DSN = os.environ.get("V2V_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
NOW = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
# Prometheus scrapes /metrics with this bearer token (TestClient's address is not loopback).
METRICS_TOKEN = "test-metrics-token-0123456789abcdef"


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _pg_url(dbname: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    return f"{base}/{dbname}"


def _pg_exec(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


class PgCopies:
    """Copies of PostgreSQL template databases, made ahead in threads while tests run.

    ``CREATE DATABASE … TEMPLATE`` takes 0.15-0.4 s and ``DROP DATABASE`` about 0.08 s on
    this machine, longer than most tests that use a copy. ``AHEAD`` copies are kept in the
    making by two threads, and drops have a thread of their own, so a test finds its copy
    ready instead of waiting behind the previous test's drop (the PostgreSQL half of
    tests/access, tests/webhooks and tests/journey: 77 s with one copy ahead in one thread
    that also dropped, 60 s so). Nothing may connect to a template while a copy of it is
    made: ``release`` a template (its copies made ahead are dropped) before using it
    otherwise.
    """

    AHEAD = 2

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(2, thread_name_prefix="pg-copies")
        self._drops = ThreadPoolExecutor(1, thread_name_prefix="pg-drops")
        self._ahead: dict[str, list[Future[str]]] = {}

    _strategy: str | None = None

    @classmethod
    def _create(cls, template: str) -> str:
        if cls._strategy is None:  # FILE_COPY (PostgreSQL 15+): a third of WAL_LOG's CPU here
            with psycopg.connect(PG_ADMIN_DSN, connect_timeout=5) as conn:
                version = int(conn.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]
            cls._strategy = " STRATEGY FILE_COPY" if version >= 150000 else ""
        name = f"v2v_t_{_worker()}_{uuid.uuid4().hex[:10]}"
        _pg_exec(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{cls._strategy}')
        return name

    def take(self, template: str) -> str:
        """A fresh copy of ``template`` (its name); the next ones are started at once."""
        queue = self._ahead.setdefault(template, [])
        name = queue.pop(0).result() if queue else self._create(template)
        while len(queue) < self.AHEAD:
            queue.append(self._thread.submit(self._create, template))
        return name

    def drop(self, name: str) -> None:
        self._drops.submit(_pg_exec, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def release(self, template: str) -> None:
        """No copy of ``template`` in the making any more (those made ahead dropped)."""
        for ahead in self._ahead.pop(template, []):
            self.drop(ahead.result())
        self._drops.submit(lambda: None).result()  # every drop queued so far done


PG_COPIES = PgCopies()


@contextmanager
def pg_copy(template: str) -> Iterator[str]:
    """The URL of a fresh copy of a PostgreSQL template database, dropped afterwards."""
    name = PG_COPIES.take(template)
    try:
        yield _pg_url(name)
    finally:
        PG_COPIES.drop(name)


# API keys of the personas created once in each template database, by backend.
TEMPLATE_KEYS: dict[str, dict[str, str]] = {}


def _prepare(url: str) -> dict[str, str]:
    """Migrate, seed and create the personas once; every test database is a copy."""
    upgrade(url)
    db = Database(url, pool_size=1)
    keys: dict[str, str] = {}
    with db.transaction() as session:
        load_reference(session)
        for persona, spec in PERSONAS.items():
            _, keys[persona] = principals.create_principal(
                session, name=persona, secret_key=Settings().secret_key.get_secret_value(), **spec
            )
    db.dispose()
    return keys


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    TEMPLATE_KEYS["sqlite"] = _prepare(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=5):
            pass
    except psycopg.OperationalError as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required under CI and unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable ({exc}); set CI=true to make this fatal")
    name = f"v2v_tmpl_{_worker()}_{uuid.uuid4().hex[:6]}"
    _pg_exec(f'CREATE DATABASE "{name}"')
    try:
        TEMPLATE_KEYS["postgres"] = _prepare(_pg_url(name))
        yield name
    finally:
        PG_COPIES.release(name)
        _pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# The backends every database test runs on.
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def fresh_db(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[str]:
    """Yield the URL of a fresh copy of the seeded template, dropped afterwards."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "v2v.sqlite3"
        shutil.copy(template, path)
        yield f"sqlite:///{path}"
        return
    with pg_copy(request.getfixturevalue("pg_template")) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh seeded database URL, once per backend."""
    yield from fresh_db(request, request.param, tmp_path)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


def make_settings(db_url: str) -> Settings:
    """The settings of the ``settings`` fixture for this database."""
    return Settings(
        database_url=db_url,
        env="test",
        max_body_bytes=256 * 1024,
        scheduler_enabled=False,
        metrics_token=METRICS_TOKEN,
    )


@pytest.fixture
def settings(db_url: str) -> Settings:
    return make_settings(db_url)


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    db = Database(settings.database_url, pool_size=5)
    yield db
    db.dispose()


@pytest.fixture
def app(settings: Settings, clock: FrozenClock, database: Database) -> Any:
    return create_app(settings, clock=clock, database=database)


@dataclass
class Api:
    """A TestClient plus one API key per persona."""

    client: TestClient
    database: Database
    settings: Settings
    keys: dict[str, str] = field(default_factory=dict)

    def key(
        self,
        persona: str,
        role: Role,
        *,
        site: str | None = None,
        courier: str | None = None,
        device_id: str | None = None,
    ) -> str:
        if persona not in self.keys:
            with self.database.transaction() as session:
                _, key = principals.create_principal(
                    session,
                    name=persona,
                    role=role,
                    site=site,
                    courier=courier,
                    device_id=device_id,
                    secret_key=self.settings.secret_key.get_secret_value(),
                )
            self.keys[persona] = key
        return self.keys[persona]

    def headers(self, persona: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[persona]}"}

    def get(self, persona: str, url: str, **kw: Any) -> Any:
        return self.client.get(url, headers=self.headers(persona), **kw)

    def post(self, persona: str, url: str, json: Any = None, **kw: Any) -> Any:
        headers = {**self.headers(persona), **kw.pop("headers", {})}
        return self.client.post(url, json=json, headers=headers, **kw)


# Personas used across the suite.
PERSONAS: dict[str, dict[str, Any]] = {
    "admin": {"role": Role.admin},
    "ncc": {"role": Role.coordinator, "site": "NCC-EAST"},
    "utokyo": {"role": Role.coordinator, "site": "UTOKYO-HOSP"},
    "kyoto": {"role": Role.coordinator, "site": "KYOTO-UNIV-HOSP"},
    "kashiwa": {"role": Role.manufacturer, "site": "CELLARES-KASHIWA"},
    "bridgewater": {"role": Role.manufacturer, "site": "CELLARES-BRIDGEWATER"},
    "courier": {"role": Role.courier, "courier": "KASHIWA-COLD"},
    "global": {"role": Role.courier, "courier": "GLOBAL-CRYO"},
    "qa": {"role": Role.qa},
    "viewer": {"role": Role.viewer},
}


@pytest.fixture
def api(app: Any, database: Database, settings: Settings) -> Iterator[Api]:
    with TestClient(app, raise_server_exceptions=False) as client:
        helper = Api(client, database, settings)
        backend = "sqlite" if database.dialect == "sqlite" else "postgres"
        helper.keys.update(TEMPLATE_KEYS[backend])
        yield helper


@dataclass
class Snapshot:
    """A seeded database state built once (per module and backend) through the API.

    Each test still gets its own copy (a file copy on SQLite, ``CREATE DATABASE ... TEMPLATE``
    on PostgreSQL), so what one test writes no other test sees: the same fresh state it
    would have built for itself, without rebuilding it through the API every time.
    """

    backend: str
    source: str  # the SQLite file, or the PostgreSQL database copied from
    data: dict[str, Any]
    keys: dict[str, str]

    def copy(self, tmp_path: Path) -> Iterator[str]:
        """Yield the URL of a fresh copy, dropped afterwards."""
        if self.backend == "sqlite":
            path = tmp_path / "v2v.sqlite3"
            shutil.copy(self.source, path)
            yield f"sqlite:///{path}"
            return
        with pg_copy(self.source) as url:
            yield url

    def drop(self) -> None:
        if self.backend == "postgres":
            PG_COPIES.release(self.source)
            _pg_exec(f'DROP DATABASE IF EXISTS "{self.source}" WITH (FORCE)')


def build_snapshot(
    request: pytest.FixtureRequest, backend: str, build: Callable[[Api], dict[str, Any]]
) -> Snapshot:
    """A copy of the template, an app on the frozen clock as the ``api`` fixture makes it,
    and ``build(api)`` run once in it."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        tmp_path_factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
        source = str(tmp_path_factory.mktemp("snapshot") / "snapshot.sqlite3")
        shutil.copy(template, source)
        url = f"sqlite:///{source}"
    else:
        source = PG_COPIES.take(request.getfixturevalue("pg_template"))
        url = _pg_url(source)
    snap = Snapshot(backend, source, {}, {})
    try:
        settings = make_settings(url)
        db = Database(url, pool_size=5)
        try:
            app = create_app(settings, clock=FrozenClock(NOW), database=db)
            with TestClient(app, raise_server_exceptions=False) as client:
                helper = Api(client, db, settings)
                helper.keys.update(TEMPLATE_KEYS[backend])
                snap.data = build(helper)
                snap.keys = dict(helper.keys)
        finally:
            db.dispose()
    except BaseException:
        snap.drop()
        raise
    return snap


class Seeded:
    """A module's seeded state on one backend, built on first use (see ``seeded``)."""

    def __init__(self, backend: str, fixture: str, build: Callable[[Api], dict[str, Any]]) -> None:
        self.backend = backend
        self.fixture = fixture
        self.build = build
        self.snapshot: Snapshot | None = None

    def db_url(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
        """A copy of the seeded state for a test that asks for the fixture, else a fresh
        copy of the template (exactly what the conftest's ``db_url`` gives)."""
        if self.fixture not in request.fixturenames:
            yield from fresh_db(request, self.backend, tmp_path)
            return
        if self.snapshot is None:
            self.snapshot = build_snapshot(request, self.backend, self.build)
        yield from self.snapshot.copy(tmp_path)

    def data(self, api: Api) -> dict[str, Any]:
        """What ``build`` returned, and the API keys it made, for the test's ``api``."""
        assert self.snapshot is not None, f"{self.fixture} needs the module's db_url"
        api.keys.update(self.snapshot.keys)
        return copy.deepcopy(self.snapshot.data)

    def close(self) -> None:
        if self.snapshot is not None:
            self.snapshot.drop()


def seeded(fixture: str, build: Callable[[Api], dict[str, Any]]) -> Any:
    """A module-scoped fixture (one per backend, it parametrizes the module's tests) holding
    the state ``build(api)`` makes, built once per module, backend and worker. A module
    that uses it defines ``db_url`` as ``seeded.db_url(request, tmp_path)`` and the fixture
    named ``fixture`` as ``seeded.data(api)``: each test asking for that fixture gets its
    own copy of the built state; the module's other tests get the usual fresh database."""

    @pytest.fixture(scope="module", params=BACKENDS)
    def holder(request: pytest.FixtureRequest) -> Iterator[Seeded]:
        state = Seeded(request.param, fixture, build)
        try:
            yield state
        finally:
            state.close()

    return holder
