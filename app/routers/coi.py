"""Public chain-of-identity verification: anyone holding a label can check it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import StringConstraints, model_validator

from app.deps import KeyringDep
from app.services.identity.coi import COI_RE, CoiFormatError, check_char, parse_scan
from models.base import RequestModel, ResponseModel

router = APIRouter(prefix="/coi", tags=["chain of identity"])


class VerifyRequest(RequestModel):
    token: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    coi: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> VerifyRequest:
        if (self.token is None) == (self.coi is None):
            raise ValueError("give exactly one of token or coi")
        return self


class VerifyResponse(ResponseModel):
    valid: bool
    coi: str | None = None
    check_char: str | None = None
    check_char_ok: bool
    signature_ok: bool | None = None
    case_id: str | None = None
    kid: str | None = None
    issued_at: str | None = None
    reason: str | None = None


@router.get("/jwks")
def jwks(keyring: KeyringDep) -> dict[str, Any]:
    """The public keys (JWKS, Ed25519) that verify COI tokens, retired keys included."""
    return keyring.jwks()


@router.post("/verify", response_model=VerifyResponse)
def verify(body: VerifyRequest, keyring: KeyringDep) -> Any:
    """Verify a COI token's signature, or a COI's format and MOD 37-2 check character."""
    if body.coi is not None:
        try:
            scanned = parse_scan(body.coi)
        except CoiFormatError as exc:
            return VerifyResponse(valid=False, check_char_ok=False, reason=str(exc))
        return VerifyResponse(
            valid=True, coi=scanned.coi, check_char=check_char(scanned.coi), check_char_ok=True
        )
    if body.token is None:  # guaranteed by foreign keys and state
        raise RuntimeError("inconsistent data: body.token missing")
    result = keyring.verify(body.token)
    if not result.signature_ok or result.payload is None:
        return VerifyResponse(
            valid=False, check_char_ok=False, signature_ok=False, reason=result.reason
        )
    claimed = result.payload.get("coi")
    coi = claimed if isinstance(claimed, str) else None
    coi_ok = coi is not None and COI_RE.fullmatch(coi) is not None
    return VerifyResponse(
        valid=coi_ok,
        coi=coi,
        check_char=check_char(coi) if coi is not None and coi_ok else None,
        check_char_ok=coi_ok,
        signature_ok=True,
        case_id=str(result.payload.get("case_id")),
        kid=str(result.payload.get("kid")),
        issued_at=str(result.payload.get("issued_at")),
        reason=None if coi_ok else "signed payload does not carry a valid COI",
    )
