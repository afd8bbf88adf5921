"""Settings: one class, environment prefix ``V2V_``, secrets as ``SecretStr``.

Development defaults let ``make run`` work on a fresh machine; each of them is refused
when ``V2V_ENV=production`` so a real deployment cannot start with a published secret.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from itertools import combinations
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_KEY = "dev-insecure-secret-key-change-me"  # noqa: S105 (refused in production)
DEV_PATIENT_HASH_KEY = "dev-insecure-patient-hash-key-change-me"
# kid:base64url(32-byte Ed25519 seed). Published in this file, so never for production.
DEV_COI_SIGNING_KEYS = "dev-2026:ZGV2LWluc2VjdXJlLWNvaS1zaWduaW5nLWtleS0wMDE"
# kid:secret. Keys the audit entries' HMACs; published here, so refused in production.
DEV_AUDIT_KEYS = "dev-audit-2026:dev-insecure-audit-chain-key-change-me"
# A secret typed by a person rather than generated: "aaaa…" or "abcdabcd…" is as good as
# no secret at all, however long. Generated secrets (token_urlsafe) have ~30 of 32 distinct.
MIN_SECRET_LENGTH = 32
MIN_DISTINCT_CHARACTERS = 8


def is_loopback(host: str) -> bool:
    """A loopback address (127.0.0.0/8, ::1) or ``localhost``; any other name is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="V2V_", env_file=None, extra="ignore")

    env: Literal["development", "test", "production"] = Field(
        "development", description="Deployment kind; `production` refuses development secrets."
    )
    database_url: str = Field(
        "sqlite:///var/v2v.sqlite3",
        description="SQLAlchemy URL: SQLite (default, WAL) or postgresql+psycopg://…",
    )
    secret_key: SecretStr = Field(
        SecretStr(DEV_SECRET_KEY),
        description="Keys API-key hashes and dashboard session cookies.",
    )
    patient_hash_key: SecretStr = Field(
        SecretStr(DEV_PATIENT_HASH_KEY),
        description="HMAC key for patient references (MRNs are never stored in clear).",
    )
    coi_signing_keys: SecretStr = Field(
        SecretStr(DEV_COI_SIGNING_KEYS),
        description="Ed25519 COI signing keys, `kid:seed_b64url` comma-separated; the first "
        "signs, all verify (rotation keeps old labels verifiable).",
    )
    coi_verify_keys: str = Field(
        "",
        description="Retired COI public keys, `kid:x_b64url` comma-separated, kept verifiable "
        "after their private key is destroyed.",
    )
    audit_keys: SecretStr = Field(
        SecretStr(DEV_AUDIT_KEYS),
        description="HMAC-SHA256 keys of the audit entries' hashes, `kid:secret` comma-"
        "separated; the first (newest) keys new entries, every listed key verifies the "
        "entries it keyed (prepend a new key to rotate; never drop one still in the chain).",
    )
    audit_checkpoint_file: Path | None = Field(
        None,
        description="File (JSON lines) the scheduler appends a signed audit checkpoint to; "
        "keep it off the database host (a WORM or remote mount). Unset: no checkpoint job.",
    )
    audit_checkpoint_interval_s: int = Field(
        3600, ge=10, description="How often the scheduler writes an audit checkpoint."
    )
    coi_fin: str = Field(
        "V2V00",
        pattern=r"^[A-NP-Z1-9][A-NP-Z0-9]{2}[0-9]{2}$",
        description="Default ISBT 128 facility identification number for COIs.",
    )
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Request body limit.")
    future_tolerance_s: int = Field(
        300, ge=0, description="How far in the future a client's occurred_at may be."
    )
    sqlite_busy_timeout_ms: int = Field(10_000, ge=0, description="SQLite busy timeout.")
    db_pool_size: int = Field(10, ge=1, description="PostgreSQL connection pool size.")
    scheduler_enabled: bool = Field(True, description="Run scheduled jobs in the API process.")
    host: str = Field("127.0.0.1", description="Address `v2v serve` binds.")
    port: int = Field(8000, ge=1, le=65535, description="Port `v2v serve` binds.")
    log_level: str = Field("info", description="Python logging level.")
    geocoder_enabled: bool = Field(
        True, description="Geocode new sites by address (Nominatim); off on closed networks."
    )
    geocoder_domain: str = Field(
        "nominatim.openstreetmap.org", description="Nominatim host used for geocoding."
    )
    geocoder_timeout_s: float = Field(
        3.0, gt=0, le=30, description="Geocoder timeout; never hang a request on it."
    )
    rate_limit_ingest_per_min: float = Field(
        6000, ge=0, description="Reading-ingest calls per key per minute (0 = no limit)."
    )
    rate_limit_login_per_min: float = Field(
        10,
        ge=0,
        description="Dashboard login attempts per minute for one key id from one client "
        "address (a ward behind one NAT logs in with many keys; guessing one is slowed).",
    )
    rate_limit_login_per_address_per_min: float = Field(
        300,
        ge=0,
        description="Dashboard login attempts per client address per minute, all keys "
        "together: bounds one address trying many key ids.",
    )
    cors_origins: str = Field(
        "", description="Comma-separated allowed CORS origins; none by default."
    )
    session_https_only: bool = Field(
        False,
        description="Mark the dashboard session cookie Secure (sent over HTTPS only); set "
        "true wherever the dashboard is served over HTTPS.",
    )
    allow_insecure_cookies_on_loopback: bool = Field(
        False,
        description="Production only: accept a session cookie without Secure because the "
        "service binds loopback (`V2V_HOST`) behind a local TLS-terminating proxy.",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="Bearer token Prometheus sends to scrape `/metrics`; without one, "
        "`/metrics` answers loopback clients only.",
    )
    opentelemetry: bool = Field(
        False,
        description="Let FastAPI trace requests and record their metrics and logs through "
        "the process's OpenTelemetry providers (an SDK set up around the server, e.g. "
        "`opentelemetry-instrument`). Off, it does not look for them on every request; "
        "`/metrics` is served either way.",
    )
    session_max_age_s: int = Field(
        12 * 3600,
        ge=300,
        le=7 * 24 * 3600,
        description="Dashboard session lifetime from login, in seconds (a shift by default).",
    )
    dashboard_timezone: str = Field(
        "Asia/Tokyo",
        min_length=1,
        description="IANA time zone for dashboard users without a site of their own (admin, "
        "QA, viewers, couriers); coordinators and factories see their site's zone.",
    )
    mqtt_host: str = Field("127.0.0.1", description="MQTT broker host for `v2v mqtt`.")
    mqtt_port: int = Field(1883, ge=1, le=65535, description="MQTT broker port.")
    mqtt_client_id: str = Field(
        "v2v-ingest-1",
        min_length=1,
        max_length=128,
        description="Stable MQTT client id: the broker keeps this worker's session (and the "
        "messages queued for it) across restarts. One per worker process.",
    )
    mqtt_shared_group: str = Field(
        "",
        pattern=r"^[^/+#]*$",
        description="Shared-subscription group; workers in one group split the messages.",
    )
    mqtt_username: SecretStr | None = Field(None, description="MQTT broker user name.")
    mqtt_password: SecretStr | None = Field(None, description="MQTT broker password.")
    courier_timeout_s: float = Field(
        10.0, gt=0, le=120, description="Timeout of each request to a courier tracking API."
    )
    courier_max_retries: int = Field(
        3,
        ge=0,
        le=10,
        description="Retries of a courier page after a network error, timeout, 5xx or short "
        "429, with exponential backoff (1, 2, 4 s …).",
    )
    courier_max_wait_s: float = Field(
        60.0,
        ge=0,
        le=600,
        description="Longest 429 Retry-After the courier poller waits through; a longer one "
        "defers that courier's feed until then.",
    )
    courier_page_limit: int = Field(
        500, ge=1, le=10_000, description="Events asked for per courier page (`limit`)."
    )
    courier_max_pages: int = Field(
        20, ge=1, description="Pages read per courier feed at each poll (every 60 s)."
    )
    reading_pickup_tolerance_min: float = Field(
        30,
        ge=0,
        le=24 * 60,
        description="How long before its shipment's pickup a reading may be dated (a logger "
        "started at packing, clock drift); older readings are rejected per item.",
    )
    reading_late_bound_h: float = Field(
        72,
        gt=0,
        description="How long after its shipment's delivery a reading may still arrive "
        "(loggers upload late by design); later arrivals are rejected per item.",
    )
    webhook_allow_private: bool = Field(
        False,
        description="Let webhooks target loopback, private and link-local addresses (tests, "
        "local setups, receivers on a closed network); off, such URLs are refused at "
        "creation and at every delivery.",
    )

    smtp_url: SecretStr | None = Field(
        None,
        description="SMTP server for notifications to plain e-mail addresses: "
        "`smtp://host:port` (add `?starttls` to upgrade), `smtps://user:password@host:465`. "
        "Unset: plain addresses are not sent to (Apprise URLs still are).",
    )
    smtp_from: str = Field(
        "vein2vein@localhost",
        min_length=3,
        max_length=254,
        description="Sender address of notification e-mails.",
    )
    public_url: str = Field(
        "http://127.0.0.1:8000",
        min_length=1,
        max_length=500,
        description="Base URL of the dashboard, for the case links in notifications.",
    )
    notify_allow_private: bool = Field(
        False,
        description="Accept notification targets on loopback, private or link-local hosts "
        "(json://, form://, ntfy://, a mailto smtp=); off so a contact cannot probe the "
        "internal network.",
    )

    @field_validator("metrics_token", "smtp_url", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: object) -> object:
        # `V2V_METRICS_TOKEN=` (as in the env template) means no token, never an empty one
        # that an empty bearer would match.
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, SecretStr) and not value.get_secret_value().strip():
            return None
        return value

    @model_validator(mode="after")
    def _refuse_weak_security_in_production(self) -> Settings:
        if self.env != "production":
            return self
        secrets = {
            "V2V_SECRET_KEY": (self.secret_key, DEV_SECRET_KEY),
            "V2V_PATIENT_HASH_KEY": (self.patient_hash_key, DEV_PATIENT_HASH_KEY),
            "V2V_COI_SIGNING_KEYS": (self.coi_signing_keys, DEV_COI_SIGNING_KEYS),
            "V2V_AUDIT_KEYS": (self.audit_keys, DEV_AUDIT_KEYS),
        }
        bad = [name for name, (value, dev) in secrets.items() if value.get_secret_value() == dev]
        if bad:
            raise ValueError("development secrets refused in production; set " + ", ".join(bad))
        if any(
            DEV_AUDIT_KEYS.split(":", 1)[1] in item or len(item.partition(":")[2].strip()) < 32
            for item in self.audit_keys.get_secret_value().split(",")
            if item.strip()
        ):
            raise ValueError("V2V_AUDIT_KEYS: each secret must be at least 32 characters")
        # The COI keys are checked by their own parser (a kid and a 32-byte seed each).
        typed = {name: value.get_secret_value() for name, (value, _) in secrets.items()}
        typed.pop("V2V_COI_SIGNING_KEYS")
        if self.metrics_token is not None:
            typed["V2V_METRICS_TOKEN"] = self.metrics_token.get_secret_value()
        short = [name for name, value in typed.items() if len(value) < MIN_SECRET_LENGTH]
        if short:
            raise ValueError(
                f"secrets must be at least {MIN_SECRET_LENGTH} characters: " + ", ".join(short)
            )
        plain = [n for n, v in typed.items() if len(set(v)) < MIN_DISTINCT_CHARACTERS]
        if plain:
            raise ValueError(
                f"secrets need at least {MIN_DISTINCT_CHARACTERS} distinct characters "
                "(generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
                "): " + ", ".join(plain)
            )
        every = {**typed, "V2V_COI_SIGNING_KEYS": self.coi_signing_keys.get_secret_value()}
        for (a, va), (b, vb) in combinations(every.items(), 2):
            if va == vb:
                raise ValueError(f"{a} and {b} have the same value; each needs its own secret")
        if not self.session_https_only:
            if not self.allow_insecure_cookies_on_loopback:
                raise ValueError(
                    "production needs V2V_SESSION_HTTPS_ONLY=true (Secure session cookies); "
                    "behind plain HTTP on loopback only, set "
                    "V2V_ALLOW_INSECURE_COOKIES_ON_LOOPBACK=true"
                )
            if not is_loopback(self.host):
                raise ValueError(
                    "V2V_ALLOW_INSECURE_COOKIES_ON_LOOPBACK needs V2V_HOST on loopback "
                    f"(127.0.0.1, ::1), not {self.host!r}; or set V2V_SESSION_HTTPS_ONLY=true"
                )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
