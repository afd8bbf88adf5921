"""Alerts: the application layer's use cases of this domain."""

from app.services.alerts.lifecycle import acknowledge, raise_alert, resolve
from app.services.alerts.queries import list_for

__all__ = ["acknowledge", "list_for", "raise_alert", "resolve"]
