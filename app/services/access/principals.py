"""API keys: generated once, shown once, stored only as a keyed hash."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from app.errors import Forbidden, Invalid
from app.raw import Raw, utc_ms
from app.services.audit import chain as audit
from app.services.shipments.device_ids import canonical
from models.coldchain import Device
from models.principal import Principal, Role
from models.reference import Courier, Site

KEY_PREFIX = "v2v"
# The public part of a key (``v2v_<id>_<secret>``): 12 hex characters, as generated below.
_KEY_ID = re.compile(r"^[0-9a-f]{12}$")
_SITE_KINDS = {
    Role.coordinator: {"apheresis_center", "treatment_center"},
    Role.manufacturer: {"manufacturing"},
}


def hash_key(secret_key: str, api_key: str) -> str:
    return hmac.new(secret_key.encode(), api_key.encode(), hashlib.sha256).hexdigest()


def _split(api_key: str) -> str | None:
    parts = api_key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1]


def key_id(api_key: str) -> str | None:
    """The public id of a key as generated here (its prefix), or None for anything else.

    Safe to log or audit: it finds the row but proves nothing. Input that is not shaped like
    one of our keys (a password pasted by mistake) gives None, so it is never recorded.
    """
    prefix = _split(api_key.strip())
    return prefix if prefix is not None and _KEY_ID.match(prefix) else None


def new_key(secret_key: str) -> tuple[str, str, str]:
    """A fresh key: (prefix, the key itself, its keyed hash). Only the hash is ever stored."""
    prefix = secrets.token_hex(6)
    api_key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    return prefix, api_key, hash_key(secret_key, api_key)


def create_principal(
    session: Session,
    *,
    name: str,
    role: Role,
    secret_key: str,
    site: str | None = None,
    courier: str | None = None,
    device_id: str | None = None,
) -> tuple[Principal, str]:
    """Create a principal and return it with its API key (the only time the key exists)."""
    name = name.strip()
    if not name:
        raise Invalid("a principal needs a name", errors=[{"loc": "name", "msg": "empty"}])
    if role in _SITE_KINDS:
        if not site:
            raise Invalid(f"role {role} needs a site", errors=[{"loc": "site", "msg": "required"}])
        row = session.get(Site, site)
        if row is None or row.kind not in _SITE_KINDS[role]:
            kinds = " or ".join(sorted(_SITE_KINDS[role]))
            raise Invalid(
                f"site {site!r} is not a known {kinds} site",
                errors=[{"loc": "site", "msg": "unknown site for this role"}],
            )
    elif site is not None:
        raise Invalid(f"role {role} takes no site", errors=[{"loc": "site", "msg": "not allowed"}])
    if role == Role.device:
        if not device_id:
            raise Invalid(
                "role device needs a device_id", errors=[{"loc": "device_id", "msg": "required"}]
            )
        if not courier or session.get(Courier, courier) is None:
            raise Invalid(
                "role device needs the courier organisation that owns the logger",
                errors=[{"loc": "courier", "msg": "unknown courier"}],
            )
        # The key publishes for the device as stored: the id a logger's readings carry.
        device_id = canonical(device_id, loc="device_id")
        register_device(session, device_id=device_id, courier=courier)
    elif device_id is not None:
        raise Invalid(
            f"role {role} takes no device_id", errors=[{"loc": "device_id", "msg": "not allowed"}]
        )
    if role in (Role.courier, Role.device):
        if not courier or session.get(Courier, courier) is None:
            raise Invalid(
                f"role courier needs a known courier organisation, not {courier!r}",
                errors=[{"loc": "courier", "msg": "unknown courier"}],
            )
    elif courier is not None:
        raise Invalid(
            f"role {role} takes no courier", errors=[{"loc": "courier", "msg": "not allowed"}]
        )
    prefix, api_key, key_hash = new_key(secret_key)
    principal = Principal(
        name=name,
        role=role.value,
        site=site,
        courier=courier,
        device_id=device_id,
        key_prefix=prefix,
        key_hash=key_hash,
    )
    session.add(principal)
    session.flush()
    return principal, api_key


def issue(
    session: Session,
    *,
    actor: Principal,
    name: str,
    role: Role,
    site: str | None,
    courier: str | None,
    device_id: str | None,
    secret_key: str,
    now: datetime,
) -> tuple[Principal, str]:
    """Create a principal on an admin's behalf, audited; its key exists only in the answer."""
    principal, api_key = create_principal(
        session,
        name=name,
        role=role,
        site=site,
        courier=courier,
        device_id=device_id,
        secret_key=secret_key,
    )
    audit.append(
        session,
        actor=actor,
        action="principal.created",
        entity="principal",
        entity_id=principal.id,
        at=now,
        after={
            "name": principal.name,
            "role": principal.role,
            "site": principal.site,
            "courier": principal.courier,
        },
    )
    return principal, api_key


def list_all(session: Session) -> list[Principal]:
    """Every principal, oldest first."""
    return list(session.exec(select(Principal).order_by(col(Principal.created_at))))


def register_device(session: Session, *, device_id: str, courier: str) -> Device:
    """The logger row, created for this courier on first sight; refused if another owns it."""
    device = session.get(Device, device_id)
    if device is None:
        device = Device(id=device_id, courier=courier)
        session.add(device)
        session.flush()
    elif device.courier != courier:
        raise Invalid(
            f"device {device_id!r} belongs to another courier organisation",
            errors=[{"loc": "device_id", "msg": "owned by another courier"}],
        )
    return device


# Principals by id, with the key hash they were loaded with: a request checks its key and
# the revocation on the database every time (one indexed row), and is spared loading the
# whole row through the ORM only when nothing changed. Copies, never a session's instance.
_LOADED: dict[str, tuple[str, Principal]] = {}
_LOADED_MAX = 10_000
# Key prefixes whose key has passed ``authenticate`` in this process (``authenticate_along``).
_PASSED: set[str] = set()


def forget(principal_id: str) -> None:
    """Drop a principal's cached copy (after its key was revoked or replaced)."""
    _LOADED.pop(principal_id, None)


def authenticate(
    session: Session, *, api_key: str, secret_key: str, now: datetime
) -> Principal | None:
    """The active principal holding this key, compared in constant time, or None."""
    return authenticate_along(session, api_key=api_key, secret_key=secret_key, now=now)[0]


_BY_PREFIX = "SELECT id, key_hash, revoked_at FROM principal WHERE key_prefix = ?"


def authenticate_along(
    session: Session,
    *,
    api_key: str,
    secret_key: str,
    now: datetime,
    along: Sequence[tuple[str, Sequence[Any]]] = (),
) -> tuple[Principal | None, list[list[tuple[Any, ...]]]]:
    """``authenticate``, with the caller's reads ``along`` (``Raw`` statements that write
    nothing) sent in the same round trip on PostgreSQL: the principal, and their rows.
    They are sent only for a key whose prefix has passed here before (a key this process
    has seen work), so that a stranger's request never makes us read anything but the
    key's own row; otherwise, and for a malformed key, no rows come back and the caller
    reads for itself once the key is checked. The caller must not use them for a principal
    that is None."""
    prefix = _split(api_key)
    if prefix is None:
        return None, []
    raw = Raw.of(session)
    if not along or prefix not in _PASSED:
        row = raw.one(_BY_PREFIX, [prefix])
        return _checked_key(session, row, prefix, api_key, secret_key, now), []
    found, *rows = raw.pipelined([(_BY_PREFIX, [prefix]), *along])
    row = found[0] if found else None
    return _checked_key(session, row, prefix, api_key, secret_key, now), rows


def _checked_key(
    session: Session,
    row: tuple[Any, ...] | None,
    prefix: str,
    api_key: str,
    secret_key: str,
    now: datetime,
) -> Principal | None:
    if row is None:
        # Same work as a hit, so timing does not reveal which prefixes exist.
        hmac.compare_digest(hash_key(secret_key, api_key), "0" * 64)
        return None
    principal_id, key_hash, revoked_at = str(row[0]), str(row[1]), row[2]
    if not hmac.compare_digest(key_hash, hash_key(secret_key, api_key)):
        return None
    if revoked_at is not None and utc_ms(revoked_at) <= now.timestamp() * 1000:
        return None
    if len(_PASSED) >= _LOADED_MAX:
        _PASSED.clear()
    _PASSED.add(prefix)
    cached = _LOADED.get(principal_id)
    if cached is not None and cached[0] == key_hash and revoked_at is None:
        return cached[1]
    loaded = session.get(Principal, principal_id)
    if loaded is None:  # deleted between the two statements of this transaction
        return None
    principal = Principal(**loaded.model_dump())
    if len(_LOADED) >= _LOADED_MAX:
        _LOADED.clear()
    _LOADED[principal_id] = (key_hash, principal)
    return principal


def verify_signature(
    session: Session, *, actor: Principal, credential: str, secret_key: str, now: datetime
) -> None:
    """An electronic signature: the signer re-enters their own key (21 CFR 11.200).

    Every signing act (dispositions, holds, corrections, resolving a COI mismatch) calls
    this; a key that is not the caller's own is refused and nothing is signed.
    """
    signer = authenticate(session, api_key=credential, secret_key=secret_key, now=now)
    if signer is None or signer.id != actor.id:
        raise Forbidden("the signature credential is not the signer's own key")
