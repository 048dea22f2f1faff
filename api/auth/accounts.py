"""Users and API keys, changed the same way by the admin API (api/routes/users.py) and the CLI (lccm/cli_identity.py):
each change validated, made and written to the audit log in the caller's transaction (``audit.begin`` first)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from lccm.api.auth.credentials import digest, hash_password, new_api_key, password_problem
from lccm.api.principal import Role
from lccm.store import audit, identity
from lccm.store.inventory import require_organisation


class AccountInvalid(ValueError):
    """A username, password, role or site that cannot be accepted; the message says which and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Change:
    """Who changes, as what command or route, and the request id (API) for the audit log."""

    actor: audit.Actor
    action: str
    request_id: str | None = None

    def record(self, conn: psycopg.Connection, target: str, before: dict[str, object] | None,
               after: dict[str, object] | None, organisation_id: int | None) -> None:  # fmt: skip
        audit.record(conn, self.actor, self.action, target, before=before, after=after,
                     organisation_id=organisation_id, request_id=self.request_id)  # fmt: skip


def check_roles(roles: Sequence[str]) -> list[str]:
    known = {r.value for r in Role}
    bad = [r for r in roles if r not in known]
    if bad or not roles:
        raise AccountInvalid("roles", f"roles must be among {', '.join(sorted(known))} (got {', '.join(roles)})")
    return sorted(set(roles))


def _sites(conn: psycopg.Connection, org_id: int, org_code: str, codes: Sequence[str] | None) -> list[int] | None:
    return None if codes is None else identity.site_ids(conn, org_id, org_code, codes)


def add_user(conn: psycopg.Connection, change: Change, *, username: str, display_name: str | None, password: str,
             organisation: str, roles: Sequence[str], sites: Sequence[str] | None) -> identity.UserRow:  # fmt: skip
    username = username.strip().lower()
    if not identity.USERNAME.fullmatch(username):
        raise AccountInvalid("username", "a username is 1-64 of a-z 0-9 _ . @ -, starting with a letter or digit")
    if problem := password_problem(password):
        raise AccountInvalid("password", problem)
    audit.begin(conn)
    org = require_organisation(conn, organisation)
    row = identity.add_user(conn, username, display_name or username, hash_password(password), org.id,
                            check_roles(roles), _sites(conn, org.id, org.code, sites))  # fmt: skip
    change.record(conn, f"user:{username}", None, row.summary(), org.id)
    return row


_UNSET = object()


def update_user(conn: psycopg.Connection, change: Change, username: str, *, organisation_id: int | None,
                display_name: str | None = None, roles: Sequence[str] | None = None,
                sites: Sequence[str] | object | None = _UNSET, disabled: bool | None = None,
                password: str | None = None) -> identity.UserRow:  # fmt: skip
    """Change what is given of a user (of ``organisation_id`` only, when given)."""
    audit.begin(conn)
    user = identity.require_user(conn, username, organisation_id)
    if password is not None and (problem := password_problem(password)):
        raise AccountInvalid("password", problem)
    site_ids: object = _UNSET
    if sites is not _UNSET:
        site_ids = _sites(conn, user.organisation_id, user.organisation_code, sites)  # type: ignore[arg-type]
    identity.update_user(
        conn,
        user.id,
        display_name=display_name,
        roles=None if roles is None else check_roles(roles),
        site_ids=site_ids if site_ids is not _UNSET else identity.UNSET,
        disabled=disabled,
        password_hash=None if password is None else hash_password(password),
    )
    after = identity.require_user(conn, user.username)
    summary = after.summary() | ({"password": "changed"} if password is not None else {})
    change.record(conn, f"user:{user.username}", user.summary(), summary, user.organisation_id)
    return after


def create_api_key(conn: psycopg.Connection, change: Change, *, name: str, organisation: str,
                   roles: Sequence[str], sites: Sequence[str] | None) -> tuple[str, identity.ApiKeyRow]:  # fmt: skip
    """(the key, to be shown once; its row)."""
    if not name.strip():
        raise AccountInvalid("name", "an API key needs a name (what uses it)")
    audit.begin(conn)
    org = require_organisation(conn, organisation)
    key, key_id = new_api_key()
    row = identity.create_api_key(conn, key_id, digest(key), name.strip(), org.id, check_roles(roles),
                                  _sites(conn, org.id, org.code, sites), change.actor.subject)  # fmt: skip
    change.record(conn, f"key:{key_id}", None, row.summary(), org.id)
    return key, row


def revoke_api_key(conn: psycopg.Connection, change: Change, key_id: str,
                   organisation_id: int | None) -> identity.ApiKeyRow:  # fmt: skip
    audit.begin(conn)
    before = identity.require_api_key(conn, key_id, organisation_id)
    after = identity.revoke_api_key(conn, key_id, organisation_id)
    change.record(conn, f"key:{key_id}", before.summary(), after.summary(), after.organisation_id)
    return after
