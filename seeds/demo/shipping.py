"""A case's shipments as rows: shipments, custody scans, logger assignments and readings,
and what the excursion detector makes of the readings (excursions, state, alerts)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from app.services.coldchain.detector import Rules, evaluate
from app.times import from_ms, to_micros
from seeds.demo.alerts import alert_rows
from seeds.demo.config import DemoConfig
from seeds.demo.readings import Fleet, readings_for, segments
from seeds.demo.timeline import after
from seeds.demo.world import Ev, Leg, Ship, World
from seeds.demo.write import Batch


class Shipping:
    """Turns a case's sampled shipments into rows, cut at ``now``."""

    def __init__(
        self,
        world: World,
        config: DemoConfig,
        *,
        now: datetime,
        fleet: Fleet,
        readings: bool,
        recorded: Callable[[datetime], datetime],
    ) -> None:
        self.world, self.config, self.now, self.fleet = world, config, now, fleet
        # Floor, as readings at ``now``'s own millisecond are already in.
        self.now_ms = to_micros(now) // 1000
        self.with_readings = readings
        self.interval_ms = int(config.raw["readings_interval_min"] * 60_000)
        self.rules = {code: Rules.from_profile(p) for code, p in world.profiles.items()}
        # The cohort's own draw: scans take their recorded times from the case's sequence.
        self.recorded = recorded

    def shipments(
        self, case_id: str, ships: list[Ship], last: Ev, batch: Batch
    ) -> dict[datetime, datetime]:
        """Shipment, custody, logger and reading rows; returns each pickup's recorded time."""
        now = self.now
        historic = last.type in ("infused", "cancelled") and last.at <= now
        pickups: dict[datetime, datetime] = {}
        for ship in ships:
            if ship.created_at > now:
                continue
            ship.case_id = case_id
            ship.device_id = self.fleet.take(ship)
            picked = ship.pickup_at <= now and ship.cancelled_at is None
            delivered = picked and ship.delivered_at <= now
            if ship.cancelled_at is not None and ship.cancelled_at <= now:
                status = "cancelled"
            else:
                status = "delivered" if delivered else "in_transit" if picked else "created"
            batch.rows["shipment"].append(
                {
                    "id": ship.id,
                    "case_id": case_id,
                    "direction": ship.direction,
                    "origin": ship.origin,
                    "destination": ship.destination,
                    "profile": ship.profile,
                    "courier": ship.courier,
                    "container_serial": ship.container_serial,
                    "container_kind": ship.container_kind,
                    "hold_time_h": ship.hold_time_h,
                    "device_ids": [ship.device_id],
                    "status": status,
                    "created_at": ship.created_at,
                    "picked_up_at": ship.pickup_at if picked else None,
                    "delivered_at": ship.delivered_at if delivered else None,
                    "created_by": None,
                }
            )
            if not picked:
                continue
            batch.rows["device_assignment"].append(
                {
                    "device_id": ship.device_id,
                    "shipment_id": ship.id,
                    "assigned_from": ship.pickup_at,
                    "assigned_until": ship.delivered_at if delivered else None,
                }
            )
            pickups[ship.pickup_at] = self.custody(ship, batch)
            if self.with_readings:
                self.readings(ship, historic, batch)
        return pickups

    def custody(self, ship: Ship, batch: Batch) -> datetime:
        """Pickup, a handoff wherever the carrier changes (airports), delivery."""
        _, leg_ends = segments(self.world, ship)

        def party(leg: Leg) -> str:
            return (
                ship.courier if leg.mode == "ground" else f"air cargo {leg.from_site}-{leg.to_site}"
            )

        origin = self.world.sites[ship.origin]
        scans = [(ship.pickup_at, "picked_up", ship.origin, party(ship.legs[0]), origin)]
        for leg, nxt, end in zip(ship.legs, ship.legs[1:], leg_ends, strict=False):
            if party(leg) != party(nxt):
                scans.append(
                    (from_ms(end), "handoff", party(leg), party(nxt), self.world.sites[leg.to_site])
                )
        scans.append(
            (
                ship.delivered_at,
                "delivered",
                party(ship.legs[-1]),
                ship.destination,
                self.world.sites[ship.destination],
            )
        )
        first_recorded = self.now
        for i, (at, action, giver, taker, where) in enumerate(scans):
            if at > self.now:
                break
            recorded = self.recorded(at)
            first_recorded = recorded if i == 0 else first_recorded
            batch.rows["custody_event"].append(
                {
                    "shipment_id": ship.id,
                    "action": action,
                    "occurred_at": at,
                    "recorded_at": recorded,
                    "from_party": giver,
                    "to_party": taker,
                    "lat": where.lat,
                    "lon": where.lon,
                    "actor": f"{ship.courier} courier (demo)",
                    "actor_id": None,
                    "data": None,
                }
            )
        return first_recorded

    def readings(self, ship: Ship, historic: bool, batch: Batch) -> None:
        """The logger's readings and what the excursion detector makes of them."""
        rows = readings_for(
            self.world, self.config, ship, until_ms=self.now_ms, interval_ms=self.interval_ms
        )
        if not rows:
            return
        batch.readings.extend(rows)
        rules = self.rules[ship.profile]
        state, excursions = evaluate(rules, ((r[2], r[3]) for r in rows))
        last = rows[-1]
        state_row = {
            "shipment_id": ship.id,
            "n": state.n,
            "last_ts_ms": state.last_ts_ms,
            "last_temp_c": state.last_temp_c,
            "last_lat": last[4],
            "last_lon": last[5],
            "newest_ts_ms": last[2],
            "mkt_w": state.mkt_w,
            "mkt_wexp": state.mkt_wexp,
            "oor_closed_ms": state.oor_closed_ms,
            "open_excursion_id": None,
            "needs_reeval": False,
            "updated_at": from_ms(min(last[10], self.now_ms)),
        }
        batch.rows["shipment_state"].append(state_row)
        if state.open is not None:
            batch.open_states[(ship.id, state.open.started_ms)] = state_row
        # QA reviews a finished case's excursions after delivery (signed disposition). Not
        # drawn from the cohort's generator: the case rows must not depend on --no-readings.
        reviewed = min(after(ship.delivered_at, 1 + ship.readings_seed % 2300 / 100), self.now)
        for exc in excursions:
            quarantine = exc.severity == "critical"
            batch.rows["excursion"].append(
                {
                    "shipment_id": ship.id,
                    "kind": exc.kind,
                    "status": "closed" if exc.ended_ms is not None else "open",
                    "started_ms": exc.started_ms,
                    "last_ms": exc.last_ms,
                    "ended_ms": exc.ended_ms,
                    "peak_c": exc.peak_c,
                    "out_of_spec": exc.out_of_spec,
                    "severity": exc.severity,
                    "disposition": None,
                    "disposition_reason": None,
                    "signed_by": None,
                    "signed_at": None,
                    "signature_meaning": None,
                }
            )
            if historic:
                batch.rows["excursion"][-1].update(
                    disposition="quarantine" if quarantine else "accept",
                    disposition_reason=(
                        "critical limit crossed: product held for investigation"
                        if quarantine
                        else "within the product's stability data; released for use"
                    ),
                    signed_by="demo QA",
                    signed_at=reviewed,
                    signature_meaning="review",
                )
        batch.rows["alert"].extend(
            alert_rows(
                case_id=ship.case_id,
                shipment_id=ship.id,
                profile=ship.profile,
                rules=rules,
                state=state,
                excursions=excursions,
                historic=historic,
                reviewed=reviewed,
                now_ms=self.now_ms,
            )
        )
