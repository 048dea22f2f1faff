"""Request body limits: a JSON body and an uploaded file each have a ceiling, enforced before anything parses them.

Starlette's ``RequestBodyLimitMiddleware`` does the counting: a declared ``Content-Length`` above the limit is
refused before the body is read, and a body without one is cut off as soon as its bytes pass the limit, so a
37 MiB JSON document is never parsed. FastAPI recognises the error it raises while a route reads its body and
answers 413; api/errors.py gives that answer the API's error shape, naming the setting. The limit is chosen by
the request's media type: the upload types (a CSV, an XLSX, a multipart form) get ``api_max_upload_bytes``, every
other body (JSON) ``api_max_json_bytes``. What an XLSX may unpack to is checked where it is read
(imports/limits.py).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
UPLOAD_TYPES = frozenset(
    {"text/csv", "application/csv", "text/plain", "application/octet-stream", "multipart/form-data", XLSX_TYPE}
)
# Which setting a refused body ran into, for the 413's message (api/errors.py).
LIMIT_SETTING_KEY = "lccm.body_limit_setting"


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


class RequestLimits:
    """ASGI middleware: the body limit that fits the request's media type."""

    def __init__(self, app: ASGIApp, *, json_bytes: int, upload_bytes: int) -> None:
        self.json = RequestBodyLimitMiddleware(app, max_body_size=json_bytes)
        self.upload = RequestBodyLimitMiddleware(app, max_body_size=upload_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.json(scope, receive, send)  # passes anything but HTTP through untouched
            return
        if media_type(Headers(scope=scope).get("content-type")) in UPLOAD_TYPES:
            scope[LIMIT_SETTING_KEY] = "api_max_upload_bytes"
            await self.upload(scope, receive, send)
        else:
            scope[LIMIT_SETTING_KEY] = "api_max_json_bytes"
            await self.json(scope, receive, send)
