"""One check of every route's inputs, on top of FastAPI's validation: values it accepts that the database or the
calendar cannot take.

- a NUL character (U+0000) in any string: PostgreSQL text cannot hold one;
- a date or time before 1900 or from 2200 on: Python's dates end at years 1 and 9999, so shifting 0001-01-01 to
  UTC or 9999-12-31 by a day overflows, and no figure of this product lies outside these two centuries;
- a date or time sent as a number (pydantic would read it as seconds since 1970);
- a parameter of one value sent more than once (FastAPI would silently take the last);
- an integer beyond PostgreSQL's bigint, or a number that is not finite or larger than 10^15 in magnitude (no
  quantity a city reports comes near it; beyond it, sums and products stop being exact or overflow to infinity).

Each is a 422 in FastAPI's own shape, naming the parameter (``loc``: where, name, and the path inside a body).

The check is an app-wide dependency (``FastAPI(dependencies=[...])``), so it runs for every route, declared or yet
to come, before the route's own parameters are solved. It validates each parameter exactly as FastAPI is about to
(with the route's own fields), walks the values that pass, and leaves any value that fails to FastAPI's answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any

from fastapi import Request, params
from fastapi.dependencies.utils import get_flat_params, request_params_to_args
from fastapi.routing import APIRoute
from pydantic import BaseModel

from lccm.api.errors import InvalidParameter

MIN_YEAR, END_YEAR = 1900, 2200  # dates and times from 1900-01-01 up to, not including, 2200-01-01 (UTC)
MAX_INT = 2**63 - 1  # PostgreSQL bigint
MAX_NUMBER = 1e15

_EARLIEST = datetime(MIN_YEAR, 1, 1, tzinfo=UTC)
_END = datetime(END_YEAR, 1, 1, tzinfo=UTC)
Loc = tuple[str | int, ...]
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


async def check_inputs(request: Request) -> None:
    """Raise ``InvalidParameter`` (422) for the first parameter value no route can take (see module docstring)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    received: dict[str, Mapping[str, Any]] = {
        "path": request.path_params,
        "query": request.query_params,
        "header": request.headers,
        "cookie": request.cookies,
    }
    for field in get_flat_params(route.dependant):
        assert isinstance(field.field_info, params.Param)  # path, query, header or cookie
        where = field.field_info.in_.value
        values, errors = request_params_to_args([field], received[where])
        if not errors and field.name in values:
            value = values[field.name]
            _refuse_repeated(value, received[where], where, field.alias)
            if _is_time(value) and _sent_as_number(received[where], field.alias):
                message = "a date or time is written in ISO 8601 (e.g. 2026-11-22 or 2026-11-22T14:05:00+07:00)"
                raise InvalidParameter(field.alias, message, where=where)
            _refuse_first(value, (where, field.alias))
    if route.body_field is not None and _is_json(request):
        await _check_body(request, route)


async def _check_body(request: Request, route: APIRoute) -> None:
    assert route.body_field is not None
    try:
        body = await request.json()  # parsed (and cached) by FastAPI before the dependencies run
    except ValueError:
        return  # FastAPI answers a body that is not JSON
    value, errors = route.body_field.validate(body, {}, loc=("body",))
    if not errors:
        _refuse_first(value, ("body",))


def _refuse_repeated(value: Any, received: Mapping[str, Any], where: str, name: str) -> None:
    """A parameter of one value sent several times (``?province=a&province=b``): FastAPI would take the last one
    silently, answering a question the caller did not ask."""
    if isinstance(value, list | tuple | set | frozenset) or not hasattr(received, "getlist"):
        return
    count = len(received.getlist(name))
    if count > 1:
        raise InvalidParameter(name, f"takes one value, sent {count} times", where=where)


def _is_time(value: Any) -> bool:
    return isinstance(value, date) or (isinstance(value, list) and any(isinstance(v, date) for v in value))


def _sent_as_number(received: Mapping[str, Any], name: str) -> bool:
    """pydantic reads '1.7e9' as seconds since 1970; a time parameter is documented, and only taken, as ISO 8601."""
    sent = received.getlist(name) if hasattr(received, "getlist") else [received.get(name)]
    return any(isinstance(v, str) and _NUMBER.fullmatch(v.strip()) for v in sent)


def _is_json(request: Request) -> bool:
    kind = request.headers.get("content-type", "application/json").split(";", 1)[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def _refuse_first(value: Any, loc: Loc) -> None:
    for where, message in _problems(value, loc):
        name = ".".join(str(p) for p in where[1:]) or str(where[0])
        raise InvalidParameter(name, message, where=str(where[0]), loc=where)


def _problems(value: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    """(location, message) of each value that cannot be taken, depth first."""
    if isinstance(value, str):
        if "\x00" in value:
            yield loc, "contains a NUL character (U+0000), which no text field can hold"
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if abs(value) > MAX_INT:
            yield loc, f"the integer is out of range (at most {MAX_INT:,} in magnitude)"
    elif isinstance(value, float):
        if not math.isfinite(value) or abs(value) > MAX_NUMBER:
            yield loc, f"the number must be finite and at most {MAX_NUMBER:.0e} in magnitude"
    elif isinstance(value, datetime):
        if not _time_in_range(value):
            yield loc, f"the time must be from {MIN_YEAR}-01-01 up to (not including) {END_YEAR}-01-01 UTC"
    elif isinstance(value, date):
        if not MIN_YEAR <= value.year < END_YEAR:
            yield loc, f"the date must be from {MIN_YEAR}-01-01 up to (not including) {END_YEAR}-01-01"
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _problems(getattr(value, name), (*loc, name))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _problems(key, (*loc, str(key)))
            yield from _problems(item, (*loc, str(key)))
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            yield from _problems(item, (*loc, index))


def _time_in_range(value: datetime) -> bool:
    if value.utcoffset() is None:
        return MIN_YEAR <= value.year < END_YEAR
    try:
        return _EARLIEST <= value.astimezone(UTC) < _END
    except OverflowError:  # 0001-01-01T00:00+07:00 or 9999-12-31T23:00-07:00 has no UTC instant Python can hold
        return False
