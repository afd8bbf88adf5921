"""Public chain-of-identity verification: anyone holding a label can check it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.deps import KeyringDep
from app.services.identity.verify import verify as verify_label
from models.coi import VerifyRequest, VerifyResponse

router = APIRouter(prefix="/coi", tags=["chain of identity"])


@router.get("/jwks")
def jwks(keyring: KeyringDep) -> dict[str, Any]:
    """The public keys (JWKS, Ed25519) that verify COI tokens, retired keys included."""
    return keyring.jwks()


@router.post("/verify", response_model=VerifyResponse)
def verify(body: VerifyRequest, keyring: KeyringDep) -> VerifyResponse:
    """Verify a COI token's signature, or a COI's format and MOD 37-2 check character."""
    return verify_label(keyring=keyring, token=body.token, coi=body.coi)
