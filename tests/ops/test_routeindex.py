"""The routers' guards (app/routeindex.py) answer exactly what FastAPI's own matching does.

For every path of every route the app serves (its parameters filled in), for neighbours of
those paths (a trailing slash, one segment more, one less) and for paths nobody serves,
each guarded router gives the same match as its unguarded self, for every method.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Match

from app.config import Settings
from app.main import create_app

_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")
_SAMPLE = {
    "int": "7",
    "float": "1.5",
    "path": "a/b.txt",
    "uuid": "0" * 8 + "-0000-0000-0000-" + "0" * 12,
}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def _fill(path_format: str) -> str:
    return _PARAM.sub(lambda m: _SAMPLE.get(m.group(2) or "", f"x-{m.group(1)}"), path_format)


def _paths(app: Any) -> list[str]:
    paths: set[str] = {"/", "/nowhere", "/api/v1", "/api/v1/", "/api/v1/nothing/here", ""}
    for route in app.router.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        formats = [c.path_format for c in contexts()] if contexts else [getattr(route, "path", "")]
        for path_format in formats:
            path = _fill(str(path_format))
            parent = path.rsplit("/", 1)[0]
            paths.update({path, path + "/", path + "/extra", parent, parent + "/x-other"})
    return sorted(paths)


def _scope(path: str, method: str) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}


@pytest.fixture(scope="module")
def app() -> Any:
    return create_app()


def test_every_api_router_is_guarded(app: Any) -> None:
    routers = [r for r in app.router.routes if hasattr(r, "effective_route_contexts")]
    assert routers and all(hasattr(r, "unguarded_matches") for r in routers)


def test_a_guard_matches_exactly_what_the_router_does(app: Any) -> None:
    routers = [r for r in app.router.routes if hasattr(r, "unguarded_matches")]
    checked = 0
    for path in _paths(app):
        for method in METHODS:
            for router in routers:
                guarded, _ = router.matches(_scope(path, method))
                unguarded, _ = router.unguarded_matches(_scope(path, method))
                assert guarded == unguarded, (path, method, router)
                checked += guarded != Match.NONE
    assert checked > 300  # every served path was found by some router, for its methods


def test_requests_are_still_routed_with_their_problems(app: Any) -> None:
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        missing = client.get("/api/v1/no-such-thing")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        wrong = client.delete("/api/v1/cases")
        assert wrong.status_code == 405
        assert client.get("/api/v1/cases").status_code == 401  # found, then refused: no key


def _built(router: Any) -> bool:
    # FastAPI's own mark that it has built an included router's routes (it builds them on
    # the first match otherwise): if it goes, this test says the start-up build stopped working.
    return router._effective_candidates_version is not None  # type: ignore[no-any-return]


def test_a_server_builds_every_router_before_its_first_request(settings: Settings) -> None:
    """The first call a router answers after a start does not pay for building its routes."""
    served = create_app(settings)  # its own database, as a server: started in full
    routers = [r for r in served.router.routes if hasattr(r, "effective_candidates")]
    assert routers and not any(_built(r) for r in routers)
    with TestClient(served):
        assert all(_built(r) for r in routers)
