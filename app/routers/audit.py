"""The audit trail: read, verify and checkpoint (admin and QA)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlmodel import Session

from app.deps import KeyringDep, NowDep, SessionDep, get_db, require_roles
from app.pagination import CursorQuery, LimitQuery, cursor_int, page_of
from app.services.audit import chain as audit
from app.services.audit import checkpoint as checkpoints
from models.audit import AuditCheckpoint, AuditPublic, AuditVerify, CheckpointVerifyRequest
from models.base import Page
from models.principal import Principal, Role

router = APIRouter(prefix="/audit", tags=["audit"])
Auditor = Annotated[Principal, require_roles(Role.admin, Role.qa)]


def _read_session(request: Request) -> Iterator[Session]:
    # Verifying walks the whole chain and writes nothing: no writer lock, even for a POST.
    with get_db(request).session() as session:
        yield session


ReadSession = Annotated[Session, Depends(_read_session)]


@router.get("", response_model=Page[AuditPublic])
def list_audit(
    session: SessionDep,
    _principal: Auditor,
    entity: Annotated[str | None, Query(max_length=32)] = None,
    entity_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[AuditPublic]:
    """Audit entries in chain order, optionally for one entity."""
    after_seq = cursor_int(cursor) if cursor else 0
    rows = audit.entries(
        session, entity=entity, entity_id=entity_id, after_seq=after_seq, limit=limit
    )
    items, next_cursor = page_of(rows, limit, lambda e: (e.seq,))
    return Page(items=[AuditPublic.model_validate(e) for e in items], next_cursor=next_cursor)


@router.get("/verify", response_model=AuditVerify)
def verify_audit(session: SessionDep, _principal: Auditor) -> AuditVerify:
    """Recompute the keyed hash chain and report the first broken link, if any."""
    return AuditVerify.model_validate(audit.verify_chain(session))


@router.get("/checkpoint", response_model=AuditCheckpoint)
def checkpoint(
    session: SessionDep, _principal: Auditor, keyring: KeyringDep, now: NowDep
) -> AuditCheckpoint:
    """The verified chain's head signed with the service's Ed25519 key (see the COI JWKS)."""
    signed = checkpoints.sign_head(session, keyring=keyring, now=now)
    return AuditCheckpoint.model_validate(signed)


@router.post("/verify", response_model=AuditVerify)
def verify_checkpoint(
    body: CheckpointVerifyRequest, session: ReadSession, _principal: Auditor, keyring: KeyringDep
) -> AuditVerify:
    """Prove that no entry up to a signed checkpoint was removed or rewritten."""
    cp = body.checkpoint
    result = checkpoints.verify_against(
        session,
        checkpoint=checkpoints.Checkpoint(cp.seq, cp.hash, cp.at, cp.kid, cp.signature),
        keyring=keyring,
    )
    return AuditVerify.model_validate(result)
