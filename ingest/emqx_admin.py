"""EMQX's REST API for its built-in identity database: the EMQX counterpart of ingest/broker_admin.py.

The scale-out stack (docker-compose.scale.yml, deploy/emqx/emqx.conf) authenticates every MQTT client against EMQX's
built-in database keyed by client id (``user_id_type = clientid``): a user id there IS a client id. This module
creates, replaces and deletes those entries over the dashboard's REST API, authenticated with an API key and secret
(HTTP basic auth; the key comes from ``api_key.bootstrap_file``, deploy/emqx/emqx.conf).

The contract, from EMQX's own source at tag v5.8.6 (github.com/emqx/emqx):

- ``apps/emqx_auth/src/emqx_authn/emqx_authn_api.erl``: ``GET /api/v5/authentication/{id}`` answers the
  authenticator's configuration (``mechanism``, ``backend``, ``user_id_type``, ...) or 404;
  ``POST .../{id}/users`` with ``{"user_id", "password", "is_superuser"}`` answers 201 and
  ``{"user_id", "is_superuser"}``, or 409 ``ALREADY_EXISTS`` ("User already exists");
  ``GET|PUT|DELETE .../{id}/users/{user_id}`` answer 200 / 200 / 204, or 404 ``NOT_FOUND`` ("User not found");
  a missing authenticator is 404 ``NOT_FOUND`` ("Authenticator '...' does not exist"); other refusals 400
  ``BAD_REQUEST``. Every error body is ``{"code": ..., "message": ...}``.
- ``apps/emqx_auth/src/emqx_authn/emqx_authn_user_import_api.erl`` and
  ``apps/emqx_auth_mnesia/src/emqx_authn_mnesia.erl``: ``POST .../{id}/import_users?type=plain`` with a JSON list
  of ``{"user_id", "password", "is_superuser"}`` hashes each password with the authenticator's algorithm and writes
  the whole list in one transaction, replacing existing entries (``override``); it answers 200 and
  ``{"total", "success", "override", "skipped", "failed"}``. An empty list is refused (400), so it is never sent.
- ``apps/emqx_management/src/emqx_mgmt_api_clients.erl`` and ``emqx_mgmt.erl`` (``kickout_clients/1``):
  ``POST /api/v5/clients/kickout/bulk`` with a JSON list of client ids disconnects them on every running node and
  ends their sessions; ids not connected are passed over; it answers 204. A changed password alone does not end a
  connection that is already open, so a rotated device is kicked (mosquitto's plugin does this itself).
- ``apps/emqx_dashboard/src/emqx_dashboard.erl`` (``authorize/1``): basic auth is an API key and secret; a wrong
  pair is 401 ``BAD_API_KEY_OR_SECRET``, a role without the right 403 ``UNAUTHORIZED_ROLE``.

NOT RUN AGAINST EMQX: no EMQX runs on the machines this project is built and tested on. tests/test_emqx_admin.py
runs this module against a small HTTP server implementing the contract above.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from lccm.ingest.broker_admin import BrokerAdminError

# mechanism:backend, the id EMQX gives the authenticator deploy/emqx/emqx.conf configures (emqx_authn_chains.erl,
# authenticator_id/1).
AUTHENTICATOR_ID = "password_based:built_in_database"
# Entries per import_users request: one EMQX transaction each; a city's first import of a few thousand devices is a
# few requests, and no single transaction holds a whole province.
IMPORT_BATCH = 1000


class EmqxApiError(BrokerAdminError):
    """EMQX answered a request with an error: its HTTP status and its ``{"code", "message"}`` body."""

    def __init__(self, what: str, status: int, code: str, message: str) -> None:
        super().__init__(f"EMQX refused {what}: HTTP {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class EmqxUserExists(EmqxApiError):
    """Create of a user id that is already in the database (409 ALREADY_EXISTS)."""


class EmqxUserMissing(EmqxApiError):
    """Change or delete of a user id that is not in the database (404 NOT_FOUND)."""


@dataclass(frozen=True, slots=True)
class EmqxAdminConfig:
    api_url: str  # the dashboard listener, e.g. http://emqx:18083 (the /api/v5 prefix is added here)
    api_key: str
    api_secret: str
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class ImportCounts:
    total: int
    success: int  # new entries
    override: int  # existing entries replaced
    skipped: int  # identical entries (never with plain passwords: every hash gets a new salt)
    failed: int


class EmqxAdmin:
    """A short-lived admin session: ``with EmqxAdmin(cfg) as emqx: emqx.import_users({...})``. Entering checks that
    the built-in database authenticator exists and is keyed by client id, as lccm's identities need."""

    def __init__(self, cfg: EmqxAdminConfig) -> None:
        self._cfg = cfg
        self._http: httpx.Client | None = None

    def __enter__(self) -> EmqxAdmin:
        self.connect()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def connect(self) -> None:
        cfg = self._cfg
        self._http = httpx.Client(
            base_url=cfg.api_url.rstrip("/") + "/api/v5",
            auth=(cfg.api_key, cfg.api_secret),
            timeout=cfg.timeout_s,
        )
        try:
            authn = self.authenticator()
        except BrokerAdminError:
            self.close()
            raise
        keyed_by = authn.get("user_id_type", "username")  # EMQX's default when the key is absent
        if keyed_by != "clientid":
            self.close()
            raise BrokerAdminError(
                f"EMQX's {AUTHENTICATOR_ID} authenticates by {keyed_by}, not by client id: lccm's identities need "
                "user_id_type = clientid (deploy/emqx/emqx.conf)"
            )

    def close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            http.close()

    # -- the API ---------------------------------------------------------------------------------------------

    def authenticator(self) -> dict[str, Any]:
        return self._json(self._request("GET", _authn_path(), what=f"reading authenticator {AUTHENTICATOR_ID}"))

    def get_user(self, user_id: str) -> dict[str, Any] | None:
        response = self._request("GET", _user_path(user_id), what=f"reading user {user_id!r}", ok=(200, 404))
        return None if response.status_code == 404 else self._json(response)

    def create_user(self, user_id: str, password: str) -> None:
        body = {"user_id": user_id, "password": password, "is_superuser": False}
        self._request("POST", _authn_path() + "/users", json=body, what=f"creating user {user_id!r}", ok=(201,))

    def update_user(self, user_id: str, password: str) -> None:
        body = {"password": password, "is_superuser": False}
        self._request("PUT", _user_path(user_id), json=body, what=f"changing user {user_id!r}", ok=(200,))

    def delete_user(self, user_id: str) -> None:
        self._request("DELETE", _user_path(user_id), what=f"deleting user {user_id!r}", ok=(204,))

    def import_users(self, passwords: Mapping[str, str]) -> ImportCounts:
        """Create or replace every entry (user id -> plain password), IMPORT_BATCH per transaction. Every entry
        must be written: a ``failed`` count raises."""
        items = list(passwords.items())
        totals = ImportCounts(0, 0, 0, 0, 0)
        for start in range(0, len(items), IMPORT_BATCH):
            batch = items[start : start + IMPORT_BATCH]
            body = [{"user_id": u, "password": p, "is_superuser": False} for u, p in batch]
            what = f"importing {len(batch)} user(s) ({batch[0][0]!r}...)"
            answer = self._json(
                self._request("POST", _authn_path() + "/import_users", params={"type": "plain"}, json=body, what=what)
            )
            try:
                counts = ImportCounts(*(int(answer[k]) for k in ("total", "success", "override", "skipped", "failed")))
            except (KeyError, TypeError, ValueError) as exc:
                raise BrokerAdminError(f"EMQX answered {what} with an unexpected body: {answer!r}") from exc
            if counts.failed or counts.total != len(batch):
                raise BrokerAdminError(f"EMQX did not write every entry {what}: {counts}")
            totals = ImportCounts(*(a + b for a, b in zip(_fields(totals), _fields(counts), strict=True)))
        return totals

    def kick_clients(self, client_ids: Sequence[str]) -> None:
        """Disconnect these clients wherever they are connected (their next CONNECT needs the current password)."""
        ids = list(client_ids)
        for start in range(0, len(ids), IMPORT_BATCH):
            batch = ids[start : start + IMPORT_BATCH]
            what = f"disconnecting {len(batch)} client(s) ({batch[0]!r}...)"
            self._request("POST", "/clients/kickout/bulk", json=batch, what=what, ok=(204,))

    # -- plumbing ----------------------------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, *, what: str, ok: tuple[int, ...] = (200,), **kwargs: Any
    ) -> httpx.Response:
        http = self._http
        if http is None:
            raise BrokerAdminError("not connected")
        try:
            response = http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise BrokerAdminError(f"cannot reach EMQX's REST API at {self._cfg.api_url} ({what}): {exc}") from exc
        if response.status_code in ok:
            return response
        code, message = _error_body(response)
        if response.status_code == 409 and code == "ALREADY_EXISTS":
            raise EmqxUserExists(what, response.status_code, code, message)
        if response.status_code == 404 and path.startswith(_authn_path() + "/users/"):
            raise EmqxUserMissing(what, response.status_code, code, message)
        if response.status_code == 401:
            message += " (LCCM_EMQX_API_KEY / LCCM_EMQX_API_SECRET: a key from EMQX's api_key.bootstrap_file)"
        if response.status_code == 404 and path == _authn_path():
            message += f" (deploy/emqx/emqx.conf configures the {AUTHENTICATOR_ID} authenticator)"
        raise EmqxApiError(what, response.status_code, code, message)

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise BrokerAdminError(f"EMQX answered with a body that is not JSON: {response.text[:200]!r}") from exc


def _authn_path() -> str:
    return "/authentication/" + quote(AUTHENTICATOR_ID, safe=":")


def _user_path(user_id: str) -> str:
    return f"{_authn_path()}/users/{quote(user_id, safe='')}"


def _error_body(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:200]
    if isinstance(body, dict):
        return str(body.get("code", "")), str(body.get("message", ""))
    return "", str(body)[:200]


def _fields(c: ImportCounts) -> tuple[int, int, int, int, int]:
    return (c.total, c.success, c.override, c.skipped, c.failed)
