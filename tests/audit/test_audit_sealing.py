"""Audit entries are sealed into the chain at their transaction's commit: an entry recorded
in a savepoint that rolls back goes with it, a rolled-back transaction seals nothing, and a
transaction that has recorded entries but not committed does not hold the chain's lock."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text
from sqlmodel import Session, col, select

from app.db import Database, savepoint
from app.services.audit import chain
from models.audit import AuditEntry
from models.reference import Site
from tests.conftest import NOW


def _record(session: Session, name: str) -> None:
    chain.append(session, actor="test", action=name, entity="test", entity_id=name, at=NOW)


def _actions(database: Database) -> list[str]:
    with database.session() as session:
        rows = session.exec(
            select(AuditEntry.action)
            .where(AuditEntry.entity == "test")
            .order_by(col(AuditEntry.seq))
        )
        return list(rows)


def _verified(database: Database) -> None:
    with database.session() as session:
        result = chain.verify_chain(session)
    assert result.ok, result


def _failing_unit(session: Session) -> None:
    with savepoint(session):
        _record(session, "dropped-by-helper")
        raise RuntimeError("the unit fails")


def test_entries_of_a_rolled_back_savepoint_are_dropped(database: Database) -> None:
    with database.session(write=True) as session:
        _record(session, "kept-1")
        with pytest.raises(RuntimeError, match="the unit fails"):
            _failing_unit(session)
        nested = session.begin_nested()
        _record(session, "dropped-by-rollback")
        nested.rollback()
        with session.begin_nested():
            _record(session, "kept-2")  # a released savepoint keeps its entries
        _record(session, "kept-3")
        session.commit()
    assert _actions(database) == ["kept-1", "kept-2", "kept-3"]
    _verified(database)


def test_a_rolled_back_transaction_seals_nothing(database: Database) -> None:
    with database.session(write=True) as session:
        _record(session, "never")
        session.rollback()
        _record(session, "after")  # the same session, a new transaction
        session.commit()
    assert _actions(database) == ["after"]
    _verified(database)


def test_an_open_transaction_does_not_hold_the_chain(database: Database) -> None:
    if database.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: nothing else could append meanwhile")
    with database.session(write=True) as slow:
        _record(slow, "slow")  # recorded, its transaction still open
        with database.session(write=True) as quick:
            quick.execute(text("SET LOCAL lock_timeout = '2s'"))  # waiting would fail
            _record(quick, "quick")
            quick.commit()
        slow.commit()
    assert _actions(database) == ["quick", "slow"]  # chained in commit order
    _verified(database)


def test_a_writer_that_waited_for_the_chain_links_after_the_one_it_waited_for(
    database: Database,
) -> None:
    """The chain's head is read after its lock is granted (in the same round trip on
    PostgreSQL): a head read before the wait would be the one the other writer replaced."""
    if database.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: nothing else could append meanwhile")
    failures: list[BaseException] = []

    def second() -> None:
        try:
            with database.session(write=True) as session:
                _record(session, "second")
                session.commit()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failures.append(exc)

    with database.session(write=True) as first:
        _record(first, "first")
        chain.seal(first)  # holds the chain's lock until it commits
        waiter = threading.Thread(target=second)
        waiter.start()
        deadline = time.monotonic() + 10
        with database.session() as probe:
            while not probe.execute(text(_WAITING_FOR_ADVISORY)).scalar():
                assert time.monotonic() < deadline, "the second writer never waited"
                probe.rollback()
                time.sleep(0.02)
        first.commit()
    waiter.join(timeout=10)
    assert not failures, failures
    assert _actions(database) == ["first", "second"]
    _verified(database)


_WAITING_FOR_ADVISORY = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"


def test_a_commit_inside_a_savepoint_seals_its_entries(database: Database) -> None:
    with database.session(write=True) as session:
        _record(session, "outer")
        session.begin_nested()
        _record(session, "inner")
        session.commit()  # commits the savepoint and the transaction around it
    assert _actions(database) == ["outer", "inner"]
    _verified(database)


def test_a_seal_that_commits_stores_the_same_entry_in_one_transaction(database: Database) -> None:
    """``seal(commit=True)`` (a creating request's last step) sends the entries with the
    COMMIT on PostgreSQL: the row is the one a seal before the session's commit stores, read
    back through the ORM as written, a change the session has not flushed yet is committed in
    the same transaction, and the session's own commit afterwards only does its bookkeeping."""
    details = {"nested": {"n": 1}, "text": "ü"}
    for name, commit in (("through-session", False), ("with-commit", True)):
        with database.session(write=True) as session:
            site = session.get(Site, "NCC-EAST")
            assert site is not None
            chain.append(
                session, actor="test", action=name, entity="test", entity_id=name, at=NOW,
                after=details,
            )  # fmt: skip
            site.name = f"site {name}"  # pending: not flushed before the seal
            chain.seal(session, commit=commit)
            session.commit()
            assert not session.in_transaction()
        with database.session() as session:
            row = session.exec(select(AuditEntry).where(AuditEntry.action == name)).one()
            assert (row.at, row.before, row.after) == (NOW, None, details)
            null = session.execute(
                text("SELECT before IS NULL FROM audit_log WHERE action = :a"), {"a": name}
            )
            assert not null.scalar_one()  # a missing value is JSON null, as the ORM stores it
            named = session.execute(text("SELECT name FROM site WHERE code = 'NCC-EAST'"))
            assert named.scalar_one() == f"site {name}"
            if database.dialect == "postgresql":  # one transaction wrote both rows
                xmins = session.execute(
                    text(
                        "SELECT (SELECT xmin::text FROM site WHERE code = 'NCC-EAST'), "
                        "(SELECT xmin::text FROM audit_log WHERE action = :a)"
                    ),
                    {"a": name},
                ).one()
                assert xmins[0] == xmins[1]
    assert _actions(database) == ["through-session", "with-commit"]
    _verified(database)


def test_a_seal_that_commits_with_nothing_recorded_still_writes_its_first_statements(
    database: Database,
) -> None:
    with database.session(write=True) as session:
        site = session.get(Site, "NCC-EAST")
        assert site is not None
        site.timezone = "Asia/Seoul"  # pending: flushed before the COMMIT
        first = [("UPDATE site SET name = ? WHERE code = ?", ("renamed", "NCC-EAST"))]
        chain.seal(session, first=first, commit=True)
        session.commit()
        assert not session.in_transaction()
    with database.session() as session:
        row = session.execute(text("SELECT name, timezone FROM site WHERE code = 'NCC-EAST'")).one()
        assert tuple(row) == ("renamed", "Asia/Seoul")
    assert _actions(database) == []  # nothing was recorded, nothing sealed
