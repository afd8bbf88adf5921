"""The ingest writer commits concurrent units in one transaction and answers each for itself:
a refused unit leaves nothing behind and costs the others nothing, a unit failing on a
database error is run again alone, a resend inside the same group is a duplicate, and
only what was committed is counted. Many callers at once through HTTP get exactly what
they would get one by one. A live reading goes before the batches queued ahead of it.
SQLite writers in a process are served in arrival order."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlmodel import Session

from app.db import Database
from app.errors import Conflict
from app.services.access import principals
from app.services.coldchain import ingest
from app.services.coldchain import writer as writer_module
from app.services.coldchain.writer import Writer
from app.sqlite_gate import FairLock
from app.telemetry import READINGS
from models.principal import Principal
from tests.coldchain.test_readings import in_transit, readings
from tests.conftest import NOW, Api

MIN = timedelta(minutes=1)


def _stored(database: Database, device: str) -> list[int]:
    with database.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT ts_ms FROM reading WHERE device_id = :d ORDER BY ts_ms"), {"d": device}
        )
        return [int(r[0]) for r in rows]


def _counted() -> float:
    return READINGS._value.get()  # the process-wide counter: compared before and after


def _courier(api: Api, database: Database) -> Principal:
    with database.session() as session:
        found = principals.authenticate(
            session,
            api_key=api.keys["courier"],
            secret_key=api.settings.secret_key.get_secret_value(),
            now=NOW,
        )
    assert found is not None
    return found


def _store(actor: Principal, items: list[dict[str, Any]]) -> Any:
    def work(session: Session) -> ingest.IngestResult:
        return ingest.ingest(session, actor=actor, items=items, now=NOW)

    return work


def test_a_group_answers_each_unit_for_itself(api: Api, database: Database) -> None:
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    actor = _courier(api, database)
    first = readings(device, t0, [5.0] * 10, every=1)
    refused = readings(device, t0 + 10 * MIN, [5.0] * 10, every=1)
    flaky = readings(device, t0 + 20 * MIN, [5.0] * 10, every=1)
    writer = Writer(database, threads=1, budget_s=60)  # one thread, one group
    hold = threading.Event()
    transactions: dict[str, int] = {}
    attempts: list[int] = []

    running = threading.Event()

    def blocker(_session: Session) -> None:
        running.set()
        assert hold.wait(30)

    def tracked(name: str, work: Any) -> Any:
        def run(session: Session) -> Any:
            transactions[name] = id(session.get_transaction())
            return work(session)

        return run

    def refusing(session: Session) -> None:
        _store(actor, refused)(session)  # written, then refused: must leave nothing
        raise Conflict("refused after writing")

    def failing_once(session: Session) -> ingest.IngestResult:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("a database hiccup")
        return ingest.ingest(session, actor=actor, items=flaky, now=NOW)

    before = _counted()
    busy = writer.submit(blocker)  # the writer works on this while the others queue
    assert running.wait(30)
    futures: dict[str, Future[Any]] = {
        "first": writer.submit(tracked("first", _store(actor, first)), size=10),
        "refused": writer.submit(tracked("refused", refusing), size=10),
        "flaky": writer.submit(failing_once, size=10),
        "resend": writer.submit(tracked("resend", _store(actor, first)), size=10),
    }
    hold.set()
    busy.result(timeout=30)
    assert futures["first"].result(timeout=30).accepted == 10
    with pytest.raises(Conflict):
        futures["refused"].result(timeout=30)
    assert futures["flaky"].result(timeout=30).accepted == 10
    resend = futures["resend"].result(timeout=30)
    assert (resend.accepted, resend.duplicates) == (0, 10)
    assert len(attempts) == 2  # once in the group, once alone
    # One transaction held the group; the refused unit's readings went with its savepoint.
    assert transactions["first"] == transactions["refused"] == transactions["resend"]
    start_ms = int(t0.timestamp() * 1000)
    assert _stored(database, device) == [
        start_ms + i * 60_000 for i in [*range(10), *range(20, 30)]
    ]
    assert _counted() - before == 20  # the refused unit's ten were never counted


def test_a_checked_unit_shares_the_group_without_a_savepoint(api: Api, database: Database) -> None:
    """A unit whose check refuses has written nothing and the group goes on; a unit whose
    work fails after writing takes the whole group back, and each unit then runs alone:
    every caller still gets what it would alone, and the failed unit leaves no reading."""
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    actor = _courier(api, database)
    batches = [readings(device, t0 + k * 10 * MIN, [5.0] * 10, every=1) for k in range(4)]
    writer = Writer(database, threads=1, budget_s=60)  # one thread, one group
    hold, running = threading.Event(), threading.Event()
    savepoints: list[str] = []
    attempts: list[int] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.upper().startswith("SAVEPOINT"):
            savepoints.append(statement)

    def allowed(_session: Session) -> None:
        return None

    def refuse(_session: Session) -> None:
        raise Conflict("refused by its check")

    def lost(_session: Session) -> None:
        raise RuntimeError("connection lost while checking")  # not a refusal: runs alone

    def writes_then_fails(session: Session) -> ingest.IngestResult:
        attempts.append(1)
        _store(actor, batches[2])(session)
        raise Conflict("refused after writing")

    event.listen(database.engine, "before_cursor_execute", count)
    try:
        busy = writer.submit(lambda _session: running.set() or hold.wait(30))
        assert running.wait(30)
        first = writer.submit(_store(actor, batches[0]), size=10, check=allowed)
        refused = writer.submit(_store(actor, batches[1]), size=10, check=refuse)
        failing = writer.submit(writes_then_fails, size=10, check=allowed)
        last = writer.submit(_store(actor, batches[3]), size=10, check=allowed)
        unlucky = writer.submit(_store(actor, batches[3]), size=10, check=lost)
        hold.set()
        busy.result(timeout=30)
        assert first.result(timeout=30).accepted == 10
        assert last.result(timeout=30).accepted == 10
        with pytest.raises(Conflict, match="by its check"):
            refused.result(timeout=30)
        with pytest.raises(Conflict, match="after writing"):
            failing.result(timeout=30)
        with pytest.raises(RuntimeError, match="connection lost"):  # answered, not left waiting
            unlucky.result(timeout=30)
    finally:
        event.remove(database.engine, "before_cursor_execute", count)
    assert savepoints == []
    assert len(attempts) == 2  # in the group, then alone
    start_ms = int(t0.timestamp() * 1000)
    assert _stored(database, device) == [
        start_ms + i * 60_000 for i in [*range(10), *range(30, 40)]
    ]


def test_a_unit_cancelled_before_its_turn_is_not_stored(api: Api, database: Database) -> None:
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    actor = _courier(api, database)
    writer = Writer(database, threads=1, budget_s=60)  # one thread, one group
    hold, running = threading.Event(), threading.Event()
    busy = writer.submit(lambda _session: running.set() or hold.wait(30))
    assert running.wait(30)
    gone = writer.submit(_store(actor, readings(device, t0, [5.0])))
    kept = writer.submit(_store(actor, readings(device, t0 + MIN, [5.0])))
    assert gone.cancel()  # the caller hung up before its turn: never acknowledged
    hold.set()
    busy.result(timeout=30)
    assert kept.result(timeout=30).accepted == 1
    assert _stored(database, device) == [int((t0 + MIN).timestamp() * 1000)]


def _order_served(
    database: Database, arrivals: list[tuple[str, int]], *, budget_s: float, busy_size: int = 1
) -> list[str]:
    """The order in which one busy writer thread serves units queued while it works:
    (name, readings) in order of arrival."""
    writer = Writer(database, threads=1, budget_s=budget_s)
    hold, running = threading.Event(), threading.Event()
    busy = writer.submit(lambda _session: running.set() or hold.wait(30), size=busy_size)
    assert running.wait(30)
    order: list[str] = []

    def unit(name: str) -> Any:
        return lambda _session: order.append(name)

    futures = [writer.submit(unit(name), size=size) for name, size in arrivals]
    hold.set()
    for future in [busy, *futures]:
        future.result(timeout=30)
    return order


ARRIVALS = [("batch 0", 100), ("batch 1", 100), ("live 0", 1), ("live 1", 1)]


def test_a_live_reading_is_served_before_the_batches_queued_ahead_of_it(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "BATCH_MAX_WAIT_S", 60.0)  # no batch is overdue
    # One unit a group: each kind in its own arrival order, the live readings first.
    assert _order_served(database, ARRIVALS, budget_s=0.0) == [
        "live 0",
        "live 1",
        "batch 0",
        "batch 1",
    ]


def test_an_overdue_batch_opens_the_next_group_and_live_readings_follow_it(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Loggers posting back to back keep live readings queued: a batch that has waited its
    # bound opens the next group, so it is never starved; one batch, then the live
    # readings again, so they are not starved in turn.
    monkeypatch.setattr(writer_module, "BATCH_MAX_WAIT_S", 0.0)  # every batch is overdue
    # The busy unit fills its group (MAX_GROUP_READINGS): the queued units form the next.
    order = _order_served(
        database, ARRIVALS, budget_s=60.0, busy_size=writer_module.MAX_GROUP_READINGS
    )
    assert order == ["batch 0", "live 0", "live 1", "batch 1"]


def test_many_callers_at_once_get_what_each_would_alone(api: Api, database: Database) -> None:
    trips = [in_transit(api, patient=f"MRN-W{i}") for i in range(3)]
    bodies: list[tuple[str, list[dict[str, Any]]]] = []
    for _, ship, t0 in trips:
        device = ship["device_ids"][0]
        batch = readings(device, t0, [5.0 + i / 10 for i in range(20)], every=1)
        bodies += [("courier", batch), ("courier", batch[:1])]  # a batch, a resent reading
    bad = [*bodies[0][1][:2], {"device_id": "x", "ts": "soon", "temp_c": 5}]
    bodies += [("courier", bad), ("nobody", bodies[2][1])]
    answers: list[Any] = [None] * len(bodies)
    start = threading.Barrier(len(bodies))

    def send(i: int) -> None:
        persona, items = bodies[i]
        start.wait(10)
        if persona == "nobody":
            answers[i] = api.client.post(
                "/api/v1/readings",
                json={"readings": items},
                headers={"authorization": "Bearer v2v_nope_nope"},
            )
        else:
            answers[i] = api.post(persona, "/api/v1/readings", {"readings": items})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert answers[-1].status_code == 401
    outcomes = [a.json() for a in answers[:-1]]
    for a in answers[:-1]:
        assert a.status_code == 200, a.text
    # Per device the batch and its first reading resent, in whichever order they ran; the
    # bad body carries two of the first device's readings beside its one bad item.
    mine = [[0, 1, 6], [2, 3], [4, 5]]
    for k, indexes in enumerate(mine):
        accepted = sum(outcomes[i]["accepted"] for i in indexes)
        duplicates = sum(outcomes[i]["duplicates"] for i in indexes)
        assert (accepted, duplicates) == (20, 3 if k == 0 else 1)
        assert len(_stored(database, trips[k][1]["device_ids"][0])) == 20
    assert [r["index"] for r in outcomes[6]["rejected"]] == [2]


def test_sqlite_writers_are_served_in_arrival_order() -> None:
    gate = FairLock()
    assert gate.acquire()
    order: list[int] = []

    def writer(i: int) -> None:
        assert gate.acquire(timeout=30)
        order.append(i)
        gate.release()

    threads = []
    for i in range(5):
        t = threading.Thread(target=writer, args=(i,))
        t.start()
        threads.append(t)
        while len(gate._waiters) < i + 1:  # queued behind the holder, in this order
            threading.Event().wait(0.001)
    assert not gate.acquire(blocking=False)
    gate.release()
    for t in threads:
        t.join(timeout=30)
    assert order == [0, 1, 2, 3, 4]
    assert gate.acquire(blocking=False)  # free again once the last one left
    assert not gate.acquire(timeout=0.01)  # a timeout gives up without taking it
    gate.release()


def _xact(session: Session) -> str:
    return str(session.execute(text("SELECT pg_current_xact_id()")).scalar_one())


def test_two_groups_taking_shipments_in_opposite_orders_do_not_deadlock(
    api: Api, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Two writers (two processes' writers, or two threads of one): each group's first unit
    holds its shipment while the other group's next unit wants it. The later unit does not
    wait (which would deadlock: PostgreSQL would fail a group after a second); it runs alone
    once its group has committed, and every caller gets its readings stored."""
    if database.dialect == "sqlite":
        pytest.skip("SQLite has one writer: groups never overlap")
    _, ship_a, t0 = in_transit(api, patient="MRN-DL-A")
    _, ship_b, _ = in_transit(api, patient="MRN-DL-B")
    dev_a, dev_b = ship_a["device_ids"][0], ship_b["device_ids"][0]
    actor = _courier(api, database)
    writers = [Writer(database, threads=1, budget_s=60) for _ in range(2)]
    holding = [threading.Event(), threading.Event()]
    go = threading.Event()
    transactions: dict[str, str] = {}

    def first(k: int, device: str) -> Any:
        def work(session: Session) -> ingest.IngestResult:
            transactions[f"first{k}"] = _xact(session)
            stored = ingest.ingest(
                session, actor=actor, items=readings(device, t0, [5.0] * 5, every=1), now=NOW
            )
            holding[k].set()  # this group now holds the shipment's state
            assert go.wait(30)
            return stored

        return work

    def later(k: int, device: str) -> Any:
        def work(session: Session) -> ingest.IngestResult:
            transactions[f"later{k}"] = _xact(session)  # the last attempt's
            items = readings(device, t0 + 10 * MIN, [5.0] * 5, every=1)
            return ingest.ingest(session, actor=actor, items=items, now=NOW)

        return work

    caplog.set_level("WARNING", logger=writer_module.__name__)
    hold, running = threading.Event(), [threading.Event(), threading.Event()]
    busy = [
        w.submit(lambda _s, k=k: running[k].set() or hold.wait(30)) for k, w in enumerate(writers)
    ]
    assert running[0].wait(30) and running[1].wait(30)  # each writer busy: the rest queue
    firsts = [writers[0].submit(first(0, dev_a)), writers[1].submit(first(1, dev_b))]
    # Queued behind each group's first unit: the shipment the other group holds.
    laters = [
        writers[0].submit(later(0, dev_b), size=5, check=lambda _s: None),
        writers[1].submit(later(1, dev_a), size=5),
    ]
    # ... and last in each group, a unit that waits until both groups have reached it: no
    # group commits before the other's later unit has asked for its shipment.
    both_tried = threading.Barrier(2, timeout=10)
    closing = [w.submit(lambda _s: both_tried.wait()) for w in writers]
    hold.set()
    [b.result(timeout=30) for b in busy]
    assert holding[0].wait(30) and holding[1].wait(30)
    go.set()
    [c.result(timeout=30) for c in closing]
    assert [f.result(timeout=30).accepted for f in firsts] == [5, 5]
    assert [f.result(timeout=30).accepted for f in laters] == [5, 5]
    failed = [r.message for r in caplog.records if r.name == writer_module.__name__]
    assert failed == []  # no group failed (no deadlock)
    # Each later unit ran in a transaction of its own, after its group's commit.
    assert transactions["later0"] != transactions["first0"]
    assert transactions["later1"] != transactions["first1"]
    start_ms = int(t0.timestamp() * 1000)
    for device in (dev_a, dev_b):
        assert _stored(database, device) == [
            start_ms + i * 60_000 for i in [*range(5), *range(10, 15)]
        ]
