"""The demo's distributions and shares (seeds/demo.yaml), parsed and checked."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CONFIG_PATH = Path(__file__).resolve().parent.parent / "demo.yaml"


class DemoRefused(RuntimeError):
    """The demo generator will not run here (production, or missing reference data)."""


@dataclass(frozen=True)
class Dist:
    kind: str
    params: tuple[float, ...]
    low: float | None = None
    high: float | None = None

    @classmethod
    def parse(cls, spec: dict[str, Any]) -> Dist:
        kind = spec["dist"]
        names = {
            "lognormal": ("median", "sigma"),
            "triangular": ("low", "mode", "high"),
            "uniform": ("low", "high"),
        }
        if kind not in names:
            raise ValueError(f"unknown distribution {kind!r}")
        return cls(
            kind, tuple(float(spec[n]) for n in names[kind]), spec.get("min"), spec.get("max")
        )

    def draw(self, rng: random.Random) -> float:
        p = self.params
        if self.kind == "lognormal":
            value = p[0] * math.exp(rng.gauss(0.0, p[1]))
        elif self.kind == "triangular":
            value = rng.triangular(p[0], p[2], p[1])
        else:
            value = rng.uniform(p[0], p[1])
        if self.low is not None:
            value = max(value, self.low)
        if self.high is not None:
            value = min(value, self.high)
        return value


@dataclass(frozen=True)
class KindConfig:
    courier: str
    containers: dict[str, dict[str, Any]]
    durations: dict[str, Dist]
    probabilities: dict[str, float]


@dataclass(frozen=True)
class DemoConfig:
    raw: dict[str, Any]
    dists: dict[str, Dist]
    kinds: dict[str, KindConfig]

    @classmethod
    def load(cls, path: Path = CONFIG_PATH) -> DemoConfig:
        return cls.from_dict(yaml.safe_load(path.read_text(encoding="utf-8")))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DemoConfig:
        dists = {k: Dist.parse(v) for k, v in raw.items() if isinstance(v, dict) and "dist" in v}
        kinds = {
            name: KindConfig(
                courier=k["courier"],
                containers=k["containers"],
                durations={d: Dist.parse(s) for d, s in k["durations"].items()},
                probabilities={p: float(v) for p, v in k["probabilities"].items()},
            )
            for name, k in raw["kinds"].items()
        }
        for name, k in kinds.items():
            bad = [p for p, v in k.probabilities.items() if not 0 <= v <= 1]
            if bad:
                raise ValueError(f"demo.yaml kinds.{name}: probabilities out of [0, 1]: {bad}")
        return cls(raw, dists, kinds)
