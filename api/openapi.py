"""The OpenAPI document: FastAPI's, with every error an operation can answer documented in one pass.

Routes declare what is particular to them (their response model, the 404 or 409 they raise, a description). What
every route shares is added here, from what the operation takes, so a new route is documented like the others:

    400  the body cannot be read at all (not UTF-8)            operations with a request body
    401  no or invalid credentials (WWW-Authenticate: Bearer)   operations not public in api/policy.py
    403  the caller's roles do not allow it                      operations not public in api/policy.py
    404  a named resource does not exist                        operations with a path parameter, or that declare it
    413  the body is over its limit (api/limits.py)              operations with a request body
    422  a parameter or a row of the input cannot be taken        operations with parameters or a body
    500  the database refused a statement or the commit, or     every operation
         the server failed
    503  the database cannot be reached                           every operation

with the bodies api/errors.py gives them (schemas ErrorOut, RowErrorsOut, ParameterErrorOut, HttpErrorOut).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from lccm.api.policy import policy_for
from lccm.api.schemas import ErrorOut, HttpErrorOut, ParameterErrorOut, RowErrorsOut

_REF = "#/components/schemas/{model}"
_MODELS: tuple[type[BaseModel], ...] = (ErrorOut, RowErrorsOut, ParameterErrorOut, HttpErrorOut)
_DESCRIPTIONS = {
    "400": "the request body cannot be read (e.g. not UTF-8)",
    "401": "no credentials, or credentials that are not valid (WWW-Authenticate: Bearer)",
    "403": "the caller's roles do not allow this operation (the policy table is in the security guide)",
    "404": "not found",
    "409": "conflict",
    "413": "the request body is larger than its limit (settings api_max_json_bytes, api_max_upload_bytes)",
    "422": "a parameter or a row of the input cannot be taken; each problem says where",
    "500": "the database refused the operation (nothing was written), or the server failed",
    "503": "the database cannot be reached",
}


def _json(model: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _REF.format(model=model)}}}


_INVALID = {
    "application/json": {
        "schema": {
            "anyOf": [{"$ref": _REF.format(model=m.__name__)} for m in (ParameterErrorOut, RowErrorsOut, ErrorOut)]
        }
    }
}


def install_openapi(app: FastAPI) -> None:
    """Replace ``app.openapi`` with FastAPI's document plus the shared error responses (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes,
            )  # fmt: skip
            _document_errors(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the document


def _document_errors(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in _MODELS:
        found = model.model_json_schema(ref_template=_REF, mode="serialization")
        schemas.update(found.pop("$defs", {}))
        schemas[model.__name__] = found
    schemas.pop("HTTPValidationError", None)  # FastAPI's 422, replaced by ParameterErrorOut
    schemas.pop("ValidationError", None)
    document["components"]["securitySchemes"] = _SECURITY_SCHEMES
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            policy = policy_for(method.upper(), path)
            if policy is not None and not policy.is_public(public_aqi=False):
                operation["security"] = [{name: []} for name in _SECURITY_SCHEMES]
            _responses(operation)


# How a caller proves who they are (api/auth/guard.py); any one of them will do.
_SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "an OIDC access token (JWT) of the configured issuer, or an API key (lccm_...)",
    },
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "an API key (lccm_...)"},
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "lccm_session",
        "description": "a local account's session from POST /auth/login; unsafe methods also send X-CSRF-Token",
    },
}


def _responses(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    parameters = operation.get("parameters", [])
    body = "requestBody" in operation
    wanted: dict[str, dict[str, Any]] = {"500": _json("ErrorOut"), "503": _json("ErrorOut")}
    if body:
        wanted |= {"400": _json("HttpErrorOut"), "413": _json("ErrorOut")}
    if parameters or body:
        wanted["422"] = _INVALID
    if any(p.get("in") == "path" for p in parameters) or "404" in responses:
        wanted["404"] = _json("ErrorOut")
    if "409" in responses:
        wanted["409"] = _json("ErrorOut")
    if "security" in operation or "401" in responses:
        wanted |= {"401": _json("ErrorOut")}
    if "security" in operation:
        wanted |= {"403": _json("ErrorOut")}
    for status, content in wanted.items():
        entry = responses.setdefault(status, {})
        entry["description"] = entry.get("description") or _DESCRIPTIONS[status]
        if status == "422" and entry["description"] == "Validation Error":
            entry["description"] = _DESCRIPTIONS["422"]
        entry["content"] = content
