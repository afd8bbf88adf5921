"""The temperature trace of one shipment over a window the caller may leave open."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from app.errors import Invalid
from app.services.coldchain import traces


def trace_window(
    session: Session,
    *,
    shipment_id: str,
    from_at: datetime | None,
    to_at: datetime | None,
    max_points: int,
) -> dict[str, Any]:
    """The downsampled trace between two instants, each defaulting to the first/last reading."""
    bounds = traces.bounds(session, shipment_id)
    if bounds is None:
        return {"points": [], "bucket_s": 0}
    # int(), not times.to_ms: the API has always truncated sub-millisecond bounds.
    low = int(from_at.timestamp() * 1000) if from_at else bounds[0]
    high = int(to_at.timestamp() * 1000) if to_at else bounds[1]
    if high < low:
        raise Invalid("to is before from", errors=[{"loc": "query/to", "msg": "before from"}])
    return traces.trace(session, shipment_id, low=low, high=high, max_points=max_points)
