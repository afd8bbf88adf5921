"""Dashboard sessions end on the server: logout, revocation, rotation and expiry.

The cookie only names a server-side session; replaying a copy of it after the session ended
opens nothing. Logins, logouts and failed logins are audited (never the key), and the login
rate limit lets a ward of nurses behind one NAT log in while still slowing key guessing.
"""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import col, select

from app.clock import FrozenClock
from app.ratelimit import RateLimiter
from models.audit import AuditEntry
from models.principal import Role
from tests.conftest import Api
from tests.web.test_dashboard import Browser


def _replay(api: Api, cookie: str) -> TestClient:
    """Another machine holding a copy of the cookie (e.g. taken from a shared terminal)."""
    thief = TestClient(api.client.app, follow_redirects=False)
    thief.cookies.set("v2v_session", cookie)
    return thief


def _audit(api: Api, prefix: str) -> list[AuditEntry]:
    with api.database.session() as session:
        stmt = (
            select(AuditEntry)
            .where(col(AuditEntry.action).startswith(prefix))
            .order_by(col(AuditEntry.seq))
        )
        return list(session.exec(stmt))


def _pid(api: Api, persona: str) -> str:
    return str(api.get(persona, "/api/v1/me").json()["id"])


def test_a_cookie_replayed_after_logout_gets_the_login_page(api: Api) -> None:
    ncc = Browser(api, "ncc")
    assert ncc.get("/alerts").status_code == 200
    cookie = ncc.client.cookies["v2v_session"]
    assert _replay(api, cookie).get("/alerts").status_code == 200  # the same session, still open
    r = ncc.post("/logout", {}, page="/alerts")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    replayed = _replay(api, cookie).get("/alerts")
    assert replayed.status_code == 303 and replayed.headers["location"].startswith("/login")
    # Logging out ends that session only: the same person's other terminal stays logged in.
    other = Browser(api, "ncc")
    assert other.get("/alerts").status_code == 200


def test_revoking_a_key_ends_its_open_sessions(api: Api) -> None:
    api.key("nurse-r", Role.coordinator, site="NCC-EAST")
    nurse = Browser(api, "nurse-r")
    cookie = nurse.client.cookies["v2v_session"]
    assert nurse.get("/alerts").status_code == 200
    assert api.post("admin", f"/api/v1/principals/{_pid(api, 'nurse-r')}/revoke").status_code == 200
    for client in (nurse.client, _replay(api, cookie)):
        r = client.get("/alerts")
        assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_rotating_a_key_ends_the_sessions_opened_with_the_old_one(api: Api) -> None:
    api.key("nurse-k", Role.coordinator, site="NCC-EAST")
    nurse = Browser(api, "nurse-k")
    assert nurse.get("/alerts").status_code == 200
    r = api.post("admin", f"/api/v1/principals/{_pid(api, 'nurse-k')}/rotate-key")
    assert r.status_code == 201
    assert nurse.get("/alerts").status_code == 303
    assert nurse.login(r.json()["api_key"]).status_code == 303
    assert nurse.get("/alerts").status_code == 200


def test_a_session_ends_on_the_server_after_its_lifetime(api: Api, clock: FrozenClock) -> None:
    ncc = Browser(api, "ncc")
    assert ncc.get("/alerts").status_code == 200
    clock.advance(seconds=api.settings.session_max_age_s - 60)
    assert ncc.get("/alerts").status_code == 200
    clock.advance(seconds=120)
    assert ncc.get("/alerts").status_code == 303


def test_logins_logouts_and_failures_are_audited_without_the_key(api: Api) -> None:
    browser = Browser(api)
    key = api.keys["ncc"]
    prefix = key.split("_")[1]
    wrong = f"v2v_{prefix}_not-the-secret"
    assert browser.login(wrong).status_code == 401
    assert browser.login("correct horse battery staple").status_code == 401
    assert browser.login(key).status_code == 303
    assert browser.post("/logout", {}).status_code == 303
    entries = _audit(api, "session.")
    assert [(e.action, e.actor) for e in entries] == [
        ("session.login_failed", "anonymous"),
        ("session.login_failed", "anonymous"),
        ("session.login", "ncc"),
        ("session.logout", "ncc"),
    ]
    trail = " ".join(f"{e.entity_id} {e.before} {e.after} {e.reason}" for e in entries)
    assert key not in trail and "not-the-secret" not in trail and "horse" not in trail
    assert prefix in str(entries[0].after)  # at most the key's public prefix


def test_a_ward_behind_one_nat_logs_in_while_guessing_one_key_is_limited(api: Api) -> None:
    nurses = [
        api.key(f"nurse-{i}", Role.coordinator, site="NCC-EAST") for i in range(12)
    ]  # one address (TestClient's) for all: a ward behind one NAT
    for key in nurses:
        r = Browser(api).login(key)
        assert r.status_code == 303, r.text
    guesser = Browser(api)
    target = api.keys["kyoto"].split("_")[1]
    codes = [guesser.login(f"v2v_{target}_guess{i}").status_code for i in range(8)]
    assert codes[:5] == [401] * 5 and codes[-1] == 429
    # The ward is not locked out by the guesser next to it.
    assert Browser(api).login(api.keys["ncc"]).status_code == 303


def test_one_address_spraying_many_key_ids_is_limited_too(api: Api) -> None:
    # One token a minute: a slow machine cannot refill the bucket between the four logins.
    api.client.app.state.login_address_limiter = RateLimiter(per_minute=1, burst=3)  # type: ignore[attr-defined]
    sprayer = Browser(api)
    codes = [sprayer.login(f"v2v_{i:012x}_guess").status_code for i in range(4)]
    assert codes == [401, 401, 401, 429]
