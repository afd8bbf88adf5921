"""Security basics: rate limits with Retry-After, CORS closed by default, constant-time keys."""

from __future__ import annotations

import pytest

from app.errors import TooManyRequests
from app.ratelimit import RateLimiter
from tests.conftest import Api


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=2, clock=lambda: now[0])
    limiter.hit("k")
    limiter.hit("k")
    with pytest.raises(TooManyRequests) as refused:
        limiter.hit("k")
    assert refused.value.headers["Retry-After"] == "1"
    limiter.hit("other")  # buckets are per key
    now[0] += 1.0
    limiter.hit("k")
    assert RateLimiter(per_minute=0).hit("k") is None  # 0 switches the limit off


def test_ingest_answers_429_with_retry_after(api: Api) -> None:
    # One token a minute: a slow machine cannot refill the bucket between the two posts.
    api.client.app.state.ingest_limiter = RateLimiter(per_minute=1, burst=1)  # type: ignore[attr-defined]
    assert api.post("courier", "/api/v1/readings", {"readings": []}).status_code == 200
    r = api.post("courier", "/api/v1/readings", {"readings": []})
    assert r.status_code == 429
    assert r.headers["retry-after"] == "60"
    assert r.headers["content-type"].startswith("application/problem+json")
    assert api.post("global", "/api/v1/readings", {"readings": []}).status_code == 200


def test_cors_is_closed_by_default(api: Api) -> None:
    r = api.client.options(
        "/api/v1/cases",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in r.headers
    r = api.client.get(
        "/api/v1/me", headers={**api.headers("ncc"), "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in r.headers


def test_database_contention_is_a_retryable_503_not_a_500(api: Api) -> None:
    from sqlalchemy.exc import OperationalError

    app = api.client.app

    @app.get("/api/v1/_test_locked", include_in_schema=False)  # type: ignore[attr-defined]
    def locked() -> None:
        raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))

    r = api.client.get("/api/v1/_test_locked")
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert r.json()["code"] == "busy"
