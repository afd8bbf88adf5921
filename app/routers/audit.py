"""The audit trail: read and verify (admin and QA)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import SessionDep, require_roles
from app.pagination import CursorQuery, LimitQuery, cursor_int, page_of
from app.services.audit import chain as audit
from models.audit import AuditPublic, AuditVerify
from models.base import Page
from models.principal import Principal, Role

router = APIRouter(prefix="/audit", tags=["audit"])
Auditor = Annotated[Principal, require_roles(Role.admin, Role.qa)]


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
    """Recompute the hash chain and report the first broken link, if any."""
    return AuditVerify.model_validate(audit.verify_chain(session))
