"""Encoders for the two payload forms of docs/contract.md: the plain JSON object and SenML (RFC 8428).

A record is one reading time with the items read at it; items carry the unit they are sent in and the number as
the device shows it (already rounded), so encoding never changes a value.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson

from lccm.simulators.timebase import BANGKOK
from lccm.simulators.units import UnitSpec

SentValue = int | float | bool


@dataclass(frozen=True, slots=True)
class Item:
    unit: UnitSpec
    value: SentValue

    @property
    def metric(self) -> str:
        return self.unit.metric


@dataclass(frozen=True, slots=True)
class Record:
    ts_s: int  # event time as the device's clock shows it, whole epoch seconds
    items: tuple[Item, ...]


def iso_local(ts_s: int) -> str:
    """'2026-11-22T14:05:00+07:00': Bangkok wall time with its offset, as Thai devices usually print it."""
    return dt.datetime.fromtimestamp(ts_s, BANGKOK).isoformat()


def iso_naive(ts_s: int) -> str:
    """The same wall time without an offset: what a badly configured device sends (naive_time)."""
    return dt.datetime.fromtimestamp(ts_s, BANGKOK).replace(tzinfo=None).isoformat()


def plain_time(ts_s: int, time_format: str) -> int | str:
    return iso_local(ts_s) if time_format == "iso" else int(ts_s)


def plain_values(items: tuple[Item, ...]) -> dict[str, SentValue]:
    return {item.unit.key: item.value for item in items}


def plain_document(
    device_id: str | None,
    seq: int | None,
    records: list[Record],
    time_format: str,
    force_records: bool = False,
) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if device_id is not None:
        doc["device_id"] = device_id
    if seq is not None:
        doc["seq"] = seq
    if len(records) == 1 and not force_records:
        doc["ts"] = plain_time(records[0].ts_s, time_format)
        doc["values"] = plain_values(records[0].items)
    else:
        doc["records"] = [{"ts": plain_time(r.ts_s, time_format), "values": plain_values(r.items)} for r in records]
    return doc


def senml_entry(item: Item) -> dict[str, Any]:
    entry: dict[str, Any] = {"n": item.metric}
    if item.unit.unit:
        entry["u"] = item.unit.unit
    if isinstance(item.value, bool):
        entry["vb"] = item.value
    else:
        entry["v"] = item.value
    return entry


def senml_bn(device_id: str, style: str) -> str:
    return f"urn:dev:lccm:{device_id}:" if style == "urn" else f"{device_id}:"


def senml_pack(bn: str | None, seq: int | None, records: list[Record]) -> list[dict[str, Any]]:
    """Base name and base time on the first entry, times of later records relative to it (RFC 8428 §4.5.3)."""
    pack: list[dict[str, Any]] = []
    base_time = records[0].ts_s
    for r_index, record in enumerate(records):
        for i_index, item in enumerate(record.items):
            entry = senml_entry(item)
            if r_index == 0 and i_index == 0:
                head: dict[str, Any] = {}
                if bn is not None:
                    head["bn"] = bn
                head["bt"] = base_time
                if seq is not None:
                    head["seq"] = seq
                entry = {**head, **entry}
            elif record.ts_s != base_time:
                entry["t"] = record.ts_s - base_time
            pack.append(entry)
    return pack


def dumps(doc: Any) -> bytes:
    return orjson.dumps(doc)
