"""Operations endpoints and settings safety."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.config import Settings
from app.main import create_app
from tests.conftest import METRICS_TOKEN, Api


def test_health_ready_and_metrics(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "ok"
    api.get("ncc", "/api/v1/sites")
    metrics = api.client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert metrics.headers["content-type"].startswith("text/plain")
    assert (
        'v2v_http_requests_total{method="GET",route="/api/v1/sites",status="200"}' in metrics.text
    )
    assert "v2v_http_request_duration_seconds_bucket" in metrics.text


def test_readyz_is_503_before_migrations(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'new.sqlite3'}", env="test"))
    with TestClient(app) as client:
        r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["migration"] is None


def test_security_headers_and_no_store_on_api(api: Api) -> None:
    r = api.get("ncc", "/api/v1/me")
    assert r.json()["role"] == "coordinator" and r.json()["site"] == "NCC-EAST"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "secret",
    ["V2V_SECRET_KEY", "V2V_PATIENT_HASH_KEY", "V2V_COI_SIGNING_KEYS", "V2V_AUDIT_KEYS"],
)
def test_production_refuses_each_development_secret(
    monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    monkeypatch.setenv("V2V_ENV", "production")
    monkeypatch.setenv("V2V_SESSION_HTTPS_ONLY", "true")
    good = {
        "V2V_SECRET_KEY": "s3cr3t-k3y-9f8Kq2LmZx7Vb4Nc1Rt6Yw3H",
        "V2V_PATIENT_HASH_KEY": "p4t13nt-Qm4Tz8Xc2Vn6Bl0Kj9Hg3Fd7",
        "V2V_COI_SIGNING_KEYS": "prod-1:" + "A" * 43,
        "V2V_AUDIT_KEYS": "audit-1:Zr5Wq9Lc3Hv7Nb1Tx8Mk2Gd6Js0Pf4Ye9Ua",
    }
    for name, value in good.items():
        if name != secret:
            monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=secret):
        Settings()
    monkeypatch.setenv(secret, good[secret])
    assert Settings().env == "production"


def test_secrets_are_not_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("V2V_SECRET_KEY", "super-secret-value-0123456789abcdef")
    s = Settings()
    assert "super-secret" not in repr(s) and "super-secret" not in str(s.model_dump())


def test_openapi_is_3_1_and_documents_the_contract(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    case = spec["paths"]["/api/v1/cases/{case_id}"]["get"]
    assert case["summary"] and case["description"]
    assert "vein_to_vein_d" in str(spec["components"]["schemas"]["CaseDetail"])
