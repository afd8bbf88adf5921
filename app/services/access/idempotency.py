"""``Idempotency-Key`` on creating POSTs: the same key and body replays the first response.

The key is claimed with a row inserted at the start of the request's transaction, so a
concurrent duplicate waits on the unique key and then replays instead of creating twice.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy.exc import IntegrityError
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
        self.record: IdempotencyRecord | None = None

    def begin(self, session: Session) -> tuple[int, Any] | None:
        """Claim the key, or return the stored (status, body) to replay."""
        if self.key is None:
            return None
        stored = session.get(IdempotencyRecord, (self.principal_id, self.key))
        if stored is None:
            record = IdempotencyRecord(
                principal_id=self.principal_id,
                key=self.key,
                request_hash=self.fingerprint,
                status_code=0,
                response_body="",
                created_at=utcnow(),
            )
            session.add(record)
            try:
                session.flush()
            except IntegrityError:
                session.rollback()  # a concurrent request with this key committed first
                stored = session.get(IdempotencyRecord, (self.principal_id, self.key))
                if stored is None:
                    raise
            else:
                self.record = record
                return None
        if stored.request_hash != self.fingerprint:
            raise Conflict(
                "this Idempotency-Key was used with a different request",
                code="idempotency-key-reused",
            )
        return stored.status_code, json.loads(stored.response_body)

    def finish(self, session: Session, *, status_code: int, body: Any) -> None:
        if self.record is None:
            return
        self.record.status_code = status_code
        self.record.response_body = json.dumps(body, separators=(",", ":"))
        session.add(self.record)
        session.flush()
