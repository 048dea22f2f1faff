"""The audit log: one row per change, written in the change's own transaction.

A caller (an API route through api/audit.py, a CLI command) calls ``begin`` before the change, so the change's
own ``conn.transaction()`` blocks become savepoints of one transaction, then ``record`` after it: both commit
together or neither does. ``before`` and ``after`` are summaries (JSON), never secrets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb


@dataclass(frozen=True, slots=True)
class Actor:
    subject: str  # stable: "user:somchai", "key:3f9a1c2b", "oidc:<issuer>#<sub>", "cli:<os user>"
    name: str
    organisation_id: int | None  # whose log the entry belongs to (None: the deployment's, e.g. a new organisation)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    organisation_code: str | None
    actor_subject: str
    actor_name: str
    action: str
    target: str
    before: Any
    after: Any
    request_id: str | None


def begin(conn: psycopg.Connection) -> None:
    """Open the transaction the change and its record share (a no-op inside one already)."""
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        conn.execute("SELECT 1")


def record(conn: psycopg.Connection, actor: Actor, action: str, target: str, *, before: Mapping[str, Any] | None = None,
           after: Mapping[str, Any] | None = None, organisation_id: int | None = None,
           request_id: str | None = None) -> int:  # fmt: skip
    """Write the entry; ``organisation_id`` overrides the actor's (the organisation changed, when it differs)."""
    org = organisation_id if organisation_id is not None else actor.organisation_id
    row = conn.execute(
        """
        INSERT INTO audit_log (organisation_id, actor_subject, actor_name, action, target, before, after, request_id)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id
        """,
        (org, actor.subject, actor.name, action, target, _json(before), _json(after), request_id),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _json(value: Mapping[str, Any] | None) -> Jsonb | None:
    return None if value is None else Jsonb(dict(value))


def entries(conn: psycopg.Connection, *, organisation_id: int | None = None, since: datetime | None = None,
            until: datetime | None = None, actor: str | None = None, action: str | None = None,
            target: str | None = None, before_id: int | None = None, limit: int = 100) -> list[AuditEntry]:  # fmt: skip
    """Newest first. ``actor`` matches the subject or the name; ``action`` and ``target`` match a prefix."""
    query = """
        SELECT a.id, a.at, o.code AS organisation_code, a.actor_subject, a.actor_name, a.action, a.target, a.before,
               a.after, a.request_id
        FROM audit_log a LEFT JOIN organisations o ON o.id = a.organisation_id
        WHERE (%(org)s::int IS NULL OR a.organisation_id = %(org)s)
          AND (%(since)s::timestamptz IS NULL OR a.at >= %(since)s)
          AND (%(until)s::timestamptz IS NULL OR a.at < %(until)s)
          AND (%(actor)s::text IS NULL OR a.actor_subject = %(actor)s OR a.actor_name = %(actor)s)
          AND (%(action)s::text IS NULL OR starts_with(a.action, %(action)s))
          AND (%(target)s::text IS NULL OR starts_with(a.target, %(target)s))
          AND (%(before_id)s::bigint IS NULL OR a.id < %(before_id)s)
        ORDER BY a.id DESC LIMIT %(limit)s
    """
    params = {"org": organisation_id, "since": since, "until": until, "actor": actor, "action": action,
              "target": target, "before_id": before_id, "limit": limit}  # fmt: skip
    with conn.cursor(row_factory=class_row(AuditEntry)) as cur:
        return cur.execute(query, params).fetchall()
