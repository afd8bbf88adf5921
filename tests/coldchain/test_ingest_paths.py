"""The two ways a batch is read (whole-batch decoder, item by item) store the same readings;
the SQLite writer taken by someone else makes a reading wait, never fail; keys are checked
on every call."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from app.db import Database
from app.services.coldchain import decode as reading_batch
from app.times import to_ms
from tests.coldchain.test_readings import in_transit, post
from tests.conftest import Api

MIN = timedelta(minutes=1)
NOW_MS = 1_900_000_000_000
FUTURE_MS = 300_000


def _stored(database: Database, device: str) -> list[tuple[Any, ...]]:
    with database.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT ts_ms, temp_c, lat, lon, humidity_pct, shock_g, light_lux, battery_pct "
                "FROM reading WHERE device_id = :d ORDER BY ts_ms"
            ),
            {"d": device},
        )
        return [tuple(r) for r in rows]


def _stamps(t0: datetime) -> list[str]:
    """The spellings a logger may use for its instants (RFC 3339 and what ISO 8601 adds)."""
    jst = t0.astimezone(timezone(timedelta(hours=9)))
    return [
        t0.isoformat(),  # +00:00
        (t0 + 10 * MIN).strftime("%Y-%m-%dT%H:%M:%SZ"),
        (t0 + 20 * MIN).strftime("%Y-%m-%dt%H:%M:%Sz"),  # RFC 3339 allows lower case
        (jst + 30 * MIN).isoformat(timespec="milliseconds"),  # +09:00
        (t0 + 40 * MIN).strftime("%Y-%m-%dT%H:%M:%S.1234567+00:00"),  # beyond microseconds
        (t0 + 50 * MIN).strftime("%Y-%m-%d %H:%M:%S.999+00:00"),  # space separator
    ]


def test_whole_batch_and_item_by_item_store_the_same_values(api: Api, database: Database) -> None:
    _, first, t0 = in_transit(api, patient="MRN-P1")
    _, second, _ = in_transit(api, patient="MRN-P2")
    extras: list[dict[str, Any]] = [
        {},
        {"lat": 35.9, "lon": 139.9},
        {"battery_pct": 80, "humidity_pct": None},
        {"shock_g": 1.5, "light_lux": 0},
        {},
        {"humidity_pct": 40.25},
    ]
    temps: list[Any] = [5, 5.25, 4.75, 7, 3.5, 6.125]

    def batch(device: str) -> list[dict[str, Any]]:
        return [
            {"device_id": device, "ts": ts, "temp_c": temp, **extra}
            for ts, temp, extra in zip(_stamps(t0), temps, extras, strict=True)
        ]

    valid = batch(first["device_ids"][0])
    assert reading_batch.decode(json.dumps({"readings": valid}).encode()) is not None
    assert post(api, "courier", valid) == {"accepted": 6, "duplicates": 0, "rejected": []}
    # The same readings with one bad item among them: decoded item by item.
    mixed = batch(second["device_ids"][0])
    mixed.insert(2, {"device_id": second["device_ids"][0], "ts": "soon", "temp_c": 5})
    result = post(api, "courier", mixed)
    assert result["accepted"] == 6
    assert [r["index"] for r in result["rejected"]] == [2]
    stored = _stored(database, first["device_ids"][0])
    assert stored == _stored(database, second["device_ids"][0])
    assert len(stored) == 6
    # 40 min in, 1234567 tenths of a microsecond: truncated to 123 ms, on both paths.
    assert stored[4][0] % 1000 == 123
    assert stored[1][2:4] == (35.9, 139.9)


# ---- the decoder never accepts what the item parser refuses, nor reads it differently ----

_ts = st.one_of(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1)).flatmap(
        lambda d: st.sampled_from(
            [
                d.replace(tzinfo=UTC).isoformat(),
                d.isoformat(),  # naive
                d.strftime("%Y-%m-%dT%H:%M:%S.%f") + "7z",
                d.strftime("%Y%m%dT%H%M%SZ"),  # ISO 8601 basic format
                d.strftime("%Y-%m-%dT%H:%MZ"),  # no seconds
                d.replace(tzinfo=UTC).isoformat() + "0" * 20,
            ]
        )
    ),
    st.text(max_size=12),
    st.integers(),
)
_number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
_item = st.fixed_dictionaries(
    {"device_id": st.one_of(st.text(max_size=3), st.none()), "ts": _ts, "temp_c": _number},
    optional={
        "lat": _number,
        "battery_pct": _number,
        "shock_g": _number,
        "pressure": _number,
    },
)


# Items a logger would send, in every spelling both paths read: most lists of these decode,
# so the comparison below runs on real values and not only on refusals.
_valid_item = st.fixed_dictionaries(
    {
        "device_id": st.text(min_size=1, max_size=4),
        "ts": st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1))
        .map(lambda d: d.replace(tzinfo=UTC).isoformat())
        .flatmap(lambda t: st.sampled_from([t, t.replace("+00:00", "Z"), t.lower()])),
        "temp_c": st.one_of(
            st.floats(-273.15, 150.0), st.integers(-273, 150), st.floats(-2000, 2000)
        ),
    },
    optional={
        "lat": st.one_of(st.floats(-90, 90), st.none()),
        "battery_pct": st.floats(0, 100),
        "shock_g": st.integers(0, 1000),
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_valid_item, _valid_item, _item), max_size=5))
def test_decoder_accepts_only_what_every_item_passes_with_the_same_values(
    items: list[dict[str, Any]],
) -> None:
    body = json.dumps({"readings": items}).encode()
    columns = reading_batch.decode(body)
    parsed = _parse_all(items)
    if columns is None:
        # Refused whole: some item is refused item by item too, or is read only by the
        # item parser's wider ISO 8601 reading (no seconds, basic format).
        return
    assert all(not isinstance(p, str) for p in parsed), parsed
    for i, p in enumerate(parsed):
        assert not isinstance(p, str)
        device_id, ts_ms, measures = p
        assert (columns.device_ids[i], columns.ts_ms[i], columns.temps[i]) == (
            device_id,
            ts_ms,
            measures[0],
        )
        assert (columns.extras[i] or (None,) * 6) == measures[1:]


def _parse_all(items: list[dict[str, Any]]) -> list[Any]:
    # The future is checked after decoding, on both paths; keep it out of the comparison.
    return [
        reading_batch.parse_item(json.loads(json.dumps(x)), now_ms=2**62, future_ms=0)
        for x in items
    ]


def test_an_integer_beyond_any_float_is_refused_alone(api: Api, database: Database) -> None:
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    huge = "1" + "0" * 400  # valid JSON, but no float holds it
    items = [
        {"device_id": device, "ts": t0.isoformat(), "temp_c": 0},
        {"device_id": device, "ts": (t0 + MIN).isoformat(), "temp_c": 5},
    ]
    body = json.dumps({"readings": items}).replace('"temp_c": 0', f'"temp_c": {huge}', 1)
    r = api.post(
        "courier", "/api/v1/readings", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1
    assert r.json()["rejected"][0]["index"] == 0
    assert "temp_c" in r.json()["rejected"][0]["reason"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # SQLite's one writer lock
def test_a_reading_waits_for_a_writer_held_elsewhere_then_is_stored(
    api: Api, database: Database, db_url: str
) -> None:
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    item = {"device_id": device, "ts": t0.isoformat(), "temp_c": 5.0}
    other = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writing
    outcome: dict[str, Any] = {}

    def send() -> None:
        outcome["response"] = api.post("courier", "/api/v1/readings", {"readings": [item]})

    sender = threading.Thread(target=send)
    sender.start()
    sender.join(timeout=1.0)
    waited = sender.is_alive()  # still waiting for the lock, not failed
    other.execute("COMMIT")
    other.close()
    sender.join(timeout=30)
    assert waited
    assert outcome["response"].status_code == 200, outcome["response"].text
    assert outcome["response"].json()["accepted"] == 1
    assert len(_stored(database, device)) == 1


def test_a_key_revoked_after_use_is_refused_on_the_next_call(api: Api, database: Database) -> None:
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    first = {"device_id": device, "ts": t0.isoformat(), "temp_c": 5.0}
    assert post(api, "courier", [first])["accepted"] == 1
    with database.engine.begin() as conn:
        conn.execute(
            text("UPDATE principal SET revoked_at = :at WHERE role = 'courier'"),
            {"at": datetime(2000, 1, 1, tzinfo=UTC).replace(tzinfo=None)},
        )
    second = {"device_id": device, "ts": (t0 + MIN).isoformat(), "temp_c": 5.0}
    r = api.post("courier", "/api/v1/readings", {"readings": [second]})
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert len(_stored(database, device)) == 1


_OFFSETS = st.sampled_from(["Z", "+00:00", "+09:00", "-05:30", "+14:00", "-12:00"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2090, 1, 1)),
            st.sampled_from([0, 0, 0, 500, 499, 501, 1, 999]),  # whole ms, halves, others
            _OFFSETS,
        ),
        min_size=1,
        max_size=8,
    )
)
def test_batch_timestamps_are_what_to_ms_gives_each(
    stamps: list[tuple[datetime, int, str]],
) -> None:
    """The batch conversion (whole milliseconds by arithmetic from the first instant) gives
    exactly ``to_ms`` of every instant, whatever its offset or sub-millisecond part."""
    spelt = []
    for when, micros, offset in stamps:
        when = when.replace(microsecond=(when.microsecond // 1000) * 1000 + micros % 1000)
        spelt.append(when.strftime("%Y-%m-%dT%H:%M:%S.%f") + offset)
    items = [{"device_id": "LOG-1", "ts": t, "temp_c": 5.0} for t in spelt]
    columns = reading_batch.decode(json.dumps({"readings": items}).encode())
    assert columns is not None
    expected = [to_ms(datetime.fromisoformat(t.replace("Z", "+00:00"))) for t in spelt]
    assert columns.ts_ms == expected
