"""OIDC bearer tokens against a real issuer: a key pair made here, its JWKS and discovery document served by a real
HTTP server on loopback, tokens signed with PyJWT, verified by the API (api/auth/oidc.py) on a real database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from psycopg_pool import ConnectionPool

from lccm.api.app import create_app
from lccm.settings import Settings
from tests._auth import TestClient, add_organisation
from tests._db import REGISTRY_HEADER_EN, REGISTRY_ROWS, fresh_database, registry_csv

AUDIENCE = "lccm-api"


@dataclass
class Issuer:
    url: str
    rsa_key: rsa.RSAPrivateKey
    ec_key: ec.EllipticCurvePrivateKey
    requests: list[str]

    def token(self, key: Any = None, kid: str = "rsa-1", alg: str = "RS256", **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": "0b6f-somchai",
            "name": "Somchai Jaidee",
            "iat": now,
            "exp": now + 300,
            "realm_access": {"roles": ["environment_officer", "offline_access"]},
            "lccm_org": "lampang",
        }
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, key or self.rsa_key, algorithm=alg, headers={"kid": kid})


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    jwks = {
        "keys": [
            {**json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key())), "kid": "rsa-1", "use": "sig", "alg": "RS256"},
            {**json.loads(ECAlgorithm.to_jwk(ec_key.public_key())), "kid": "ec-1", "use": "sig", "alg": "ES256"},
        ]
    }
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            base = f"http://{self.headers['Host']}/realms/lampang"
            docs = {
                "/realms/lampang/.well-known/openid-configuration": {"issuer": base, "jwks_uri": f"{base}/certs"},
                "/realms/lampang/certs": jwks,
            }
            body = json.dumps(docs.get(self.path, {})).encode()
            self.send_response(200 if self.path in docs else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Issuer(f"http://127.0.0.1:{server.server_address[1]}/realms/lampang", rsa_key, ec_key, requests)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def client(issuer: Issuer) -> Iterator[TestClient]:
    with fresh_database() as url:
        add_organisation(url, "khonkaen")
        import psycopg

        from lccm.imports.registry import parse_registry_csv
        from lccm.store.devices import import_registry

        with psycopg.connect(url) as conn:
            import_registry(conn, parse_registry_csv(registry_csv(REGISTRY_HEADER_EN, REGISTRY_ROWS)))
        settings = Settings(database_url=url, oidc_issuer=issuer.url, oidc_audience=AUDIENCE)
        with (
            ConnectionPool(url, min_size=1, max_size=3, open=True) as pool,
            TestClient(create_app(settings, pool)) as c,
        ):
            yield c


def _me(client: TestClient, token: str) -> Any:
    return client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})


def test_a_good_token_is_the_principal_it_says(client: TestClient, issuer: Issuer) -> None:
    answer = _me(client, issuer.token())
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "subject": f"oidc:{issuer.url}#0b6f-somchai",
        "display_name": "Somchai Jaidee",
        "roles": ["environment_officer"],  # offline_access is Keycloak's, not ours: ignored
        "organisation": "lampang",
        "sites": None,
    }
    # The JWKS address came from the issuer's discovery document, fetched at the first token.
    assert "/realms/lampang/.well-known/openid-configuration" in issuer.requests


def test_an_es256_token_and_site_claims(client: TestClient, issuer: Issuer) -> None:
    answer = _me(client, issuer.token(issuer.ec_key, kid="ec-1", alg="ES256", lccm_sites=["HALL"]))
    assert answer.status_code == 200, answer.text
    assert answer.json()["sites"] == ["HALL"]


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not yet valid"),
        ({"iss": "https://evil.example/realms/lampang"}, "issuer"),
        ({"aud": "someone-else"}, "audience"),
        ({"lccm_org": None}, "no organisation"),
        ({"lccm_org": "atlantis"}, "not known here"),
        ({"lccm_sites": ["NOWHERE"]}, "unknown sites"),
        ({"sub": None}, "sub"),
    ],
)
def test_a_token_that_does_not_hold_is_401(
    client: TestClient, issuer: Issuer, claims: dict[str, Any], why: str
) -> None:
    answer = _me(client, issuer.token(**claims))
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"].startswith('Bearer realm="lccm", error="invalid_token"')
    assert why.lower() in answer.json()["detail"].lower()


def test_a_token_signed_with_another_key_is_401(client: TestClient, issuer: Issuer) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    answer = _me(client, issuer.token(stranger))  # same kid, wrong key
    assert answer.status_code == 401
    assert "Signature verification failed" in answer.json()["detail"]


def test_symmetric_and_unsigned_tokens_are_refused(client: TestClient, issuer: Issuer) -> None:
    # HS256 keyed with the public key's PEM: the classic confusion attack; and alg none.
    from cryptography.hazmat.primitives import serialization

    public_pem = issuer.rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    claims = {"iss": issuer.url, "aud": AUDIENCE, "sub": "x", "exp": now + 60, "lccm_org": "lampang"}
    hs = _hs256(claims, public_pem)  # PyJWT itself refuses to make one, so it is made by hand
    unsigned = jwt.encode(claims, "", algorithm="none")
    for token in (hs, unsigned):
        answer = _me(client, token)
        assert answer.status_code == 401
        assert "is not accepted" in answer.json()["detail"]


def _hs256(claims: dict[str, Any], secret: bytes) -> str:
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    header = json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode()
    signing_input = f"{b64(header)}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_roles_of_the_provider_alone_grant_nothing(client: TestClient, issuer: Issuer) -> None:
    token = issuer.token(realm_access={"roles": ["mayor", "offline_access"]})
    assert _me(client, token).status_code == 403
    assert client.get("/sites", headers={"Authorization": f"Bearer {token}"}).status_code == 403


def test_a_role_is_held_to_its_policy(client: TestClient, issuer: Issuer) -> None:
    token = {"Authorization": f"Bearer {issuer.token()}"}  # environment_officer
    assert client.get("/alert-rules", headers=token).status_code == 200
    assert client.get("/dead-letters", headers=token).status_code == 403
    assert client.get("/organisations/khonkaen/years", headers=token).status_code == 404  # another organisation
