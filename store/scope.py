"""The caller's scope as the store reads it, and the SQL conditions that keep every query inside it.

The caller's type is api/principal.py ``Scope`` (an organisation, and within it every site or only some); the store
may not import the API (tests/test_architecture.py), so this protocol states the two attributes it reads, which that
dataclass has. Every query an API route runs takes a scope and filters in SQL: a site belongs to an organisation
through the ``site_organisations`` view (migration 007: ``sites.organisation_id``, else the organisation whose
``city_key`` is the site's city); a site of no organisation is in nobody's scope.

The conditions embed the scope as SQL literals (``psycopg.sql.Literal``: integers, quoted by psycopg, never text
from a request), so they compose with queries written with positional or named parameters alike, and each scope
gets a plan of its own rather than a generic ``(%s IS NULL OR ...)`` one.
"""

from __future__ import annotations

from typing import LiteralString, Protocol

from psycopg import sql


class Scope(Protocol):
    @property
    def organisation_id(self) -> int: ...
    @property
    def site_ids(self) -> frozenset[int] | None: ...


def site_in_scope(scope: Scope, site_id: LiteralString) -> sql.Composable:
    """A condition: the site whose id is the SQL expression ``site_id`` (e.g. ``s.id``, ``d.site_id``) is in scope."""
    column = sql.SQL(site_id)
    cond = sql.SQL("{site} IN (SELECT so.site_id FROM site_organisations so WHERE so.organisation_id = {org})").format(
        site=column, org=sql.Literal(scope.organisation_id)
    )
    if scope.site_ids is not None:
        cond = sql.SQL("{org_cond} AND {site} = ANY({ids}::int[])").format(
            org_cond=cond, site=column, ids=sql.Literal(sorted(scope.site_ids))
        )
    return sql.SQL("(") + cond + sql.SQL(")")


def scope_clauses(scope: Scope | None, site_id: LiteralString) -> list[sql.Composable]:
    """:func:`site_in_scope` as a list of clauses to AND with others; none for ``scope=None``: the whole
    deployment, which only the command line (holding the database's own credentials) asks for."""
    return [] if scope is None else [site_in_scope(scope, site_id)]


def scope_and(scope: Scope | None, site_id: LiteralString) -> sql.Composable:
    """:func:`site_in_scope` as `` AND <condition>`` to append to a WHERE clause; nothing for ``scope=None``."""
    return sql.SQL("") if scope is None else sql.SQL(" AND ") + site_in_scope(scope, site_id)


def scope_where(scope: Scope | None, site_id: LiteralString) -> sql.Composable:
    """:func:`site_in_scope` as `` WHERE <condition>``; nothing for ``scope=None``."""
    return sql.SQL("") if scope is None else sql.SQL(" WHERE ") + site_in_scope(scope, site_id)
