"""The audit chain's HMAC keys (``V2V_AUDIT_KEYS``): ``kid:secret`` entries, newest first.

An entry's hash is HMAC-SHA256 under the key named by its ``kid``, so someone with write
access to the database but not to this secret cannot recompute a chain after rewriting it.
The first key keys new entries; the others stay listed so entries they keyed still verify.
"""

from __future__ import annotations

from functools import lru_cache

from app.config import Settings, get_settings


class AuditKeys:
    """HMAC secrets by key id; ``active_kid`` keys new entries."""

    def __init__(self, spec: str) -> None:
        self._secrets: dict[str, bytes] = {}
        self.active_kid = ""
        for item in spec.split(","):
            kid, sep, secret = (part.strip() for part in item.strip().partition(":"))
            if not item.strip():
                continue
            if not sep or not kid or not secret:
                raise ValueError("audit keys must be given as kid:secret entries")
            if kid in self._secrets:
                raise ValueError(f"audit key id {kid!r} is listed twice")
            self._secrets[kid] = secret.encode("utf-8")
            self.active_kid = self.active_kid or kid
        if not self.active_kid:
            raise ValueError("no audit key configured (V2V_AUDIT_KEYS)")

    @property
    def active_secret(self) -> bytes:
        return self._secrets[self.active_kid]

    def secret(self, kid: str) -> bytes | None:
        return self._secrets.get(kid)

    @property
    def kids(self) -> list[str]:
        return list(self._secrets)


@lru_cache(maxsize=4)
def _parsed(spec: str) -> AuditKeys:
    return AuditKeys(spec)


def keys_of(settings: Settings) -> AuditKeys:
    return _parsed(settings.audit_keys.get_secret_value())


def current_keys() -> AuditKeys:
    """The process's audit keys: every writer of the chain uses the same settings."""
    return keys_of(get_settings())
