"""``Idempotency-Key`` on creating POSTs: the same key and body replays the first response.

The key is claimed with a row inserted at the start of the request's transaction, so a
concurrent duplicate waits on the unique key and then replays instead of creating twice.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import Table, bindparam, update
from sqlalchemy import select as select_columns
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from app.errors import Conflict, Invalid
from models.base import utcnow
from models.principal import IdempotencyRecord

MAX_KEY_LENGTH = 200


def request_hash(method: str, path: str, body: bytes) -> str:
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    except ValueError:
        canonical = body.decode("utf-8", "replace")
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


class Idempotency:
    def __init__(self, *, key: str | None, principal_id: str, fingerprint: str) -> None:
        if key is not None and not (0 < len(key) <= MAX_KEY_LENGTH):
            raise Invalid(
                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters",
                errors=[{"loc": "header/Idempotency-Key", "msg": "bad length"}],
            )
        self.key = key
        self.principal_id = principal_id
        self.fingerprint = fingerprint
        self.claimed = False  # this request inserted the key's row: it writes the response

    def begin(self, session: Session) -> tuple[int, Any] | None:
        """Claim the key, or return the stored (status, body) to replay."""
        if self.key is None:
            return None
        key = {"principal_id": self.principal_id, "key": self.key}
        claimed = session.execute(
            _claim(session.get_bind().dialect.name),
            {
                **key,
                "request_hash": self.fingerprint,
                "status_code": 0,
                "response_body": "",
                "created_at": utcnow(),
            },
        ).first()
        if claimed is not None:
            self.claimed = True
            return None
        # Claimed by an earlier request (a concurrent one has committed by now: the insert
        # waited for it on the unique key).
        stored = session.execute(_STORED, key).one()
        if stored.request_hash != self.fingerprint:
            raise Conflict(
                "this Idempotency-Key was used with a different request",
                code="idempotency-key-reused",
            )
        return stored.status_code, json.loads(stored.response_body)

    def finish(self, session: Session, *, status_code: int, body: Any) -> None:
        if not self.claimed:
            return
        session.execute(
            _FINISH,
            {
                "p": self.principal_id,
                "k": self.key,
                "status_code": status_code,
                "response_body": json.dumps(body, separators=(",", ":")),
            },
        )


# Statements built once (their compiled form is then cached): every creating POST runs them.
_TABLE: Table = IdempotencyRecord.__table__  # type: ignore[attr-defined]
_STORED = select_columns(_TABLE.c.request_hash, _TABLE.c.status_code, _TABLE.c.response_body).where(
    _TABLE.c.principal_id == bindparam("principal_id"), _TABLE.c.key == bindparam("key")
)
_FINISH = (
    update(_TABLE)
    .where(_TABLE.c.principal_id == bindparam("p"), _TABLE.c.key == bindparam("k"))
    .values(status_code=bindparam("status_code"), response_body=bindparam("response_body"))
)
_CLAIMS: dict[str, Any] = {}


def _claim(dialect_name: str) -> Any:
    """INSERT … ON CONFLICT DO NOTHING RETURNING: a row back when this request claimed the key."""
    found = _CLAIMS.get(dialect_name)
    if found is None:
        dialect = postgresql if dialect_name == "postgresql" else sqlite
        found = _CLAIMS[dialect_name] = (
            dialect.insert(_TABLE).on_conflict_do_nothing().returning(_TABLE.c.key)
        )
    return found
