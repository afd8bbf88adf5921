"""Fetching one page of a courier's events through an injected ``httpx.Client``.

Network errors, timeouts and 5xx answers are retried with exponential backoff; a 429 is
retried after its ``Retry-After`` (delay-seconds or an HTTP-date) when that is short enough,
otherwise the caller is told when to come back. Sleep and clock are injected, so tests run
the whole schedule without waiting.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from app.clock import Clock, system_clock
from integrations.courier._contract import (
    CourierRateLimited,
    CourierRefused,
    CourierUnavailable,
    EventPage,
    MalformedPage,
    parse_page,
)

DEFAULT_TIMEOUT_S = 10.0
MAX_PAGE_BYTES = 16 * 1024 * 1024
MAX_ERROR_LENGTH = 300


def retry_after_s(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (RFC 9110 §10.2.3), or None if unusable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": an HTTP-date is always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class CourierClient:
    """GET ``{base_url}/events?cursor=&limit=`` with retries; returns a checked page."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = 3,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 30.0,
        max_wait_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Clock = system_clock,
        user_agent: str = "vein2vein-courier-poller",
    ) -> None:
        self._client = client
        self._timeout = httpx.Timeout(timeout_s)
        self._max_retries = max_retries
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._max_wait_s = max_wait_s
        self._sleep = sleep
        self._clock = clock
        self._user_agent = user_agent

    def backoff_s(self, attempt: int) -> float:
        """Wait before retry ``attempt + 1``: base, 2×base, 4×base … up to the cap."""
        return float(min(self._backoff_cap_s, self._backoff_base_s * 2**attempt))

    def fetch_events(
        self, *, base_url: str, token: str, cursor: str | None, limit: int
    ) -> EventPage:
        """One page after ``cursor``; raises a ``CourierError`` when none can be had."""
        url = base_url.rstrip("/") + "/events"
        params = {"limit": str(limit)} | ({"cursor": cursor} if cursor is not None else {})
        # The token goes in this header only: never in the URL, an error or a log line.
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "User-Agent": self._user_agent,
        }
        attempt = 0
        while True:
            wait: float | None = None
            status: int | None = None
            try:
                with self._client.stream(
                    "GET",
                    url,
                    params=params,
                    headers=headers,
                    timeout=self._timeout,
                    follow_redirects=False,
                ) as response:
                    status = response.status_code
                    if 200 <= status < 300:
                        return parse_page(_json_body(response), sent_cursor=cursor)
                    retry_header = response.headers.get("retry-after")
            except httpx.TransportError as exc:  # connection errors and timeouts
                failure = _short(f"{type(exc).__name__}: {exc}")
            else:
                if status == 429:
                    failure = "HTTP 429 too many requests"
                    wait = retry_after_s(retry_header, now=self._clock())
                    if wait is not None and wait > self._max_wait_s:
                        raise CourierRateLimited(f"{failure}; retry after {wait:g} s", wait)
                elif status >= 500:
                    failure = f"HTTP {status}"
                else:
                    raise CourierRefused(_refusal(status), status)
            if attempt >= self._max_retries:
                message = f"{failure} (gave up after {attempt + 1} attempts)"
                if status == 429 and wait is not None:
                    raise CourierRateLimited(message, wait)
                raise CourierUnavailable(message)
            self._sleep(wait if wait is not None else self.backoff_s(attempt))
            attempt += 1


def _json_body(response: httpx.Response) -> object:
    size = 0
    chunks: list[bytes] = []
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_PAGE_BYTES:
            raise MalformedPage(f"malformed page: larger than {MAX_PAGE_BYTES} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedPage(f"malformed page: not JSON ({exc.__class__.__name__})") from exc


def _refusal(status: int) -> str:
    if status in (401, 403):
        return f"HTTP {status}: the courier refused our token (check the feed's auth_token)"
    if 300 <= status < 400:
        return f"HTTP {status}: redirects are not followed (check the feed's base_url)"
    return f"HTTP {status}: refused by the courier (check the feed's base_url)"


def _short(text: str) -> str:
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"
