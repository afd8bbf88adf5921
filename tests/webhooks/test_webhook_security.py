"""Webhook security: no SSRF, no credentials kept, site scope, milestones, lifecycle.

Each attack is made as an admin would make it, through the API; deliveries go through the
production client (``default_client``) to real local servers, or through a MockTransport
receiver where only the outbox is under test.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from app.clock import FrozenClock
from app.config import Settings
from app.db import Database
from app.jobs.webhooks import deliver_webhooks
from app.main import create_app
from app.services.alerts import lifecycle as alerts
from integrations.webhooks import default_client, verify
from models.alert import AlertKind, Severity
from models.webhook import Webhook
from tests.conftest import TEMPLATE_KEYS, Api
from tests.helpers import Journey
from tests.servers import free_port
from tests.webhooks.test_webhooks import SECRET, Receiver, coi_mismatch, deliveries

PRIVATE_URLS = {
    "loopback-v4": "http://127.0.0.1:8080/hook",
    "loopback-v6": "http://[::1]:8080/hook",
    "metadata": "http://169.254.169.254/latest/meta-data/",
    "localhost": "http://localhost:9200/hook",
    "localhost-dot": "http://localhost./hook",
    "hex": "http://0x7f000001/hook",
    "decimal": "http://2130706433/hook",
    "short": "http://127.1/hook",
    "octal": "http://0177.0.0.1/hook",
    "mapped-v6": "http://[::ffff:127.0.0.1]/hook",
    "private-10": "https://10.1.2.3/hook",
    "private-192": "https://192.168.0.10/hook",
    "cgnat": "https://100.64.0.1/hook",
    "unspecified": "http://0.0.0.0:8000/hook",
    "link-local-v6": "http://[fe80::1]/hook",
    "unique-local-v6": "http://[fd00::1]/hook",
    "multicast": "http://224.0.0.1/hook",
    "nat64-loopback": "http://[64:ff9b::7f00:1]/hook",
    "6to4-private": "http://[2002:c0a8:0001::1]/hook",
    "hosts-file-name": "http://vm:8000/hook",  # /etc/hosts: 127.0.0.1
}


def _hook(api: Api, url: str, **extra: Any) -> Any:
    return api.post("admin", "/api/v1/webhooks", {"url": url, "secret": SECRET, **extra})


@pytest.mark.parametrize("url", PRIVATE_URLS.values(), ids=PRIVATE_URLS.keys())
def test_a_webhook_to_a_private_address_is_refused(api: Api, database: Database, url: str) -> None:
    r = _hook(api, url)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert "body/url" in [e["loc"] for e in r.json()["errors"]]
    with database.session() as session:
        assert session.exec(select(Webhook)).all() == []


@pytest.mark.parametrize(
    "url",
    [
        "https://alice:hunter2-password@receiver.example/hook",
        "https://alice@receiver.example/hook",
        "https://:hunter2-password@receiver.example/hook",
    ],
    ids=["user-and-password", "user", "password"],
)
def test_credentials_in_the_url_are_refused_and_never_kept(
    api: Api, database: Database, url: str
) -> None:
    r = _hook(api, url)
    assert r.status_code == 422, r.text
    assert "hunter2" not in r.text and "alice" not in r.text
    with database.session() as session:
        assert session.exec(select(Webhook)).all() == []
    for persona in ("qa", "admin"):
        audit = api.get(persona, "/api/v1/audit?limit=500")
        assert audit.status_code == 200
        assert "hunter2" not in audit.text and "alice" not in audit.text


def test_a_public_name_that_does_not_resolve_yet_is_accepted(api: Api) -> None:
    # Checked again at each connection; refusing it now would only stop a receiver that is
    # not live yet.
    assert _hook(api, "https://receiver.example/hook").status_code == 201


# ---- delivery through the production client, to real local servers ----------------------


class _Recorder(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers.items()), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def local_server() -> Iterator[tuple[int, list[tuple[dict[str, str], bytes]]]]:
    received: list[tuple[dict[str, str], bytes]] = []
    handler = type("Handler", (_Recorder,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def private_api(settings: Settings, clock: FrozenClock, database: Database) -> Iterator[Api]:
    """The API of a local setup: ``V2V_WEBHOOK_ALLOW_PRIVATE=true``."""
    local = settings.model_copy(update={"webhook_allow_private": True})
    app = create_app(local, clock=clock, database=database)
    with TestClient(app, raise_server_exceptions=False) as client:
        helper = Api(client, database, local)
        helper.keys.update(TEMPLATE_KEYS["sqlite" if database.dialect == "sqlite" else "postgres"])
        yield helper


def _deliver(database: Database, clock: FrozenClock, *, allow_private: bool) -> int:
    with default_client(allow_private=allow_private) as client:
        return deliver_webhooks(database, now=clock(), client=client)


def test_allowed_private_targets_are_delivered_with_host_and_signature(
    private_api: Api,
    database: Database,
    clock: FrozenClock,
    local_server: tuple[int, list[tuple[dict[str, str], bytes]]],
) -> None:
    port, received = local_server
    r = _hook(private_api, f"http://localhost:{port}/hook")
    assert r.status_code == 201, r.text
    # Credentials stay refused even where private targets are allowed.
    assert _hook(private_api, f"http://u:p@localhost:{port}/hook").status_code == 422
    coi_mismatch(private_api)
    assert _deliver(database, clock, allow_private=True) == 1
    ((headers, body),) = received
    assert headers["Host"] == f"localhost:{port}"  # the name, though the checked IP was used
    assert verify(SECRET, body, headers["X-V2V-Signature"])
    assert deliveries(private_api, "?status=delivered")


def test_delivery_rechecks_the_address_and_tells_no_port_apart(
    private_api: Api,
    database: Database,
    clock: FrozenClock,
    local_server: tuple[int, list[tuple[dict[str, str], bytes]]],
) -> None:
    """Webhooks created while private targets were allowed (or whose name now resolves
    to a private address): the production client refuses them at connection, and an open
    port and a closed one fail alike."""
    port, received = local_server
    closed = free_port()
    for url in (f"http://localhost:{port}/a", f"http://127.0.0.1:{closed}/b"):
        assert _hook(private_api, url).status_code == 201
    coi_mismatch(private_api)
    assert _deliver(database, clock, allow_private=False) == 2
    assert received == []
    errors = {d["last_error"] for d in deliveries(private_api)}
    assert errors == {"destination refused: not a public address"}
    assert {d["last_status_code"] for d in deliveries(private_api)} == {None}


def test_a_failed_connection_names_no_port_and_no_cause(
    private_api: Api, database: Database, clock: FrozenClock
) -> None:
    closed = free_port()
    assert _hook(private_api, f"http://127.0.0.1:{closed}/hook").status_code == 201
    coi_mismatch(private_api)
    assert _deliver(database, clock, allow_private=True) == 1
    (row,) = deliveries(private_api)
    assert row["last_error"] == "connection failed"
    assert str(closed) not in json.dumps(row)


def test_redirects_are_not_followed(
    private_api: Api,
    database: Database,
    clock: FrozenClock,
) -> None:
    hop = Receiver(307)
    assert _hook(private_api, "https://receiver.example/hook").status_code == 201
    coi_mismatch(private_api)
    with hop.client() as client:
        assert deliver_webhooks(database, now=clock(), client=client) == 1
    assert len(hop.requests) == 1
    assert deliveries(private_api)[0]["last_error"] == "HTTP 307"


# ---- site scope -----------------------------------------------------------------------------


def test_a_site_scoped_webhook_gets_only_its_sites_alerts(api: Api, database: Database) -> None:
    ncc = _hook(api, "https://ncc.example/h", sites=["NCC-EAST"]).json()
    tokyo = _hook(api, "https://tokyo.example/h", sites=["UTOKYO-HOSP"]).json()
    everyone = _hook(api, "https://all.example/h").json()
    assert ncc["sites"] == ["NCC-EAST"] and everyone["sites"] == []
    coi_mismatch(api)  # a case at NCC-EAST
    got = {d["webhook_id"] for d in deliveries(api)}
    assert got == {ncc["id"], everyone["id"]}
    assert tokyo["id"] not in got


def test_a_shipment_alert_is_scoped_by_its_case_site(
    api: Api, database: Database, clock: FrozenClock
) -> None:
    alert_kinds = ["loss_of_signal", "slot_conflict"]
    ncc = _hook(api, "https://ncc.example/h", sites=["NCC-EAST"], kinds=alert_kinds).json()
    tokyo = _hook(api, "https://tokyo.example/h", sites=["UTOKYO-HOSP"], kinds=alert_kinds)
    tokyo = tokyo.json()
    j = Journey(api)
    j.schedule()
    j.step("collected")
    shipment = j.ship("to_manufacturing", "FRESH_2_8")
    with database.transaction() as session:
        alerts.raise_alert(
            session,
            kind=AlertKind.loss_of_signal,
            severity=Severity.major,
            message="no reading",
            now=clock(),
            shipment_id=shipment["id"],
            dedupe_key="los:ship",
        )
        # No case and no shipment: a site-scoped webhook cannot know it is its own.
        alerts.raise_alert(
            session,
            kind=AlertKind.slot_conflict,
            severity=Severity.warning,
            message="anywhere",
            now=clock(),
            dedupe_key="slot:x",
        )
    rows = deliveries(api)
    assert {d["webhook_id"] for d in rows} == {ncc["id"]}
    assert len(rows) == 1 and tokyo["id"] not in {d["webhook_id"] for d in rows}


def test_unknown_sites_are_refused(api: Api) -> None:
    r = _hook(api, "https://x.example/h", sites=["NOWHERE"])
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "body/sites"


# ---- milestone.recorded ---------------------------------------------------------------------


def test_milestone_recorded_is_delivered_without_patient_data(
    api: Api, database: Database, clock: FrozenClock
) -> None:
    hook = _hook(api, "https://ms.example/h", kinds=["milestone.recorded"]).json()
    other_site = _hook(
        api, "https://tokyo.example/h", kinds=["milestone.recorded"], sites=["UTOKYO-HOSP"]
    ).json()
    j = Journey(api, patient="MRN-SECRET-77")
    j.schedule()
    recorded = j.step("collected")
    receiver = Receiver()
    with receiver.client() as client:
        assert deliver_webhooks(database, now=clock(), client=client) == 1
    (request,) = receiver.requests
    assert request.headers["X-V2V-Event"] == "milestone.recorded"
    body = json.loads(request.content)
    assert set(body) == {"delivery_id", "event", "occurred_at", "case", "milestone"}
    assert body["case"] == {
        "id": j.case["id"],
        "coi": j.coi,
        "site": "NCC-EAST",
        "status": "collected",
    }
    assert body["milestone"]["id"] == recorded["id"]
    assert body["milestone"]["type"] == "collected"
    assert body["milestone"]["site"] == "NCC-EAST"
    assert body["milestone"]["occurred_at"] == recorded["occurred_at"].replace("+00:00", "Z")
    assert "MRN" not in request.content.decode() and "patient" not in request.content.decode()
    assert {d["webhook_id"] for d in deliveries(api)} == {hook["id"]}
    assert other_site["id"] not in {d["webhook_id"] for d in deliveries(api)}


# ---- PATCH, DELETE, rotate-secret -----------------------------------------------------------
