"""Signed checkpoints: the audit chain's head signed with the service's Ed25519 key.

Keyed hashes stop a rewrite with recomputed links, but a chain whose tail was deleted is
still a consistent chain. A checkpoint kept outside the database (a file the scheduler
appends to, a copy an auditor holds) pins ``(seq, hash)``: a chain holding fewer entries, or
another hash at that seq, no longer matches it. Only a chain that verifies is ever signed.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session

from app.errors import Conflict
from app.services.audit import chain
from app.services.audit.keys import AuditKeys
from app.services.audit.signing import CHECKPOINT_CONTEXT, PublicKeys, b64e, canonical_json
from app.services.identity.coi import Keyring
from app.times import iso_z


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    at: datetime
    kid: str
    signature: str

    def signing_input(self) -> bytes:
        body = {"seq": self.seq, "hash": self.hash, "at": iso_z(self.at), "kid": self.kid}
        return CHECKPOINT_CONTEXT + canonical_json(body)

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "hash": self.hash,
            "at": iso_z(self.at),
            "kid": self.kid,
            "signature": self.signature,
        }

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Checkpoint:
        try:
            at = datetime.fromisoformat(str(data["at"]).replace("Z", "+00:00"))
            if at.tzinfo is None:
                raise ValueError("checkpoint time without a UTC offset")
            return cls(
                int(data["seq"]), str(data["hash"]), at, str(data["kid"]), str(data["signature"])
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an audit checkpoint: {exc}") from exc


def sign_head(
    session: Session,
    *,
    keyring: Keyring,
    now: datetime,
    keys: AuditKeys | None = None,
    start: tuple[int, str] | None = None,
) -> Checkpoint:
    """Verify the chain (from ``start``, a head already proven) and sign its head."""
    seq, head_hash = chain.head(session)
    result = chain.verify_chain(session, keys=keys, start=start)
    if not result.ok:
        raise Conflict(
            f"the audit chain is broken at seq {result.first_bad_seq} ({result.reason}); "
            "no checkpoint is signed over it"
        )
    unsigned = Checkpoint(seq, head_hash, now, keyring.active_kid or "", "")
    kid, signature = keyring.sign_detached(unsigned.signing_input())
    return Checkpoint(seq, head_hash, now, kid, b64e(signature))


def verify_checkpoints(
    session: Session,
    *,
    checkpoints: list[Checkpoint],
    public_keys: PublicKeys,
    keys: AuditKeys | None = None,
) -> chain.VerifyResult:
    """Prove that no entry up to each checkpoint was removed or rewritten; the first failure
    (a bad signature, a broken link, a missing tail, another hash at a checkpoint's seq)."""
    for cp in checkpoints:
        problem = public_keys.verify(kid=cp.kid, data=cp.signing_input(), signature=cp.signature)
        if problem is not None:
            return chain.VerifyResult(False, 0, None, f"checkpoint at seq {cp.seq}: {problem}")
    result = chain.verify_chain(session, keys=keys)
    if not result.ok:
        return result
    count = result.entries
    for cp in sorted(checkpoints, key=lambda c: c.seq):
        if count < cp.seq:
            return chain.VerifyResult(
                False,
                count,
                count + 1,
                f"entries {count + 1} to {cp.seq} are missing: the chain ends at seq {count} "
                f"but a checkpoint signed seq {cp.seq} on {iso_z(cp.at)}",
            )
        if chain.hash_at(session, cp.seq) != cp.hash:
            return chain.VerifyResult(
                False,
                count,
                cp.seq,
                f"entry {cp.seq} is not the one signed on {iso_z(cp.at)}: the chain up to it "
                "was rewritten",
            )
    return result


def verify_against(
    session: Session, *, checkpoint: Checkpoint, keyring: Keyring
) -> chain.VerifyResult:
    """One checkpoint checked with the service's own JWKS (``POST /audit/verify``)."""
    return verify_checkpoints(
        session, checkpoints=[checkpoint], public_keys=PublicKeys.from_jwks(keyring.jwks())
    )


def parse_lines(text: str, *, source: str = "checkpoint file") -> list[Checkpoint]:
    """Checkpoints of JSON lines (one JSON object per line; blank lines skipped)."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("a checkpoint is a JSON object")
            out.append(Checkpoint.parse(data))
        except ValueError as exc:
            raise ValueError(f"{source}, line {number}: {exc}") from exc
    return out


def read_file(path: Path) -> list[Checkpoint]:
    return parse_lines(path.read_text(encoding="utf-8"), source=str(path))


def write_to_file(
    session: Session,
    *,
    keyring: Keyring,
    path: Path,
    now: datetime,
    keys: AuditKeys | None = None,
) -> Checkpoint | None:
    """Sign the head into ``path`` (JSON lines) unless its last checkpoint already holds it.

    Idempotent, and exclusive while it runs (an advisory file lock). The chain is verified
    from the file's last checkpoint on, once that one is proven to match; a chain that no
    longer matches it is refused (Conflict) rather than signed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        fh.seek(0)
        existing = parse_lines(fh.read(), source=str(path))
        last = existing[-1] if existing else None
        start = None
        if last is not None:
            trusted = PublicKeys.from_jwks(keyring.jwks())
            problem = trusted.verify(
                kid=last.kid, data=last.signing_input(), signature=last.signature
            )
            if problem is not None:
                raise Conflict(f"the last checkpoint in {path} is not ours: {problem}")
            if chain.hash_at(session, last.seq) != last.hash:
                raise Conflict(
                    f"the audit chain no longer matches the checkpoint of seq {last.seq} "
                    f"in {path}: entries up to it were removed or rewritten"
                )
            if chain.head(session) == (last.seq, last.hash):
                return None
            start = (last.seq, last.hash)
        if chain.head(session)[0] == 0:
            return None
        checkpoint = sign_head(session, keyring=keyring, now=now, keys=keys, start=start)
        fh.seek(0, os.SEEK_END)
        fh.write(json.dumps(checkpoint.as_json(), separators=(",", ":")) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return checkpoint
