"""Chain of identity: ISBT 128 Data Structure 040 identifiers and signed COI tokens.

A COI is ``CH`` + facility identification number (5) + year (2) + sequence (6). Its
eye-readable check character is ISO/IEC 7064 MOD 37-2. A token is a compact JWS (EdDSA,
Ed25519) over the COI, the case id, the issue time and the key id, so anyone holding the
published JWKS can verify a label offline.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session
from stdnum.iso7064 import mod_37_2

from app.times import iso_z
from models.case import CoiSequence

COI_RE = re.compile(r"^CH[A-NP-Z1-9][A-NP-Z0-9]{2}[0-9]{4}[A-Z0-9]{6}$")
FIN_RE = re.compile(r"^[A-NP-Z1-9][A-NP-Z0-9]{2}[0-9]{2}$")
BARCODE_DATA_IDENTIFIER = "&/"
MAX_SEQUENCE = 999_999


def check_char(data: str) -> str:
    """ISO/IEC 7064 MOD 37-2 check character (0-9, A-Z, ``*``)."""
    return str(mod_37_2.calc_check_digit(data))


def display(coi: str) -> str:
    """Eye-readable form, the check character set apart: ``CHW123426000123 K``."""
    return f"{coi} {check_char(coi)}"


class CoiFormatError(ValueError):
    pass


@dataclass(frozen=True)
class ScannedCoi:
    coi: str
    check: str | None  # the check character, when the scan or the typed text carried one


COMPOUND_RE = re.compile(r"^=\+(\d{2})(\d{3})")


def _from_compound(value: str) -> str:
    """The DS040 structure of an ISBT 128 compound message (DS023: ``=+nnxxx`` then the
    data structures, each with its data identifier), as scanned from a Data Matrix."""
    match = COMPOUND_RE.match(value)
    if match is None:
        return value
    at = value.find(BARCODE_DATA_IDENTIFIER, match.end())
    if at < 0:
        raise CoiFormatError("the compound message holds no chain-of-identity code (&/)")
    return value[at : at + len(BARCODE_DATA_IDENTIFIER) + 15]


def parse_scan(text: str) -> ScannedCoi:
    """Read a COI as scanned (``&/`` barcode form, alone or in a compound message) or typed
    (with or without its check character, with or without spaces)."""
    value = _from_compound(text.strip().upper())
    if value.startswith(BARCODE_DATA_IDENTIFIER):
        value = value[len(BARCODE_DATA_IDENTIFIER) :]
    value = value.replace(" ", "")
    check: str | None = None
    if len(value) == 16:
        value, check = value[:15], value[15]
    if not COI_RE.fullmatch(value):
        raise CoiFormatError(
            "not an ISBT 128 DS040 chain-of-identity code (CH + FIN + year + 6 characters)"
        )
    if check is not None and check != check_char(value):
        raise CoiFormatError("check character does not match: the code was misread or mistyped")
    return ScannedCoi(value, check)


def next_coi(session: Session, *, fin: str, year: int) -> str:
    """Allocate the next COI for a facility and year, atomically on both databases."""
    if not FIN_RE.fullmatch(fin):
        raise ValueError(f"invalid facility identification number {fin!r}")
    yy = year % 100
    stmt = _next_in_sequence(session.get_bind().dialect.name)
    seq = int(session.execute(stmt, {"fin": fin, "year": yy}).scalar_one())
    if seq > MAX_SEQUENCE:
        raise OverflowError(f"COI sequence exhausted for FIN {fin} in year {yy:02d}")
    return f"CH{fin}{yy:02d}{seq:06d}"


@functools.cache
def _next_in_sequence(dialect: str) -> Any:
    """The upsert that takes a FIN's next number in a year, built once per dialect (every
    registration runs it)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = CoiSequence.__table__  # type: ignore[attr-defined]
    return (
        insert(table)  # the table's, not the model's: no ORM bulk-insert machinery per call
        .values(fin=bindparam("fin"), year=bindparam("year"), last_seq=1)
        .on_conflict_do_update(
            index_elements=["fin", "year"], set_={"last_seq": table.c.last_seq + 1}
        )
        .returning(table.c.last_seq)
    )


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class TokenCheck:
    signature_ok: bool
    payload: dict[str, Any] | None
    reason: str | None = None


class Keyring:
    """Ed25519 keys by key id. The first signing key signs; every key verifies."""

    def __init__(self, signing: str, verify_only: str = "") -> None:
        self._private: dict[str, Ed25519PrivateKey] = {}
        self._public: dict[str, Ed25519PublicKey] = {}
        self.active_kid: str | None = None
        for kid, material in _entries(signing):
            seed = _b64d(material)
            if len(seed) != 32:
                raise ValueError(f"COI signing key {kid!r}: seed must be 32 bytes")
            key = Ed25519PrivateKey.from_private_bytes(seed)
            self._private[kid] = key
            self._public[kid] = key.public_key()
            self.active_kid = self.active_kid or kid
        for kid, material in _entries(verify_only):
            self._public.setdefault(kid, Ed25519PublicKey.from_public_bytes(_b64d(material)))
        if self.active_kid is None:
            raise ValueError("no COI signing key configured")

    def sign(self, *, coi: str, case_id: str, issued_at: datetime) -> str:
        if self.active_kid is None:  # guaranteed by foreign keys and state
            raise RuntimeError("inconsistent data: self.active_kid missing")
        kid = self.active_kid
        header = {"alg": "EdDSA", "kid": kid, "typ": "JWT"}
        payload = {
            "coi": coi,
            "case_id": case_id,
            "issued_at": iso_z(issued_at),
            "iat": int(issued_at.timestamp()),
            "kid": kid,
        }
        signing_input = ".".join(
            _b64e(json.dumps(part, separators=(",", ":")).encode()) for part in (header, payload)
        )
        signature = self._private[kid].sign(signing_input.encode("ascii"))
        return f"{signing_input}.{_b64e(signature)}"

    def sign_detached(self, data: bytes) -> tuple[str, bytes]:
        """(kid, Ed25519 signature) of ``data`` with the active key; verifiable with the JWKS
        (audit checkpoints and dossier manifests, each with its own context prefix)."""
        if self.active_kid is None:
            raise RuntimeError("no COI signing key configured")
        return self.active_kid, self._private[self.active_kid].sign(data)

    def verify(self, token: str) -> TokenCheck:
        parts = token.strip().split(".")
        if len(parts) != 3:
            return TokenCheck(False, None, "not a compact JWS (three dot-separated parts)")
        try:
            header = json.loads(_b64d(parts[0]))
            payload = json.loads(_b64d(parts[1]))
            signature = _b64d(parts[2])
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return TokenCheck(False, None, "token is not valid base64url JSON")
        if not isinstance(header, dict) or not isinstance(payload, dict):
            return TokenCheck(False, None, "token header and payload must be JSON objects")
        if header.get("alg") != "EdDSA":
            return TokenCheck(False, None, "unsupported algorithm (EdDSA expected)")
        kid = header.get("kid")
        key = self._public.get(kid) if isinstance(kid, str) else None
        if key is None:
            return TokenCheck(False, None, "unknown or retired key id")
        try:
            key.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"))
        except (InvalidSignature, UnicodeEncodeError):
            return TokenCheck(False, None, "signature does not verify")
        if payload.get("kid") != kid:
            return TokenCheck(False, None, "key id in payload differs from the header")
        return TokenCheck(True, payload)

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self._public.items():
            raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
            keys.append(
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": _b64e(raw),
                    "kid": kid,
                    "use": "sig",
                    "alg": "EdDSA",
                }
            )
        return {"keys": keys}


def _entries(spec: str) -> list[tuple[str, str]]:
    out = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        kid, sep, material = item.partition(":")
        if not sep or not kid or not material:
            raise ValueError("COI keys must be given as kid:base64url entries")
        out.append((kid.strip(), material.strip()))
    return out


def generate_signing_entry(kid: str) -> str:
    """A new ``kid:seed`` entry for ``V2V_COI_SIGNING_KEYS`` (prepend it to rotate)."""
    key = Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return f"{kid}:{_b64e(seed)}"
