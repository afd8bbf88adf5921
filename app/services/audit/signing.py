"""Ed25519 signatures of audit checkpoints and case dossiers, and their offline check.

The service signs with its COI key ring's active key (``Keyring.sign_detached``), so the
JWKS it publishes at ``/api/v1/coi/jwks`` verifies them. Each kind of signed document is
prefixed with its own context string so a signature can never be replayed as another kind.
A verifier takes the keys from a JWKS (a file, a URL or the service's own ring) or from one
public key given by hand.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

CHECKPOINT_CONTEXT = b"v2v-audit-checkpoint/1\n"
MANIFEST_CONTEXT = b"v2v-dossier-manifest/1\n"


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class PublicKeys:
    """Ed25519 public keys by kid; ``any_kid`` is one key given by hand, for every kid."""

    def __init__(
        self, keys: dict[str, Ed25519PublicKey], any_kid: Ed25519PublicKey | None = None
    ) -> None:
        self.keys = keys
        self.any_kid = any_kid

    @classmethod
    def from_jwks(cls, jwks: dict[str, Any]) -> PublicKeys:
        keys: dict[str, Ed25519PublicKey] = {}
        for jwk in jwks.get("keys", []):
            if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
                continue
            try:
                keys[str(jwk["kid"])] = Ed25519PublicKey.from_public_bytes(b64d(str(jwk["x"])))
            except (KeyError, ValueError, binascii.Error):
                continue
        return cls(keys)

    @classmethod
    def from_public_key(cls, text: str) -> PublicKeys:
        """One key: PEM (SubjectPublicKeyInfo) or the JWK's ``x`` (base64url, 32 bytes)."""
        text = text.strip()
        if text.startswith("-----BEGIN"):
            key = load_pem_public_key(text.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError("not an Ed25519 public key")
            return cls({}, key)
        return cls({}, Ed25519PublicKey.from_public_bytes(b64d(text)))

    def verify(self, *, kid: str, data: bytes, signature: str) -> str | None:
        """None when the signature verifies, else the reason it does not."""
        key = self.keys.get(kid, self.any_kid)
        if key is None:
            return f"signed with key {kid!r}, which is not among the trusted public keys"
        try:
            key.verify(b64d(signature), data)
        except (InvalidSignature, ValueError, binascii.Error):
            return f"signature does not verify with key {kid!r}"
        return None


def load_jwks(source: str, *, client: httpx.Client | None = None) -> dict[str, Any]:
    """A JWKS from a file path or an http(s) URL (e.g. …/api/v1/coi/jwks)."""
    if source.startswith(("http://", "https://")):
        own = client is None
        http = client or httpx.Client(timeout=10.0)
        try:
            response = http.get(source)
            response.raise_for_status()
            data = response.json()
        except httpx.HTTPError as exc:
            raise ValueError(f"JWKS not fetched from {source}: {exc}") from exc
        finally:
            if own:
                http.close()
    else:
        data = json.loads(Path(source).read_text())
    if not isinstance(data, dict):
        raise ValueError("a JWKS is a JSON object with a 'keys' list")
    return data
