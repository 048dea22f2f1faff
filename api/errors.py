"""The API's exceptions, and the one place they (and the store's domain errors) become HTTP responses.

Routes raise these; nothing below the edge knows about status codes::

    ApiError                      base: a status code, a stable machine-readable code, a message for people
    ├── Unauthenticated           401 not_authenticated, with WWW-Authenticate: Bearer (no or invalid credentials)
    ├── LoginRequired             303 to /login (a web page without a session; api/policy.py Access.PAGE)
    ├── Forbidden                 403 forbidden (a role the route's policy does not allow; a missing CSRF token)
    │   └── PageForbidden         the same for a web page: answered with a 403 page (api/web/errors.py)
    ├── IdentityProviderDown      503 identity_provider_unavailable (the OIDC issuer's keys cannot be fetched)
    ├── NotFound                  404
    │   ├── SiteNotFound
    │   └── DeviceNotFound
    ├── InvalidParameter          422, shaped like FastAPI's own validation errors (one format for bad parameters)
    │   └── ResultTooLarge        the parameters are valid but would select too many rows
    └── PayloadTooLarge           413

Mapped from the stages that raise them (each defined once, there; routes let them through untranslated):

    imports.rows.RowsInvalid                    422 invalid_rows, with the per-row error list (targets, temperatures)
    ├── imports.registry.RegistryInvalid        422 registry_invalid
    └── imports.inventory.InventoryInvalid      422 inventory_invalid (inventory file, activity entries, mappings)
    store.inventory.UnknownOrganisation         404 organisation_not_found
    store.inventory.UnknownReportingYear        404 reporting_year_not_found
    store.baseline.BaselineError                422 baseline_unanswerable (no base year, a model that cannot be fitted)
    └── store.baseline.BaselineNotFound         404 not_found (site, station, M&V model)
    store.assets.AssetNotFound                  404 not_found (a site or device's service dates)
    store.assets.AssetDatesInvalid              422, shaped as InvalidParameter (a field of the body)
    store.alerts.AlertNotFound                  404 alert_not_found
    store.identity.UnknownUser, UnknownApiKey   404 user_not_found, api_key_not_found
    store.identity.UnknownSite                  422 site_not_found (a site given to a user or key)
    store.identity.UserExists                   409 user_exists
    api.principal.NotAuthenticated              401 not_authenticated
    store.alerts.RuleNotFound                   404 alert_rule_not_found
    store.alerts.RuleReadOnly                   409 alert_rule_read_only: a file rule, global, read-only through the API
    store.alerts.AlertStateConflict             409 alert_state_conflict, with the alert's state
    engine.alerts.AlertRulesInvalid             422 alert_rule_invalid, shaped as FastAPI's validation errors (one
                                                entry per problem, ``loc`` naming the field of the body)
    reports.periods.RequestInvalid              422, shaped as InvalidParameter (a parameter of the query)
    psycopg.OperationalError                    503: the database is down or unreachable (psycopg_pool.PoolTimeout too)
    psycopg.Error (any other)                   500 database_error: a statement or the commit failed; nothing written
    any other exception                         500 internal_error (logged with the request id)
    starlette HTTPException 413                 413 payload_too_large: a body over its limit (api/limits.py)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY

from lccm.api.principal import NotAuthenticated
from lccm.engine.alerts import AlertRulesInvalid
from lccm.imports.inventory import InventoryInvalid
from lccm.imports.registry import RegistryInvalid
from lccm.imports.rows import RowsInvalid
from lccm.reports.periods import RequestInvalid
from lccm.store.alerts import AlertNotFound, AlertStateConflict, RuleNotFound, RuleReadOnly
from lccm.store.assets import AssetDatesInvalid, AssetNotFound
from lccm.store.baseline import BaselineError, BaselineNotFound
from lccm.store.identity import UnknownApiKey, UnknownSite, UnknownUser, UserExists
from lccm.store.inventory import UnknownOrganisation, UnknownReportingYear

log = logging.getLogger(__name__)


class ApiError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.message}

    def headers(self) -> dict[str, str] | None:
        return None


class Unauthenticated(ApiError):
    status_code = 401
    code = "not_authenticated"

    def __init__(self, message: str, *, error: str | None = None) -> None:
        super().__init__(message)
        self.error = error  # RFC 6750's error attribute ("invalid_token") for a token that was refused

    def headers(self) -> dict[str, str] | None:
        challenge = 'Bearer realm="lccm"' + (f', error="{self.error}"' if self.error else "")
        return {"WWW-Authenticate": challenge}


class LoginRequired(ApiError):
    """A web page (Access.PAGE) asked for without a valid session: the browser is sent to the login form, where an
    API client would get a 401."""

    status_code = 303
    code = "login_required"

    def __init__(self, message: str, location: str = "/login") -> None:
        super().__init__(message)
        self.location = location

    def headers(self) -> dict[str, str] | None:
        return {"Location": self.location}


class Forbidden(ApiError):
    status_code = 403
    code = "forbidden"


class PageForbidden(Forbidden):
    """A web page (Access.PAGE) the caller's roles do not open: a person at a browser gets a page saying so, in
    their language, with the roles that open it (api/web/errors.py), not a JSON body."""

    def __init__(self, message: str, roles: frozenset[str]) -> None:
        super().__init__(message)
        self.roles = roles


class IdentityProviderDown(ApiError):
    status_code = 503
    code = "identity_provider_unavailable"


class NotFound(ApiError):
    status_code = 404
    code = "not_found"


class SiteNotFound(NotFound):
    code = "site_not_found"

    def __init__(self, site_code: str) -> None:
        super().__init__(f"no site with site_code {site_code!r}")


class DeviceNotFound(NotFound):
    code = "device_not_found"

    def __init__(self, device_id: str) -> None:
        super().__init__(f"no device with device_id {device_id!r} (register it with `lccm devices import`)")


class InvalidParameter(ApiError):
    status_code = 422
    code = "invalid_parameter"

    def __init__(
        self, parameter: str, message: str, *, where: str = "query", loc: Sequence[str | int] | None = None
    ) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.where = where
        # FastAPI's loc: where, then the name, then (inside a body) the path to the value, e.g. body.entries.0.month
        self.loc = list(loc) if loc is not None else [where, parameter]

    def body(self) -> dict[str, Any]:
        return {"detail": [{"type": self.code, "loc": self.loc, "msg": self.message}]}


class ResultTooLarge(InvalidParameter):
    code = "result_too_large"


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "payload_too_large"


# Which setting a body ran into (set by api/limits.py on the request's scope), for the 413's message.
LIMIT_SETTING_KEY = "lccm.body_limit_setting"


def body_too_large(limit: int, setting: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is larger than {limit:,} bytes (setting {setting})")


def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(status_code=exc.status_code, content=exc.body(), headers=exc.headers())


def _not_authenticated(request: Request, exc: Exception) -> JSONResponse:
    return _api_error(request, Unauthenticated(str(exc)))


def _rows(code: str, suffix: str = "") -> Callable[[Request, Exception], JSONResponse]:
    """422 listing the rows' problems, at most Settings.import_max_errors_listed of them (``errors_total`` counts
    all); ``suffix`` says what became of the input."""

    def handler(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RowsInvalid)
        listed = exc.errors[: request.app.state.input_limits.max_errors_listed]
        errors = [{"row": e.row, "column": e.column, "value": e.value, "message": e.message} for e in listed]
        content = {"error": code, "detail": f"{exc!s}{suffix}", "errors": errors, "errors_total": exc.total}
        return JSONResponse(status_code=422, content=content)

    return handler


def _status(status_code: int, code: str) -> Callable[[Request, Exception], JSONResponse]:
    def handler(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=status_code, content={"error": code, "detail": str(exc)})

    return handler


def _request_invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestInvalid)
    return _api_error(_, InvalidParameter(exc.parameter, exc.message))


def _asset_dates_invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AssetDatesInvalid)
    return _api_error(_, InvalidParameter(exc.field, exc.message, where="body"))


def _alert_state_conflict(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AlertStateConflict)
    body = {"error": "alert_state_conflict", "detail": str(exc), "state": str(exc.state)}
    return JSONResponse(status_code=409, content=body)


def _alert_rules_invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AlertRulesInvalid)
    detail = [
        {"type": "alert_rule_invalid", "loc": ["body", *(p for p in e.field.split(".") if p)], "msg": e.message}
        for e in exc.errors
    ]
    return JSONResponse(status_code=422, content={"detail": detail})


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's and FastAPI's own HTTP errors as they are, but a body over its limit (api/limits.py) in the
    API's error shape, naming the limit and its setting."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code != 413:
        return await http_exception_handler(request, exc)
    limit, setting = request.scope.get(MAX_BODY_SIZE_SCOPE_KEY), request.scope.get(LIMIT_SETTING_KEY)
    return _api_error(request, body_too_large(int(limit or 0), str(setting)))


def _database_error(_: Request, exc: Exception) -> JSONResponse:
    """The database refused a statement or the commit: the request's transaction is rolled back (api/deps.py), so
    the client learns that nothing was written."""
    log.error("database error: %s", exc, exc_info=exc)
    content = {"error": "database_error", "detail": "the database refused the operation; nothing was written"}
    return JSONResponse(status_code=500, content=content)


def _internal_error(_: Request, exc: Exception) -> JSONResponse:
    """Anything else: the server's error middleware answers with this (RequestContextMiddleware has logged it with
    its request id), in the same shape as every other error."""
    content = {"error": ApiError.code, "detail": "the server failed to answer; the error is in its log"}
    return JSONResponse(status_code=500, content=content)


def _database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", exc)
    return JSONResponse(
        status_code=503, content={"error": "database_unavailable", "detail": "the database cannot be reached"}
    )


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RowsInvalid, _rows("invalid_rows"))
    app.add_exception_handler(RegistryInvalid, _rows("registry_invalid", "; nothing was imported"))
    app.add_exception_handler(InventoryInvalid, _rows("inventory_invalid", "; nothing was written"))
    app.add_exception_handler(UnknownOrganisation, _status(404, "organisation_not_found"))
    app.add_exception_handler(UnknownReportingYear, _status(404, "reporting_year_not_found"))
    app.add_exception_handler(BaselineError, _status(422, "baseline_unanswerable"))
    app.add_exception_handler(BaselineNotFound, _status(404, "not_found"))
    app.add_exception_handler(RequestInvalid, _request_invalid)
    app.add_exception_handler(AssetNotFound, _status(404, "not_found"))
    app.add_exception_handler(AssetDatesInvalid, _asset_dates_invalid)
    app.add_exception_handler(AlertNotFound, _status(404, "alert_not_found"))
    app.add_exception_handler(RuleNotFound, _status(404, "alert_rule_not_found"))
    app.add_exception_handler(RuleReadOnly, _status(409, "alert_rule_read_only"))
    app.add_exception_handler(AlertStateConflict, _alert_state_conflict)
    app.add_exception_handler(NotAuthenticated, _not_authenticated)
    app.add_exception_handler(UnknownUser, _status(404, "user_not_found"))
    app.add_exception_handler(UnknownApiKey, _status(404, "api_key_not_found"))
    app.add_exception_handler(UnknownSite, _status(422, "site_not_found"))
    app.add_exception_handler(UserExists, _status(409, "user_exists"))
    app.add_exception_handler(AlertRulesInvalid, _alert_rules_invalid)
    app.add_exception_handler(psycopg.OperationalError, _database_unavailable)
    app.add_exception_handler(psycopg.Error, _database_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
