"""OIDC bearer tokens (JWT), verified with PyJWT against the issuer's JWKS.

Checked: the signature with a key of the issuer's JWKS (by ``kid``), the algorithm against an allow-list of
asymmetric ones (never ``none`` nor HS*: a public key must not become an HMAC secret), ``iss`` exactly, ``aud``
containing the configured audience, ``exp`` and ``nbf`` (30 s leeway for clock skew); ``sub`` and ``exp`` must be
present. The JWKS address comes from the setting or, lazily at the first token, from the issuer's
``/.well-known/openid-configuration``; PyJWKClient caches the keys and fetches them again for an unknown ``kid``
(key rotation).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from jwt import PyJWKClient

ALGORITHMS = ["RS256", "ES256"]
LEEWAY_S = 30
_FETCH_TIMEOUT_S = 5.0


class InvalidToken(Exception):
    """The token is not one this API accepts; the message says why (for the 401's detail)."""


class ProviderUnavailable(Exception):
    """The identity provider's discovery document or keys could not be fetched."""


@dataclass(frozen=True, slots=True)
class OidcConfig:
    issuer: str
    audience: str
    jwks_url: str = ""
    roles_claim: str = "realm_access.roles"
    org_claim: str = "lccm_org"
    sites_claim: str = "lccm_sites"


def claim(claims: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path ("realm_access.roles"), or None."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


class OidcVerifier:
    def __init__(self, config: OidcConfig) -> None:
        self.config = config
        self._client: PyJWKClient | None = None
        self._lock = threading.Lock()

    def _jwks(self) -> PyJWKClient:
        with self._lock:
            if self._client is None:
                url = self.config.jwks_url or _discover_jwks_url(self.config.issuer)
                self._client = PyJWKClient(url, cache_keys=True, lifespan=300, timeout=int(_FETCH_TIMEOUT_S))
            return self._client

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, once everything above holds."""
        try:
            alg = jwt.get_unverified_header(token).get("alg")
            if alg not in ALGORITHMS:
                raise InvalidToken(f"algorithm {alg!r} is not accepted (only {', '.join(ALGORITHMS)})")
            key = self._jwks().get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWKClientConnectionError as exc:
            raise ProviderUnavailable(f"the identity provider's keys cannot be fetched: {exc}") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc) or type(exc).__name__) from exc
        return claims


def _discover_jwks_url(issuer: str) -> str:
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        answer = httpx.get(url, timeout=_FETCH_TIMEOUT_S)
        answer.raise_for_status()
        jwks_uri = answer.json().get("jwks_uri")
    except (httpx.HTTPError, ValueError) as exc:
        raise ProviderUnavailable(f"cannot read {url}: {exc}") from exc
    if not isinstance(jwks_uri, str) or not jwks_uri:
        raise ProviderUnavailable(f"{url} names no jwks_uri")
    return jwks_uri
