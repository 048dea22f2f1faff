"""Every operation of the OpenAPI document, fuzzed by schemathesis against the real app on a real, migrated
database holding a city (tests/_seeded.py): valid and invalid inputs (NUL characters, extreme dates and numbers,
wrong types, missing fields), bounded examples per operation.

Each call must not be a server error (5xx), and its answer must match what the document declares for it: status
code, content type and body schema. One test per operation (pytest's id names it).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from psycopg_pool import ConnectionPool
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.exceptions import StarletteDeprecationWarning

from lccm.api.app import create_app
from lccm.settings import Settings
from tests._auth import admin_headers
from tests._db import fresh_database
from tests._seeded import seed_city

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)  # see tests/test_api.py
    from starlette.testclient import TestClient

# Examples per operation and generation mode (valid and invalid inputs): about 45 operations x 2 modes x 20, a
# couple of minutes on a quiet machine.
EXAMPLES = int(os.environ.get("LCCM_FUZZ_EXAMPLES", "20"))
# No server error, and the answer as documented: status code, content type, headers, body. Invalid input must be
# refused (4xx). Not checked: that every schema-valid input is accepted (positive_data_acceptance): the API refuses
# on purpose, with a 422 naming the parameter, what the schema cannot express (dates outside 1900-2199, 'to' before
# 'from', a range too long, unknown codes).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# The operations, from the document itself (building it needs no database): a route added later is fuzzed too.
DOCUMENT = create_app(Settings(database_url="unused")).openapi()
OPERATIONS = [(method.upper(), path) for path, item in DOCUMENT["paths"].items() for method in item]
# (method, path, mode): invalid inputs only where an operation takes any (a parameter or a body).
CASES = [
    (method, path, mode)
    for method, path in OPERATIONS
    for mode in GenerationMode
    if mode is GenerationMode.POSITIVE or {"parameters", "requestBody"} & set(DOCUMENT["paths"][path][method.lower()])
]


@dataclass(frozen=True, slots=True)
class Api:
    schema: schemathesis.BaseSchema
    client: TestClient


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with fresh_database() as url:
        seed_city(url, tmp_path_factory.mktemp("fuzz"))
        with (
            ConnectionPool(url, min_size=1, max_size=4, open=True) as pool,
            TestClient(
                # live_stream_max_s: GET /live/events ends, so the client (which reads whole answers) gets one.
                create_app(Settings(database_url=url, live_stream_max_s=0.2), pool),
                raise_server_exceptions=False,
                headers=admin_headers(url),
            ) as client,
        ):
            yield Api(schemathesis.openapi.from_dict(client.get("/openapi.json").json()), client)
        with psycopg.connect(url) as conn:  # the run leaves the database answering
            assert conn.execute("SELECT count(*) FROM devices").fetchone() == (2107,)


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_operation(api: Api, method: str, path: str, mode: GenerationMode) -> None:
    operation = api.schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,  # the same examples on every run: CI fails on a finding, not on luck
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def call(case: schemathesis.Case) -> None:
        sent = case.as_transport_kwargs(base_url=str(api.client.base_url))
        case.validate_response(api.client.request(**_httpx(sent)), checks=CHECKS, transport_kwargs=sent)

    try:
        call()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        pytest.skip("every value this operation's parameters can be sent as is valid (plain strings)")


def _httpx(sent: dict[str, Any]) -> dict[str, Any]:
    """The request schemathesis serialised for ``requests``, encoded by ``requests`` (JSON, forms, multipart), as
    arguments of the app's test client (httpx: ``requests``' own connection pools do not work here, where it shares
    ``urllib3`` with grafana-client's ``urllib3-future``)."""
    # Credentials are the test client's own (an admin's API key): what schemathesis makes up from the document's
    # security schemes (a session cookie, an API key header) is dropped, so every operation is fuzzed past its guard
    # (tests/test_policy_matrix.py covers the guard itself).
    keys = ("method", "url", "headers", "params", "data", "json", "files")
    prepared = requests.Request(**{k: sent[k] for k in keys if sent.get(k) is not None}).prepare()
    dropped = {"content-length", "cookie", "authorization", "x-api-key"}
    headers = {k: v for k, v in prepared.headers.items() if k.lower() not in dropped}
    return {"method": prepared.method, "url": prepared.url, "headers": headers, "content": prepared.body}


def test_every_operation_is_fuzzed() -> None:
    assert len(OPERATIONS) >= 40
