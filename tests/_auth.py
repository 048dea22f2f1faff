"""Credentials for API tests, made the product's way (api/auth/accounts.py), on the test's database.

``admin_headers(url)`` is what most API tests need: an admin API key of the seeded organisation ``lampang``, as
the ``Authorization`` header of a TestClient (``TestClient(app, headers=admin_headers(url))``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import psycopg
from starlette.exceptions import StarletteDeprecationWarning

from lccm.api.auth import accounts
from lccm.api.principal import Role
from lccm.store import audit
from lccm.store.inventory import OrganisationIn, put_organisation

with warnings.catch_warnings():
    # Starlette 1.10 prefers httpx2 for its TestClient and warns at import when only httpx is installed.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

__all__ = ["TestClient", "add_organisation", "admin_headers", "api_key", "bearer", "named_key"]

TEST_ACTOR = audit.Actor("test:setup", "test set-up", None)
SEEDED_ORG = "lampang"  # store/migrations/007_inventory.sql


def api_key(url: str, *roles: Role, org: str = SEEDED_ORG, sites: Sequence[str] | None = None) -> str:
    with psycopg.connect(url) as conn:
        key, _ = accounts.create_api_key(
            conn, accounts.Change(TEST_ACTOR, "test"), name=f"test {'+'.join(roles) or 'admin'}",
            organisation=org, roles=list(roles or [Role.ADMIN]), sites=sites,
        )  # fmt: skip
    return key


def named_key(url: str, name: str, *roles: Role, org: str = SEEDED_ORG) -> str:
    """A key whose display name is "API key <name>" (what an alert or the audit log records for it)."""
    with psycopg.connect(url) as conn:
        key, _ = accounts.create_api_key(conn, accounts.Change(TEST_ACTOR, "test"), name=name, organisation=org,
                                         roles=list(roles), sites=None)  # fmt: skip
    return key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def admin_headers(url: str, org: str = SEEDED_ORG) -> dict[str, str]:
    return bearer(api_key(url, Role.ADMIN, org=org))


def add_organisation(url: str, code: str, city_key: str | None = None) -> None:
    with psycopg.connect(url) as conn:
        put_organisation(conn, OrganisationIn(code, f"{code} municipality", "Somewhere", "city", city_key=city_key))
