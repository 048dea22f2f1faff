"""Dependencies: the connection pool built by the app lifespan, a connection per request, shared parameters.

The pool reaches the routes through the lifespan state (``request.state.pool``), never through a module global,
so a test (or the demo) can hand ``create_app`` a pool of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

import psycopg
from fastapi import Depends, Query, Request
from psycopg_pool import ConnectionPool
from pydantic import AfterValidator

from lccm.api.errors import InvalidParameter
from lccm.imports.limits import InputLimits


def get_pool(request: Request) -> ConnectionPool:
    pool: ConnectionPool = request.state.pool
    return pool


def get_conn(pool: Annotated[ConnectionPool, Depends(get_pool)]) -> Iterator[psycopg.Connection]:
    # The pool commits on a clean exit and rolls back if the route raised; a broken connection is discarded.
    with pool.connection() as conn:
        yield conn


# scope="function": the block above exits (and so commits) when the route function has returned and its answer is
# built, before a byte of it is sent. A write is therefore committed before its client hears of it, and a commit
# that fails is the request's error (psycopg.OperationalError: 503, any other: 500), never a 2xx for a write that
# was not made. (The default, "request", would commit after the response had gone out.)
Conn = Annotated[psycopg.Connection, Depends(get_conn, scope="function")]
Pool = Annotated[ConnectionPool, Depends(get_pool)]


def get_input_limits(request: Request) -> InputLimits:
    """The bounds on uploaded files (Settings.import_max_*), as the importers take them."""
    limits: InputLimits = request.app.state.input_limits
    return limits


Limits = Annotated[InputLimits, Depends(get_input_limits)]


def _require_offset(value: datetime | None) -> datetime | None:
    if value is not None and value.utcoffset() is None:
        raise ValueError(
            f"{value.isoformat()} has no UTC offset; the server cannot guess the zone. "
            "Write it as ISO 8601 with an offset, e.g. 2026-11-22T14:05:00+07:00 or 2026-11-22T07:05:00Z"
        )
    return value


_TIME_DOC = "ISO 8601 with a UTC offset (e.g. 2026-11-22T14:05:00+07:00 or ...Z); a time without one is refused."
From = Annotated[
    datetime | None,
    Query(alias="from", description="Start, inclusive. " + _TIME_DOC),
    AfterValidator(_require_offset),
]
To = Annotated[
    datetime | None,
    Query(alias="to", description="End, exclusive. " + _TIME_DOC),
    AfterValidator(_require_offset),
]
RequiredFrom = Annotated[
    datetime,
    Query(alias="from", description="Start, inclusive. " + _TIME_DOC),
    AfterValidator(_require_offset),
]
RequiredTo = Annotated[
    datetime,
    Query(alias="to", description="End, exclusive. " + _TIME_DOC),
    AfterValidator(_require_offset),
]
Cursor = Annotated[str | None, Query(description="next_cursor from the previous page; omit for the first page")]


def check_range(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and end <= start:
        raise InvalidParameter("to", "'to' must be later than 'from'")
