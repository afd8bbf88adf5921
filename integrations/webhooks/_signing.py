"""The signature header: ``sha256=`` + hex HMAC-SHA256 of the exact body bytes."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-V2V-Signature"
EVENT_HEADER = "X-V2V-Event"
DELIVERY_HEADER = "X-V2V-Delivery"
_SCHEME = "sha256="


def sign(secret: str, body: bytes) -> str:
    """The X-V2V-Signature value for this body."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return _SCHEME + digest


def verify(secret: str, body: bytes, signature: str) -> bool:
    """Whether a received X-V2V-Signature matches the body (constant-time comparison)."""
    return hmac.compare_digest(sign(secret, body), signature.strip())
