"""PostgreSQL connections that die while pooled (the server restarted, an administrator or a
proxy ended them) are replaced before a request uses them: no caller sees an error for it.

The pool checks a connection as it leaves (its BEGIN is the check, ``app.db``); these tests
end every server process of the database between two requests and expect both answered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.config import Settings
from app.db import Database
from app.main import create_app
from tests.conftest import Api, fresh_db


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from fresh_db(request, request.param, tmp_path)


def _other_backends(db_url: str, what: str) -> int:
    """``what`` (an aggregate over ``pid``) of every other server process of the database."""
    dsn = db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            f"SELECT {what} FROM pg_stat_activity "  # noqa: S608 - our own fixed expressions
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _end_connections(db_url: str) -> int:
    """Terminate every other server process of the database; how many there were."""
    return _other_backends(db_url, "count(pg_terminate_backend(pid))")


def _backends(db_url: str) -> int:
    return _other_backends(db_url, "count(*)")


def test_requests_after_pooled_connections_are_ended_are_answered(api: Api, db_url: str) -> None:
    assert api.get("admin", "/api/v1/cases").status_code == 200
    assert _end_connections(db_url) >= 1  # the pool held at least the one it just used

    read = api.get("admin", "/api/v1/cases")
    assert read.status_code == 200, read.text
    body = {"readings": [{"device_id": "LOG-NOBODY", "ts": "2026-11-25T23:00:00Z", "temp_c": 4}]}
    # A write too: a refusal from the service (no such device for this courier), not a 500.
    write = api.post("courier", "/api/v1/readings", json=body)
    assert write.status_code < 500, write.text


def test_an_ended_connection_is_replaced_and_none_is_left_in_a_transaction(
    database: Database,
) -> None:
    with database.engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    dsn = str(database.engine.url.set(drivername="postgresql").render_as_string(False))
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    # The next checkout finds the ended connection and takes a new one.
    with database.engine.connect() as conn:
        again: Any = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert again != pid
    with database.engine.connect() as conn:  # returned without a transaction left open
        left = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
        assert left == 0


def test_a_connection_asked_for_autocommit_runs_outside_a_transaction(database: Database) -> None:
    # VACUUM refuses to run in a transaction block: the BEGIN the connection left the pool
    # with must be gone once AUTOCOMMIT is asked for, and back for the next checkout.
    with database.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM site"))
    with database.engine.connect() as conn:
        level = conn.execute(text("SHOW transaction_isolation")).scalar_one()
        assert level == "read committed"
        status = conn.connection.driver_connection.pgconn.transaction_status  # type: ignore[union-attr]
        assert status == psycopg.pq.TransactionStatus.INTRANS


def test_a_server_opens_its_pool_as_it_starts(settings: Settings, db_url: str) -> None:
    """The first burst of requests after a start does not wait for connections to open."""
    settings = settings.model_copy(update={"db_pool_size": 4})
    app = create_app(settings)
    before = _backends(db_url)
    with TestClient(app) as client:
        assert _backends(db_url) - before == 4
        assert client.get("/healthz").status_code < 500
    assert _backends(db_url) == before  # and closes them as it stops


def test_a_server_starts_while_its_database_is_down(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Its requests fail until the database is back, but the process comes up (a database
    starting after the server, as containers often do), saying why in its log."""
    down = settings.model_copy(
        update={"database_url": "postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=1"}
    )
    with TestClient(create_app(down)) as client:
        assert client.get("/openapi.json").status_code == 200
    assert "could not open the database pool at start: OperationalError" in caplog.text
