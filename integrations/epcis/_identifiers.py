"""Identifiers in EPCIS documents: GS1 EPC URNs, GS1 Digital Link URIs and our own URNs.

Devices and containers are named in their canonical form (``integrations.gs1``, the one
owner of that rule: a GS1 Digital Link URI on ``id.gs1.org``); this module adds how our own
ids, COIs, sites, parties and places are written in a document, and vocabulary terms.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from integrations.gs1 import LOCAL_ID, canonical_id

COI_URN = "urn:v2v:coi:"
SITE_URN = "urn:v2v:site:"
PARTY_URN = "urn:v2v:party:"
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")


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
