"""The admin API for local accounts and API keys, within the admin's organisation (api/policy.py: admin only).
Passwords and keys are never returned, except a new key, once, in the answer that creates it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from lccm.api.audit import actor
from lccm.api.auth import accounts
from lccm.api.deps import Conn, _require_offset
from lccm.api.errors import Forbidden
from lccm.api.observability import REQUEST_ID
from lccm.api.principal import CurrentPrincipal, Principal, Role
from lccm.api.schemas import UtcTime
from lccm.store import audit, identity


def _whole_organisation(principal: CurrentPrincipal) -> None:
    """Accounts, keys and the audit log are the whole organisation's: an administrator limited to some sites could
    otherwise give a new account (or key) every site, and read changes made elsewhere."""
    if principal.scope.site_ids is not None:
        raise Forbidden("administering accounts, keys and the audit log needs an administrator of every site")


router = APIRouter(tags=["identity"], dependencies=[Depends(_whole_organisation)])


class UserOut(BaseModel):
    username: str
    display_name: str
    organisation: str
    roles: list[Role]
    sites: list[str] | None = Field(description="site codes the user is limited to; null: every site")
    disabled: bool
    locked_until: UtcTime | None
    created_at: UtcTime
    updated_at: UtcTime


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    display_name: str | None = Field(default=None, max_length=200)
    password: str = Field(min_length=1, max_length=1024)
    roles: list[Role] = Field(min_length=1)
    sites: list[str] | None = None


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    display_name: str | None = Field(default=None, min_length=1, max_length=200)
    roles: list[Role] | None = Field(default=None, min_length=1)
    sites: list[str] | None = Field(default=None, description="null: every site (send it to lift a limit)")
    disabled: bool | None = None
    password: str | None = Field(default=None, min_length=1, max_length=1024)


class ApiKeyOut(BaseModel):
    key_id: str
    name: str
    organisation: str
    roles: list[Role]
    sites: list[str] | None
    created_by: str
    created_at: UtcTime
    last_used_at: UtcTime | None
    revoked_at: UtcTime | None


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    roles: list[Role] = Field(min_length=1)
    sites: list[str] | None = None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="the key: shown this once, stored only as a hash")


def _user_out(u: identity.UserRow) -> UserOut:
    return UserOut(username=u.username, display_name=u.display_name, organisation=u.organisation_code,
                   roles=sorted(Role(r) for r in u.roles), sites=u.site_codes, disabled=u.disabled,
                   locked_until=u.locked_until, created_at=u.created_at, updated_at=u.updated_at)  # fmt: skip


def _key_out(k: identity.ApiKeyRow) -> dict[str, Any]:
    return {"key_id": k.key_id, "name": k.name, "organisation": k.organisation_code,
            "roles": sorted(Role(r) for r in k.roles), "sites": k.site_codes, "created_by": k.created_by,
            "created_at": k.created_at, "last_used_at": k.last_used_at, "revoked_at": k.revoked_at}  # fmt: skip


def _change(request: Request, principal: Principal) -> accounts.Change:
    return accounts.Change(actor(principal), f"{request.method} {request.scope['route'].path}", REQUEST_ID.get())


def _invalid(exc: accounts.AccountInvalid) -> JSONResponse:
    detail = [{"type": "account_invalid", "loc": ["body", exc.field], "msg": str(exc)}]
    return JSONResponse(status_code=422, content={"detail": detail})


@router.get("/users", response_model=list[UserOut])
def list_users(conn: Conn, principal: CurrentPrincipal) -> list[UserOut]:
    """The local accounts of your organisation."""
    return [_user_out(u) for u in identity.list_users(conn, principal.scope.organisation_id)]


@router.post("/users", response_model=UserOut, status_code=201, responses={409: {"description": "username taken"}})
def add_user(body: UserIn, conn: Conn, principal: CurrentPrincipal, request: Request) -> UserOut | JSONResponse:
    """Add a local account to your organisation."""
    try:
        row = accounts.add_user(
            conn,
            _change(request, principal),
            username=body.username,
            display_name=body.display_name,
            password=body.password,
            organisation=principal.scope.organisation_code,
            roles=body.roles,
            sites=body.sites,
        )
    except accounts.AccountInvalid as exc:
        return _invalid(exc)
    return _user_out(row)


@router.patch("/users/{username}", response_model=UserOut, responses={404: {"description": "no such user here"}})
def patch_user(
    username: str, body: UserPatch, conn: Conn, principal: CurrentPrincipal, request: Request
) -> UserOut | JSONResponse:
    """Change a user's name, roles, sites, password or disabled flag; disabling or a new password ends their
    sessions."""
    extra: dict[str, Any] = {"sites": body.sites} if "sites" in body.model_fields_set else {}
    try:
        row = accounts.update_user(
            conn,
            _change(request, principal),
            username,
            organisation_id=principal.scope.organisation_id,
            display_name=body.display_name,
            roles=body.roles,
            disabled=body.disabled,
            password=body.password,
            **extra,
        )
    except accounts.AccountInvalid as exc:
        return _invalid(exc)
    return _user_out(row)


@router.get("/api-keys", response_model=list[ApiKeyOut])
def list_api_keys(conn: Conn, principal: CurrentPrincipal) -> list[dict[str, Any]]:
    """Your organisation's API keys (never the keys themselves), with their last use."""
    return [_key_out(k) for k in identity.list_api_keys(conn, principal.scope.organisation_id)]


@router.post("/api-keys", response_model=ApiKeyCreated, status_code=201)
def create_api_key(
    body: ApiKeyIn, conn: Conn, principal: CurrentPrincipal, request: Request
) -> dict[str, Any] | JSONResponse:
    """A key for a machine client of your organisation; the answer carries the key, this once."""
    try:
        key, row = accounts.create_api_key(conn, _change(request, principal), name=body.name,
                                           organisation=principal.scope.organisation_code, roles=body.roles,
                                           sites=body.sites)  # fmt: skip
    except accounts.AccountInvalid as exc:
        return _invalid(exc)
    return {**_key_out(row), "key": key}


@router.delete("/api-keys/{key_id}", response_model=ApiKeyOut, responses={404: {"description": "no such key here"}})
def revoke_api_key(key_id: str, conn: Conn, principal: CurrentPrincipal, request: Request) -> dict[str, Any]:
    """Revoke a key: refused from its next request on."""
    row = accounts.revoke_api_key(conn, _change(request, principal), key_id, principal.scope.organisation_id)
    return _key_out(row)


# --- the audit log ---------------------------------------------------------------------------------------------


class AuditEntryOut(BaseModel):
    id: int
    at: UtcTime
    organisation: str | None
    actor_subject: str
    actor_name: str
    action: str = Field(description='the route ("PUT /organisations/{code}") or the command ("lccm users add")')
    target: str
    before: Any
    after: Any
    request_id: str | None


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: int | None = Field(description="pass as `before` for the next (older) page; null: no more")


_OFFSET = AfterValidator(_require_offset)


@router.get("/audit", response_model=AuditPage)
def audit_log(
    conn: Conn,
    principal: CurrentPrincipal,
    since: Annotated[datetime | None, Query(description="from this time (ISO 8601 with offset)"), _OFFSET] = None,
    until: Annotated[datetime | None, Query(description="before this time"), _OFFSET] = None,
    actor_: Annotated[str | None, Query(alias="actor", max_length=500, description="subject or display name")] = None,
    action: Annotated[str | None, Query(max_length=500, description="prefix, e.g. 'PUT /organisations'")] = None,
    target: Annotated[str | None, Query(max_length=500, description="prefix of the target, e.g. 'user:'")] = None,
    before: Annotated[int | None, Query(ge=1, le=2**62, description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """Your organisation's changes, newest first."""
    rows = audit.entries(conn, organisation_id=principal.scope.organisation_id, since=since, until=until,
                         actor=actor_, action=action, target=target, before_id=before, limit=limit + 1)  # fmt: skip
    page = rows[:limit]
    items = [AuditEntryOut(organisation=e.organisation_code, **{k: getattr(e, k) for k in _ENTRY_FIELDS}) for e in page]
    return AuditPage(items=items, next_cursor=page[-1].id if len(rows) > limit else None)


_ENTRY_FIELDS = ("id", "at", "actor_subject", "actor_name", "action", "target", "before", "after", "request_id")
