"""Which shipment a logger was riding in when it took a reading: its rides (pickup to
delivery, reaching back a tolerance before pickup), the late-data bounds, and which devices
a caller may upload for."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from app.config import Settings
from app.raw import Raw
from app.services.coldchain import store as reading_store
from models.principal import Principal, Role

UNASSIGNED = "device is not assigned to a shipment at ts"


@dataclass(frozen=True)
class LateBounds:
    """How far outside its ride a reading may lie: dated before the shipment's pickup (a
    logger started at packing, clock drift) and arriving after its delivery (loggers upload
    late by design, but a shipment's record must settle). Settings
    ``V2V_READING_PICKUP_TOLERANCE_MIN`` and ``V2V_READING_LATE_BOUND_H``."""

    pickup_tolerance_min: float = 30
    late_bound_h: float = 72

    @classmethod
    def of(cls, settings: Settings) -> LateBounds:
        return cls(settings.reading_pickup_tolerance_min, settings.reading_late_bound_h)

    @property
    def pickup_tolerance_ms(self) -> int:
        return int(self.pickup_tolerance_min * 60_000)

    @property
    def late_bound_ms(self) -> int:
        return int(self.late_bound_h * 3_600_000)

    def before_pickup(self) -> str:
        return f"dated more than {self.pickup_tolerance_min:g} min before its shipment's pickup"

    def too_late(self) -> str:
        return f"arrived more than {self.late_bound_h:g} h after its shipment was delivered"


DEFAULT_BOUNDS = LateBounds()


@dataclass(frozen=True)
class Ride:
    """A device in one shipment: readings from ``start_ms`` (pickup less the tolerance) to
    ``end_ms`` (delivery) attach to it; ``closed`` once delivered longer ago than the bound.
    A device paired in transit (``at_pickup`` False) rides from its pairing, no earlier."""

    start_ms: int
    end_ms: int | None
    shipment_id: str
    closed: bool
    at_pickup: bool


class Assignments:
    """Which shipment each device was in, by time: intervals from pickup to delivery.

    An interval reaches back ``pickup_tolerance`` before its pickup, never into the device's
    previous ride. A shipment delivered (and its delivery recorded) longer than
    ``late_bound`` before ``now_ms`` takes no more readings.
    """

    def __init__(
        self,
        intervals: Iterable[reading_store.Interval],
        *,
        now_ms: int | None = None,
        bounds: LateBounds = DEFAULT_BOUNDS,
    ) -> None:
        self.bounds = bounds
        found: dict[str, list[tuple[int, int | None, str, int | None, int | None]]]
        found = defaultdict(list)
        for device_id, start, end, shipment_id, picked, delivered in intervals:
            found[device_id].append((start, end, shipment_id, picked, delivered))
        tolerance, bound = bounds.pickup_tolerance_ms, bounds.late_bound_ms
        self.by_device: dict[str, list[Ride]] = {}
        for device_id, spans in found.items():
            spans.sort(key=lambda i: i[0])
            rides: list[Ride] = []
            previous_end: int | None = None
            for start, end, shipment_id, picked, delivered in spans:
                at_pickup = picked is None or start <= picked
                reach = start - tolerance if at_pickup else start
                if previous_end is not None:
                    reach = max(reach, previous_end + 1)
                closed = now_ms is not None and delivered is not None and now_ms > delivered + bound
                rides.append(Ride(min(reach, start), end, shipment_id, closed, at_pickup))
                previous_end = end
            self.by_device[device_id] = rides
        self._starts = {d: [r.start_ms for r in v] for d, v in self.by_device.items()}

    def locate(self, device_id: str, ts_ms: int) -> tuple[str | None, str | None]:
        """(shipment id, None) for the ride the device was in at ``ts_ms``, else (None, why)."""
        rides = self.by_device.get(device_id)
        if not rides:
            return None, UNASSIGNED
        i = bisect.bisect_right(self._starts[device_id], ts_ms) - 1
        if i < 0:
            return None, self.bounds.before_pickup() if rides[0].at_pickup else UNASSIGNED
        ride = rides[i]
        if ride.end_ms is not None and ts_ms > ride.end_ms:
            return None, UNASSIGNED
        if ride.closed:
            return None, self.bounds.too_late()
        return ride.shipment_id, None

    def shipment_at(self, device_id: str, ts_ms: int) -> str | None:
        return self.locate(device_id, ts_ms)[0]


@dataclass(frozen=True)
class Read:
    """``ride_reads`` of some devices and their rows: read before the caller was known, in
    the round trip that checked its key (``principals.authenticate_along``)."""

    device_ids: tuple[str, ...]
    couriers: list[tuple[Any, ...]]
    rides: list[tuple[Any, ...]]

    @classmethod
    def of(cls, device_ids: Sequence[str], rows: list[list[tuple[Any, ...]]]) -> Read | None:
        """The rows of ``read_ahead(device_ids)`` as ``owned_rides`` takes them; None if
        none came back (nothing was read ahead)."""
        if len(rows) != 2:
            return None
        return cls(tuple(sorted(set(device_ids))), rows[0], rows[1])


def read_ahead(raw: Raw, device_ids: Sequence[str]) -> list[tuple[str, Sequence[Any]]]:
    """``ride_reads`` for a caller to send ahead, in the round trip that checks its key:
    only for one device's readings (nearly every body), so that a caller whose key then
    fails costs one device's indexed reads, never a thousand devices'; none for no
    readings."""
    if not device_ids or device_ids.count(device_ids[0]) != len(device_ids):
        return []
    return ride_reads(raw, device_ids[:1])


def ride_reads(raw: Raw, device_ids: Iterable[str]) -> list[tuple[str, Sequence[Any]]]:
    """What ``owned_rides`` reads about these devices, whoever asks (their organisations and
    every interval), as ``Raw`` statements."""
    wanted = sorted(set(device_ids))
    return [
        reading_store.device_couriers_query(raw, wanted),
        reading_store.assignments_query(raw, wanted),
    ]


def owned_rides(
    session: Session,
    actor: Principal,
    device_ids: Iterable[str],
    *,
    now_ms: int | None = None,
    bounds: LateBounds = DEFAULT_BOUNDS,
    read: Read | None = None,
) -> tuple[set[str], Assignments]:
    """The devices the caller may upload for (a logger: itself; a courier: its
    organisation's; an admin: any registered) and their rides, read together: one round trip
    on PostgreSQL, none if ``read`` holds them already (read for exactly these devices in
    this transaction). Rides of the others are read and dropped, never used."""
    wanted = sorted(set(device_ids))
    if not wanted:
        return set(), Assignments((), now_ms=now_ms, bounds=bounds)
    raw = Raw.of(session)
    if read is not None and read.device_ids == tuple(wanted):
        couriers, rows = read.couriers, read.rides
    else:
        couriers, rows = raw.pipelined(ride_reads(raw, wanted))
    if actor.role == Role.device:
        owned = {actor.device_id} & set(wanted) if actor.device_id else set()
    else:
        owned = {
            device_id
            for device_id, courier in reading_store.courier_rows(couriers)
            if actor.role == Role.admin or courier == actor.courier
        }
    intervals = [i for i in reading_store.assignment_rows(rows) if i[0] in owned]
    return owned, Assignments(intervals, now_ms=now_ms, bounds=bounds)
