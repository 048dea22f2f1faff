"""A local account's session: log in, set its cookies, end it. One code path for ``POST /auth/login`` (JSON, for
scripts) and the web pages' ``POST /login`` (a form), so both lock, rehash and expire alike.

A failed login answers the same for an unknown user, a wrong password, a disabled account and a locked one, after
the same argon2 work; ``login_lockout_after`` failed logins in a row lock the account for ``login_lockout_s``.
Besides the ``lccm_session`` cookie, the login sets ``lccm_csrf`` (HttpOnly too): the web pages read it on the
server and put it in their forms, because a form cannot send the ``X-CSRF-Token`` header. The cookie itself proves
nothing (a cross-site form sends it too); only a token sent back in a header or a form field does.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from fastapi import Response

from lccm.api.auth.credentials import digest, hash_password, needs_rehash, new_token, verify_password
from lccm.api.auth.guard import SESSION_COOKIE, AuthConfig
from lccm.store import identity

CSRF_COOKIE = "lccm_csrf"


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    csrf: str
    expires_at: datetime
    user: identity.UserRow


def log_in(conn: psycopg.Connection, config: AuthConfig, username: str, password: str) -> Session | None:
    """A new session for the account, or None (one answer for every failure). The failure count is written on
    ``conn``: the caller must let it commit (return, not raise)."""
    user = identity.get_user(conn, username.strip().lower())
    ok = verify_password(user.password_hash if user else None, password)
    locked = user is not None and user.locked_until is not None and user.locked_until > datetime.now(UTC)
    if user is None or not ok or locked or user.disabled:
        if user is not None and not ok:
            identity.failed_login(conn, user.id, config.login_lockout_after, config.login_lockout_s)
        return None
    identity.good_login(conn, user.id)
    if needs_rehash(user.password_hash):  # the library's parameters moved on: upgrade while we hold the password
        identity.update_user(conn, user.id, password_hash=hash_password(password))
    token, csrf = new_token(), new_token()
    identity.create_session(conn, user.id, digest(token), digest(csrf), config.session_ttl_s)
    expires = datetime.fromtimestamp(datetime.now(UTC).timestamp() + config.session_ttl_s, UTC)
    return Session(token, csrf, expires, user)


def set_cookies(response: Response, session: Session, config: AuthConfig) -> None:
    for name, value in ((SESSION_COOKIE, session.token), (CSRF_COOKIE, session.csrf)):
        response.set_cookie(
            name,
            value,
            max_age=int(config.session_ttl_s),
            httponly=True,
            samesite="lax",
            secure=config.session_cookie_secure,
            path="/",
        )


def clear_cookies(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


def log_out(conn: psycopg.Connection, token: str | None) -> None:
    if token:
        identity.end_session(conn, digest(token))


def log_out_with_csrf(conn: psycopg.Connection, token: str | None, csrf_sent: str) -> bool:
    """End the session only when ``csrf_sent`` is its CSRF token (a web form's logout); False when it is not."""
    if not token or not csrf_sent:
        return False
    found = identity.session_user(conn, digest(token))
    if found is None or not hmac.compare_digest(digest(csrf_sent), found[1]):
        return False
    identity.end_session(conn, digest(token))
    return True
