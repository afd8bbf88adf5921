"""Settings: one class, environment prefix ``V2V_``, secrets as ``SecretStr``.

Development defaults let ``make run`` work on a fresh machine; each of them is refused
when ``V2V_ENV=production`` so a real deployment cannot start with a published secret.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_KEY = "dev-insecure-secret-key-change-me"  # noqa: S105 (refused in production)
DEV_PATIENT_HASH_KEY = "dev-insecure-patient-hash-key-change-me"
# kid:base64url(32-byte Ed25519 seed). Published in this file, so never for production.
DEV_COI_SIGNING_KEYS = "dev-2026:ZGV2LWluc2VjdXJlLWNvaS1zaWduaW5nLWtleS0wMDE"
# kid:secret. Keys the audit entries' HMACs; published here, so refused in production.
DEV_AUDIT_KEYS = "dev-audit-2026:dev-insecure-audit-chain-key-change-me"


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
        10, ge=0, description="Dashboard login attempts per client address per minute."
    )
    cors_origins: str = Field(
        "", description="Comma-separated allowed CORS origins; none by default."
    )
    session_https_only: bool = Field(
        False,
        description="Mark the dashboard session cookie Secure (sent over HTTPS only); set "
        "true wherever the dashboard is served over HTTPS.",
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

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> Settings:
        if self.env != "production":
            return self
        defaults = {
            "V2V_SECRET_KEY": (self.secret_key, DEV_SECRET_KEY),
            "V2V_PATIENT_HASH_KEY": (self.patient_hash_key, DEV_PATIENT_HASH_KEY),
            "V2V_COI_SIGNING_KEYS": (self.coi_signing_keys, DEV_COI_SIGNING_KEYS),
            "V2V_AUDIT_KEYS": (self.audit_keys, DEV_AUDIT_KEYS),
        }
        bad = [name for name, (value, dev) in defaults.items() if value.get_secret_value() == dev]
        if bad:
            raise ValueError("development secrets refused in production; set " + ", ".join(bad))
        short = [
            name
            for name, (value, _) in defaults.items()
            if name in ("V2V_SECRET_KEY", "V2V_PATIENT_HASH_KEY")
            and len(value.get_secret_value()) < 32
        ]
        if short:
            raise ValueError("secrets must be at least 32 characters: " + ", ".join(short))
        if any(
            DEV_AUDIT_KEYS.split(":", 1)[1] in item or len(item.partition(":")[2].strip()) < 32
            for item in self.audit_keys.get_secret_value().split(",")
            if item.strip()
        ):
            raise ValueError("V2V_AUDIT_KEYS: each secret must be at least 32 characters")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
