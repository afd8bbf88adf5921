"""Load reference data from ``seeds/*.yaml``, idempotently, by natural keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlmodel import Session, SQLModel, select

from integrations.geo import leg_hours
from models.reference import Courier, Product, Profile, Route, RouteLeg, Site

SEED_DIR = Path(__file__).resolve().parent


@dataclass
class SeedReport:
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, created: bool) -> None:
        target = self.created if created else self.updated
        target[kind] = target.get(kind, 0) + 1


def _read(name: str, seed_dir: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load((seed_dir / name).read_text(encoding="utf-8")) or []
    if not isinstance(data, list):
        raise ValueError(f"{name}: expected a list of records")
    return data


def _upsert(
    session: Session, model: type[SQLModel], key: Any, values: dict[str, Any], report: SeedReport
) -> None:
    row = session.get(model, key)
    validated = model.model_validate(values)
    if row is None:
        session.add(validated)
        report.count(model.__name__, True)
        return
    changed = False
    for name, value in validated.model_dump().items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    if changed:
        session.add(row)
        report.count(model.__name__, False)


def _leg_hours(session: Session, leg: dict[str, Any]) -> float:
    a, b = session.get(Site, leg["from_site"]), session.get(Site, leg["to_site"])
    if a is None or b is None:
        raise ValueError(f"route leg between unknown sites: {leg['from_site']} -> {leg['to_site']}")
    return leg_hours(
        (a.lat, a.lon),
        (b.lat, b.lon),
        mode=leg["mode"],
        handling_h=float(leg.get("handling_h", 0)),
        customs_h=float(leg.get("customs_h", 0)),
    )


def load_reference(session: Session, seed_dir: Path = SEED_DIR) -> SeedReport:
    """Insert or update every reference record; running it twice changes nothing."""
    report = SeedReport()
    for name, model in (
        ("sites.yaml", Site),
        ("couriers.yaml", Courier),
        ("profiles.yaml", Profile),
        ("products.yaml", Product),
    ):
        for record in _read(name, seed_dir):
            _upsert(session, model, record["code"], record, report)
    session.flush()
    for record in _read("routes.yaml", seed_dir):
        legs = record.pop("legs", [])
        _upsert(session, Route, record["code"], record, report)
        session.flush()
        seqs: dict[str, int] = {}
        for leg in legs:
            direction = leg["direction"]
            seqs[direction] = seqs.get(direction, 0) + 1
            existing = session.exec(
                select(RouteLeg).where(
                    RouteLeg.route_code == record["code"],
                    RouteLeg.direction == direction,
                    RouteLeg.seq == seqs[direction],
                )
            ).first()
            values = {"route_code": record["code"], "seq": seqs[direction], **leg}
            if values.get("expected_h") is None:
                values["expected_h"] = round(_leg_hours(session, values), 2)
            if existing is None:
                session.add(RouteLeg.model_validate(values))
                report.count("RouteLeg", True)
            else:
                values["id"] = existing.id
                _upsert(session, RouteLeg, existing.id, values, report)
    session.flush()
    return report
