"""Production refuses weak or reused secrets and session cookies that travel in clear."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.main import create_app
from app.services.identity.coi import generate_signing_entry
from app.web import session_options

STRONG_A = "9f8Kq2LmZx7Vb4Nc1Rt6Yw3Hs5Jd0Ge8Pu2Ai"
STRONG_B = "Qm4Tz8Xc2Vn6Bl0Kj9Hg3Fd7Sa5Pw1Oe4Ir8U"


def production(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "production",
        "secret_key": STRONG_A,
        "patient_hash_key": STRONG_B,
        "coi_signing_keys": generate_signing_entry("prod-1"),
        "audit_keys": "audit-1:Zr5Wq9Lc3Hv7Nb1Tx8Mk2Gd6Js0Pf4Ye9Ua",
        "session_https_only": True,
        **overrides,
    }
    return Settings(**values)


def test_a_strong_production_configuration_starts() -> None:
    settings = production()
    assert session_options(settings)["https_only"] is True


@pytest.mark.parametrize("field", ["secret_key", "patient_hash_key"])
def test_thirty_two_identical_characters_are_refused(field: str) -> None:
    with pytest.raises(ValidationError, match=f"distinct characters.*V2V_{field.upper()}"):
        production(**{field: "a" * 32})
    with pytest.raises(ValidationError, match="distinct characters"):
        production(**{field: "abcdabcdabcdabcdabcdabcdabcdabcd"})  # 4 distinct, 32 long


@pytest.mark.parametrize("field", ["secret_key", "patient_hash_key"])
def test_short_secrets_are_refused(field: str) -> None:
    with pytest.raises(ValidationError, match=f"at least 32 characters: V2V_{field.upper()}"):
        production(**{field: STRONG_A[:31] if field != "secret_key" else STRONG_B[:31]})


def test_the_same_value_for_two_secrets_is_refused() -> None:
    with pytest.raises(ValidationError, match="V2V_SECRET_KEY and V2V_PATIENT_HASH_KEY"):
        production(patient_hash_key=STRONG_A)
    with pytest.raises(ValidationError, match="V2V_METRICS_TOKEN"):
        production(metrics_token=STRONG_B)


def test_a_weak_metrics_token_is_refused() -> None:
    with pytest.raises(ValidationError, match="V2V_METRICS_TOKEN"):
        production(metrics_token="m" * 40)
    assert production(metrics_token="Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp").metrics_token is not None


def test_production_requires_secure_session_cookies() -> None:
    with pytest.raises(ValidationError, match="V2V_SESSION_HTTPS_ONLY"):
        production(session_https_only=False)
    # Unless it says it sits behind plain HTTP on loopback, and binds loopback only.
    loopback = production(
        session_https_only=False, allow_insecure_cookies_on_loopback=True, host="127.0.0.1"
    )
    assert session_options(loopback)["https_only"] is False
    with pytest.raises(ValidationError, match="loopback"):
        production(
            session_https_only=False, allow_insecure_cookies_on_loopback=True, host="0.0.0.0"
        )


def test_development_keeps_its_defaults() -> None:
    assert Settings(env="development").session_https_only is False


def test_the_secure_flag_reaches_the_cookie(tmp_path: Any) -> None:
    from fastapi.testclient import TestClient

    settings = production(
        database_url=f"sqlite:///{tmp_path / 'x.sqlite3'}",
        scheduler_enabled=False,
        geocoder_enabled=False,
    )
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        r = client.get("/login")
    assert "secure" in r.headers["set-cookie"].lower()


def test_an_empty_metrics_token_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    # As the env template leaves it: never a token that an empty bearer would match.
    monkeypatch.setenv("V2V_METRICS_TOKEN", "")
    assert Settings().metrics_token is None
