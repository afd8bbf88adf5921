"""The audit trail: read and verify (admin and QA)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlmodel import col, select

from app.deps import SessionDep, require_roles
from app.routers.pagination import CursorQuery, LimitQuery, cursor_int, encode_cursor
from app.services.audit import chain as audit
from models.audit import AuditEntry, AuditPublic, AuditVerify
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
) -> Any:
    """Audit entries in chain order, optionally for one entity."""
    stmt = select(AuditEntry)
    if entity:
        stmt = stmt.where(AuditEntry.entity == entity)
    if entity_id:
        stmt = stmt.where(AuditEntry.entity_id == entity_id)
    if cursor:
        stmt = stmt.where(col(AuditEntry.seq) > cursor_int(cursor))
    rows = list(session.exec(stmt.order_by(col(AuditEntry.seq)).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].seq) if len(rows) > limit else None
    return {"items": rows[:limit], "next_cursor": next_cursor}


@router.get("/verify", response_model=AuditVerify)
def verify_audit(session: SessionDep, _principal: Auditor) -> Any:
    """Recompute the hash chain and report the first broken link, if any."""
    return audit.verify_chain(session).__dict__
