"""Payload decoding: plain JSON and SenML (RFC 8428) into the columnar batch, or a specific refusal.

A message is atomic (docs/contract.md): on the first error the readings it had added are rolled back and a
``Refusal`` carrying the reason code and a human-readable detail is returned. Nothing here raises on bad input:
every class of bad input has its own reason (tests/test_codec_fuzz.py fuzzes the decoder to show that none reaches
the ``decoder_error`` safety net, which exists only so that a bug costs one message, never the worker).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from lccm.ingest.registry import Metric, Registry
from lccm.ingest.topic import Topic, TopicError, is_outbound
from lccm.stream.batch import BatchBuilder

log = logging.getLogger(__name__)

# RFC 8428: a resolved time below 2**28 s is relative to "now". We only store device clock readings.
_MIN_ABSOLUTE_S = 2**28
_MIN_ABSOLUTE_US = _MIN_ABSOLUTE_S * 1_000_000
# Beyond this many seconds a float time is converted without its fraction (it is refused as future_time anyway);
# multiplying it by 10**6 could overflow to infinity.
_EXACT_FLOAT_S = 1e15
_EPOCH_ORDINAL = datetime(1970, 1, 1).toordinal()
# RFC 8428 section 4.4: a pack whose base version is higher than the one the receiver implements must not be used.
# This decoder implements RFC 8428 itself, SenML version 10 (the default when ``bver`` is absent).
SENML_VERSION = 10
_MAX_SEQ = 2**63
_URN_PREFIX = "urn:dev:lccm:"
_SENML_KNOWN = frozenset({"bn", "bt", "bu", "bv", "bver", "n", "u", "v", "vb", "t", "ut", "seq"})
_SENML_REFUSED = frozenset({"vs", "vd", "s", "bs"})
STATUSES = frozenset({"online", "offline"})


@dataclass(frozen=True, slots=True)
class Limits:
    max_payload_bytes: int = 256 * 1024
    max_readings: int = 5_000
    future_tolerance_s: float = 300.0
    topic_root: str = "lccm/v1"


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    detail: str


class _Refused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.refusal = Refusal(reason, detail)


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one message became: readings (added to the batch), a status, or a refusal."""

    device_ref: str | None
    readings: int = 0
    status: str | None = None
    refusal: Refusal | None = None
    outbound: bool = False  # one of the product's own outbound messages (alerts, commands): not device data


@dataclass(frozen=True, slots=True)
class _TopicFacts:
    """What a topic says, whatever the payload and the registry: worked out once per topic (``_topic_facts``)."""

    outbound: bool
    device_ref: str | None
    parsed: Topic | None
    error: str | None  # why the topic breaks the contract (``bad_topic``), when it does


# Topics repeat (one per device and channel), and parsing one (splits, two regular expressions, objects) was a third
# of the decoder's time for a message of one reading. Bounded: past TOPIC_CACHE topics of a root it starts over
# (about 400 bytes a topic: 3 MiB at most; a city of more devices than that parses as before).
TOPIC_CACHE = 8_192
_TOPICS: dict[str, dict[str, _TopicFacts]] = {}


def _topic_facts(topic: str, root: str) -> _TopicFacts:
    cache = _TOPICS.get(root)
    if cache is None:
        cache = _TOPICS[root] = {}
    facts = cache.get(topic)
    if facts is None:
        if len(cache) >= TOPIC_CACHE:
            cache.clear()
        try:
            parsed, error = Topic.parse(topic, root), None
        except TopicError as e:
            parsed, error = None, str(e)
        facts = cache[topic] = _TopicFacts(is_outbound(topic, root), Topic.device_ref(topic, root), parsed, error)
    return facts


def decode_message(
    batch: BatchBuilder,
    registry: Registry,
    topic: str,
    payload: bytes,
    received_at_us: int,
    limits: Limits,
) -> Decoded:
    """Decode one MQTT message into ``batch``. The batch is unchanged if the message is refused."""
    facts = _topic_facts(topic, limits.topic_root)
    if facts.outbound:
        return Decoded(None, outbound=True)
    mark = batch.mark()
    device_ref = facts.device_ref
    try:
        if facts.parsed is None:
            raise _Refused("bad_topic", facts.error or "")
        parsed = facts.parsed
        device = registry.devices.get(parsed.device_id)
        if len(payload) > limits.max_payload_bytes:
            raise _Refused(
                "oversized_payload",
                f"payload is {len(payload)} bytes; the limit is {limits.max_payload_bytes}",
            )
        if device is None:
            raise _Refused("unknown_device", f"device {parsed.device_id!r} is not in the registry")
        _check_city(registry, parsed)
        if not payload:
            raise _Refused("bad_payload", "empty payload")
        if parsed.channel == "status":
            return Decoded(device_ref, status=_decode_status(payload))
        doc = _load_json(payload)
        ctx = _Context(batch, registry, parsed.device_id, received_at_us, limits, mark)
        if isinstance(doc, list):
            seq = _decode_senml(ctx, doc)
        elif isinstance(doc, dict):
            seq = _decode_plain(ctx, doc)
        else:
            raise _Refused("bad_payload", f"payload is a JSON {type(doc).__name__}, not an object or a SenML array")
        n = len(batch.metric_id) - mark
        batch.fill_message_fields(mark, device, seq, received_at_us)
        return Decoded(device_ref, readings=n)
    except _Refused as e:
        batch.rollback(mark)
        return Decoded(device_ref, refusal=e.refusal)
    except Exception as e:  # a decoder bug must cost one message (kept as a dead letter), never the worker
        log.exception("decoder bug on topic %s", topic[:200])
        batch.rollback(mark)
        detail = f"the decoder failed on this message ({type(e).__name__}); a bug in lccm, please report it"
        return Decoded(device_ref, refusal=Refusal("decoder_error", detail))


def _check_city(registry: Registry, topic: Topic) -> None:
    expected = registry.cities.get(topic.device_id)
    if topic.city == expected:
        return
    if expected is None:
        raise _Refused(
            "city_mismatch",
            f"the registry city of device {topic.device_id!r} has no topic slug (no Latin letter or digit);"
            " re-import the device registry with the city in Latin letters",
        )
    raise _Refused(
        "city_mismatch",
        f"topic city {topic.city!r} is not the city of device {topic.device_id!r} in the registry ({expected!r})",
    )


def _decode_status(payload: bytes) -> str:
    text = payload.decode("utf-8", errors="replace").strip().lower()
    if text not in STATUSES:
        raise _Refused("bad_status", f"status payload {text[:40]!r} is neither 'online' nor 'offline'")
    return text


def _load_json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        pass
    # orjson refuses NaN/Infinity; the stdlib parses them, so such a payload is refused for its value instead.
    try:
        return json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise _Refused("bad_json", f"payload is not UTF-8: {e}") from None
    except ValueError as e:  # includes integers longer than Python's int_max_str_digits
        raise _Refused("bad_json", f"payload is not JSON: {e}") from None
    except RecursionError:
        raise _Refused("bad_json", "payload is not JSON this system reads: nested too deeply") from None


@dataclass(slots=True)
class _Context:
    batch: BatchBuilder
    registry: Registry
    device_id: str
    received_at_us: int
    limits: Limits
    start: int  # where this message's readings begin in the batch

    def add(self, metric: Metric, scale: float, ts_us: int, raw: Any) -> None:
        kind = type(raw)
        # Fast path: an exact float or int (bool is excluded: type(True) is bool). NaN fails the range test and
        # goes to the slow path, which tells NaN from out-of-range.
        value = raw * scale if kind is float or (kind is int and -(2**53) <= raw <= 2**53) else None
        if value is None or not metric.min_value <= value <= metric.max_value:
            value = _checked_value(metric, scale, raw)
        self.batch.metric_id.append(metric.id)
        self.batch.ts_us.append(ts_us)
        self.batch.value.append(value)

    def check_time(self, ts_us: int) -> int:
        limit_us = self.received_at_us + int(self.limits.future_tolerance_s * 1_000_000)
        if ts_us > limit_us:
            ahead_s = (ts_us - self.received_at_us) // 1_000_000  # integers: ts_us may be far beyond any float
            shown = f"{ahead_s}" if ahead_s < 10**12 else "more than 10^12"
            raise _Refused(
                "future_time",
                f"event time is {shown} s ahead of the system clock (tolerance {self.limits.future_tolerance_s:g} s)",
            )
        return ts_us


def _checked_value(metric: Metric, scale: float, raw: Any) -> float:
    if isinstance(raw, bool):
        if metric.kind != "state":
            raise _Refused("bad_payload", f"{metric.name} must be a number, got a boolean")
        raw = 1.0 if raw else 0.0
    if not isinstance(raw, int | float):
        raise _Refused("bad_payload", f"{metric.name} must be a number, got {type(raw).__name__}")
    if isinstance(raw, float) and not math.isfinite(raw):
        raise _Refused("non_finite_value", f"{metric.name} is {raw!r}")
    value = _as_float(raw, metric.name) * scale
    if not math.isfinite(value) or not metric.min_value <= value <= metric.max_value:
        raise _Refused(
            "out_of_range",
            f"{metric.name} = {value:g} {metric.unit} is outside {metric.min_value:g} .. {metric.max_value:g}",
        )
    return value


def _as_float(raw: int | float, name: str) -> float:
    try:
        return float(raw)
    except OverflowError:  # an integer beyond the float range
        raise _Refused("out_of_range", f"{name} = {str(raw)[:40]}... is too large") from None


def parse_time_us(raw: Any) -> int:
    """Epoch seconds (number) or ISO 8601 with an offset, to UTC epoch microseconds (exact integer arithmetic, so
    no time, however far off, overflows: a far-future one is left for ``check_time`` to refuse)."""
    if isinstance(raw, bool):
        raise _Refused("bad_time", "time is a boolean")
    if isinstance(raw, int):
        us = raw * 1_000_000
    elif isinstance(raw, float):
        if not math.isfinite(raw):
            raise _Refused("bad_time", f"time {raw!r} is not finite")
        us = round(raw * 1_000_000) if abs(raw) < _EXACT_FLOAT_S else int(raw) * 1_000_000
    elif isinstance(raw, str):
        try:
            dt = datetime.fromisoformat(raw)
        except ValueError:
            raise _Refused("bad_time", f"time {raw[:40]!r} is not ISO 8601") from None
        if dt.tzinfo is None or dt.utcoffset() is None:
            raise _Refused("naive_time", f"time {raw[:40]!r} has no UTC offset")
        us = _datetime_us(dt)
    else:
        raise _Refused("bad_time", f"time must be epoch seconds or an ISO 8601 string, got {type(raw).__name__}")
    if us < _MIN_ABSOLUTE_US:
        raise _Refused("bad_time", f"time {repr(raw)[:40]} is before 1978: a relative or unset clock")
    return us


def _datetime_us(dt: datetime) -> int:
    offset = dt.utcoffset()
    assert offset is not None
    # Integer arithmetic: datetime arithmetic overflows at the ends of years 1 and 9999 once the offset is applied.
    seconds = (dt.toordinal() - _EPOCH_ORDINAL) * 86_400 + dt.hour * 3600 + dt.minute * 60 + dt.second
    return seconds * 1_000_000 + dt.microsecond - offset // timedelta(microseconds=1)


def _check_seq(raw: Any) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw < _MAX_SEQ:
        raise _Refused("bad_payload", f"seq must be an integer 0 <= seq < 2^63, got {raw!r}")
    return raw


def _check_device(ctx: _Context, claimed: Any, field_name: str) -> None:
    if not isinstance(claimed, str):
        raise _Refused("bad_payload", f"{field_name} must be a string")
    if claimed != ctx.device_id:
        raise _Refused(
            "device_mismatch",
            f"{field_name} {claimed[:70]!r} does not match the topic's device {ctx.device_id!r}",
        )


# ---------------------------------------------------------------------------------------------- plain JSON


def _decode_plain(ctx: _Context, doc: dict[str, Any]) -> int | None:
    if "device_id" in doc:
        _check_device(ctx, doc["device_id"], "device_id")
    seq = _check_seq(doc.get("seq"))
    if "records" in doc:
        if "values" in doc or "ts" in doc:
            raise _Refused("bad_payload", "a message has either 'records' or 'ts' and 'values', not both")
        records = doc["records"]
        if not isinstance(records, list) or not records:
            raise _Refused("bad_payload", "'records' must be a non-empty list")
        _check_count(ctx, sum(len(r["values"]) for r in records if isinstance(r, dict) and _has_values(r)))
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise _Refused("bad_payload", f"records[{i}] is not an object")
            _decode_plain_record(ctx, rec, f"records[{i}]")
    else:
        _check_count(ctx, len(doc["values"]) if _has_values(doc) else 0)
        _decode_plain_record(ctx, doc, "message")
    return seq


def _has_values(rec: dict[str, Any]) -> bool:
    return isinstance(rec.get("values"), dict)


def _check_count(ctx: _Context, n: int) -> None:
    if n > ctx.limits.max_readings:
        raise _Refused("too_many_readings", f"{n} readings in one message; the limit is {ctx.limits.max_readings}")


def _decode_plain_record(ctx: _Context, rec: dict[str, Any], where: str) -> None:
    if "ts" not in rec or "values" not in rec:
        raise _Refused("bad_payload", f"{where} needs both 'ts' and 'values'")
    ts_us = ctx.check_time(parse_time_us(rec["ts"]))
    values = rec["values"]
    if not isinstance(values, dict) or not values:
        raise _Refused("bad_payload", f"{where}: 'values' must be a non-empty object")
    for key, raw in values.items():
        found = ctx.registry.by_key.get(key)
        if found is None:
            raise _unknown_key(ctx.registry, key)
        ctx.add(found[0], found[1], ts_us, raw)


def _unknown_key(registry: Registry, key: str) -> _Refused:
    for name, metric in registry.metrics_by_name.items():
        if key.startswith(name + "_"):
            accepted = sorted(k for k, (m, _) in registry.by_key.items() if m.id == metric.id)
            return _Refused("unknown_unit", f"key {key[:60]!r}: unit not accepted for {name}; use one of {accepted}")
    return _Refused("unknown_metric", f"key {key[:60]!r} names no metric in the catalogue")


# ---------------------------------------------------------------------------------------------- SenML


def _decode_senml(ctx: _Context, pack: list[Any]) -> int | None:
    if not pack:
        raise _Refused("bad_payload", "empty SenML pack")
    if len(pack) > ctx.limits.max_readings:
        raise _Refused("too_many_readings", f"{len(pack)} records; the limit is {ctx.limits.max_readings}")
    base = _SenmlBase()
    resolved: dict[tuple[str, str | None], tuple[Metric, float]] = {}  # (name, unit) -> metric, scale
    seq: int | None = None
    for i, rec in enumerate(pack):
        if type(rec) is not dict:
            raise _Refused("bad_senml", f"record {i} is not an object")
        keys = rec.keys()
        if not keys <= _SENML_KNOWN:
            _check_senml_fields(rec, i)
        if "seq" in rec:
            if i != 0:
                raise _Refused("bad_senml", f"record {i}: 'seq' is allowed in the first record only")
            seq = _check_seq(rec["seq"])
        if "bver" in rec:
            base.check_version(rec["bver"], i)
        if not keys.isdisjoint(_SENML_BASE):
            base.update(rec, i)
            resolved.clear()
        name = rec.get("n", "")
        unit = rec.get("u", base.unit)
        if type(name) is not str or not (unit is None or type(unit) is str):
            _senml_metric(ctx, rec, i, base.name, unit)  # raises the specific refusal
        found = resolved.get((name, unit))
        if found is None:
            found = resolved[(name, unit)] = _senml_metric(ctx, rec, i, base.name, unit)
        t = rec.get("t", 0.0)
        if type(t) is not float and not (type(t) is int and -(2**53) <= t <= 2**53):
            t = _senml_time(rec, "t", i)
        ctx.add(found[0], found[1], ctx.check_time(_senml_time_us(base.time + t)), _senml_value(rec, i, found[0], base))
    return seq


_SENML_BASE = frozenset({"bn", "bt", "bu", "bv"})


@dataclass(slots=True)
class _SenmlBase:
    name: str = ""
    time: float = 0.0
    unit: str | None = None
    value: float = 0.0
    version: int | None = None  # bver of the pack, once a record has given it

    def update(self, rec: dict[str, Any], i: int) -> None:
        if "bn" in rec:
            self.name = _senml_str(rec, "bn", i)
        if "bt" in rec:
            self.time = _senml_time(rec, "bt", i)
        if "bu" in rec:
            self.unit = _senml_str(rec, "bu", i)
        if "bv" in rec:
            self.value = _as_float(_senml_num(rec, "bv", i), "bv")

    def check_version(self, raw: Any, i: int) -> None:
        """RFC 8428 section 4.4: ``bver`` is a positive integer, the same in every record of a pack, and a pack of a
        version higher than the receiver's must not be used."""
        if isinstance(raw, bool) or not isinstance(raw, int | float) or raw != raw // 1 or raw < 1:
            raise _Refused("bad_senml", f"record {i}: 'bver' must be a positive integer, got {repr(raw)[:40]}")
        if raw > SENML_VERSION:
            raise _Refused(
                "unsupported_version",
                f"record {i}: SenML version {repr(raw)[:40]}; this system implements version {SENML_VERSION}"
                " (RFC 8428), and RFC 8428 section 4.4 forbids using a pack of a higher version",
            )
        version = int(raw)
        # Records before the first bver have the default version (10), so a later bver must agree with it.
        earlier = self.version if self.version is not None or i == 0 else SENML_VERSION
        if earlier is not None and version != earlier:
            raise _Refused("bad_senml", f"record {i}: 'bver' {version} differs from {earlier} earlier in the pack")
        self.version = version


def _senml_time(rec: dict[str, Any], key: str, i: int) -> float:
    value = _senml_num(rec, key, i)
    try:
        return float(value)
    except OverflowError:
        raise _Refused("bad_time", f"record {i}: {key!r} = {str(value)[:40]}... is beyond any clock") from None


def _senml_time_us(seconds: float) -> int:
    if not math.isfinite(seconds):
        raise _Refused("bad_time", "record time (bt + t) is not finite")
    return parse_time_us(seconds)


def _senml_value(rec: dict[str, Any], i: int, metric: Metric, base: _SenmlBase) -> Any:
    if "v" in rec:
        raw = rec["v"]
        if base.value and isinstance(raw, int | float) and not isinstance(raw, bool):
            raw = _as_float(raw, metric.name) + base.value
        return raw
    if "vb" in rec:
        raw = rec["vb"]
        if not isinstance(raw, bool):
            raise _Refused("bad_senml", f"record {i}: 'vb' must be true or false")
        if metric.kind != "state":
            raise _Refused("bad_senml", f"record {i}: a boolean value for {metric.name}, which is not a state")
        return raw
    raise _Refused("bad_senml", f"record {i} ({metric.name}) has no value ('v' or 'vb')")


def _senml_metric(ctx: _Context, rec: dict[str, Any], i: int, base_name: str, unit: str | None) -> tuple[Metric, float]:
    name = base_name + (_senml_str(rec, "n", i) if "n" in rec else "")
    if not name:
        raise _Refused("bad_senml", f"record {i} has no name (neither 'bn' nor 'n')")
    metric_name = _senml_metric_name(ctx, name)
    metric = ctx.registry.metrics_by_name.get(metric_name)
    if metric is None:
        raise _Refused("unknown_metric", f"record {i}: {metric_name[:60]!r} names no metric in the catalogue")
    if unit is not None and not isinstance(unit, str):
        raise _Refused("bad_senml", f"record {i}: 'u' must be a string")
    found = ctx.registry.by_senml.get((metric_name, metric.unit if unit is None else unit))
    if found is None:
        accepted = sorted(u for (n, u) in ctx.registry.by_senml if n == metric_name)
        raise _Refused(
            "unknown_unit", f"record {i}: unit {unit!r} not accepted for {metric_name}; use one of {accepted}"
        )
    return found


def _check_senml_fields(rec: dict[str, Any], i: int) -> None:
    for key in rec:
        if key in _SENML_KNOWN:
            continue
        if key in _SENML_REFUSED or key.endswith("_"):
            raise _Refused("unknown_field", f"record {i}: field {key[:30]!r} is not accepted by this contract")


def _senml_str(rec: dict[str, Any], key: str, i: int) -> str:
    value = rec[key]
    if not isinstance(value, str):
        raise _Refused("bad_senml", f"record {i}: {key!r} must be a string")
    return value


def _senml_num(rec: dict[str, Any], key: str, i: int) -> float:
    value = rec[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Refused("bad_senml", f"record {i}: {key!r} must be a number")
    return value


def _senml_metric_name(ctx: _Context, name: str) -> str:
    if ":" not in name:
        return name
    device_part, _, metric_name = name.rpartition(":")
    if device_part.startswith(_URN_PREFIX):
        device_part = device_part[len(_URN_PREFIX) :]
    if device_part != ctx.device_id:
        raise _Refused(
            "device_mismatch",
            f"SenML name {name[:80]!r} names another device than the topic's {ctx.device_id!r}",
        )
    return metric_name
