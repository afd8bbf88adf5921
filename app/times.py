"""Instants, the one place they are converted: epoch milliseconds, UTC, RFC 3339, durations.

Readings are stored as integer epoch milliseconds (cheaper than datetime text on the hot
path); every other instant is an aware UTC ``datetime``. Names say the direction:
``to_ms(datetime) -> int`` and ``from_ms(int) -> datetime``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(at: datetime) -> int:
    """An aware instant as integer epoch milliseconds (rounded to the nearest)."""
    return round(at.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_micros(at: datetime) -> int:
    """An aware instant as integer epoch microseconds (exact, no float)."""
    return (at - EPOCH) // timedelta(microseconds=1)


def as_utc(value: datetime | str) -> datetime:
    """An instant in UTC; naive values (SQLite aggregates bypass the column type) are UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def rfc3339(at: datetime) -> str:
    """UTC with ``Z``; milliseconds, or microseconds when the instant has them."""
    at = at.astimezone(UTC)
    spec = "milliseconds" if at.microsecond % 1000 == 0 else "microseconds"
    return at.isoformat(timespec=spec).replace("+00:00", "Z")


def iso_z(at: datetime) -> str:
    """UTC ISO 8601 with ``Z`` and the instant's own precision (seconds when whole)."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def hours_between(start: datetime, end: datetime) -> float:
    """Hours from ``start`` to ``end``, rounded to the millihour (3 decimals)."""
    return round((end - start).total_seconds() / 3600, 3)
