"""Notifications people act on: contact points and subscriptions, the outbox and its
delivery through Apprise, on-call escalation of critical alerts and the daily digest."""
