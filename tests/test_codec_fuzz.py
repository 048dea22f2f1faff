"""Fuzzing the decoder: every input ends decoded or refused with a documented reason, never in the ``decoder_error``
safety net, and each refusal is logged as one line without a traceback.

Inputs are valid messages of both forms with one to three fields replaced, deleted or added (numbers at and beyond
the float and int64 limits, far and ancient times, wrong types, deep nesting), their bytes truncated or spliced,
arbitrary JSON, and arbitrary topics under and beside the root. ``LCCM_FUZZ_EXAMPLES`` sets the number of examples
per test (default 400, so the suite stays quick; the run reported for issue 11 used 20,000).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lccm.ingest.codec import Limits, decode_message
from lccm.ingest.decoder import RegistryHolder, make_decoder
from lccm.stream.batch import BatchBuilder
from lccm.stream.loop import RawMessage
from tests._registry import METRICS, registry
from tests.test_contract_doc import _table_after

ROOT = "lccm/v1"
NOW_US = 1_795_420_800 * 1_000_000  # 2026-11-22T08:00:00Z
LIMITS = Limits(max_payload_bytes=4096, max_readings=10, future_tolerance_s=300.0)
T = 1_795_417_500  # 2026-11-22T07:05:00Z
EXAMPLES = int(os.environ.get("LCCM_FUZZ_EXAMPLES", "400"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
DOCUMENTED = {row[0].strip("`") for row in _table_after("## What is refused, and why")}
RANGE = {m.id: (m.min_value, m.max_value) for m in METRICS}
REGISTRY = registry({"M1": 7, "AQ1": 8, "L1": 9, "EL": 10}, {"EL": None})  # EL: a city with no slug

VALID: list[Any] = [
    {"device_id": "M1", "seq": 5, "ts": "2026-11-22T14:05:00+07:00", "values": {"energy_kwh": 1.5, "power_kw": 2.0}},
    {"seq": 6, "records": [{"ts": T, "values": {"energy_wh": 1500}}, {"ts": T + 60.5, "values": {"lamp_on": True}}]},
    [
        {"bn": "urn:dev:lccm:M1:", "bt": T, "bver": 10, "seq": 7, "n": "energy", "u": "kWh", "v": 1.5},
        {"n": "power", "u": "W", "v": 3, "t": 60},
        {"bu": "ppb", "bv": 100, "n": "so2", "v": 5, "t": 120},
        {"n": "lamp_on", "vb": False, "t": 180},
    ],
]
EDGE_NUMBERS = [0, -1, 1, 2**28 - 1, 2**31, 2**53 + 1, 2**63, -(2**63), 10**400, -(10**400), 10, 11, 9]
EDGE_FLOATS = [0.0, -0.0, 1e-320, 1e308, -1e308, 1.7976931348623157e308, float("inf"), float("-inf"), float("nan")]
EDGE_STRINGS = [
    "", "2026-11-22T14:05:00+07:00", "2026-11-22T14:05:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
    "2026-11-22", "2026-W47-1T00:00+07:00", "M1:", "urn:dev:lccm:M1:", "M2:", "energy", "kWh", "BTU", "\x00", "\ud800",
    "ลำปาง", "energy_kwh", "x" * 300,
]  # fmt: skip
KEYS = ["bn", "bt", "bu", "bv", "bver", "n", "u", "v", "vb", "vs", "t", "ut", "s", "seq", "ts", "values", "records",
        "device_id", "energy_kwh", "power_w", "crit_", "lamp_on"]  # fmt: skip
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from(EDGE_NUMBERS), st.floats(),
    st.sampled_from(EDGE_FLOATS), st.floats(min_value=T - 1e9, max_value=T + 1e9), st.text(max_size=12),
    st.sampled_from(EDGE_STRINGS),
)  # fmt: skip
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner,
                                                               max_size=4),
    max_leaves=12,
)  # fmt: skip
TOPICS = st.one_of(
    st.sampled_from([
        f"{ROOT}/lampang/M1/up", f"{ROOT}/lampang/AQ1/up", f"{ROOT}/lampang/M1/status", f"{ROOT}/chiang-mai/M1/up",
        f"{ROOT}/lampang/EL/up", f"{ROOT}/lampang/NOPE/up", f"{ROOT}/Lampang/M1/up", f"{ROOT}/lampang/M1/down",
        f"{ROOT}/lampang/M1/up/extra", f"{ROOT}/lampang//up", f"{ROOT}/lampang/M1", ROOT, f"{ROOT}/",
        f"{ROOT}/lampang/alerts/critical", f"{ROOT}/lampang/M1/cmd/reboot", f"{ROOT}/{'c' * 33}/M1/up",
        f"{ROOT}/lampang/{'d' * 65}/up", f"{ROOT}/lampang/-M1/up",
    ]),
    st.builds(lambda parts: "/".join([ROOT, *parts]), st.lists(st.text(max_size=6), max_size=5)),
)  # fmt: skip


def _mutate(doc: Any, draw: Callable[[st.SearchStrategy[Any]], Any]) -> Any:
    """Replace, delete, add or repeat one thing somewhere in ``doc`` (a path drawn level by level, mostly down to
    a leaf, where the near-valid inputs are)."""
    descend = draw(st.integers(0, 4)) > 0
    if isinstance(doc, dict) and doc and descend:
        key = draw(st.sampled_from(sorted(doc)))
        return {**doc, key: _mutate(doc[key], draw)}
    if isinstance(doc, list) and doc and descend:
        i = draw(st.integers(0, len(doc) - 1))
        return [*doc[:i], _mutate(doc[i], draw), *doc[i + 1 :]]
    action = draw(st.sampled_from(["replace", "delete", "add", "repeat"]))
    if action == "repeat" and isinstance(doc, list):
        return doc * draw(st.integers(2, 12))
    if action == "replace" or not isinstance(doc, dict | list):
        return draw(JSONISH)
    if isinstance(doc, dict):
        if action == "delete" and doc:
            key = draw(st.sampled_from(sorted(doc)))
            return {k: v for k, v in doc.items() if k != key}
        return {**doc, draw(st.sampled_from(KEYS)): draw(JSONISH)}
    if action == "delete" and doc:
        return doc[: draw(st.integers(0, len(doc) - 1))]
    return [*doc, draw(JSONISH)]


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, allow_nan=True).encode("utf-8", errors="surrogatepass")


@st.composite
def mutated_messages(draw: Callable[[st.SearchStrategy[Any]], Any]) -> bytes:
    doc = draw(st.sampled_from(VALID))
    for _ in range(draw(st.integers(1, 3))):
        doc = _mutate(doc, draw)
    return _dumps(doc)


@st.composite
def spliced_bytes(draw: Callable[[st.SearchStrategy[Any]], Any]) -> bytes:
    raw = _dumps(draw(st.sampled_from(VALID)))
    how = draw(st.sampled_from(["truncate", "splice", "token", "nest"]))
    if how == "truncate":
        return raw[: draw(st.integers(0, len(raw)))]
    if how == "nest":
        depth = draw(st.integers(1, 5000))
        return b"[" * depth + b"1" + b"]" * draw(st.integers(0, depth))
    at = draw(st.integers(0, len(raw)))
    if how == "token":
        token = draw(st.sampled_from([b"NaN", b"-Infinity", b"1e999", b"-", b"1" + b"0" * 5000, b'"\\ud800"', b"\xff"]))
        return raw[:at] + token + raw[at:]
    return raw[:at] + draw(st.binary(max_size=8)) + raw[at + draw(st.integers(0, 4)) :]


MESSAGES = st.one_of(mutated_messages(), spliced_bytes(), JSONISH.map(_dumps), st.binary(max_size=64))


def _check(topic: str, payload: bytes) -> None:
    batch = BatchBuilder()
    before = decode_message(batch, REGISTRY, f"{ROOT}/lampang/M1/up", _dumps(VALID[0]), NOW_US, LIMITS)
    assert before.refusal is None and len(batch) == 2
    out = decode_message(batch, REGISTRY, topic, payload, NOW_US, LIMITS)
    if out.outbound:
        event("outbound")
        assert len(batch) == 2
        return
    if out.refusal is None:
        event("accepted")
        assert len(batch) == 2 + out.readings
        for metric, ts_us, value in zip(batch.metric_id, batch.ts_us, batch.value, strict=True):
            lo, hi = RANGE[metric]
            assert lo <= value <= hi
            assert 2**28 * 1_000_000 <= ts_us <= NOW_US + 300_000_000
        return
    event(out.refusal.reason)
    assert out.refusal.reason != "decoder_error", (topic, payload[:300], out.refusal.detail)
    assert out.refusal.reason in DOCUMENTED
    assert out.refusal.detail and "\x00" not in out.refusal.detail
    out.refusal.detail.encode("utf-8")  # storable as PostgreSQL text: no lone surrogate
    assert len(batch) == 2, "a refused message leaves the batch as it was"


@FUZZ
@given(MESSAGES)
def test_fuzzed_payloads_never_reach_the_decoder_error_branch(payload: bytes) -> None:
    _check(f"{ROOT}/lampang/M1/up", payload)


@FUZZ
@given(TOPICS, st.one_of(MESSAGES, st.sampled_from([b"online", b"offline", b""])))
def test_fuzzed_topics_are_refused_with_a_documented_reason(topic: str, payload: bytes) -> None:
    _check(topic, payload)


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (f"{ROOT}/lampang/M1/up", b"[" * 4000, "bad_json"),  # orjson stops at depth 1024, the stdlib fallback recurses
        (f"{ROOT}/lampang/M1/up", b'{"ts": 1' + b"0" * 400 + b', "values": {"energy_kwh": 1}}', "future_time"),
        (f"{ROOT}/lampang/M1/up", b'{"ts": -1' + b"0" * 400 + b', "values": {"energy_kwh": 1}}', "bad_time"),
        (f"{ROOT}/lampang/M1/up", b'{"ts": 1.7976931348623157e308, "values": {"energy_kwh": 1}}', "future_time"),
        (f"{ROOT}/lampang/M1/up", b'{"ts": "9999-12-31T23:59:59-14:00", "values": {"energy_kwh": 1}}', "future_time"),
        (f"{ROOT}/lampang/M1/up", b'{"ts": "0001-01-01T00:00:00+14:00", "values": {"energy_kwh": 1}}', "bad_time"),
        (f"{ROOT}/lampang/M1/up", b'[{"bt": 1' + b"0" * 400 + b', "n": "energy", "v": 1}]', "bad_time"),
        (f"{ROOT}/lampang/M1/up", b'[{"bt": 1e308, "t": 1e308, "n": "energy", "v": 1}]', "bad_time"),
        (f"{ROOT}/lampang/M1/up", b'[{"bt": 1795417500, "bv": 1' + b"0" * 400 + b', "n": "energy", "v": 1}]',
         "out_of_range"),
        (f"{ROOT}/lampang/M1/up", b'[{"bt": 1795417500, "n": "energy", "v": 1' + b"0" * 400 + b"}]", "out_of_range"),
        (f"{ROOT}/lampang/M1/up", b'{"ts": 1795417500, "values": {"power_kw": 1e306}}', "out_of_range"),
    ],
)  # fmt: skip
def test_the_inputs_that_used_to_end_as_unexpected_decoder_errors(topic: str, payload: bytes, reason: str) -> None:
    out = decode_message(BatchBuilder(), REGISTRY, topic, payload, NOW_US, LIMITS)
    assert out.refusal is not None and out.refusal.reason == reason, out.refusal


def test_each_refusal_is_logged_as_one_line_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    decode = make_decoder(RegistryHolder(lambda: REGISTRY, refresh_interval_s=3600), LIMITS)
    batch = BatchBuilder()
    bad = [b"{not json", b"", b'[{"bver": 11, "bt": 1795417500, "n": "energy", "v": 1}]', b"[" * 4000]
    with caplog.at_level(logging.DEBUG, logger="lccm"):
        for i, payload in enumerate(bad):
            decode(batch, RawMessage(f"{ROOT}/lampang/M1/up", payload, NOW_US, i))
        decode(batch, RawMessage(f"{ROOT}/lampang/alerts/critical", b"{}", NOW_US, "alert"))
    refusals = [r for r in caplog.records if r.name.startswith("lccm.ingest")]
    assert [d.reason for d in batch.dead_letters] == ["bad_json", "bad_payload", "unsupported_version", "bad_json"]
    assert len(refusals) == len(bad), [r.getMessage() for r in refusals]
    for record, letter in zip(refusals, batch.dead_letters, strict=True):
        assert record.levelno == logging.INFO and record.exc_info is None
        assert "\n" not in record.getMessage() and letter.reason in record.getMessage()
    assert batch.outbound == 1
