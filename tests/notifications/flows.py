"""Small steps the notification tests share."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.config import Settings
from app.db import Database
from app.scheduler import notification_jobs
from tests.conftest import Api
from tests.notifications.conftest import Mail

PATIENTS = ("MRN-", "patient")


def email_of(persona: str) -> str:
    return f"{persona}@hospital.example"


def subscribe(
    api: Api,
    persona: str,
    *,
    contacts: list[str] | None = None,
    kinds: list[str] | None = None,
    min_severity: str = "warning",
    **extra: Any,
) -> dict[str, Any]:
    body = {
        "contacts": [{"target": t} for t in (contacts or [email_of(persona)])],
        "subscriptions": [{"kinds": kinds or [], "min_severity": min_severity}],
        **extra,
    }
    r = api.client.put("/api/v1/me/notifications", json=body, headers=api.headers(persona))
    assert r.status_code == 200, r.text
    return dict(r.json())


def run(settings: Settings, database: Database, job: str, now: datetime) -> int:
    """One run of a production notification job (as the scheduler would call it)."""
    fn, _ = notification_jobs(settings)[job]
    return int(fn(database, now))


def principal_id(api: Api, persona: str) -> str:
    return str(api.get(persona, "/api/v1/me").json()["id"])


def assert_clean(mail: Mail, *, foreign: list[str]) -> None:
    """No patient reference, and nothing of another site's cases (their COIs, ids, site)."""
    text = mail.subject + "\n" + mail.body
    for word in PATIENTS:
        assert word not in text, (word, text)
    for value in foreign:
        assert value not in text, (value, text)
