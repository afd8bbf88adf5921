"""Databases, API keys and processes for the runs: API servers and scheduler instances."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import text

from app.config import Settings
from app.db import Database
from app.services.access import principals
from bench.harness import ROOT, pg_database, pg_url, prepare, workdir
from models.principal import Role
from tests.servers import Server

# The same persona names as tests/conftest.py, so either source of keys drives a run.
PERSONAS: dict[str, dict[str, Any]] = {
    "admin": {"role": Role.admin},
    "ncc": {"role": Role.coordinator, "site": "NCC-EAST"},
    "kashiwa": {"role": Role.manufacturer, "site": "CELLARES-KASHIWA"},
    "courier": {"role": Role.courier, "courier": "KASHIWA-COLD"},
    "qa": {"role": Role.qa},
}
# Log lines that mean a lock error; and the last line of a traceback (the exception).
TROUBLE = ("database is locked", "deadlock detected", "could not serialize")
EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Detected|Violation|Timeout)\b")


def create_personas(url: str) -> dict[str, str]:
    """One API key per persona, hashed with the secret the servers will read from V2V_*."""
    secret = Settings().secret_key.get_secret_value()
    db = Database(url, pool_size=1)
    keys: dict[str, str] = {}
    try:
        with db.transaction() as session:
            for persona, spec in PERSONAS.items():
                _, keys[persona] = principals.create_principal(
                    session, name=f"load {persona}", secret_key=secret, **spec
                )
    finally:
        db.dispose()
    return keys


@contextmanager
def fresh_database(backend: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A migrated, seeded database (SQLite file or PostgreSQL on 127.0.0.1) and its keys."""
    with ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite:///{stack.enter_context(workdir('db')) / 'v2v.sqlite3'}"
        elif backend == "postgres":
            url = pg_url(stack.enter_context(pg_database()))
        else:
            raise ValueError(f"unknown backend {backend!r}")
        prepare(url)
        yield url, create_personas(url)


def api_server(url: str, log: Path, *, scheduler: bool = False) -> Server:
    """An API process (tests/servers.py); ingest rate limits off, as the runs measure load."""
    server = Server(url, scheduler=scheduler, log=log)
    server.env["V2V_RATE_LIMIT_INGEST_PER_MIN"] = "0"
    return server


class Process:
    """A Python module run in a subprocess with its own log; SIGTERM to stop, SIGKILL to kill."""

    def __init__(self, module: str, args: Sequence[str], *, env: dict[str, str], log: Path):
        self.command = [sys.executable, "-m", module, *args]
        self.env = {**os.environ, **env}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                self.command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else -1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def scheduler_probe(url: str, log: Path, *, name: str, interval: float) -> Process:
    """The real Scheduler and jobs at a short interval, one line per run (loadtest/probe)."""
    env = {"V2V_DATABASE_URL": url, "PGAPPNAME": name, "V2V_LOG_LEVEL": "warning"}
    return Process(
        "loadtest.scheduler_probe", ["--name", name, "--interval", str(interval)], env=env, log=log
    )


def cli_scheduler(url: str, log: Path, *, name: str) -> Process:
    """``v2v scheduler`` itself, its database connections named ``name`` (PGAPPNAME)."""
    env = {"V2V_DATABASE_URL": url, "PGAPPNAME": name, "V2V_LOG_LEVEL": "info"}
    return Process("app.cli", ["scheduler"], env=env, log=log)


def leader(db: Database, lock_key: int) -> str | None:
    """The application_name of the PostgreSQL session holding the scheduler's leader lock."""
    with db.engine.connect() as conn:
        # A bigint advisory key is stored as two 32-bit halves: classid high, objid low.
        row = conn.execute(
            text(
                "SELECT a.application_name FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.classid::bigint = :hi AND l.objid::bigint = :lo"
            ),
            {"hi": lock_key >> 32, "lo": lock_key & 0xFFFF_FFFF},
        ).first()
    return str(row[0]) if row else None


def trouble(logs: Sequence[Path]) -> list[str]:
    """Lock errors, logged errors and the exception lines of tracebacks in these logs."""
    found = []
    for path in logs:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if any(marker in line for marker in TROUBLE) or EXCEPTION.match(line):
                found.append(f"{path.name}: {line.strip()[:300]}")
            elif " ERROR " in line or line.startswith("ERROR:"):
                found.append(f"{path.name}: {line.strip()[:300]}")
    return found


def wait_until(predicate: Any, timeout: float, poll: float = 0.05) -> float | None:
    """Seconds until predicate() was true, or None after timeout."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        time.sleep(poll)
    return None
