"""Local accounts: login (a session cookie and its CSRF token; api/auth/sessions.py), logout, and who am I.

A failed login answers the same 401 for an unknown user, a wrong password, a disabled account and a locked one, after
the same argon2 work. Throttling: ``login_lockout_after`` failed logins in a row lock the account for
``login_lockout_s`` (default 5 and 15 minutes); a good password during the lock is refused too, and the lock ends
by itself (or with `lccm users passwd`). The count is per username, so an attacker spraying one password over many
users is not slowed by it (the lock is the brake on guessing one user's password).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from lccm.api.auth import sessions
from lccm.api.auth.guard import CSRF_HEADER, SESSION_COOKIE, AuthConfig
from lccm.api.deps import Conn
from lccm.api.errors import InvalidParameter
from lccm.api.principal import CurrentPrincipal, Role

router = APIRouter(tags=["identity"])


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class MeOut(BaseModel):
    subject: str = Field(description="stable id: user:<name>, key:<key id> or oidc:<issuer>#<sub>")
    display_name: str
    roles: list[Role]
    organisation: str
    sites: list[str] | None = Field(description="the site codes the caller is limited to; null: every site")


class LoginOut(BaseModel):
    csrf_token: str = Field(description=f"send it as {CSRF_HEADER} with every POST/PUT/PATCH/DELETE of this session")
    expires_at: datetime
    me: MeOut


_LOGIN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": LoginIn.model_json_schema()},
            "application/x-www-form-urlencoded": {"schema": LoginIn.model_json_schema()},
        },
    }
}
_FAILED = {"error": "invalid_credentials", "detail": "unknown username or wrong password"}


async def login_body(request: Request) -> LoginIn:
    """JSON or an HTML form's fields (the web pages post a form)."""
    raw = await request.body()
    try:
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            fields = {k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
            return LoginIn.model_validate(fields)
        return LoginIn.model_validate(json.loads(raw or b"null"))
    except (ValueError, UnicodeDecodeError, ValidationError) as exc:
        raise InvalidParameter(
            "body", "send {'username': ..., 'password': ...} as JSON or a form", where="body"
        ) from exc


@router.post(
    "/auth/login",
    response_model=LoginOut,
    openapi_extra=_LOGIN_BODY,
    responses={401: {"description": "unknown username or wrong password (one answer for both)"}},
)
def login(request: Request, conn: Conn, body: Annotated[LoginIn, Depends(login_body)]) -> JSONResponse:
    """Log in with a local account: sets the session cookie and returns the CSRF token for unsafe requests."""
    config: AuthConfig = request.app.state.auth
    session = sessions.log_in(conn, config, body.username, body.password)
    if session is None:
        # Returned, not raised: the failure count must commit with the request.
        return JSONResponse(status_code=401, content=_FAILED, headers={"WWW-Authenticate": 'Bearer realm="lccm"'})
    user = session.user
    me = MeOut(
        subject=f"user:{user.username}",
        display_name=user.display_name,
        roles=sorted(Role(r) for r in user.roles),
        organisation=user.organisation_code,
        sites=user.site_codes,
    )
    out = LoginOut(csrf_token=session.csrf, expires_at=session.expires_at, me=me)
    response = JSONResponse(content=out.model_dump(mode="json"))
    sessions.set_cookies(response, session, config)
    return response


@router.post("/auth/logout", status_code=204)
def logout(request: Request, conn: Conn, _: CurrentPrincipal) -> Response:
    """End this session (a cookie's); for a bearer token or an API key there is nothing to end."""
    sessions.log_out(conn, request.cookies.get(SESSION_COOKIE))
    response = Response(status_code=204)
    sessions.clear_cookies(response)
    return response


@router.get("/auth/me", response_model=MeOut)
def me(principal: CurrentPrincipal, conn: Conn) -> MeOut:
    """Who the credentials say the caller is: roles, organisation and sites."""
    sites = None
    if principal.scope.site_ids is not None:
        rows = conn.execute(
            "SELECT site_code FROM sites WHERE id = ANY(%s) ORDER BY site_code", (list(principal.scope.site_ids),)
        ).fetchall()
        sites = [str(r[0]) for r in rows]
    return MeOut(
        subject=principal.subject,
        display_name=principal.display_name,
        roles=sorted(principal.roles),
        organisation=principal.scope.organisation_code,
        sites=sites,
    )
