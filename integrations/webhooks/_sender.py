"""Sending one signed delivery; every failure becomes a result, never an exception."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from integrations.webhooks._signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign

# Well under the outbox lease, so an attempt always ends before its row could be re-claimed.
DEFAULT_TIMEOUT_S = 10.0
MAX_ERROR_LENGTH = 500


@dataclass(frozen=True)
class SendResult:
    status_code: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def default_client() -> httpx.Client:
    """A client for production use: bounded timeouts, redirects not followed."""
    return httpx.Client(timeout=DEFAULT_TIMEOUT_S, follow_redirects=False)


class WebhookSender:
    """Posts signed webhook bodies through an injected client (tests use MockTransport)."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        user_agent: str = "vein2vein-webhooks",
    ) -> None:
        self._client = client
        self._timeout = httpx.Timeout(timeout_s)
        self._user_agent = user_agent

    def send(
        self, *, url: str, body: bytes, secret: str, event: str, delivery_id: str
    ) -> SendResult:
        """POST the body; any 2xx is a delivery, anything else (3xx included) a failure."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self._user_agent,
            SIGNATURE_HEADER: sign(secret, body),
            EVENT_HEADER: event,
            DELIVERY_HEADER: delivery_id,
        }
        try:
            # Streamed and never read: a receiver's response body is of no use and may be huge.
            with self._client.stream(
                "POST",
                url,
                content=body,
                headers=headers,
                timeout=self._timeout,
                follow_redirects=False,
            ) as response:
                code = response.status_code
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return SendResult(None, _short(f"{type(exc).__name__}: {exc}"))
        if 200 <= code < 300:
            return SendResult(code)
        return SendResult(code, f"HTTP {code}")


def _short(text: str) -> str:
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"
