"""Opaque keyset cursors: the sort key of the last row of a page, tagged with what it pages through.

The token is base64url JSON. It is opaque to clients (they pass it back unchanged), not secret: a forged cursor can
only move the starting point of a query the client could have asked for anyway. The tag stops a cursor of one
listing from being used on another. Times travel as integer microseconds so no precision is lost on the way round.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime, timedelta

from lccm.api.errors import InvalidParameter

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def encode(tag: str, *key: int | str) -> str:
    raw = json.dumps([tag, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(tag: str, token: str, types: tuple[type, ...]) -> tuple[int | str, ...]:
    """The key values of a cursor made by ``encode(tag, ...)``, checked against ``types``; 422 otherwise."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidParameter("cursor", "malformed cursor; pass back next_cursor unchanged") from exc
    if (
        not isinstance(value, list)
        or len(value) != len(types) + 1
        or value[0] != tag
        or not all(type(v) is t for v, t in zip(value[1:], types, strict=True))
    ):
        raise InvalidParameter("cursor", "this cursor does not belong to this listing")
    return tuple(value[1:])
