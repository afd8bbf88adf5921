"""Scheduled audit checkpoint: the chain's head signed into a file kept off the database."""

from __future__ import annotations

from datetime import datetime

from app.config import Settings, get_settings
from app.db import Database
from app.services.audit import checkpoint as checkpoints
from app.services.audit.keys import keys_of
from app.services.identity.coi import Keyring


def write_checkpoint(db: Database, *, now: datetime, settings: Settings | None = None) -> int:
    """Append a signed checkpoint to ``V2V_AUDIT_CHECKPOINT_FILE`` when the head moved (1),
    else nothing (0): idempotent, so a rerun or a second instance adds no line."""
    settings = settings or get_settings()
    path = settings.audit_checkpoint_file
    if path is None:
        return 0
    keyring = Keyring(settings.coi_signing_keys.get_secret_value(), settings.coi_verify_keys)
    with db.session() as session:
        written = checkpoints.write_to_file(
            session, keyring=keyring, path=path, now=now, keys=keys_of(settings)
        )
    return 0 if written is None else 1
