"""Concurrent writers: no double registration, unique COIs, an unbroken audit chain."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.conftest import Api


def _register(api: Api, patient: str) -> int:
    r = api.post(
        "ncc",
        "/api/v1/cases",
        {
            "site": "NCC-EAST",
            "route": "KASHIWA-LOCAL",
            "product": "CART-CD19",
            "patient_ref": patient,
        },
    )
    return int(r.status_code)


def test_concurrent_registrations_keep_identity_and_audit_intact(api: Api) -> None:
    patients = [f"MRN-C{i}" for i in range(16)] + ["MRN-SAME"] * 8
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda p: _register(api, p), patients))
    assert statuses[:16] == [201] * 16
    assert sorted(statuses[16:]) == [201] + [409] * 7  # exactly one open case for a patient
    cases = api.get("admin", "/api/v1/cases?limit=500").json()["items"]
    assert len(cases) == 17
    assert len({c["coi"] for c in cases}) == 17
    verify = api.get("admin", "/api/v1/audit/verify").json()
    assert verify["ok"] is True and verify["entries"] == 17


def test_concurrent_identical_idempotent_requests_create_once(api: Api) -> None:
    body = {
        "site": "NCC-EAST",
        "route": "KASHIWA-LOCAL",
        "product": "CART-CD19",
        "patient_ref": "MRN-RETRY",
    }

    def send(_: int) -> tuple[int, str]:
        r = api.post("ncc", "/api/v1/cases", body, headers={"Idempotency-Key": "same-key"})
        return r.status_code, r.json().get("id", "")

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(send, range(6)))
    assert {status for status, _ in results} == {201}
    assert len({case_id for _, case_id in results}) == 1
    assert len(api.get("admin", "/api/v1/cases").json()["items"]) == 1
