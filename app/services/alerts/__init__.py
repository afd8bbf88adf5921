"""Alerts: the application layer's use cases of this domain."""

from app.services.alerts.lifecycle import acknowledge, close, raise_alert, resolve, resolve_key
from app.services.alerts.queries import list_for

__all__ = ["acknowledge", "close", "list_for", "raise_alert", "resolve", "resolve_key"]
