"""The error hierarchy and its RFC 9457 ``application/problem+json`` rendering.

Services raise ``AppError`` subclasses; handlers here turn them, request validation errors,
unknown paths and anything unexpected into one problem shape. No stack trace ever leaves.
A FHIR client (``Accept: application/fhir+json`` under the FHIR base) gets the same status
with an OperationOutcome instead, as FHIR requires.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from integrations.fhir import FHIR_JSON, operation_outcome

log = logging.getLogger("v2v.errors")

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "urn:v2v:problem:"
FHIR_PATH = "/api/v1/integrations/fhir/"


class AppError(Exception):
    status = 500
    code = "internal-error"
    title = "Internal server error"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        on_refusal: Callable[[Session], None] | None = None,
    ) -> None:
        super().__init__(detail)
        # A service's recorder for what must be kept although the request is refused (a COI
        # mismatch's alert and audit entry): the unit of work rolls back, runs it, commits.
        self.on_refusal = on_refusal
        self.detail = detail
        if code:
            self.code = code
        self.errors = errors
        self.extra = extra or {}
        self.headers = headers or {}


class BadRequest(AppError):
    status, code, title = 400, "bad-request", "Bad request"


class Unauthorized(AppError):
    status, code, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str = "a valid API key is required", **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kw)


class Forbidden(AppError):
    status, code, title = 403, "forbidden", "Role not allowed"


class NotFound(AppError):
    status, code, title = 404, "not-found", "Not found"


class Conflict(AppError):
    status, code, title = 409, "conflict", "Conflict with the current state"


class IllegalTransition(Conflict):
    code, title = "illegal-transition", "Illegal journey transition"


class CoiMismatch(Conflict):
    code, title = "coi-mismatch", "Chain-of-identity mismatch"


class PayloadTooLarge(AppError):
    status, code, title = 413, "payload-too-large", "Request body too large"


class UnsupportedMediaType(AppError):
    status, code, title = 415, "unsupported-media-type", "Unsupported media type"


class Invalid(AppError):
    status, code, title = 422, "invalid", "Invalid input"


class TooManyRequests(AppError):
    status, code, title = 429, "too-many-requests", "Too many requests"


def problem_body(
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    if extra:
        body.update(extra)
    return body


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        problem_body(status, code, title, detail, errors, extra),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _loc(loc: Any) -> str:
    return "/".join(str(part) for part in loc)


def validation_errors(raw: Any) -> list[dict[str, Any]]:
    """Field locations and messages only: the offending input may be huge or unprintable."""
    return [{"loc": _loc(err.get("loc", ())), "msg": str(err.get("msg", ""))} for err in raw]


def _wants_fhir(request: Request) -> bool:
    """A FHIR client on the FHIR base: its errors are OperationOutcomes."""
    return request.url.path.startswith(FHIR_PATH) and FHIR_JSON in request.headers.get("accept", "")


def _respond(
    request: Request,
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    if _wants_fhir(request):
        fields = [f"{e['loc']}: {e['msg']}" for e in errors or []]
        outcome = operation_outcome(status, detail, fields)
        return JSONResponse(outcome, status_code=status, media_type=FHIR_JSON, headers=headers)
    return problem_response(
        status, code, title, detail, errors=errors, extra=extra, headers=headers
    )


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, AppError):
        raise TypeError("unexpected exception type")
    return _respond(
        request,
        exc.status,
        exc.code,
        exc.title,
        exc.detail,
        errors=exc.errors,
        extra=exc.extra,
        headers=exc.headers,
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):
        raise TypeError("unexpected exception type")
    errors = validation_errors(exc.errors())
    first = errors[0] if errors else {"loc": "", "msg": "invalid request"}
    return _respond(
        request,
        422,
        "validation-error",
        "Invalid input",
        f"{first['loc']}: {first['msg']}" if first["loc"] else first["msg"],
        errors=errors,
    )


_HTTP_CODES = {
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    400: ("bad-request", "Bad request"),
}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):
        raise TypeError("unexpected exception type")
    code, title = _HTTP_CODES.get(exc.status_code, ("http-error", "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) else title
    if exc.status_code == 404 and detail == "Not Found":
        detail = "no such resource"
    headers = dict(exc.headers or {})
    return _respond(request, exc.status_code, code, title, detail, headers=headers)


# Transient contention: SQLite's writer lock timed out, or PostgreSQL broke a deadlock or a
# serialization conflict. Nothing was committed; the client may simply try again.
_RETRYABLE_SQLSTATES = {"40P01", "40001", "55P03"}


def _retryable(exc: Exception) -> bool:
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if getattr(orig, "sqlstate", None) in _RETRYABLE_SQLSTATES:
        return True
    return "database is locked" in str(orig)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    # The SQLite writer gate's timeout surfaces unwrapped, as sqlite3's own error.
    if _retryable(exc):
        orig = exc.orig if isinstance(exc, DBAPIError) else exc
        log.warning("transient database contention: %s", type(orig).__name__)
        return _respond(
            request,
            503,
            "busy",
            "Service busy",
            "the database is busy; nothing was saved, retry shortly",
            headers={"Retry-After": "1"},
        )
    return await _unexpected(request, exc)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
    return _respond(
        request,
        500,
        "internal-error",
        "Internal server error",
        "the server failed; it has been logged",
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(sqlite3.OperationalError, _database_error)
    app.add_exception_handler(Exception, _unexpected)


class ProblemDetail(BaseModel):
    """RFC 9457 problem details, the body of every error."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, Any]] | None = None


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}},
    }


# Documented on every API operation, so clients (and schema-driven fuzzers) know the shape.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _problem("Bad request"),
    401: _problem("No or bad API key"),
    403: _problem("Role not allowed"),
    404: _problem("Not found, or outside the caller's scope"),
    409: _problem("Conflict with the current state"),
    413: _problem("Request body too large"),
    415: _problem("Unsupported media type"),
    422: _problem("Invalid input, with field locations"),
    429: _problem("Too many requests; see Retry-After"),
    503: _problem("Busy (database contention); nothing was saved, see Retry-After"),
}
