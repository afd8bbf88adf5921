"""Keyset pagination cursors: opaque to clients, stable under concurrent inserts."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Path, Query

from app.errors import Invalid

T = TypeVar("T")

LimitQuery = Annotated[int, Query(ge=1, le=500, description="Page size (max 500).")]
CursorQuery = Annotated[
    str | None, Query(max_length=500, description="`next_cursor` of the previous page.")
]


def encode_cursor(*values: Any) -> str:
    raw = json.dumps(list(values), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError as exc:
        raise Invalid(
            "malformed cursor", errors=[{"loc": "query/cursor", "msg": "malformed"}]
        ) from exc
    if not isinstance(values, list) or len(values) != arity:
        raise Invalid("malformed cursor", errors=[{"loc": "query/cursor", "msg": "malformed"}])
    return values


MAX_INT_ID = 2**31 - 1  # integer primary keys are 32-bit on PostgreSQL
IntId = Annotated[int, Path(ge=1, le=MAX_INT_ID)]


def cursor_int(cursor: str) -> int:
    """The single integer a cursor carries, range-checked (never reaches the database raw)."""
    (value,) = decode_cursor(cursor, 1)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**63 - 1:
        raise Invalid("malformed cursor", errors=[{"loc": "query/cursor", "msg": "malformed"}])
    return min(value, MAX_INT_ID + 1)


def time_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    """The (created_at, id) keyset a cursor carries; only an aware instant and a string id."""
    if cursor is None:
        return None
    created_at, row_id = decode_cursor(cursor, 2)
    at = cursor_instant(created_at)
    if at is None or not isinstance(row_id, str):
        raise Invalid("malformed cursor", errors=[{"loc": "query/cursor", "msg": "malformed"}])
    return at, row_id


def cursor_instant(value: Any) -> datetime | None:
    """An aware instant from a cursor, in UTC, or None: naive times, and instants that only
    exist outside years 1–9999 once in UTC (``0001-01-01T00:00+01:00``), never reach a query."""
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
        if at.tzinfo is None or at.utcoffset() is None:
            return None
        return at.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def page_of(
    rows: Sequence[T], limit: int, key: Callable[[T], tuple[Any, ...]]
) -> tuple[list[T], str | None]:
    """One page of ``limit`` rows out of ``limit + 1`` fetched, and the cursor after it."""
    items = list(rows[:limit])
    return items, encode_cursor(*key(items[-1])) if len(rows) > limit else None
