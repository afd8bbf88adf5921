"""Outgoing notifications through Apprise: contact-point validation and masking, and a
sender (plain e-mail addresses go out by the configured SMTP server). No database session."""

from integrations.notify._sender import Notifier, SendResult, smtp_target
from integrations.notify._targets import (
    InvalidTarget,
    fingerprint,
    is_email,
    mask,
    target_kind,
    validate,
)

__all__ = [
    "InvalidTarget",
    "Notifier",
    "SendResult",
    "fingerprint",
    "is_email",
    "mask",
    "smtp_target",
    "target_kind",
    "validate",
]
