"""Reading a CSV upload: a raw ``text/csv`` body, or a ``multipart/form-data`` form with a ``file`` field.

Multipart is parsed with the standard library's ``email`` package rather than Starlette's ``request.form()``,
because that needs python-multipart, which is not among the project's pinned dependencies. A registry file is
small (kilobytes to a few megabytes) and read whole anyway, so a streaming parser would buy nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from fastapi import Request

from lccm.api.errors import InvalidParameter
from lccm.api.limits import XLSX_TYPE, media_type

# The body's size is bounded before it is read (api/limits.py: setting api_max_upload_bytes, 32 MiB by default).
UPLOAD_LIMIT_DOC = "at most api_max_upload_bytes (setting; default 32 MiB)"
_RAW_TYPES = frozenset({"text/csv", "application/csv", "text/plain", "application/octet-stream"})


def _parts(content_type: str, body: bytes) -> list[EmailMessage]:
    head = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n"
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    return [p for p in message.iter_parts() if isinstance(p, EmailMessage)] if message.is_multipart() else []


@dataclass(frozen=True, slots=True)
class FormPart:
    data: bytes
    file_name: str | None  # the name the browser gave a file field's file; None for a plain field

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def form_parts(content_type: str, body: bytes) -> dict[str, FormPart]:
    """Every named field of a ``multipart/form-data`` body (a web page's upload form: the file and the fields beside
    it), the first of each name."""
    found: dict[str, FormPart] = {}
    for part in _parts(content_type, body):
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str) and name not in found:
            payload = part.get_payload(decode=True)
            found[name] = FormPart(payload if isinstance(payload, bytes) else b"", part.get_filename())
    return found


def _file_part(content_type: str, body: bytes) -> bytes:
    parts = _parts(content_type, body)
    chosen = next((p for p in parts if p.get_param("name", header="content-disposition") == "file"), None)
    if chosen is None and len(parts) == 1:
        chosen = parts[0]  # a form with one field: take it whatever its name
    if chosen is None:
        raise InvalidParameter("file", "multipart upload needs a form field named 'file'", where="body")
    payload = chosen.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


async def _upload(request: Request, *, xlsx: bool) -> bytes:
    content_type = request.headers.get("content-type", "text/csv")
    kind = media_type(content_type)
    if kind == XLSX_TYPE and xlsx:
        return await request.body()
    if kind != "multipart/form-data" and kind not in _RAW_TYPES:
        also = ", an XLSX workbook" if xlsx else ""
        raise InvalidParameter(
            "content-type",
            f"unsupported content type {kind!r}; send text/csv{also}, or multipart/form-data with a 'file' field",
            where="header",
        )
    body = await request.body()
    return _file_part(content_type, body) if kind == "multipart/form-data" else body


async def csv_upload(request: Request) -> bytes:
    """The uploaded CSV's bytes: a raw ``text/csv`` body or a multipart form's ``file`` (dependency)."""
    return await _upload(request, xlsx=False)


async def spreadsheet_upload(request: Request) -> bytes:
    """The uploaded file: CSV or multipart as ``csv_upload``, or a raw XLSX body (dependency)."""
    return await _upload(request, xlsx=True)
