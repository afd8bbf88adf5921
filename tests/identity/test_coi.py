"""Chain of identity: ISBT 128 DS040 codes, MOD 37-2, signed tokens and key rotation."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime

import pytest

from app.config import DEV_COI_SIGNING_KEYS
from app.services.identity.coi import (
    COI_RE,
    CoiFormatError,
    Keyring,
    check_char,
    generate_signing_entry,
    parse_scan,
)
from tests.conftest import Api
from tests.helpers import register

ISSUED = datetime(2026, 11, 26, tzinfo=UTC)


@pytest.mark.parametrize(
    ("data", "expected"),
    [("G123498654321", "H"), ("G123417654321", "A"), ("ABCDE27000069", "C")],
)
def test_mod_37_2_published_vectors(data: str, expected: str) -> None:
    assert check_char(data) == expected


def test_parse_scan_accepts_barcode_and_eye_readable_forms() -> None:
    coi = "CHW123426000123"
    k = check_char(coi)
    assert parse_scan(f"&/{coi}").coi == coi
    assert parse_scan(f"{coi} {k}").check == k
    assert parse_scan(f"{coi}{k}").coi == coi
    wrong = "0" if k != "0" else "1"
    with pytest.raises(CoiFormatError, match="check character"):
        parse_scan(f"{coi} {wrong}")
    for bad in ("CHO123426000123", "CHW1234260001", "G123498654321", "CHW12A426000123"):
        with pytest.raises(CoiFormatError):
            parse_scan(bad)


def test_registered_case_gets_a_ds040_coi_with_its_check_char(api: Api) -> None:
    case = register(api)
    assert COI_RE.fullmatch(case["coi"])
    # NCC East's FIN from seeds, the year in Japan's time zone, then the sequence.
    assert case["coi"].startswith("CHJ100126")
    assert case["coi_display"] == f"{case['coi']} {check_char(case['coi'])}"
    second = register(api, patient="MRN-0002")
    assert int(second["coi"][-6:]) == int(case["coi"][-6:]) + 1


def test_token_verifies_offline_with_the_published_jwks(api: Api) -> None:
    case = register(api)
    jwks = api.client.get("/api/v1/coi/jwks").json()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    header_b64, payload_b64, sig_b64 = case["coi_token"].split(".")
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=="))
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    key = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(jwk["x"] + "="))
    key.verify(base64.urlsafe_b64decode(sig_b64 + "=="), f"{header_b64}.{payload_b64}".encode())
    payload = json.loads(base64.urlsafe_b64decode(payload_b64 + "=="))
    assert payload["coi"] == case["coi"] and payload["case_id"] == case["id"]

    r = api.client.post("/api/v1/coi/verify", json={"token": case["coi_token"]})
    assert r.status_code == 200
    assert r.json() | {} == r.json() and r.json()["valid"] and r.json()["signature_ok"]
    assert r.json()["coi"] == case["coi"]


def _flip(token: str, index: int) -> str:
    chars = list(token)
    chars[index] = "A" if chars[index] != "A" else "B"
    return "".join(chars)


def test_tampered_wrong_key_and_unknown_kid_tokens_are_refused() -> None:
    ring = Keyring(DEV_COI_SIGNING_KEYS)
    token = ring.sign(coi="CHJ100126000001", case_id="c1", issued_at=ISSUED)
    assert ring.verify(token).signature_ok
    header_len = token.index(".")
    payload_end = token.rindex(".")
    # One byte changed in the payload, then in the signature.
    assert not ring.verify(_flip(token, header_len + 5)).signature_ok
    assert not ring.verify(_flip(token, payload_end + 3)).signature_ok
    # Signed by another key that claims the same kid.
    impostor = Keyring("dev-2026:" + generate_signing_entry("x").split(":", 1)[1])
    forged = impostor.sign(coi="CHJ100126000001", case_id="c1", issued_at=ISSUED)
    result = ring.verify(forged)
    assert not result.signature_ok and result.reason == "signature does not verify"
    # A key id nobody publishes (retired and removed).
    other = Keyring(generate_signing_entry("2019-retired"))
    stale = other.sign(coi="CHJ100126000001", case_id="c1", issued_at=ISSUED)
    assert ring.verify(stale).reason == "unknown or retired key id"
    assert not ring.verify("not.a.token").signature_ok
    assert not ring.verify("garbage").signature_ok


def test_rotation_keeps_old_tokens_verifiable() -> None:
    old_ring = Keyring(DEV_COI_SIGNING_KEYS)
    old_token = old_ring.sign(coi="CHJ100126000001", case_id="c1", issued_at=ISSUED)
    new_entry = generate_signing_entry("2027-01")
    rotated = Keyring(f"{new_entry},{DEV_COI_SIGNING_KEYS}")
    new_token = rotated.sign(coi="CHJ100126000002", case_id="c2", issued_at=ISSUED)
    assert rotated.verify(old_token).signature_ok
    assert rotated.verify(new_token).payload["kid"] == "2027-01"  # type: ignore[index]
    # Once the old private key is destroyed, its public half alone still verifies.
    old_public = next(k for k in old_ring.jwks()["keys"])
    verify_only = Keyring(new_entry, f"{old_public['kid']}:{old_public['x']}")
    assert verify_only.verify(old_token).signature_ok
    assert {k["kid"] for k in verify_only.jwks()["keys"]} == {"2027-01", "dev-2026"}


def test_verify_endpoint_checks_a_typed_coi(api: Api) -> None:
    coi = "CHJ100126000001"
    ok = api.client.post("/api/v1/coi/verify", json={"coi": f"{coi} {check_char(coi)}"}).json()
    assert ok["valid"] and ok["check_char_ok"] and ok["coi"] == coi
    bad = api.client.post("/api/v1/coi/verify", json={"coi": f"{coi} *"}).json()
    assert not bad["valid"] and re.search("check character", bad["reason"])
    both = api.client.post("/api/v1/coi/verify", json={"coi": coi, "token": "x.y.z"})
    assert both.status_code == 422


def test_a_registration_names_a_patient_site_route_and_product_and_one_open_case(
    api: Api,
) -> None:
    good = {"site": "NCC-EAST", "route": "KASHIWA-LOCAL", "product": "CART-CD19"}
    refused = (
        ({"site": "NOWHERE-1"}, "body/site", "unknown treatment or apheresis site 'NOWHERE-1'"),
        # A factory takes no patients.
        (
            {"site": "CELLARES-KASHIWA"},
            "body/site",
            "unknown treatment or apheresis site 'CELLARES-KASHIWA'",
        ),
        ({"route": "NOWHERE-ROUTE"}, "body/route", "unknown route 'NOWHERE-ROUTE'"),
        ({"product": "NOT-A-PRODUCT"}, "body/product", "unknown product 'NOT-A-PRODUCT'"),
    )
    for change, loc, detail in refused:
        r = api.post("admin", "/api/v1/cases", {**good, **change, "patient_ref": "MRN-9"})
        assert r.status_code == 422, (change, r.text)
        assert r.json()["detail"] == detail
        assert [e["loc"] for e in r.json()["errors"]] == [loc]
    assert api.get("admin", "/api/v1/cases").json()["items"] == []
    first = register(api, patient=" MRN-9")
    # The same patient (its reference trimmed) and product: one open case at a time.
    r = api.post("ncc", "/api/v1/cases", {**good, "patient_ref": "MRN-9 "})
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "duplicate-case" and r.json()["case_id"] == first["id"]
    assert [c["id"] for c in api.get("admin", "/api/v1/cases").json()["items"]] == [first["id"]]
    # Another patient is a case of its own.
    register(api, patient="MRN-10")
    actions = [e["action"] for e in api.get("admin", "/api/v1/audit?entity=case").json()["items"]]
    assert actions == ["case.registered", "case.registered"]
