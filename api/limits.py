"""Request body limits: a JSON body and an uploaded file each have a ceiling, enforced before anything parses them.

A declared ``Content-Length`` above the limit is refused at once, unread. A body without one is counted by
Starlette's ``RequestBodyLimitMiddleware`` and cut off as soon as its bytes pass the limit, so a 37 MiB JSON
document is never parsed; FastAPI recognises the error it raises while a route reads its body and answers 413, in
the API's error shape by api/errors.py. Both answers name the setting. The limit is chosen by
the request's media type: the upload types (a CSV, an XLSX, a multipart form) get ``api_max_upload_bytes``, every
other body (JSON) ``api_max_json_bytes``. What an XLSX may unpack to is checked where it is read
(imports/limits.py).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from lccm.api.errors import LIMIT_SETTING_KEY, body_too_large

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
UPLOAD_TYPES = frozenset(
    {"text/csv", "application/csv", "text/plain", "application/octet-stream", "multipart/form-data", XLSX_TYPE}
)


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
        headers = Headers(scope=scope)
        upload = media_type(headers.get("content-type")) in UPLOAD_TYPES
        limiter, setting = (self.upload, "api_max_upload_bytes") if upload else (self.json, "api_max_json_bytes")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limiter.max_body_size:
            # Refused unread, in the API's shape (Starlette's own answer to this case is plain text).
            refused = body_too_large(limiter.max_body_size, setting)
            await JSONResponse(status_code=refused.status_code, content=refused.body())(scope, receive, send)
            return
        scope[LIMIT_SETTING_KEY] = setting
        await limiter(scope, receive, send)
