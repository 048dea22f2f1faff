"""Reading a CSV upload: a raw ``text/csv`` body, or a ``multipart/form-data`` form with a ``file`` field.

Multipart is parsed with the standard library's ``email`` package rather than Starlette's ``request.form()``,
because that needs python-multipart, which is not among the project's pinned dependencies. A registry file is
small (kilobytes to a few megabytes) and read whole anyway, so a streaming parser would buy nothing here.
"""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from fastapi import Request

from lccm.api.errors import InvalidParameter, PayloadTooLarge

# A registry of 100,000 devices is about 15 MB of CSV; beyond this an upload is a mistake, not a city.
MAX_UPLOAD_BYTES = 32 * 1024 * 1024
_RAW_TYPES = frozenset({"text/csv", "application/csv", "text/plain", "application/octet-stream"})


async def _read_capped(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            raise PayloadTooLarge(f"upload larger than {MAX_UPLOAD_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _file_part(content_type: str, body: bytes) -> bytes:
    head = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    parts = [p for p in message.iter_parts() if isinstance(p, EmailMessage)] if message.is_multipart() else []
    chosen = next((p for p in parts if p.get_param("name", header="content-disposition") == "file"), None)
    if chosen is None and len(parts) == 1:
        chosen = parts[0]  # a form with one field: take it whatever its name
    if chosen is None:
        raise InvalidParameter("file", "multipart upload needs a form field named 'file'", where="body")
    payload = chosen.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


async def csv_upload(request: Request) -> bytes:
    """The uploaded file's bytes (dependency for the import route)."""
    content_type = request.headers.get("content-type", "text/csv")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "multipart/form-data" and media_type not in _RAW_TYPES:
        raise InvalidParameter(
            "content-type",
            f"unsupported content type {media_type!r}; send text/csv, or multipart/form-data with a 'file' field",
            where="header",
        )
    body = await _read_capped(request)
    return _file_part(content_type, body) if media_type == "multipart/form-data" else body
