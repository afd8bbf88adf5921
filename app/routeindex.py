"""Skip the routers a request's path cannot reach before FastAPI walks them.

FastAPI selects a route by asking every included router in turn whether it matches, and each
router asks every route it holds, juggling scope keys for each: about 0.1-0.2 ms of the event
loop per request with the API's 22 routers, a quarter of the loop's time under a stream of
single readings (py-spy, 2026-12-06), paid on every request before any of our code runs.

``install`` gives each top-level router a guard: one compiled pattern, the alternation of
its routes' own path patterns. A path none of them matches cannot match any of its routes,
fully or partly (a wrong method is still a path match), so the guard answers "no match"
with one C-level regex test; any other path goes to FastAPI's own matching, unchanged.
Routers holding a kind of route whose matching is not a path pattern are left unguarded.
``install`` runs once every route has been included. It compiles the patterns from the
routes' paths alone, as FastAPI does when it first builds a router's routes (which also
analyses every endpoint's signature, what ``build`` below pays for every router at once).

``build`` makes FastAPI build every router's routes now (81 ms for the API's 32): a server
calls it at its start, before it listens. Built on the first request that reaches a router
instead, they slow that request down: a fresh server's first ``POST /shipments`` took 17 ms
with them built at start against 25-28 ms without, three interleaved pairs on PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette._utils import get_route_path
from starlette.routing import Match, Mount, compile_path
from starlette.types import Scope

Matcher = Callable[[Scope], tuple[Match, Scope]]


_NAMED_GROUP = re.compile(r"\(\?P<\w+>")


def _regexes(router: Any, prefix: str) -> list[str] | None:
    """The path patterns of every route an included router holds, under ``prefix``, as
    FastAPI compiles them when it first matches (``compile_path`` of the prefixed path),
    without building its per-route contexts; None if one is not a path pattern."""
    patterns: list[str] = []
    for route in router.original_router.routes:
        if hasattr(route, "original_router") and hasattr(route, "include_context"):
            inner = _regexes(route, prefix + route.include_context.prefix)
            if inner is None:
                return None
            patterns.extend(inner)
        elif isinstance(route, APIRoute):
            patterns.append(compile_path(prefix + route.path)[0].pattern)
        elif isinstance(route, Mount):
            path = (prefix + route.path).rstrip("/")
            patterns.append(compile_path(path + "/{path:path}")[0].pattern)
        else:
            return None
    return patterns


def _pattern(router: Any) -> re.Pattern[str] | None:
    """One pattern matching every path any route of an included router matches, or None."""
    patterns = _regexes(router, router.include_context.prefix)
    if not patterns:
        return None
    # The alternatives may name the same parameter: their groups are not needed here.
    return re.compile("|".join(f"(?:{_NAMED_GROUP.sub('(?:', p)})" for p in patterns))


def _guarded(original: Matcher, pattern: re.Pattern[str]) -> Matcher:
    match = pattern.match

    def matches(scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and match(get_route_path(scope)) is None:
            return Match.NONE, {}
        return original(scope)

    return matches


def install(app: FastAPI) -> int:
    """Guard every top-level included router of ``app``; the number guarded."""
    guarded = 0
    for route in app.router.routes:
        if not hasattr(route, "original_router"):  # a route, not an included router
            continue
        pattern = _pattern(route)
        if pattern is None:
            continue
        route.unguarded_matches = route.matches  # type: ignore[attr-defined]
        route.matches = _guarded(route.matches, pattern)  # type: ignore[method-assign,assignment]
        guarded += 1
    return guarded


def build(app: FastAPI) -> int:
    """Have FastAPI build the routes of every router of ``app`` (as its first match of each
    would); the number of routers built."""
    built = 0
    pending: list[Any] = [r for r in app.router.routes if hasattr(r, "effective_candidates")]
    while pending:
        router = pending.pop()
        candidates = router.effective_candidates()
        router.effective_low_priority_routes()
        pending.extend(c for c in candidates if hasattr(c, "effective_candidates"))
        built += 1
    return built
