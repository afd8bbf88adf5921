"""Schema-driven fuzzing of every API operation (schemathesis), on both databases.

Goal: no server error and no response that violates the documented schema, whatever the
input. The suite runs a bounded number of examples per operation; ``make fuzz`` runs many
more (V2V_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis import checks

from app.clock import FrozenClock
from app.config import Settings
from app.db import Database
from app.main import create_app
from tests.conftest import NOW, TEMPLATE_KEYS, Api, _pg_exec, _pg_url

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


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def fuzz_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """One seeded database per backend for the whole module: fuzzing needs no isolation."""
    name = None
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("fuzz") / "fuzz.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        template = request.getfixturevalue("pg_template")
        name = f"v2v_fuzz_{uuid.uuid4().hex[:10]}"
        _pg_exec(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
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
            _pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
