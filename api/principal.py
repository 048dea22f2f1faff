"""Who is calling: the one type every route, the audit log and the scoping of queries see.

However a caller proved who they are (an OIDC bearer token, an API key, a local account's session), the identity
layer (api/auth/) turns it into a ``Principal`` and leaves it on ``request.state.principal``; routes take it with
``CurrentPrincipal`` and pass its ``scope`` down to the store, which filters every query by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request


class Role(StrEnum):
    VIEWER = "viewer"  # reads
    FACILITY_MANAGER = "facility_manager"  # reads energy, limited to the sites given to them
    ENVIRONMENT_OFFICER = "environment_officer"  # air quality, alerts (acknowledge, close), alert rules
    CARBON_OFFICER = "carbon_officer"  # inventories, activity data, mappings, targets, reports
    ADMIN = "admin"  # devices, users, organisations


@dataclass(frozen=True, slots=True)
class Scope:
    """The data a caller may see: one organisation, and within it every site (``site_ids`` None) or only these."""

    organisation_id: int
    site_ids: frozenset[int] | None = None
    organisation_code: str = ""  # for the /organisations/{code} routes and the audit log

    def allows_site(self, site_id: int) -> bool:
        return self.site_ids is None or site_id in self.site_ids


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``subject`` is stable and unique across kinds ("user:somchai", "key:3f9a1c2b",
    "oidc:https://idp.example/realms/lampang#0b6f..."); the audit log records it, with ``display_name`` for people."""

    subject: str
    display_name: str
    roles: frozenset[Role]
    scope: Scope

    def has(self, role: Role) -> bool:
        return role in self.roles or Role.ADMIN in self.roles


ALL_ROLES = frozenset(Role)


class NotAuthenticated(Exception):
    """No principal on the request: the route was reached without the identity layer having run (api/errors.py
    answers 401, as for a caller without credentials)."""


def get_principal(request: Request) -> Principal:
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        raise NotAuthenticated(f"{request.method} {request.url.path} was reached without an authenticated caller")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
