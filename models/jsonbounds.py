"""Bounds on free-form JSON a client may send: how deep it nests and how large it is.

Free-form values (an event's ``data``) are stored, audited and serialised again and again;
unbounded, one request can make every later reader recurse past the stack or copy megabytes.
"""

from __future__ import annotations

import json
from typing import Any

# An event's ``data``: a few structured fields (a bedside check, a recollection date).
EVENT_DATA_MAX_DEPTH = 8
EVENT_DATA_MAX_BYTES = 8 * 1024


def json_depth(value: Any, *, stop_after: int) -> int:
    """How deep containers nest in ``value`` (a scalar is 0), counted without recursion and
    stopping once ``stop_after`` is exceeded (so hostile input costs no more than that)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > stop_after:
            return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def check_bounded(value: Any, *, max_depth: int, max_bytes: int) -> Any:
    """``value`` unchanged, or ValueError when it nests deeper or serialises larger."""
    if json_depth(value, stop_after=max_depth) > max_depth:
        raise ValueError(f"nested deeper than {max_depth} levels")
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > max_bytes:
        raise ValueError(f"larger than {max_bytes} bytes as JSON ({size})")
    return value
