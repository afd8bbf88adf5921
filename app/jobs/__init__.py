"""Scheduled jobs: each idempotent, each opening its own sessions."""
