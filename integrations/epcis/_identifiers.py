"""Identifiers in EPCIS documents: GS1 EPC URNs, GS1 Digital Link URIs and our own URNs.

The canonical device (and container) id is the GS1 Digital Link URI on ``id.gs1.org`` with
its primary key and key qualifiers as path segments, for example
``urn:epc:id:giai:4000001.111`` and ``https://example.com/8004/4000001111?x=1`` both become
``https://id.gs1.org/8004/4000001111``. Digital Link is the target because the conversion
from an EPC URN is exact, while the way back needs the company prefix length, which a
Digital Link does not carry. GTINs are widened to 14 digits; query strings and fragments
(attributes, not identity) are dropped. Identifiers that are neither (``LOG-0042``,
``urn:uuid:…``) are kept as they are, and ``urn:v2v:id:<percent-encoded>`` (how we export an
id that is not a URI) is decoded back to the id.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit

GS1_RESOLVER = "https://id.gs1.org"
LOCAL_ID = "urn:v2v:id:"
COI_URN = "urn:v2v:coi:"
SITE_URN = "urn:v2v:site:"
PARTY_URN = "urn:v2v:party:"

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
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_DIGITS = re.compile(r"[0-9]+")


def check_digit(data: str) -> str:
    """GS1 mod-10 check digit: weights 3 and 1 alternating from the rightmost digit."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(data)))
    return str(-total % 10)


def _enc(value: str) -> str:
    return quote(unquote(value), safe="-._~")


def _dl(*pairs: tuple[str, str]) -> str:
    return GS1_RESOLVER + "".join(f"/{ai}/{_enc(value)}" for ai, value in pairs)


def _urn_to_digital_link(urn: str) -> str | None:
    scheme, _, body = urn[len("urn:epc:id:") :].partition(":")
    parts = body.split(".")
    scheme = scheme.lower()
    if len(parts) < 2 or not _DIGITS.fullmatch(parts[0]):
        return None
    if scheme == "giai" and len(parts) == 2:
        return _dl(("8004", parts[0] + parts[1]))
    if not _DIGITS.fullmatch(parts[1]):
        return None
    prefix, ref = parts[0], parts[1]
    if scheme == "sgtin" and len(parts) == 3 and len(prefix + ref) == 13:
        gtin = ref[0] + prefix + ref[1:]
        return _dl(("01", gtin + check_digit(gtin)), ("21", parts[2]))
    if scheme == "sscc" and len(parts) == 2 and len(prefix + ref) == 17:
        sscc = ref[0] + prefix + ref[1:]
        return _dl(("00", sscc + check_digit(sscc)))
    if scheme == "sgln" and len(parts) == 3 and len(prefix + ref) == 12:
        gln = prefix + ref + check_digit(prefix + ref)
        extension = () if parts[2] in ("", "0") else (("254", parts[2]),)
        return _dl(("414", gln), *extension)
    if scheme == "grai" and len(parts) == 3 and len(prefix + ref) == 12:
        grai = "0" + prefix + ref
        return _dl(("8003", grai + check_digit(grai) + parts[2]))
    if scheme == "gsrn" and len(parts) == 2 and len(prefix + ref) == 17:
        return _dl(("8018", prefix + ref + check_digit(prefix + ref)))
    return None


def _digital_link(uri: str) -> str | None:
    segments = [s for s in urlsplit(uri).path.split("/") if s]
    keys = [_SHORT_NAMES.get(s.lower(), s) for s in segments]
    start = next((i for i, k in enumerate(keys) if k in _PRIMARY_KEYS), None)
    if start is None or (len(keys) - start) % 2:
        return None
    pairs = list(zip(keys[start::2], segments[start + 1 :: 2], strict=True))
    if not all(_DIGITS.fullmatch(ai) for ai, _ in pairs):
        return None
    if pairs[0][0] == "01":
        if not _DIGITS.fullmatch(pairs[0][1]) or len(pairs[0][1]) not in (8, 12, 13, 14):
            return None
        pairs[0] = ("01", pairs[0][1].zfill(14))
    return _dl(*pairs)


def canonical_id(value: str) -> str:
    """The id we store for a device or container named in an EPCIS document (see above)."""
    text = value.strip()
    lower = text.lower()
    if lower.startswith("urn:epc:id:"):
        return _urn_to_digital_link(text) or text
    if lower.startswith(("https://", "http://")):
        return _digital_link(text) or text
    if lower.startswith(LOCAL_ID):
        return unquote(text[len(LOCAL_ID) :])
    return text


def id_uri(local_id: str) -> str:
    """How an id of ours is written in an EPCIS document: a URI mapping back to it."""
    if _URI.fullmatch(local_id) and canonical_id(local_id) == local_id:
        return local_id
    return LOCAL_ID + quote(local_id, safe="")


def coi_uri(coi: str) -> str:
    return COI_URN + coi


def coi_candidate(epc: str) -> str:
    """The label text an EPC may carry: the COI, its ``&/`` barcode form or our COI URN."""
    text = epc.strip()
    return text[len(COI_URN) :] if text.lower().startswith(COI_URN) else text


def site_uri(code: str) -> str:
    return SITE_URN + quote(code, safe="")


def party_uri(name: str) -> str:
    return PARTY_URN + quote(name, safe="")


def party_name(uri: str) -> str:
    """A party as written by us (``urn:v2v:party:…``) back to its name; others verbatim."""
    text = uri.strip()
    if text.lower().startswith(PARTY_URN):
        return unquote(text[len(PARTY_URN) :])
    return text


def geo_uri(lat: float, lon: float) -> str:
    return f"geo:{lat!r},{lon!r}"


def parse_geo(uri: str) -> tuple[float, float] | None:
    """Latitude and longitude of an RFC 5870 ``geo:`` URI, if it is one and in range."""
    if not uri.lower().startswith("geo:"):
        return None
    coords = uri[4:].split(";", 1)[0].split(",")
    try:
        lat, lon = float(coords[0]), float(coords[1])
    except (IndexError, ValueError):
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return lat, lon


_VOCAB_PREFIXES = (
    "https://gs1.org/voc/",
    "http://gs1.org/voc/",
    "https://ref.gs1.org/cbv/",
    "http://ref.gs1.org/cbv/",
    "gs1:",
    "cbv:",
    "urn:epcglobal:cbv:bizstep:",
    "urn:epcglobal:cbv:sdt:",
    "urn:epcglobal:cbv:disp:",
)


def term(value: str, family: str) -> str:
    """A GS1/CBV vocabulary term in its bare form, however it was written.

    ``Temperature``, ``gs1:MT-Temperature`` and ``https://gs1.org/voc/MT-Temperature`` are
    all ``Temperature`` (family ``MT``); ``urn:epcglobal:cbv:bizstep:shipping`` and
    ``https://ref.gs1.org/cbv/BizStep-shipping`` are ``shipping``. Other URIs stay as given.
    """
    text = value.strip()
    lower = text.lower()
    for prefix in _VOCAB_PREFIXES:
        if lower.startswith(prefix):
            rest = text[len(prefix) :]
            marker = family + "-"
            return rest[len(marker) :] if rest.lower().startswith(marker.lower()) else rest
    return text
