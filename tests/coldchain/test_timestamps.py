"""The ingest hot path's RFC 3339 parser agrees with the standard library."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from app.services.coldchain.decode import epoch_ms

instants = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1))
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@given(instants, offsets, st.sampled_from(["seconds", "milliseconds", "microseconds"]))
def test_epoch_ms_matches_fromisoformat(naive: datetime, tz: timezone, spec: str) -> None:
    text = naive.replace(tzinfo=tz).isoformat(timespec=spec)
    expected = round(datetime.fromisoformat(text).timestamp() * 1000)
    assert epoch_ms(text) == expected
    assert epoch_ms(text.replace("+00:00", "Z")) == expected


def test_refusals_say_why() -> None:
    assert "offset" in str(epoch_ms("2026-11-26T09:00:00"))
    assert "RFC 3339" in str(epoch_ms("2026-02-30T09:00:00Z"))
    assert "RFC 3339" in str(epoch_ms("yesterday"))
    assert (
        epoch_ms("2026-11-26T00:00:00Z")
        == int(datetime(2026, 11, 26, tzinfo=UTC).timestamp()) * 1000
    )
