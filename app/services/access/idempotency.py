"""``Idempotency-Key`` on creating POSTs: the same key and body replays the first response.

The key is claimed with a row inserted at the start of the request's transaction, so a
concurrent duplicate waits on the unique key and then replays instead of creating twice.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlmodel import Session

from app.errors import Conflict, Invalid
from app.raw import Raw
from models.base import utcnow

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
        raw = Raw.of(session)
        key = (self.principal_id, self.key)
        claimed = raw.one(_CLAIM, (*key, self.fingerprint, 0, "", raw.stamp(utcnow())))
        if claimed is not None:
            self.claimed = True
            return None
        # Claimed by an earlier request (a concurrent one has committed by now: the insert
        # waited for it on the unique key).
        stored = raw.one(_STORED, key)
        if stored is None:  # cannot be: the insert found the key taken
            raise RuntimeError("idempotency key taken but not found")
        request_hash, status_code, response_body = stored
        if request_hash != self.fingerprint:
            raise Conflict(
                "this Idempotency-Key was used with a different request",
                code="idempotency-key-reused",
            )
        return int(status_code), json.loads(response_body)

    def finishing(self, *, status_code: int, body: Any) -> list[tuple[str, tuple[Any, ...]]]:
        """The statement that stores the response to replay (none when this request did not
        claim a key), for the caller to run in its transaction before the commit."""
        if not self.claimed:
            return []
        response = json.dumps(body, separators=(",", ":"))
        return [(_FINISH, (status_code, response, self.principal_id, self.key))]


# Every creating POST with a key runs these: plain text and numbers on the driver's
# connection (through SQLAlchemy's Session each cost several times the statement itself).
# ON CONFLICT … RETURNING gives a row back only when this request claimed the key.
_CLAIM = (
    'INSERT INTO idempotency_record (principal_id, "key", request_hash, status_code, '
    'response_body, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING "key"'
)
_STORED = (
    "SELECT request_hash, status_code, response_body FROM idempotency_record "
    'WHERE principal_id = ? AND "key" = ?'
)
_FINISH = (
    "UPDATE idempotency_record SET status_code = ?, response_body = ? "
    'WHERE principal_id = ? AND "key" = ?'
)
