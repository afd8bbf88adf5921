"""How deep a raw JSON body nests, found without parsing it (parsers recurse per level).

Run on every JSON request body at the edge, before any parser: Python's ``json`` recurses
once per level and a body of 50,000 ``[`` exhausts its stack. The scan works on bytes with
C-speed operations only (≈ 0.4 ms for a 5,000-reading batch of 420 kB).
"""

from __future__ import annotations

import re

# Deep enough for every document this API takes (EPCIS and FHIR nest about 10 levels).
MAX_JSON_DEPTH = 32

_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_STRUCTURE = bytes(range(256)).translate(None, b'"[]{}')
_AS_PARENS = bytes.maketrans(b"[{]}", b"(())")


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects nest more than ``limit`` deep; brackets in strings do not
    count. Malformed bodies are left to the parser (False unless clearly too deep)."""
    if b"\\" in body:  # an escaped quote must not end a string below
        body = _ESCAPE.sub(b"", body)
    structure = body.translate(None, _NOT_STRUCTURE)
    if structure.count(b"[") + structure.count(b"{") <= limit:
        return False
    # Quotes alternate between opening and closing a string, so dropping two adjacent ones
    # (an empty string, or one string's end and the next one's start) leaves every other
    # character inside or outside a string as it was: after that, only strings holding
    # brackets still have quotes, and most bodies have none left.
    structure = structure.replace(b'""', b"")
    if b'"' in structure:
        structure = b"".join(structure.split(b'"')[::2])  # the even pieces lie outside strings
    parens = structure.translate(_AS_PARENS)
    run = b"(" * (limit + 1)
    # Each pass removes every empty pair (the leaves, at whatever depth): a balanced body is
    # gone after as many passes as it nests deep; a run of more than ``limit`` opening
    # brackets is too deep at once.
    depth = 0
    while parens:
        if run in parens:
            return True
        shorter = parens.replace(b"()", b"")
        if len(shorter) == len(parens):
            return False  # unbalanced: the parser will say so
        parens = shorter
        depth += 1
        if depth > limit:
            return True
    return False
