"""A stand-in for EMQX's REST API for its built-in identity database, for tests/test_emqx_admin.py: no EMQX runs here.

It implements the contract as EMQX's source states it at tag v5.8.6 (github.com/emqx/emqx), independently of
ingest/emqx_admin.py:

- apps/emqx_dashboard/src/emqx_dashboard.erl ``authorize/1`` and ``api_key_authorize/3``: basic auth with an API key
  and secret; no or another scheme is 401 AUTHORIZATION_HEADER_ERROR, a wrong pair 401 BAD_API_KEY_OR_SECRET.
- apps/emqx_auth/src/emqx_authn/emqx_authn_api.erl: the authenticator's configuration with its ``id``
  (``list_authenticator/3``); users: POST 201 / 409 ALREADY_EXISTS "User already exists", GET / PUT 200,
  DELETE 204, a missing user 404 NOT_FOUND "User not found"; a missing authenticator 404 NOT_FOUND
  "Authenticator '<id>' does not exist"; a missing field 400 BAD_REQUEST "Missing required parameter: ...".
- apps/emqx_auth/src/emqx_authn/emqx_authn_user_import_api.erl and apps/emqx_auth_mnesia/src/emqx_authn_mnesia.erl:
  import_users with ``type=plain`` and a JSON list: one transaction, existing entries replaced (override), counts
  ``total, success, override, skipped, failed``; an empty list 400; a malformed entry fails the whole request (400).
- apps/emqx_management/src/emqx_mgmt_api_clients.erl, emqx_mgmt.erl ``kickout_clients/1``: POST
  /api/v5/clients/kickout/bulk with a list of client ids disconnects those connected, passes over the others, 204.
- apps/emqx_auth/src/emqx_authn/emqx_authn_password_hashing.erl: sha256 with the salt as prefix (what
  deploy/emqx/emqx.conf sets), the salt 16 random bytes in hex; ``verify`` checks a password as EMQX does at CONNECT.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

AUTHN_ID = "password_based:built_in_database"


@dataclass
class FakeEmqx:
    api_key: str
    api_secret: str
    user_id_type: str = "clientid"
    has_authenticator: bool = True
    users: dict[str, tuple[str, str]] = field(default_factory=dict)  # user id -> (salt, sha256 hex of salt+password)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of authorised requests
    connected: set[str] = field(default_factory=set)  # client ids with an open connection (set by a test)
    kicked: list[str] = field(default_factory=list)  # connected client ids the API disconnected, in order
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def verify(self, user_id: str, password: str) -> bool:
        """What EMQX checks at CONNECT for this client id and password."""
        with self.lock:
            entry = self.users.get(user_id)
        return entry is not None and hashlib.sha256((entry[0] + password).encode()).hexdigest() == entry[1]

    def _put(self, user_id: str, password: str) -> None:
        salt = secrets.token_hex(16)
        self.users[user_id] = (salt, hashlib.sha256((salt + password).encode()).hexdigest())

    # -- the API: (status, body) ---------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if path == "/api/v5/clients/kickout/bulk" and method == "POST":
            if not isinstance(body, list) or not all(isinstance(c, str) for c in body):
                return 400, {"code": "BAD_REQUEST", "message": "a list of client ids"}
            with self.lock:
                self.kicked += [c for c in body if c in self.connected]
                self.connected -= set(body)
            return 204, None
        prefix = "/api/v5/authentication/"
        if not path.startswith(prefix):
            return 404, {"code": "NOT_FOUND", "message": "Request Path Not Found"}
        parts = [unquote(p) for p in path[len(prefix) :].split("/")]
        authn_id, rest = parts[0], parts[1:]
        if authn_id != AUTHN_ID or not self.has_authenticator:
            return 404, {"code": "NOT_FOUND", "message": f"Authenticator '{authn_id}' does not exist"}
        with self.lock:
            if not rest and method == "GET":
                config = {
                    "id": AUTHN_ID,
                    "mechanism": "password_based",
                    "backend": "built_in_database",
                    "user_id_type": self.user_id_type,
                    "password_hash_algorithm": {"name": "sha256", "salt_position": "prefix"},
                    "enable": True,
                }
                return 200, config
            if rest == ["users"] and method == "POST":
                return self._create(body)
            if rest == ["import_users"] and method == "POST":
                return self._import(query, body)
            if len(rest) == 2 and rest[0] == "users":
                return self._user(method, rest[1], body)
        return 405, {"code": "METHOD_NOT_ALLOWED", "message": "Method Not Allowed"}

    def _create(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or "user_id" not in body:
            return 400, {"code": "BAD_REQUEST", "message": "Missing required parameter: user_id"}
        if "password" not in body:
            return 400, {"code": "BAD_REQUEST", "message": "Missing required parameter: password"}
        if body["user_id"] in self.users:
            return 409, {"code": "ALREADY_EXISTS", "message": "User already exists"}
        self._put(body["user_id"], body["password"])
        return 201, {"user_id": body["user_id"], "is_superuser": bool(body.get("is_superuser", False))}

    def _user(self, method: str, user_id: str, body: Any) -> tuple[int, Any]:
        if user_id not in self.users:
            return 404, {"code": "NOT_FOUND", "message": "User not found"}
        if method == "GET":
            return 200, {"user_id": user_id, "is_superuser": False}
        if method == "PUT":
            if not isinstance(body, dict) or not ({"password", "is_superuser"} & set(body)):
                return 400, {"code": "BAD_REQUEST", "message": "Missing required parameter: password"}
            if "password" in body:
                self._put(user_id, body["password"])
            return 200, {"user_id": user_id, "is_superuser": bool(body.get("is_superuser", False))}
        if method == "DELETE":
            del self.users[user_id]
            return 204, None
        return 405, {"code": "METHOD_NOT_ALLOWED", "message": "Method Not Allowed"}

    def _import(self, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if query.get("type", ["hash"]) != ["plain"]:
            return 400, {"code": "BAD_REQUEST", "message": "this stand-in implements type=plain only"}
        if not isinstance(body, list) or not body:
            return 400, {"code": "BAD_REQUEST", "message": "empty_users"}
        if not all(isinstance(u, dict) and "user_id" in u and "password" in u for u in body):
            return 400, {"code": "BAD_REQUEST", "message": '"plain_import_requires_password_field"'}
        counts = {"success": 0, "skipped": 0, "override": 0, "failed": 0}
        for u in body:  # one transaction: the lock is held for the whole list
            counts["override" if u["user_id"] in self.users else "success"] += 1
            self._put(u["user_id"], u["password"])
        return 200, {**counts, "total": len(body)}


def _handler(fake: FakeEmqx) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, body = self._answer(method, raw)
            payload = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic Realm="emqx-dashboard"')
            if payload:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _answer(self, method: str, raw: bytes) -> tuple[int, Any]:
            scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() != "basic":
                return 401, {"code": "AUTHORIZATION_HEADER_ERROR", "message": "Support authorization: basic/bearer "}
            key, _, secret = base64.b64decode(token).decode().partition(":")
            if (key, secret) != (fake.api_key, fake.api_secret):
                return 401, {"code": "BAD_API_KEY_OR_SECRET", "message": "Check api_key/api_secret"}
            split = urlsplit(self.path)
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                return 400, {"code": "BAD_REQUEST", "message": "invalid json"}
            fake.requests.append((method, split.path))
            return fake.handle(method, split.path, parse_qs(split.query), body)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def log_message(self, *_args: Any) -> None:
            pass

    return Handler


@contextmanager
def fake_emqx(**kwargs: Any) -> Iterator[FakeEmqx]:
    fake = FakeEmqx(
        api_key=kwargs.pop("api_key", "lccm-setup"), api_secret=kwargs.pop("api_secret", "s3cret"), **kwargs
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
