"""How deep a raw JSON body nests, found without parsing it (parsers recurse per level).

Run on every JSON request body at the edge, before any parser: Python's ``json`` recurses
once per level and a body of 50,000 ``[`` exhausts its stack. The scan works on bytes with
C-speed operations only (≈ 3 ms for a 5,000-reading batch of 420 kB).
"""

from __future__ import annotations

import re

# Deep enough for every document this API takes (EPCIS and FHIR nest about 10 levels).
MAX_JSON_DEPTH = 32

_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_NOT_STRUCTURE = bytes(range(256)).translate(None, b'"[]{}')
_AS_PARENS = bytes.maketrans(b"[{]}", b"(())")


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects nest more than ``limit`` deep; brackets in strings do not
    count. Malformed bodies are left to the parser (False unless clearly too deep)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    if b"\\" in body:  # an escaped quote must not end a string below
        body = _ESCAPE.sub(b"", body)
    structure = body.translate(None, _NOT_STRUCTURE)
    if b'"' in structure:
        structure = _STRING.sub(b"", structure)
    parens = structure.translate(_AS_PARENS)
    run = b"(" * (limit + 1)
    # Each pass removes the innermost level: a balanced body nested ``limit`` deep is gone
    # after ``limit`` passes; a run of more than ``limit`` opening brackets is too deep at once.
    for _ in range(limit + 1):
        if run in parens:
            return True
        shorter = parens.replace(b"()", b"")
        if not shorter:
            return False
        if len(shorter) == len(parens):
            return False  # unbalanced: the parser will say so
        parens = shorter
    return True
