"""Local accounts, their sessions and API keys: rows only.

Hashing and token generation are the API's (api/auth/credentials.py); this module stores and finds the digests it
is handed. Roles are the names of api/principal.py ``Role`` (the migration's CHECK lists them); a ``site_ids`` of
None means every site of the organisation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import psycopg
from psycopg.rows import class_row

USERNAME = re.compile(r"[a-z0-9][a-z0-9_.@-]{0,63}")  # as the migration's CHECK


class UnknownSite(LookupError):
    def __init__(self, organisation: str, codes: Sequence[str]) -> None:
        super().__init__(f"organisation {organisation!r} has no site {', '.join(map(repr, codes))}")
        self.codes = list(codes)


class UnknownUser(LookupError):
    def __init__(self, username: str) -> None:
        super().__init__(f"no user {username!r}")


class UserExists(ValueError):
    def __init__(self, username: str) -> None:
        super().__init__(f"a user {username!r} exists already")


class UnknownApiKey(LookupError):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"no API key {key_id!r}")


@dataclass(frozen=True, slots=True)
class Holder:
    """What a user and an API key share: whom they speak for."""

    organisation_id: int
    organisation_code: str
    roles: list[str]
    site_ids: list[int] | None
    site_codes: list[str] | None


@dataclass(frozen=True, slots=True)
class UserRow:
    id: int
    username: str
    display_name: str
    password_hash: str
    organisation_id: int
    organisation_code: str
    roles: list[str]
    site_ids: list[int] | None
    site_codes: list[str] | None
    disabled: bool
    failed_logins: int
    locked_until: datetime | None
    created_at: datetime
    updated_at: datetime

    def summary(self) -> dict[str, object]:
        """For the audit log and the admin API: never the hash."""
        return {
            "username": self.username,
            "display_name": self.display_name,
            "organisation": self.organisation_code,
            "roles": sorted(self.roles),
            "sites": self.site_codes,
            "disabled": self.disabled,
        }


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    id: int
    key_id: str
    name: str
    organisation_id: int
    organisation_code: str
    roles: list[str]
    site_ids: list[int] | None
    site_codes: list[str] | None
    created_by: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def summary(self) -> dict[str, object]:
        return {
            "key_id": self.key_id,
            "name": self.name,
            "organisation": self.organisation_code,
            "roles": sorted(self.roles),
            "sites": self.site_codes,
            "revoked": self.revoked_at is not None,
        }


# Site codes beside the ids, in the order of the ids, for people and the audit log.
_SITE_CODES = "(SELECT array_agg(s.site_code ORDER BY s.site_code) FROM sites s WHERE s.id = ANY({t}.site_ids))"
_USER = f"""
    SELECT u.id, u.username, u.display_name, u.password_hash, u.organisation_id, o.code AS organisation_code,
           u.roles, u.site_ids, {_SITE_CODES.format(t="u")} AS site_codes, u.disabled, u.failed_logins,
           u.locked_until, u.created_at, u.updated_at
    FROM users u JOIN organisations o ON o.id = u.organisation_id
"""
_KEY = f"""
    SELECT k.id, k.key_id, k.name, k.organisation_id, o.code AS organisation_code, k.roles, k.site_ids,
           {_SITE_CODES.format(t="k")} AS site_codes, k.created_by, k.created_at, k.last_used_at, k.revoked_at
    FROM api_keys k JOIN organisations o ON o.id = k.organisation_id
"""


def organisation_id(conn: psycopg.Connection, code: str) -> int | None:
    row = conn.execute("SELECT id FROM organisations WHERE code = %s", (code,)).fetchone()
    return int(row[0]) if row else None


def site_ids(conn: psycopg.Connection, organisation_id: int, organisation_code: str, codes: Sequence[str]) -> list[int]:
    """The ids of these site codes, each of which must belong to the organisation."""
    rows = conn.execute(
        """
        SELECT s.site_code, s.id FROM sites s JOIN site_organisations so ON so.site_id = s.id
        WHERE so.organisation_id = %s AND s.site_code = ANY(%s)
        """,
        (organisation_id, list(codes)),
    ).fetchall()
    found = {str(r[0]): int(r[1]) for r in rows}
    missing = [c for c in codes if c not in found]
    if missing:
        raise UnknownSite(organisation_code, missing)
    return sorted({found[c] for c in codes})


# --- users ---------------------------------------------------------------------------------------------------------


def add_user(conn: psycopg.Connection, username: str, display_name: str, password_hash: str, organisation_id: int,
             roles: Sequence[str], site_ids: Sequence[int] | None) -> UserRow:  # fmt: skip
    row = conn.execute(
        """
        INSERT INTO users (username, display_name, password_hash, organisation_id, roles, site_ids)
        VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (username) DO NOTHING RETURNING id
        """,
        (username, display_name, password_hash, organisation_id, list(roles),
         None if site_ids is None else list(site_ids)),
    ).fetchone()  # fmt: skip
    if row is None:
        raise UserExists(username)
    return require_user(conn, username)


def get_user(conn: psycopg.Connection, username: str, organisation_id: int | None = None) -> UserRow | None:
    """The user, or None; with ``organisation_id``, only a user of that organisation."""
    query = _USER + " WHERE u.username = %s AND (%s::int IS NULL OR u.organisation_id = %s)"
    with conn.cursor(row_factory=class_row(UserRow)) as cur:
        return cur.execute(query, (username, organisation_id, organisation_id)).fetchone()


def require_user(conn: psycopg.Connection, username: str, organisation_id: int | None = None) -> UserRow:
    user = get_user(conn, username, organisation_id)
    if user is None:
        raise UnknownUser(username)
    return user


def list_users(conn: psycopg.Connection, organisation_id: int | None = None) -> list[UserRow]:
    query = _USER + " WHERE %s::int IS NULL OR u.organisation_id = %s ORDER BY o.code, u.username"
    with conn.cursor(row_factory=class_row(UserRow)) as cur:
        return cur.execute(query, (organisation_id, organisation_id)).fetchall()


UNSET: object = object()  # update_user: leave site_ids as they are (None means every site)


def update_user(conn: psycopg.Connection, user_id: int, *, display_name: str | None = None,
                roles: Sequence[str] | None = None, site_ids: Sequence[int] | object | None = UNSET,
                disabled: bool | None = None, password_hash: str | None = None) -> None:  # fmt: skip
    """Change what is given; a new password or a disabled account ends the user's sessions."""
    sets: list[str] = ["updated_at = now()"]
    params: list[object] = []
    for column, value in (("display_name", display_name), ("disabled", disabled), ("password_hash", password_hash)):
        if value is not None:
            sets.append(f"{column} = %s")
            params.append(value)
    if roles is not None:
        sets.append("roles = %s")
        params.append(list(roles))
    if site_ids is not UNSET:
        sets.append("site_ids = %s")
        params.append(None if site_ids is None else [int(i) for i in cast(Sequence[int], site_ids)])
    if password_hash is not None:
        sets.extend(["failed_logins = 0", "locked_until = NULL"])
    conn.execute(f"UPDATE users SET {', '.join(sets)} WHERE id = %s", (*params, user_id))
    if password_hash is not None or disabled:
        conn.execute("DELETE FROM sessions WHERE user_id = %s", (user_id,))


def failed_login(conn: psycopg.Connection, user_id: int, lock_after: int, lock_s: float) -> None:
    """Count a failed login; the ``lock_after``-th in a row locks the account for ``lock_s`` seconds."""
    conn.execute(
        """
        UPDATE users SET failed_logins = failed_logins + 1,
            locked_until = CASE WHEN failed_logins + 1 >= %s THEN now() + make_interval(secs => %s) END
        WHERE id = %s
        """,
        (lock_after, lock_s, user_id),
    )


def good_login(conn: psycopg.Connection, user_id: int) -> None:
    conn.execute("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = %s", (user_id,))


# --- sessions ------------------------------------------------------------------------------------------------------


def create_session(conn: psycopg.Connection, user_id: int, token_sha256: str, csrf_sha256: str, ttl_s: float) -> None:
    conn.execute("DELETE FROM sessions WHERE expires_at < now()")  # expired ones go when new ones come
    conn.execute(
        """
        INSERT INTO sessions (token_sha256, csrf_sha256, user_id, expires_at)
        VALUES (%s, %s, %s, now() + make_interval(secs => %s))
        """,
        (token_sha256, csrf_sha256, user_id, ttl_s),
    )


def session_user(conn: psycopg.Connection, token_sha256: str) -> tuple[UserRow, str] | None:
    """The session's user and CSRF digest, while the session is unexpired and the user enabled."""
    row = conn.execute(
        """
        SELECT u.username, s.csrf_sha256 FROM sessions s JOIN users u ON u.id = s.user_id
        WHERE s.token_sha256 = %s AND s.expires_at > now() AND NOT u.disabled
        """,
        (token_sha256,),
    ).fetchone()
    if row is None:
        return None
    user = get_user(conn, str(row[0]))
    return (user, str(row[1])) if user is not None else None


def end_session(conn: psycopg.Connection, token_sha256: str) -> None:
    conn.execute("DELETE FROM sessions WHERE token_sha256 = %s", (token_sha256,))


# --- API keys ------------------------------------------------------------------------------------------------------


def create_api_key(conn: psycopg.Connection, key_id: str, key_sha256: str, name: str, organisation_id: int,
                   roles: Sequence[str], site_ids: Sequence[int] | None, created_by: str) -> ApiKeyRow:  # fmt: skip
    conn.execute(
        """
        INSERT INTO api_keys (key_id, key_sha256, name, organisation_id, roles, site_ids, created_by)
        VALUES (%s, %s, %s, %s, %s, %s, %s)
        """,
        (key_id, key_sha256, name, organisation_id, list(roles), None if site_ids is None else list(site_ids),
         created_by),
    )  # fmt: skip
    return require_api_key(conn, key_id)


def require_api_key(conn: psycopg.Connection, key_id: str, organisation_id: int | None = None) -> ApiKeyRow:
    query = _KEY + " WHERE k.key_id = %s AND (%s::int IS NULL OR k.organisation_id = %s)"
    with conn.cursor(row_factory=class_row(ApiKeyRow)) as cur:
        row = cur.execute(query, (key_id, organisation_id, organisation_id)).fetchone()
    if row is None:
        raise UnknownApiKey(key_id)
    return row


def api_key_by_digest(conn: psycopg.Connection, key_sha256: str) -> ApiKeyRow | None:
    """The unrevoked key with this digest, its last use recorded (at most once a minute, to spare the writes)."""
    with conn.cursor(row_factory=class_row(ApiKeyRow)) as cur:
        row = cur.execute(_KEY + " WHERE k.key_sha256 = %s AND k.revoked_at IS NULL", (key_sha256,)).fetchone()
    if row is not None:
        conn.execute(
            """
            UPDATE api_keys SET last_used_at = now()
            WHERE id = %s AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
            """,
            (row.id,),
        )
    return row


def list_api_keys(conn: psycopg.Connection, organisation_id: int | None = None) -> list[ApiKeyRow]:
    query = _KEY + " WHERE %s::int IS NULL OR k.organisation_id = %s ORDER BY o.code, k.created_at, k.id"
    with conn.cursor(row_factory=class_row(ApiKeyRow)) as cur:
        return cur.execute(query, (organisation_id, organisation_id)).fetchall()


def revoke_api_key(conn: psycopg.Connection, key_id: str, organisation_id: int | None = None) -> ApiKeyRow:
    key = require_api_key(conn, key_id, organisation_id)
    conn.execute("UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s", (key.id,))
    return require_api_key(conn, key_id)
