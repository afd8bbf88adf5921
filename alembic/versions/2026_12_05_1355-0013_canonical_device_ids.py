"""canonical device ids: stored ids rewritten in their one canonical form

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 13:55:00.000000

Before this revision a device id was stored as written, so a logger registered as its GS1
EPC URN (``urn:epc:id:giai:4512345.L1``) and captured over EPCIS as its Digital Link
(``https://id.gs1.org/8004/4512345L1``) were two devices. Upgrading rewrites every stored
device id (``device.id``, ``device_assignment.device_id``, ``reading.device_id``,
``shipment.device_ids``, ``principal.device_id``) in the form every entry now stores.

Two different stored ids that become the same id are refused: the upgrade changes nothing
and its error lists each such group with where its forms are stored, for an operator to
decide which record is right (merging two loggers' readings, owners or open shipments is
not a decision a migration may take). A stored id that is a malformed GS1 form is kept as
it is (it names no other device). Not reversible: which form was written is not kept.

The rule is imported, not copied (``integrations.gs1.device_id``): the ids this revision
stores must be the ids the entries produce, on whatever version first runs it.
"""

from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from integrations.gs1 import MalformedId, device_id

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("device", "id"),
    ("device_assignment", "device_id"),
    ("reading", "device_id"),
    ("principal", "device_id"),
)
SHIPMENT = sa.table("shipment", sa.column("id", sa.String()), sa.column("device_ids", sa.JSON()))
PAGE = 1000


class CollidingIds(RuntimeError):
    pass


def _canonical(value: str) -> str:
    try:
        return device_id(value)
    except MalformedId:
        return value


def _shipments(conn: sa.Connection) -> list[tuple[str, list[str]]]:
    out = []
    after = ""
    while True:
        rows = list(
            conn.execute(
                sa.select(SHIPMENT.c.id, SHIPMENT.c.device_ids)
                .where(SHIPMENT.c.id > after)
                .order_by(SHIPMENT.c.id)
                .limit(PAGE)
            )
        )
        if not rows:
            return out
        out += [(r.id, list(r.device_ids or [])) for r in rows]
        after = rows[-1].id


def upgrade() -> None:
    conn = op.get_bind()
    where: dict[str, set[str]] = defaultdict(set)  # stored id -> where it is stored
    for table, column in COLUMNS:
        t = sa.table(table, sa.column(column, sa.String()))
        stmt = sa.select(t.c[column]).where(t.c[column].is_not(None)).distinct()
        for (value,) in conn.execute(stmt):
            where[value].add(f"{table}.{column}")
    shipments = _shipments(conn)
    for _, ids in shipments:
        for value in ids:
            where[value].add("shipment.device_ids")

    renamed = {value: c for value in where if (c := _canonical(value)) != value}
    forms: dict[str, set[str]] = defaultdict(set)
    for value in where:
        forms[renamed.get(value, value)].add(value)
    collisions = {c: sorted(v) for c, v in sorted(forms.items()) if len(v) > 1}
    if collisions:
        lines = [
            f"  {canonical} <- "
            + "; ".join(f"{v!r} ({', '.join(sorted(where[v]))})" for v in stored)
            for canonical, stored in collisions.items()
        ]
        raise CollidingIds(
            f"{len(collisions)} device(s) are stored under two or more ids that name the same "
            "device (a GS1 EPC URN and its Digital Link); nothing was changed. Keep one id "
            "per device (re-key or remove the other's rows), then upgrade again:\n"
            + "\n".join(lines)
        )
    if not renamed:
        return

    params = [{"b_old": old, "b_new": new} for old, new in sorted(renamed.items())]
    for table, column in COLUMNS:
        t = sa.table(table, sa.column(column, sa.String()))
        stmt = t.update().where(t.c[column] == sa.bindparam("b_old"))
        conn.execute(stmt.values({column: sa.bindparam("b_new")}), params)
    update = (
        SHIPMENT.update()
        .where(SHIPMENT.c.id == sa.bindparam("b_id"))
        .values(device_ids=sa.bindparam("b_ids", type_=sa.JSON()))
    )
    changed = [
        {"b_id": shipment_id, "b_ids": [renamed.get(d, d) for d in ids]}
        for shipment_id, ids in shipments
        if any(d in renamed for d in ids)
    ]
    if changed:
        conn.execute(update, changed)


def downgrade() -> None:
    # Which form each id was written in is not kept: canonical ids stay canonical.
    pass
