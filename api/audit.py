"""The audit log as routes use it: ``Audit`` opens the request's transaction before the change, so the change and
its entry commit together (store/audit.py), and names the actor (the principal) and the action (the route)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Request
from fastapi.encoders import jsonable_encoder

from lccm.api.deps import Conn
from lccm.api.observability import REQUEST_ID
from lccm.api.principal import CurrentPrincipal, Principal
from lccm.store import audit


def actor(principal: Principal) -> audit.Actor:
    return audit.Actor(principal.subject, principal.display_name, principal.scope.organisation_id)


class Auditor:
    def __init__(self, conn: psycopg.Connection, principal: Principal, action: str) -> None:
        self.conn = conn
        self.principal = principal
        self.action = action

    def record(self, target: str, *, before: Mapping[str, Any] | None = None,
               after: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        audit.record(self.conn, actor(self.principal), self.action, target, before=_plain(before),
                     after=_plain(after), request_id=REQUEST_ID.get())  # fmt: skip


def _plain(summary: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """JSON the log can hold: dates, decimals, dataclasses and models as FastAPI encodes them."""
    return None if summary is None else dict(jsonable_encoder(summary))


def get_auditor(request: Request, conn: Conn, principal: CurrentPrincipal) -> Auditor:
    audit.begin(conn)  # the route's connection: the same one as its `conn` (FastAPI caches it per request)
    return Auditor(conn, principal, f"{request.method} {request.scope['route'].path}")


Audit = Annotated[Auditor, Depends(get_auditor)]
