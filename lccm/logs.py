"""One logging set-up for every ``lccm`` command: text for a terminal or JSON lines for a log collector.

``LCCM_LOG_FORMAT=json`` writes one object per line: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
``stage`` (the pipeline stage or process that logged it), ``request_id`` (API requests; null elsewhere),
``exception`` (the formatted traceback, when there is one) and any ``extra=`` fields of the call (the API's access
line adds method, path, status and duration_ms).

Where ``stage`` and ``request_id`` come from: filters that set ``record.stage`` / ``record.request_id`` are passed
to :func:`configure` (the worker supervisor's stage filter, the API's request-id filter) and run on the handler, so
they see records of every logger, propagated ones included. A record that none of them marked gets the process's
``default_stage`` ("ingest", "api", "cli" ...).

The JSON encoding is python-json-logger's (it handles ``extra`` fields, exceptions and values JSON cannot encode),
so this module only chooses the fields.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import IO, Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(stage)s]: %(message)s"
_JSON_FIELDS = ("levelname", "name", "message", "stage", "request_id")
_RENAMED = {"levelname": "level", "name": "logger", "exc_info": "exception", "stack_info": "stack"}
# Not written: uvicorn's copy of its message with terminal colour codes.
_DROPPED = ("color_message",)
_OURS = "_lccm_handler"  # marks the handler configure() installed, so a second call replaces it


class _Defaults(logging.Filter):
    """Gives every record the fields the formats name, after the callers' own filters had their say."""

    def __init__(self, default_stage: str) -> None:
        super().__init__()
        self._stage = default_stage

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "stage", None):
            record.stage = self._stage
        if not hasattr(record, "request_id"):
            record.request_id = None
        return True


class _UtcJsonFormatter(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        fields = dict(log_data)
        log_data.clear()
        log_data["time"] = self.formatTime(record)  # first: what a person scanning the lines looks for
        log_data.update(fields)


def json_formatter() -> logging.Formatter:
    return _UtcJsonFormatter(
        list(_JSON_FIELDS),
        rename_fields=_RENAMED,
        reserved_attrs=[*RESERVED_ATTRS, *_DROPPED],
        json_ensure_ascii=False,
    )


def text_formatter() -> logging.Formatter:
    return logging.Formatter(TEXT_FORMAT)


def configure(
    *,
    fmt: str = "text",
    level: str | int = "INFO",
    default_stage: str = "lccm",
    filters: Sequence[logging.Filter] = (),
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Install the one root handler (replacing the one a previous call installed; other handlers, such as pytest's,
    stay). Returns it."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', not {fmt!r}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
        old.close()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    setattr(handler, _OURS, True)
    for f in filters:
        handler.addFilter(f)
    handler.addFilter(_Defaults(default_stage))
    handler.setFormatter(json_formatter() if fmt == "json" else text_formatter())
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    logging.captureWarnings(True)
    return handler
