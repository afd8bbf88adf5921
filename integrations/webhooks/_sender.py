"""Sending one signed delivery; every failure becomes a result, never an exception."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from integrations.webhooks._guard import GuardedTransport, RefusedDestination
from integrations.webhooks._signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign

# Well under the outbox lease, so an attempt always ends before its row could be re-claimed.
DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SendResult:
    status_code: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def default_client(*, allow_private: bool = False) -> httpx.Client:
    """A client for production use: public destinations only (checked at each connection),
    bounded timeouts, redirects not followed, no proxy or credentials from the environment."""
    return httpx.Client(
        transport=GuardedTransport(allow_private=allow_private),
        timeout=DEFAULT_TIMEOUT_S,
        follow_redirects=False,
        trust_env=False,
    )


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
        if _has_credentials(url):  # refused at creation; a row from before is not sent
            return SendResult(None, "invalid URL")
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
            return SendResult(None, describe(exc))
        if 200 <= code < 300:
            return SendResult(code)
        return SendResult(code, f"HTTP {code}")


def describe(exc: Exception) -> str:
    """A failure in words an admin can act on and that say nothing about the network behind
    the sender: no address, no port, no "refused" versus "unreachable" (a port scanner's
    answer), no library message."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        if isinstance(exc.__cause__, RefusedDestination):
            return "destination refused: not a public address"
        return "connection failed"
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return "invalid URL"
    return "request failed"


def _has_credentials(url: str) -> bool:
    return "@" in urlsplit(url).netloc
