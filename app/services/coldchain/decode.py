"""Decoding a whole batch of readings at C speed, when every item in it is valid.

A batch from a logger is nearly always entirely valid. msgspec decodes and validates it in
one pass (types, lengths, ranges, unknown fields) into columns; any problem at all makes
``decode`` return None, and the caller takes the per-item path, which says which item is
wrong and why and stores the rest. Both paths accept exactly the same items with the same
values: the limits below are the per-item parser's, and timestamps go through the same
RFC 3339 parser (``to_epoch_ms``) on both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import msgspec

MAX_BATCH = 10_000
MAX_TS_CHARS = 40
# Physically possible for a logger on this journey (vapour-phase LN2 to a hot tarmac).
TEMP_RANGE = (-273.15, 150.0)
OPTIONAL = {
    "lat": (-90.0, 90.0),
    "lon": (-180.0, 180.0),
    "humidity_pct": (0.0, 100.0),
    "shock_g": (0.0, 1000.0),
    "light_lux": (0.0, 1e7),
    "battery_pct": (0.0, 100.0),
}
_Aware = Annotated[datetime, msgspec.Meta(tz=True)]
_AwareList = list[_Aware]


def _bounded(name: str) -> object:
    low, high = OPTIONAL[name]
    return Annotated[float, msgspec.Meta(ge=low, le=high)] | None


class _Reading(msgspec.Struct, forbid_unknown_fields=True):
    device_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    ts: Annotated[str, msgspec.Meta(max_length=MAX_TS_CHARS)]
    temp_c: Annotated[float, msgspec.Meta(ge=TEMP_RANGE[0], le=TEMP_RANGE[1])]
    lat: _bounded("lat") = None  # type: ignore[valid-type]
    lon: _bounded("lon") = None  # type: ignore[valid-type]
    humidity_pct: _bounded("humidity_pct") = None  # type: ignore[valid-type]
    shock_g: _bounded("shock_g") = None  # type: ignore[valid-type]
    light_lux: _bounded("light_lux") = None  # type: ignore[valid-type]
    battery_pct: _bounded("battery_pct") = None  # type: ignore[valid-type]


class _Batch(msgspec.Struct, forbid_unknown_fields=True):
    readings: Annotated[list[_Reading], msgspec.Meta(max_length=MAX_BATCH)]


_DECODER = msgspec.json.Decoder(_Batch)


def to_epoch_ms(when: datetime) -> int:
    return round(when.timestamp() * 1000)


def rfc3339_ms(ts: str) -> int | None:
    """Epoch milliseconds of a strict RFC 3339 time with an offset, or None."""
    try:
        return to_epoch_ms(msgspec.convert(ts, _Aware))
    except msgspec.ValidationError:
        return None


@dataclass
class Columns:
    """A decoded batch, column by column; ``extras[i]`` is None for a plain reading."""

    device_ids: list[str]
    ts_ms: list[int]
    temps: list[float]
    extras: list[tuple[float | None, ...] | None]

    def __len__(self) -> int:
        return len(self.ts_ms)


def decode(body: bytes) -> Columns | None:
    """The batch as columns if every item is valid, else None (take the per-item path)."""
    try:
        items = _DECODER.decode(body).readings
        stamps = msgspec.convert([r.ts for r in items], _AwareList)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    extras: list[tuple[float | None, ...] | None] = []
    for r in items:
        if r.lat is None and r.lon is None and r.battery_pct is None:
            if r.humidity_pct is None and r.shock_g is None and r.light_lux is None:
                extras.append(None)
                continue
        extras.append((r.lat, r.lon, r.humidity_pct, r.shock_g, r.light_lux, r.battery_pct))
    return Columns(
        device_ids=[r.device_id for r in items],
        ts_ms=[round(d.timestamp() * 1000) for d in stamps],
        temps=[r.temp_c for r in items],
        extras=extras,
    )
