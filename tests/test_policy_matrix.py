"""Every operation of the OpenAPI document, called as anonymous, as each role and as an admin of another
organisation, answers as api/policy.py declares: 401 anonymous, 403 a role refused, neither when allowed, and 404
for another organisation's /organisations/{code}. The credentials are real API keys made by the product's own
functions on a real database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from psycopg_pool import ConnectionPool

from lccm.api.app import create_app
from lccm.api.policy import ORGANISATION_PREFIX, POLICIES, PolicyMissing, check_complete, operations
from lccm.api.principal import Role
from lccm.settings import Settings
from tests._auth import SEEDED_ORG, TestClient, add_organisation, api_key, bearer
from tests._db import fresh_database

OTHER_ORG = "otherville"
# A value for each path parameter: the seeded organisation's, or names that need not exist (a 404 is "allowed").
PATH_VALUES = {
    "code": SEEDED_ORG,
    "site_code": "HALL",
    "device_id": "HALL-M1",
    "alert_id": "1",
    "key": "no-such-rule",
    "username": "no-such-user",
    "key_id": "no-such-key",
}
DOCUMENT = create_app(Settings(database_url="unused")).openapi()
OPERATIONS = sorted(
    (method.upper(), path) for path, item in DOCUMENT["paths"].items() for method in item if method != "parameters"
)
CALLERS = ["anonymous", *(r.value for r in Role), "admin_of_other_org"]


@dataclass(frozen=True)
class Matrix:
    client: TestClient
    headers: dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def matrix() -> Iterator[Matrix]:
    with fresh_database() as url:
        add_organisation(url, OTHER_ORG)
        headers = {"anonymous": {}, "admin_of_other_org": bearer(api_key(url, Role.ADMIN, org=OTHER_ORG))}
        headers |= {r.value: bearer(api_key(url, r)) for r in Role}
        with (
            ConnectionPool(url, min_size=1, max_size=4, open=True) as pool,
            # live_stream_max_s: GET /live/events ends, so the client (which reads whole answers) gets one.
            TestClient(
                create_app(Settings(database_url=url, live_stream_max_s=0.2), pool), raise_server_exceptions=False
            ) as client,
        ):
            yield Matrix(client, headers)


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)


def expected(method: str, path: str, caller: str) -> str:
    """'401', '403', '404' or 'allowed' (neither 401 nor 403), from the policy table alone."""
    policy = POLICIES[(method, path)]
    if policy.is_public(public_aqi=False):
        return "allowed"
    if caller == "anonymous":
        return "401"
    if caller == "admin_of_other_org":
        return "404" if path.startswith(ORGANISATION_PREFIX) else "allowed"
    return "allowed" if policy.allows([Role(caller)]) else "403"


def test_every_operation_of_the_document_has_a_policy() -> None:
    missing = [op for op in OPERATIONS if op not in POLICIES]
    assert not missing, f"operations without a policy in api/policy.py: {missing}"
    assert len(OPERATIONS) >= 50


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_answers_as_the_policy_says(matrix: Matrix, method: str, path: str, caller: str) -> None:
    answer = matrix.client.request(method, _url(path), headers=matrix.headers[caller])
    want = expected(method, path, caller)
    got = answer.status_code
    assert got < 500, f"{method} {path} as {caller}: {got} {answer.text[:300]}"
    if want == "allowed":
        assert got not in (401, 403), f"{method} {path} as {caller}: {got} {answer.text[:300]}"
    else:
        assert got == int(want), f"{method} {path} as {caller}: want {want}, got {got} {answer.text[:300]}"
    if got == 401:
        assert answer.headers["www-authenticate"].startswith("Bearer")
    if got in (401, 403):
        body: dict[str, Any] = answer.json()
        assert body["error"] in ("not_authenticated", "forbidden") and body["detail"]


def test_an_admin_of_another_organisation_sees_only_their_own() -> None:
    """GET /organisations lists the caller's organisation only."""
    with fresh_database() as url:
        add_organisation(url, OTHER_ORG)
        with (
            ConnectionPool(url, min_size=1, max_size=2, open=True) as pool,
            TestClient(create_app(Settings(database_url=url), pool)) as client,
        ):
            mine = client.get("/organisations", headers=bearer(api_key(url, Role.VIEWER, org=OTHER_ORG))).json()
            theirs = client.get("/organisations", headers=bearer(api_key(url, Role.VIEWER))).json()
    assert [o["code"] for o in mine] == [OTHER_ORG]
    assert [o["code"] for o in theirs] == [SEEDED_ORG]


def test_a_route_added_without_a_policy_is_refused() -> None:
    app = create_app(Settings(database_url="unused"))

    @app.get("/forgotten")
    def forgotten() -> None: ...

    assert ("GET", "/forgotten") in operations(app)
    with pytest.raises(PolicyMissing, match="no policy for GET /forgotten"):
        check_complete(app)


def test_the_public_air_quality_feed_is_a_setting() -> None:
    with fresh_database() as url, ConnectionPool(url, min_size=1, max_size=2, open=True) as pool:
        closed: FastAPI = create_app(Settings(database_url=url), pool)
        public: FastAPI = create_app(Settings(database_url=url, public_aqi=True), pool)
        with TestClient(closed) as c, TestClient(public) as p:
            assert c.get("/aqi/current").status_code == 401
            assert c.get("/aqi/stations.geojson").status_code == 401
            assert p.get("/aqi/current").status_code == 200
            assert p.get("/aqi/stations.geojson").status_code == 200
            assert p.get("/aqi/history").status_code == 401  # only the two feed routes are opened
            assert p.get("/sites").status_code == 401


def test_head_follows_the_get_policy(matrix: Matrix) -> None:
    """The OpenAPI document answers HEAD as GET, under its GET policy (FastAPI routes answer GET only)."""
    assert matrix.client.head("/openapi.json").status_code == 200
