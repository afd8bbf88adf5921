"""The downsampled trace against an independent bucketing of the readings that were sent."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from tests.coldchain.test_readings import in_transit, post
from tests.conftest import Api

MIN = timedelta(minutes=1)


def _expected(
    sent: list[tuple[int, float]], low: int, high: int, max_points: int
) -> tuple[list[tuple[int, float, float, float, int]], float]:
    bucket = max(1000, -(-(high - low + 1) // max_points))
    groups: dict[int, list[float]] = {}
    for ms, temp in sent:
        if low <= ms <= high:
            groups.setdefault((ms - low) // bucket, []).append(temp)
    points = [
        (low + b * bucket, min(v), max(v), sum(v) / len(v), len(v))
        for b, v in sorted(groups.items())
    ]
    return points, bucket / 1000


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def test_trace_buckets_match_an_independent_computation(api: Api) -> None:
    _, ship, t0 = in_transit(api)
    rng = random.Random(4)
    items, sent = [], []
    for i in range(400):
        if rng.random() < 0.15:  # logger gaps leave empty buckets
            continue
        at = t0 + i * MIN + timedelta(seconds=rng.randrange(60))
        temp = round(rng.uniform(1.0, 9.0), 2)
        items.append({"device_id": ship["device_ids"][0], "ts": at.isoformat(), "temp_c": temp})
        sent.append((_ms(at), temp))
    post(api, "courier", items)
    first, last = min(ms for ms, _ in sent), max(ms for ms, _ in sent)
    windows = [
        ("", first, last, 500),
        ("", first, last, 37),
        ("", first, last, 2),
        ("", first, last, 10_000),  # more buckets than SQLite compounds: the grouped query
        (
            f"&from={(t0 + 50 * MIN).isoformat()}&to={(t0 + 222 * MIN).isoformat()}",
            _ms(t0 + 50 * MIN),
            _ms(t0 + 222 * MIN),
            40,
        ),
    ]
    for query, low, high, max_points in windows:
        url = f"/api/v1/shipments/{ship['id']}/readings?max_points={max_points}{query}"
        body = api.get("ncc", url.replace("+", "%2B")).json()
        points, bucket_s = _expected(sent, low, high, max_points)
        assert body["bucket_s"] == bucket_s
        got = body["points"]
        assert [_ms(datetime.fromisoformat(p["t"])) for p in got] == [p[0] for p in points]
        assert [(p["min_c"], p["max_c"], p["n"]) for p in got] == [
            (p[1], p[2], p[4]) for p in points
        ]
        for p, want in zip(got, points, strict=True):
            assert p["mean_c"] == pytest.approx(want[3], abs=1.01e-4)


def test_a_shipment_without_readings_has_an_empty_trace(api: Api) -> None:
    _, ship, _ = in_transit(api)
    body = api.get("ncc", f"/api/v1/shipments/{ship['id']}/readings").json()
    assert body == {"points": [], "bucket_s": 0}
