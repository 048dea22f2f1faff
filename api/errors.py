"""The API's exceptions, and the one place they (and the store's domain errors) become HTTP responses.

Routes raise these; nothing below the edge knows about status codes::

    ApiError                      base: a status code, a stable machine-readable code, a message for people
    ├── NotFound                  404
    │   ├── SiteNotFound
    │   └── DeviceNotFound
    ├── InvalidParameter          422, shaped like FastAPI's own validation errors (one format for bad parameters)
    │   └── ResultTooLarge        the parameters are valid but would select too many rows
    └── PayloadTooLarge           413

Mapped from outside the tree:

    store.devices.RegistryInvalid       422 with the per-row error list
    psycopg.OperationalError            503 (database down or unreachable; psycopg_pool.PoolTimeout is a subclass)
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from lccm.store.devices import RegistryInvalid

log = logging.getLogger(__name__)


class ApiError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.message}


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

    def __init__(self, parameter: str, message: str, *, where: str = "query") -> None:
        super().__init__(message)
        self.parameter = parameter
        self.where = where

    def body(self) -> dict[str, Any]:
        return {"detail": [{"type": self.code, "loc": [self.where, self.parameter], "msg": self.message}]}


class ResultTooLarge(InvalidParameter):
    code = "result_too_large"


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "payload_too_large"


def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(status_code=exc.status_code, content=exc.body())


def _registry_invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RegistryInvalid)
    errors = [{"row": e.row, "column": e.column, "value": e.value, "message": e.message} for e in exc.errors]
    return JSONResponse(
        status_code=422,
        content={"error": "registry_invalid", "detail": f"{exc!s}; nothing was imported", "errors": errors},
    )


def _database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", exc)
    return JSONResponse(
        status_code=503, content={"error": "database_unavailable", "detail": "the database cannot be reached"}
    )


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RegistryInvalid, _registry_invalid)
    app.add_exception_handler(psycopg.OperationalError, _database_unavailable)
