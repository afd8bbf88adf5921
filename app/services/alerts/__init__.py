"""Alerts: the application layer's use cases of this domain."""
