"""Display names of reference data, from the seed files' ``name`` and ``name_ja``.

The tables keep one ``name`` (no schema change for a display concern): the workspace reads
``name_ja`` of sites, couriers, profiles, products and routes, and of container kinds
(``seeds/containers.yaml``), once at start-up. A code without one shows its English name;
where a page has only the code at hand, the English name comes from the same files (a
person reads "National Cancer Center Hospital East", not NCC-EAST).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from seeds.loader import SEED_DIR

TABLES = {
    "site": "sites.yaml",
    "courier": "couriers.yaml",
    "profile": "profiles.yaml",
    "product": "products.yaml",
    "route": "routes.yaml",
    "container": "containers.yaml",
}


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    return [r for r in data if isinstance(r, dict)]


def _names(seed_dir: Path, field: str) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for table, name in TABLES.items():
        key = "kind" if table == "container" else "code"
        out[table] = {
            str(r[key]): str(r[field])
            for r in _records(seed_dir / name)
            if r.get(field) and r.get(key)
        }
    return out


@lru_cache
def japanese(seed_dir: Path = SEED_DIR) -> dict[str, dict[str, str]]:
    """Per table, code (or container kind) → Japanese name."""
    return _names(seed_dir, "name_ja")


@lru_cache
def english(seed_dir: Path = SEED_DIR) -> dict[str, dict[str, str]]:
    """Per table, code → English name (container kinds are their own English name)."""
    return _names(seed_dir, "name")


def localised(table: str, code: str, english_name: str | None, lang: str) -> str:
    """The name to show: Japanese on a Japanese page when the seed gives one."""
    if lang == "ja":
        found = japanese().get(table, {}).get(code)
        if found:
            return found
    return english_name or english().get(table, {}).get(code) or code
