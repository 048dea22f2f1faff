"""Who the API tests call as, until the identity layer authenticates them (api/principal.py ``get_principal`` is the
one seam: FastAPI's ``app.dependency_overrides``).

``as_caller(app)`` makes every request an all-sites caller of the organisation ``lampang`` (migration 007 creates
it; the tests' registries put their sites in its city), with every role: the scope the existing API tests were
written for. tests/test_scoping.py calls as other organisations and sites with ``principal_for``.
"""

from __future__ import annotations

from fastapi import FastAPI

from lccm.api.deps import Pool
from lccm.api.principal import Principal, Role, Scope, get_principal

ALL_ROLES = frozenset(Role)


def principal_for(organisation_id: int, site_ids: frozenset[int] | None = None, name: str = "test") -> Principal:
    return Principal(f"user:{name}", name, ALL_ROLES, Scope(organisation_id, site_ids))


def as_caller(app: FastAPI, organisation: str = "lampang") -> FastAPI:
    """``app``, answering every request as an all-sites caller of ``organisation`` (looked up by code)."""

    def caller(pool: Pool) -> Principal:
        with pool.connection() as conn:
            row = conn.execute("SELECT id FROM organisations WHERE code = %s", (organisation,)).fetchone()
        assert row is not None, f"no organisation {organisation!r} in the test database"
        return principal_for(int(row[0]), name=f"{organisation}-tester")

    app.dependency_overrides[get_principal] = caller
    return app
