"""Verifying a label or a COI token for anyone who holds one (no database)."""

from __future__ import annotations

from app.services.identity.coi import COI_RE, CoiFormatError, Keyring, check_char, parse_scan
from models.coi import VerifyResponse


def verify(*, keyring: Keyring, token: str | None, coi: str | None) -> VerifyResponse:
    """A COI's format and MOD 37-2 check character, or a COI token's signature and payload."""
    if coi is not None:
        try:
            scanned = parse_scan(coi)
        except CoiFormatError as exc:
            return VerifyResponse(valid=False, check_char_ok=False, reason=str(exc))
        return VerifyResponse(
            valid=True, coi=scanned.coi, check_char=check_char(scanned.coi), check_char_ok=True
        )
    if token is None:  # the request model admits exactly one of the two
        raise RuntimeError("inconsistent request: neither token nor coi")
    result = keyring.verify(token)
    if not result.signature_ok or result.payload is None:
        return VerifyResponse(
            valid=False, check_char_ok=False, signature_ok=False, reason=result.reason
        )
    claimed = result.payload.get("coi")
    signed = claimed if isinstance(claimed, str) else None
    coi_ok = signed is not None and COI_RE.fullmatch(signed) is not None
    return VerifyResponse(
        valid=coi_ok,
        coi=signed,
        check_char=check_char(signed) if signed is not None and coi_ok else None,
        check_char_ok=coi_ok,
        signature_ok=True,
        case_id=str(result.payload.get("case_id")),
        kid=str(result.payload.get("kid")),
        issued_at=str(result.payload.get("issued_at")),
        reason=None if coi_ok else "signed payload does not carry a valid COI",
    )
