"""Metrics: the application layer's use cases of this domain."""
