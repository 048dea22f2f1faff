"""The audit log as the commands write it: the operator running a command is its actor (``cli:<user>``), and the
change and its entry commit together (``audit.begin`` before the change, ``record_cli`` after it, one commit)."""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from typing import Any

import psycopg
from fastapi.encoders import jsonable_encoder

from lccm.store import audit, identity


def cli_actor(conn: psycopg.Connection, organisation: str | None = None) -> audit.Actor:
    """The operator running this command, for the audit log, in ``organisation``'s log when given."""
    name = getpass.getuser()
    org_id = identity.organisation_id(conn, organisation) if organisation else None
    return audit.Actor(f"cli:{name}", name, org_id)


def record_cli(conn: psycopg.Connection, command: str, target: str, organisation: str | None, *,
               before: Mapping[str, Any] | None = None, after: Mapping[str, Any] | None = None) -> None:  # fmt: skip
    """Write a CLI change's audit entry (call ``audit.begin(conn)`` before the change)."""
    plain = {k: (None if v is None else dict(jsonable_encoder(v))) for k, v in (("b", before), ("a", after))}
    audit.record(conn, cli_actor(conn, organisation), f"lccm {command}", target, before=plain["b"], after=plain["a"])
