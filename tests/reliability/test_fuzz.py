"""Schema-driven fuzzing of every API operation (schemathesis), on both databases.

Goal: no server error and no response that violates the documented schema, whatever the
input. The suite runs a bounded number of examples per operation; ``make fuzz`` runs many
more (V2V_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis.errors import Flaky
from schemathesis import checks
from schemathesis.core.transport import Response

from app.clock import FrozenClock
from app.config import Settings
from app.db import Database
from app.main import create_app
from tests.conftest import NOW, PG_COPIES, TEMPLATE_KEYS, Api, _pg_url

EXAMPLES = int(os.environ.get("V2V_FUZZ_EXAMPLES", "12"))
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


def _document() -> dict[str, Any]:
    # The OpenAPI document does not depend on the database; each test's own app serves calls.
    settings_ = Settings(
        database_url=f"sqlite:///{Path(tempfile.gettempdir()) / 'v2v-openapi-only.sqlite3'}",
        scheduler_enabled=False,
        geocoder_enabled=False,
    )
    return create_app(settings_).openapi()


schema = schemathesis.openapi.from_dict(_document())
# The coverage phase adds hundreds of boundary examples per operation: `make fuzz` runs it,
# the regular suite keeps to the bounded random phase.
schema.config.phases.coverage.enabled = os.environ.get("V2V_FUZZ_COVERAGE", "") == "1"


@contextmanager
def _seeded_api(request: pytest.FixtureRequest, label: str) -> Iterator[Api]:
    """An app on its own copy of the seeded template, on the backend the test asks for."""
    name = None
    if request.param == "sqlite":
        path = request.getfixturevalue("tmp_path_factory").mktemp(label) / f"{label}.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        template = request.getfixturevalue("pg_template")
        name = PG_COPIES.take(template)
        url = _pg_url(name)
    settings_ = Settings(
        database_url=url,
        env="test",
        scheduler_enabled=False,
        geocoder_enabled=False,
        max_body_bytes=256 * 1024,
    )
    db = Database(url, pool_size=5)
    try:
        app = create_app(settings_, clock=FrozenClock(NOW), database=db)
        with TestClient(app, raise_server_exceptions=False) as client:
            helper = Api(client, db, settings_)
            helper.keys.update(TEMPLATE_KEYS[request.param])
            yield helper
    finally:
        db.dispose()
        if name:
            PG_COPIES.drop(name)


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=BACKENDS)
def fuzz_api(request: pytest.FixtureRequest) -> Iterator[Api]:
    """One seeded database per backend for the whole module: fuzzing needs no isolation."""
    with _seeded_api(request, "fuzz") as api:
        yield api


@pytest.fixture(params=BACKENDS)
def stateful_api(request: pytest.FixtureRequest) -> Iterator[Api]:
    """A database of its own: which stateless examples ran before on this xdist worker must
    not decide which paths the stateful run takes."""
    with _seeded_api(request, "stateful") as api:
        yield api


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_survives_generated_input(case: Any, fuzz_api: Api) -> None:
    api = fuzz_api
    # A key whose role may call the operation, so generated requests get past auth.
    persona = "qa" if "disposition" in case.path else "admin"
    kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=api.headers(persona))
    kwargs.pop("cookies", None)  # the API uses no cookies
    if "data" in kwargs and isinstance(kwargs["data"], bytes | str):
        kwargs["content"] = kwargs.pop("data")
    response = api.client.request(**kwargs)
    case.validate_response(response, checks=CHECKS)


# The stateful phase: schemathesis follows the document's links (app/openapi.py), so a
# registered case's id and label flow into its reads, schedule, events and shipments, a
# shipment's into its custody and trace, a listed alert's into its acknowledgement.
STATEFUL_SCENARIOS = int(os.environ.get("V2V_FUZZ_SCENARIOS", "25"))
STATEFUL_STEPS = 15
STATEFUL_BATCHES = 20
# Batches stop once every linked target answered. How many that takes depends on what the
# module's other tests left in the database (xdist splits them between workers), and a busy
# CI machine runs at half this one's pace: the cap is for a run that is truly stuck.
STATEFUL_SECONDS = 240
# The operations the document links (app/openapi.py), and only its links: schemathesis'
# inferred ones would add list-derived chains. The stateless test above covers the rest.
LINKED_PATHS = (
    r"^/api/v1/(cases|shipments|alerts|excursions|webhooks"
    r"|integrations/fhir/BiologicallyDerivedProduct/|integrations/epcis/events)"
)
stateful_schema = schemathesis.openapi.from_dict(_document()).include(path_regex=LINKED_PATHS)
stateful_schema.config.phases.stateful.inference.algorithms = []
# Seeded codes steer generated bodies onto real reference data; otherwise nearly every
# registration is a 422 and the chains behind it are never reached.
SITE, FACTORY, ROUTE, PRODUCT = "NCC-EAST", "CELLARES-KASHIWA", "KASHIWA-LOCAL", "CART-CD19"
CASES, SHIPMENTS = "/api/v1/cases", "/api/v1/shipments"


def _steer(case: Any, cois: dict[str, str], serial: int) -> None:
    """Point a generated request at seeded reference data and known cases, as a client would.

    The answer depends on the drawn request, not on earlier scenarios (fresh patients, far
    apart bookings, a foreign label chosen by the draw), so Hypothesis mostly sees the same
    outcome when it replays the same draws.
    """
    body, path, method = case.body, case.path, case.method.upper()
    if method == "POST" and case.headers:
        # A drawn key repeats across scenarios and would replay or refuse (409) the request.
        for name in [h for h in case.headers if h.lower() == "idempotency-key"]:
            del case.headers[name]
    if not isinstance(body, dict):
        return
    if (method, path) == ("POST", CASES):
        # A fresh patient each time: a replayed registration is not a duplicate (409).
        body.update(site=SITE, route=ROUTE, product=PRODUCT, patient_ref=f"FUZZ-{serial}")
    elif (method, path) == ("POST", f"{CASES}/{{case_id}}/schedule"):
        # Far apart, so the factory's positions are not what decides the answer.
        body["apheresis_at"] = (NOW + timedelta(days=3 + serial % 3000)).isoformat()
    elif (method, path) == ("POST", SHIPMENTS):
        # Decided by the drawn body, so a replay presents the same kind of label.
        foreign = len(str(body.get("container"))) % 4 == 0
        body.update(
            direction="to_manufacturing",
            origin=SITE,
            destination=FACTORY,
            profile="FRESH_2_8",
            courier="KASHIWA-COLD",
            device_ids=[],
            container={"serial": f"FUZZ-{serial}", "kind": "dry shipper"},
        )
        own = cois.get(str(body.get("case_id")))
        if own is not None and body.get("coi") not in cois.values():
            # Now and then another case's label: the refused scan raises an alert to list.
            others = [c for c in cois.values() if c != own]
            body["coi"] = others[0] if others and foreign else own
    elif (method, path) == ("POST", f"{SHIPMENTS}/{{shipment_id}}/custody"):
        body["occurred_at"] = NOW.isoformat()


def _mismatch(api: Api) -> None:
    """One refused scan before the run, so the alert list has an item to acknowledge."""
    first, second = (
        api.post(
            "admin",
            CASES,
            {
                "site": SITE,
                "route": ROUTE,
                "product": PRODUCT,
                "patient_ref": f"FUZZ-{uuid.uuid4().hex}",
            },
        ).json()
        for _ in range(2)
    )
    scheduled = api.post(
        "admin",
        f"{CASES}/{first['id']}/schedule",
        {"apheresis_at": (NOW + timedelta(days=2)).isoformat()},
    )
    assert scheduled.status_code == 200, scheduled.text
    refused = api.post(
        "admin",
        SHIPMENTS,
        {
            "case_id": first["id"],
            "direction": "to_manufacturing",
            "origin": SITE,
            "destination": FACTORY,
            "profile": "FRESH_2_8",
            "courier": "KASHIWA-COLD",
            "container": {"serial": "FUZZ-1", "kind": "dry shipper"},
            "coi": second["coi"],
        },
    )
    assert refused.status_code == 409, refused.text


# Whatever reaches these answers came through a link: their ids exist only in responses.
# Each target is a set of answers, any one of which reaches it: a shipment created through its
# case's link is read back through one of the shipment's own links, its record or its trace
# (which of the two a walk takes first depends on Hypothesis' draws, not on the service).
LINKED_TARGETS = [
    (("POST", CASES, 201),),
    (("GET", f"{CASES}/{{case_id}}", 200),),
    (("POST", SHIPMENTS, 201),),
    (
        ("GET", f"{SHIPMENTS}/{{shipment_id}}", 200),
        ("GET", f"{SHIPMENTS}/{{shipment_id}}/readings", 200),
    ),
    (("POST", "/api/v1/alerts/{alert_id}/ack", 200),),
]


def _reached(
    calls: Counter[tuple[str, str, int]], target: tuple[tuple[str, str, int], ...]
) -> bool:
    return any(calls[answer] for answer in target)


def test_linked_operations_survive_a_stateful_run(stateful_api: Api) -> None:
    api = stateful_api
    _mismatch(api)
    calls: Counter[tuple[str, str, int]] = Counter()
    cois: dict[str, str] = {}
    failures: list[str] = []

    class Workflow(stateful_schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            _steer(case, cois, sum(calls.values()))

        def call(self, case: Any, **_kwargs: Any) -> Response:
            persona = "qa" if "disposition" in case.path else "admin"
            kwargs = case.as_transport_kwargs(
                base_url="http://testserver", headers=api.headers(persona)
            )
            kwargs.pop("cookies", None)
            if "data" in kwargs and isinstance(kwargs["data"], bytes | str):
                kwargs["content"] = kwargs.pop("data")
            response = api.client.request(**kwargs)
            outcome = (case.method.upper(), case.path, response.status_code)
            calls[outcome] += 1
            if outcome == ("POST", CASES, 201):
                cois[response.json()["id"]] = response.json()["coi"]
            return Response.from_any(response)

        def validate_response(self, response: Any, case: Any, *_a: Any, **_kw: Any) -> None:
            # Collected, not raised: a raise would send Hypothesis replaying scenarios against
            # a database that has moved on, and the failure would surface as "flaky".
            try:
                case.validate_response(response, checks=CHECKS)
            except AssertionError as exc:
                failures.append(f"{case.method} {case.path} -> {response.status_code}: {exc}")

    started = time.monotonic()
    for batch in range(STATEFUL_BATCHES):
        if (
            all(_reached(calls, t) for t in LINKED_TARGETS)
            or time.monotonic() - started > STATEFUL_SECONDS
        ):
            break
        Workflow.rule_order_seed = batch  # each batch starts its scenarios elsewhere
        try:
            Workflow.run(
                settings=settings(
                    max_examples=STATEFUL_SCENARIOS,
                    stateful_step_count=STATEFUL_STEPS,
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                    derandomize=True,
                    database=None,
                )
            )
        except Flaky:
            # The database outlives scenarios (a list's first item changes, say), so a replay
            # may take another path than the first run; schemathesis' own runner ends the
            # phase there too. What ran was checked; the next batch goes on.
            continue
    assert not failures, "\n".join(failures[:5])
    missing = [t for t in LINKED_TARGETS if not _reached(calls, t)]
    assert not missing, (
        f"never reached {missing} in {batch + 1} batches, {time.monotonic() - started:.0f} s;"
        f" calls: {sorted(calls.items())}"
    )
