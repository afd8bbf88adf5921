"""Pure ASGI middleware: body limits and content types, metrics, security headers."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import telemetry
from app.errors import PROBLEM_JSON, problem_body
from app.jsonlimits import MAX_JSON_DEPTH, json_too_deep

_BODY_METHODS = {b"POST", b"PUT", b"PATCH"}


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def _send_problem(send: Send, status: int, code: str, title: str, detail: str) -> None:
    body = json.dumps(problem_body(status, code, title, detail)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyGuard:
    """Refuse oversized bodies (413), non-JSON bodies on the API (415) and JSON nested too
    deep for a parser (422) before parsing."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if b"%00" in scope.get("query_string", b"") or "\x00" in scope["path"]:
            await _send_problem(
                send, 422, "nul-character", "Invalid input", "NUL characters are not allowed"
            )
            return
        if scope["method"].encode() not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _send_problem(send, 400, "bad-request", "Bad request", "bad Content-Length")
                return
            if declared > self.max:
                await _send_problem(
                    send,
                    413,
                    "payload-too-large",
                    "Request body too large",
                    f"the body exceeds the {self.max}-byte limit",
                )
                return
        # Read the whole body (bounded), so a chunked upload cannot slip past the limit.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max:
                await _send_problem(
                    send,
                    413,
                    "payload-too-large",
                    "Request body too large",
                    f"the body exceeds the {self.max}-byte limit",
                )
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        # PostgreSQL text cannot hold NUL; refuse it at the edge, the same on every store.
        if b"\x00" in body or b"\\u0000" in body:
            await _send_problem(
                send, 422, "nul-character", "Invalid input", "NUL characters are not allowed"
            )
            return
        path: str = scope["path"]
        if body and path.startswith("/api/"):
            content_type = headers.get(b"content-type", b"").decode("latin-1")
            if not _is_json(content_type):
                await _send_problem(
                    send,
                    415,
                    "unsupported-media-type",
                    "Unsupported media type",
                    "send JSON with Content-Type: application/json",
                )
                return
        if body and _is_json(headers.get(b"content-type", b"").decode("latin-1")):
            # Before any parser sees it: JSON parsers recurse once per nesting level.
            if json_too_deep(body):
                await _send_problem(
                    send,
                    422,
                    "json-too-deep",
                    "Invalid input",
                    f"JSON nested deeper than {MAX_JSON_DEPTH} levels",
                )
                return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


def _route_template(scope: Scope) -> str:
    """The matched route's path template (bounded label cardinality), prefixes included."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not path:
        return "unmatched"
    included = (scope.get("fastapi") or {}).get("included_router")
    context = getattr(included, "include_context", None)
    prefix = getattr(context, "prefix", "") or ""
    return f"{prefix}{path}"


class Telemetry:
    """Count requests and latencies per route template; add security headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status_holder: dict[str, Any] = {"status": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.extend(_SECURITY_HEADERS)
                if scope["path"].startswith("/api/"):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            template = _route_template(scope)
            method = scope["method"]
            telemetry.REQUESTS.labels(method, template, str(status_holder["status"])).inc()
            telemetry.LATENCY.labels(method, template).observe(time.perf_counter() - start)
