"""Outgoing webhooks: HMAC-SHA256 signing and a typed sender around an injected httpx.Client.

Every request carries ``X-V2V-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` keyed
with the subscriber's secret, ``X-V2V-Event`` and ``X-V2V-Delivery`` (stable across retries,
so receivers can de-duplicate). Deliveries go to public addresses only (``_guard``).
"""

from integrations.webhooks._guard import (
    GuardedTransport,
    UnsafeTarget,
    check_url,
    is_public,
    resolve,
)
from integrations.webhooks._sender import (
    DEFAULT_TIMEOUT_S,
    SendResult,
    WebhookSender,
    default_client,
    describe,
)
from integrations.webhooks._signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    sign,
    verify,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "GuardedTransport",
    "SIGNATURE_HEADER",
    "SendResult",
    "UnsafeTarget",
    "WebhookSender",
    "check_url",
    "default_client",
    "describe",
    "is_public",
    "resolve",
    "sign",
    "verify",
]
