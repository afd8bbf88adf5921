"""Running Alembic from code: upgrade to head, and compare the database with the models."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

ROOT = Path(__file__).resolve().parent.parent
# Monthly partitions of ``reading`` on PostgreSQL (attached, DEFAULT, or detached by an
# archive run) are storage of one modelled table, not tables of their own.
PARTITION_NAME = re.compile(r"^reading_(y[0-9]{4}m[0-9]{2}|default)$")


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Autogenerate's filter: leave ``reading``'s partitions out of the comparison."""
    return not (type_ == "table" and name is not None and PARTITION_NAME.match(name))


def alembic_config(url: str | None = None) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def drift(engine: Engine) -> list[Any]:
    """Differences between the migrated schema and the models (empty when in step)."""
    from alembic.autogenerate import compare_metadata
    from sqlmodel import SQLModel

    import models  # noqa: F401  (registers the tables)

    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={"compare_type": True, "render_as_batch": True, "include_name": include_name},
        )
        return list(compare_metadata(ctx, SQLModel.metadata))
