"""GS1 identifiers: one canonical form for a device (or container), however it is written.

The canonical id is the GS1 Digital Link URI on ``id.gs1.org`` with its primary key and key
qualifiers as path segments: ``urn:epc:id:giai:4512345.L1``,
``https://id.gs1.org/8004/4512345L1`` and ``https://example.com/giai/4512345L1?x=1`` all
become ``https://id.gs1.org/8004/4512345L1``. Digital Link is the target because the
conversion from an EPC URN is exact, while the way back needs the company prefix length,
which a Digital Link does not carry. GTINs are widened to 14 digits; query strings and
fragments (attributes, not identity) are dropped. Identifiers that are neither
(``LOG-0042``, ``urn:uuid:…``, an EPC URN scheme without a GS1 key such as ``gid``) are
kept as they are, and ``urn:v2v:id:<percent-encoded>`` (how we export an id that is not a
URI) is decoded back to the id.

``device_id`` is the one owner of this rule: every entry (REST, MQTT, EPCIS, courier feeds,
principals) calls it, and it refuses a malformed GS1 form (``MalformedId``, with the reason)
instead of storing a second name for a device. ``canonical_id`` is its lenient twin for
matching what others wrote (EPCIS EPC lists): a malformed form is kept as written.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import quote, unquote, urlsplit

GS1_RESOLVER = "https://id.gs1.org"
LOCAL_ID = "urn:v2v:id:"

# Only ids beginning with one of these letters can be anything but plain: "urn:…", "http…".
# One character test keeps the readings hot path free for the usual "LOG-0042".
_MAYBE_GS1 = frozenset("uUhH")
_PURE_IDENTITY = "urn:epc:id:"

# Digital Link primary keys, and the short names of the early Digital Link drafts.
_PRIMARY_KEYS = frozenset(
    {"00", "01", "253", "255", "401", "402", "414", "417", "8003", "8004", "8006", "8010"}
    | {"8013", "8017", "8018"}
)
_SHORT_NAMES = {
    "sscc": "00",
    "gtin": "01",
    "gdti": "253",
    "gcn": "255",
    "gln": "414",
    "grai": "8003",
    "giai": "8004",
    "gsrn": "8018",
    "cpv": "22",
    "lot": "10",
    "ser": "21",
    "serial": "21",
    "glnx": "254",
}
_KEY_NAMES = {"00": "SSCC", "01": "GTIN", "414": "GLN", "8003": "GRAI", "8004": "GIAI"}
_KEY_NAMES |= {"8018": "GSRN"}
_DIGITS = re.compile(r"[0-9]+")
# A Digital Link GIAI begins with its GS1 company prefix: at least 4 digits (the shortest
# prefix GS1 issues; EPC URNs, which say where it ends, need 6 to 12).
_COMPANY_PREFIX = re.compile(r"[0-9]{4}")
# GS1 AI encodable character set 82 (serials, asset references, extensions).
_CSET82 = re.compile(r"[!\"%&'()*+,\-./0-9:;<=>?A-Z_a-z]+")
# Fixed-length numeric keys carrying a check digit: GS1 General Specifications, 3.2.
_CHECKED = {"00": 18, "414": 13, "8018": 18}
_MAX_TEXT = {"21": 20, "254": 20, "8004": 30}


class MalformedId(ValueError):
    """A GS1 EPC URN or Digital Link that names no device; ``reason`` says why."""

    def __init__(self, value: str, detail: str) -> None:
        self.value = value
        self.reason = f"malformed GS1 identifier: {detail}"
        super().__init__(f"{value!r}: {self.reason}")


def check_digit(data: str) -> str:
    """GS1 mod-10 check digit: weights 3 and 1 alternating from the rightmost digit."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(data)))
    return str(-total % 10)


def device_id(value: str) -> str:
    """The canonical id of a device named ``value`` (see above); ``MalformedId`` if it is a
    GS1 EPC URN or Digital Link that is not well formed."""
    if not value or value[0] not in _MAYBE_GS1:
        return value
    return _canonical(value)


def canonical_id(value: str) -> str:
    """The canonical id of an identifier someone else wrote; malformed GS1 kept as written."""
    text = value.strip()
    try:
        return device_id(text)
    except MalformedId:
        return text


@lru_cache(maxsize=4096)  # a logger sends its own id in every batch: parse it once
def _canonical(text: str) -> str:
    lower = text[:12].lower()
    if lower.startswith(_PURE_IDENTITY):
        return _from_urn(text)
    if lower.startswith("urn:epc:"):
        raise MalformedId(
            text, "an EPC class, pattern or tag URI; a device is named by urn:epc:id:…"
        )
    if lower.startswith(("https://", "http://")):
        return _from_digital_link(text)
    if lower.startswith(LOCAL_ID):
        return unquote(text[len(LOCAL_ID) :])
    return text


def _enc(value: str) -> str:
    return quote(value, safe="-._~")


def _dl(*pairs: tuple[str, str]) -> str:
    return GS1_RESOLVER + "".join(f"/{ai}/{_enc(value)}" for ai, value in pairs)


def _urn_part(text: str, value: str, what: str, max_len: int) -> str:
    plain = unquote(value)
    if not 0 < len(plain) <= max_len or not _CSET82.fullmatch(plain):
        raise MalformedId(text, f"the {what} must be 1 to {max_len} GS1 characters")
    return plain


def _from_urn(text: str) -> str:
    scheme, _, body = text[len(_PURE_IDENTITY) :].partition(":")
    scheme = scheme.lower()
    # The last part (serial, asset reference, extension) may itself contain dots.
    fields = {"giai": 2, "sgtin": 3, "sscc": 2, "sgln": 3, "grai": 3, "gsrn": 2}.get(scheme)
    if fields is None:
        return text  # an EPC scheme with no GS1 key of ours (gid, usdod, adi, …): as is
    name = f"urn:epc:id:{scheme}"
    parts = body.split(".", fields - 1)
    if len(parts) != fields:
        raise MalformedId(text, f"a {name} URN has {fields} dot-separated parts")
    prefix = parts[0]
    if not _DIGITS.fullmatch(prefix) or not 6 <= len(prefix) <= 12:
        raise MalformedId(text, "the GS1 company prefix must be 6 to 12 digits")
    if scheme == "giai":
        asset = _urn_part(text, parts[1], "individual asset reference", 30 - len(prefix))
        return _dl(("8004", prefix + asset))
    ref = parts[1]
    widths = {"sgtin": 13, "sscc": 17, "sgln": 12, "grai": 12, "gsrn": 17}
    if not (_DIGITS.fullmatch(ref) or ref == "") or len(prefix + ref) != widths[scheme]:
        total = widths[scheme]
        raise MalformedId(text, f"company prefix and reference must be {total} digits together")
    if scheme == "sgtin":
        gtin = ref[:1] + prefix + ref[1:]
        serial = _urn_part(text, parts[2], "serial number", 20)
        return _dl(("01", gtin + check_digit(gtin)), ("21", serial))
    if scheme == "sscc":
        sscc = ref[:1] + prefix + ref[1:]
        return _dl(("00", sscc + check_digit(sscc)))
    if scheme == "sgln":
        gln = prefix + ref + check_digit(prefix + ref)
        if parts[2] in ("", "0"):
            return _dl(("414", gln))
        return _dl(("414", gln), ("254", _urn_part(text, parts[2], "GLN extension", 20)))
    if scheme == "grai":
        grai = "0" + prefix + ref
        serial = _urn_part(text, parts[2], "asset serial", 16)
        return _dl(("8003", grai + check_digit(grai) + serial))
    gsrn = prefix + ref  # gsrn
    return _dl(("8018", gsrn + check_digit(gsrn)))


def _from_digital_link(text: str) -> str:
    try:
        path = urlsplit(text).path
    except ValueError as exc:
        raise MalformedId(text, "not a URL") from exc
    segments = [s for s in path.split("/") if s]
    keys = [_SHORT_NAMES.get(s.lower(), s) for s in segments]
    start = next((i for i, k in enumerate(keys) if k in _PRIMARY_KEYS), None)
    if start is None:
        return text  # a URL with no GS1 key in it: not a Digital Link, an id as any other
    if (len(keys) - start) % 2:
        raise MalformedId(text, f"the GS1 key {keys[-1]} has no value")
    pairs = list(zip(keys[start::2], [unquote(s) for s in segments[start + 1 :: 2]], strict=True))
    for ai, value in pairs:
        if not _DIGITS.fullmatch(ai):
            raise MalformedId(text, f"{ai!r} is not a GS1 application identifier")
        _check_value(text, ai, value)
    if pairs[0][0] == "01":
        pairs[0] = ("01", pairs[0][1].zfill(14))
    canonical = _dl(*pairs)
    return text if canonical == text else canonical


def _check_value(text: str, ai: str, value: str) -> None:
    name = _KEY_NAMES.get(ai, f"({ai})")
    if ai == "01":
        if not _DIGITS.fullmatch(value) or len(value) not in (8, 12, 13, 14):
            raise MalformedId(text, "a GTIN is 8, 12, 13 or 14 digits")
        if check_digit(value[:-1]) != value[-1]:
            raise MalformedId(text, f"GTIN {value}: wrong check digit")
    elif ai in _CHECKED:
        if not _DIGITS.fullmatch(value) or len(value) != _CHECKED[ai]:
            raise MalformedId(text, f"an {name} is {_CHECKED[ai]} digits")
        if check_digit(value[:-1]) != value[-1]:
            raise MalformedId(text, f"{name} {value}: wrong check digit")
    elif ai == "8003":
        if not 14 <= len(value) <= 30 or not _DIGITS.fullmatch(value[:14]) or value[0] != "0":
            raise MalformedId(text, "a GRAI is 0, 13 digits, then up to 16 serial characters")
        if check_digit(value[:13]) != value[13]:
            raise MalformedId(text, f"GRAI {value[:14]}: wrong check digit")
        if len(value) > 14 and not _CSET82.fullmatch(value[14:]):
            raise MalformedId(text, "the GRAI serial must be GS1 characters")
    elif ai == "8004":
        if not _CSET82.fullmatch(value) or len(value) > 30:
            raise MalformedId(text, "a GIAI is 1 to 30 GS1 characters")
        if _COMPANY_PREFIX.match(value) is None:
            raise MalformedId(text, "a GIAI begins with its GS1 company prefix (digits)")
    elif ai in _MAX_TEXT:
        if not _CSET82.fullmatch(value) or len(value) > _MAX_TEXT[ai]:
            raise MalformedId(text, f"AI ({ai}) is 1 to {_MAX_TEXT[ai]} GS1 characters")
    elif not value:
        raise MalformedId(text, f"AI ({ai}) has an empty value")
