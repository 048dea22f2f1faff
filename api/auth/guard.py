"""The one place a request is authenticated and checked against its route's policy (api/policy.py).

``authorize`` is an app-level dependency of every route (api/app.py). It finds the matched route's policy; for a
non-public one it reads the caller's credentials, in this order:

1. ``X-API-Key: lccm_...`` or ``Authorization: Bearer lccm_...``: an API key (its SHA-256 digest is looked up);
2. ``Authorization: Bearer <JWT>``: an OIDC token (api/auth/oidc.py), when LCCM_OIDC_ISSUER is set;
3. the ``lccm_session`` cookie of a local account's login; unsafe methods must also send the session's CSRF token
   in ``X-CSRF-Token`` (a cross-site form cannot read it, so it cannot send it).

It leaves the ``Principal`` on ``request.state.principal``, then refuses a role the policy does not allow (403);
``own_organisation`` answers another organisation's ``/organisations/{code}`` with 404, as if it did not exist. No or
bad credentials: 401 with ``WWW-Authenticate: Bearer``, except on a web page (``Access.PAGE``): a browser is sent to
``/login`` with a 303 (``LoginRequired``), and a logged-in caller without the page's roles gets a 403 page
(``PageForbidden``) rather than JSON.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from fastapi import Request
from psycopg_pool import ConnectionPool

from lccm.api.auth.credentials import API_KEY_PREFIX, digest
from lccm.api.auth.oidc import InvalidToken, OidcVerifier, ProviderUnavailable, claim
from lccm.api.errors import Forbidden, IdentityProviderDown, LoginRequired, PageForbidden, Unauthenticated
from lccm.api.policy import ORGANISATION_PREFIX, Access, policy_for
from lccm.api.principal import Principal, Role, Scope
from lccm.store import identity
from lccm.store.inventory import UnknownOrganisation

log = logging.getLogger(__name__)

SESSION_COOKIE = "lccm_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """What the identity layer needs of the settings (api/app.py builds it)."""

    oidc: OidcVerifier | None
    public_aqi: bool = False
    session_ttl_s: float = 8 * 3600.0
    session_cookie_secure: bool = True
    login_lockout_after: int = 5
    login_lockout_s: float = 900.0


def authorize(request: Request) -> None:
    path = str(getattr(request.scope.get("route"), "path", ""))
    method = "GET" if request.method == "HEAD" else request.method  # HEAD is answered by the GET route
    policy = policy_for(method, path)
    if policy is None:  # create_app refuses such an app; a route added after it (a test) is refused here
        raise Forbidden(f"{request.method} {path or request.url.path} has no access policy")
    config: AuthConfig = request.app.state.auth
    if policy.is_public(config.public_aqi):
        return
    try:
        principal = authenticate(request, config)
    except Unauthenticated as exc:
        if policy.access is Access.PAGE:  # a person at a browser: to the login form, not a JSON 401
            raise LoginRequired(exc.message) from exc
        raise
    request.state.principal = principal
    if not policy.allows(principal.roles):
        have = ", ".join(sorted(principal.roles)) or "no role of this API"
        if policy.access is Access.PAGE:
            raise PageForbidden(f"{path} needs one of the roles {_names(policy.roles)}; you have {have}", policy.roles)
        raise Forbidden(f"{request.method} {path} needs one of the roles {_names(policy.roles)}; you have {have}")


def own_organisation(request: Request) -> None:
    """Another organisation's ``/organisations/{code}`` is 404, as if it did not exist (no hint that it does).
    An app-level dependency after ``authorize`` and the input check, so a malformed code is still a 422."""
    path = str(getattr(request.scope.get("route"), "path", ""))
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None or not path.startswith(ORGANISATION_PREFIX):
        return
    code = request.path_params.get("code")
    if code != principal.scope.organisation_code:
        raise UnknownOrganisation(str(code), [principal.scope.organisation_code])


def _names(roles: frozenset[Role]) -> str:
    return ", ".join(r.value for r in Role if r in roles)


def authenticate(request: Request, config: AuthConfig) -> Principal:
    pool: ConnectionPool = request.state.pool
    api_key = request.headers.get("x-api-key")
    if api_key:
        return _api_key(pool, api_key)
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("send credentials as 'Authorization: Bearer <token or API key>'")
        if token.startswith(API_KEY_PREFIX):
            return _api_key(pool, token)
        return _oidc(pool, config, token)
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        return _session(pool, request, session)
    raise Unauthenticated(
        "this route needs credentials: an OIDC bearer token, an API key (Authorization: Bearer lccm_... or "
        "X-API-Key) or a session from POST /auth/login"
    )


def _roles(names: Any) -> frozenset[Role]:
    """The roles of this API among ``names``; others (an identity provider's own) are ignored."""
    known = {r.value for r in Role}
    return frozenset(Role(n) for n in names or () if isinstance(n, str) and n in known)


def _principal(subject: str, name: str, row: identity.UserRow | identity.ApiKeyRow) -> Principal:
    sites = None if row.site_ids is None else frozenset(row.site_ids)
    scope = Scope(row.organisation_id, sites, row.organisation_code)
    return Principal(subject, name, _roles(row.roles), scope)


def _api_key(pool: ConnectionPool, key: str) -> Principal:
    with pool.connection() as conn:
        row = identity.api_key_by_digest(conn, digest(key.strip()))
    if row is None:
        raise Unauthenticated("unknown or revoked API key", error="invalid_token")
    return _principal(f"key:{row.key_id}", f"API key {row.name}", row)


def _session(pool: ConnectionPool, request: Request, token: str) -> Principal:
    with pool.connection() as conn:
        found = identity.session_user(conn, digest(token))
    if found is None:
        raise Unauthenticated("the session has expired or ended; log in again (POST /auth/login)")
    user, csrf_digest = found
    if request.method not in _SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER.lower(), "")
        if not sent or not hmac.compare_digest(digest(sent), csrf_digest):
            raise Forbidden(f"a change made with a session cookie needs the session's CSRF token in {CSRF_HEADER}")
    return _principal(f"user:{user.username}", user.display_name, user)


def _oidc(pool: ConnectionPool, config: AuthConfig, token: str) -> Principal:
    if config.oidc is None:
        raise Unauthenticated(
            "not an API key, and no OIDC issuer is configured (LCCM_OIDC_ISSUER)", error="invalid_token"
        )
    try:
        claims = config.oidc.verify(token)
    except InvalidToken as exc:
        raise Unauthenticated(f"invalid token: {exc}", error="invalid_token") from exc
    except ProviderUnavailable as exc:
        log.warning("OIDC: %s", exc)
        raise IdentityProviderDown(str(exc)) from exc
    return _from_claims(pool, config.oidc, claims)


def _from_claims(pool: ConnectionPool, verifier: OidcVerifier, claims: Mapping[str, Any]) -> Principal:
    cfg = verifier.config
    org_code = claim(claims, cfg.org_claim)
    if not isinstance(org_code, str) or not org_code:
        raise Unauthenticated(f"the token carries no organisation (claim {cfg.org_claim!r})", error="invalid_token")
    site_codes = claim(claims, cfg.sites_claim)
    with pool.connection() as conn:
        org_id = identity.organisation_id(conn, org_code)
        if org_id is None:
            raise Unauthenticated(f"the token's organisation {org_code!r} is not known here", error="invalid_token")
        sites = _site_ids(conn, org_id, org_code, site_codes)
    name = next((str(v) for k in ("name", "preferred_username", "sub") if (v := claims.get(k))), "")
    roles = _roles(claim(claims, cfg.roles_claim))
    subject = f"oidc:{claims['iss']}#{claims['sub']}"
    return Principal(subject, name, roles, Scope(org_id, sites, org_code))


def _site_ids(conn: psycopg.Connection, org_id: int, org_code: str, codes: Any) -> frozenset[int] | None:
    if codes is None:
        return None  # no sites claim: every site of the organisation
    if isinstance(codes, str):
        codes = [codes]
    try:
        return frozenset(identity.site_ids(conn, org_id, org_code, [str(c) for c in codes]))
    except identity.UnknownSite as exc:
        raise Unauthenticated(f"the token names unknown sites: {exc}", error="invalid_token") from exc
