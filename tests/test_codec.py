"""The decoder against the contract (docs/contract.md): hand-computed values and every refusal reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lccm.ingest import codec
from lccm.ingest.codec import Limits, decode_message
from lccm.stream.batch import BatchBuilder
from tests._registry import registry

ROOT = "lccm/v1"
NOW_US = int(datetime(2026, 11, 22, 8, 0, tzinfo=UTC).timestamp()) * 1_000_000
LIMITS = Limits(max_payload_bytes=4096, max_readings=10, future_tolerance_s=300.0)
T0 = datetime(2026, 11, 22, 7, 5, tzinfo=UTC)  # = 2026-11-22T14:05:00+07:00
T0_US = int(T0.timestamp()) * 1_000_000


def decode(payload: object, topic: str = f"{ROOT}/lampang/M1/up", batch: BatchBuilder | None = None):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    b = batch if batch is not None else BatchBuilder()
    out = decode_message(b, registry(), topic, raw, NOW_US, LIMITS)
    return out, b


def rows(b: BatchBuilder) -> list[tuple]:
    return list(zip(b.device_id, b.metric_id, b.ts_us, b.value, b.seq, b.received_at_us, strict=True))


def test_plain_object_with_iso_time_and_unit_conversion() -> None:
    out, b = decode({"device_id": "M1", "seq": 5, "ts": "2026-11-22T14:05:00+07:00",
                     "values": {"energy_wh": 15234720, "power_kw": 8.1205}})  # fmt: skip
    assert out.refusal is None and out.readings == 2
    assert rows(b) == [
        (7, 1, T0_US, pytest.approx(15234.72), 5, NOW_US),
        (7, 2, T0_US, pytest.approx(8120.5), 5, NOW_US),
    ]


def test_plain_records_form_with_epoch_seconds_and_fractions() -> None:
    t = T0.timestamp()
    out, b = decode({"seq": 9, "records": [
        {"ts": t, "values": {"energy_kwh": 1.5}},
        {"ts": t + 60.25, "values": {"energy_kwh": 1.75}},
    ]})  # fmt: skip
    assert out.refusal is None
    assert b.ts_us == [T0_US, T0_US + 60_250_000]
    assert b.value == [1.5, 1.75]
    assert b.seq == [9, 9]


def test_absent_seq_is_stored_as_no_seq() -> None:
    _, b = decode({"ts": "2026-11-22T07:05:00Z", "values": {"lamp_on": True}})
    assert b.seq == [-1] and b.value == [1.0] and b.ts_us == [T0_US]


def test_senml_base_fields_relative_time_and_units() -> None:
    t = T0.timestamp()
    pack = [
        {"bn": "urn:dev:lccm:AQ1:", "bt": t, "seq": 77, "n": "so2", "u": "ug/m3", "v": 262.03},
        {"n": "so2", "u": "ppm", "v": 0.15, "t": 60},
        {"n": "pm25", "v": 41.0, "t": 60},
        {"bu": "ppb", "bv": 100, "n": "so2", "v": 5, "t": 120},
    ]
    out, b = decode(pack, topic=f"{ROOT}/lampang/AQ1/up")
    assert out.refusal is None and out.readings == 4
    # 1 ppb SO2 = 64.066 / 24.45 = 2.6203 ug/m3, so 262.03 ug/m3 = 100.0005 ppb; 0.15 ppm = 150 ppb;
    # base value 100 + 5 = 105 ppb
    assert b.value == [pytest.approx(100.0005, abs=1e-3), pytest.approx(150.0), 41.0, 105.0]
    assert b.metric_id == [11, 11, 9, 11]
    assert b.ts_us == [T0_US, T0_US + 60_000_000, T0_US + 60_000_000, T0_US + 120_000_000]
    assert b.seq == [77] * 4 and b.device_id == [8] * 4


def test_senml_boolean_for_a_state_metric() -> None:
    out, b = decode([{"bn": "L1:", "bt": T0.timestamp(), "n": "lamp_on", "vb": False}], topic=f"{ROOT}/lampang/L1/up")
    assert out.refusal is None and b.value == [0.0]


def test_future_tolerance_is_inclusive_at_the_limit() -> None:
    limit_s = NOW_US / 1e6 + 300
    assert decode({"ts": limit_s, "values": {"pm25_ugm3": 1}}, topic=f"{ROOT}/lampang/AQ1/up")[0].refusal is None
    out, _ = decode({"ts": limit_s + 1, "values": {"pm25_ugm3": 1}}, topic=f"{ROOT}/lampang/AQ1/up")
    assert out.refusal is not None and out.refusal.reason == "future_time"


TS = "2026-11-22T14:05:00+07:00"
T = 1795417500 - 86_400  # 2026-11-22T07:05:00Z, before NOW
REFUSALS = [
    (b"{not json", "bad_json"),
    (b"\xff\xfe\x00", "bad_json"),
    (b'{"ts": 1795331100, "values": {"energy_kwh": NaN}}', "non_finite_value"),
    (b'{"ts": 1795331100, "values": {"energy_kwh": Infinity}}', "non_finite_value"),
    (b'"just a string"', "bad_payload"),
    ({"values": {"energy_kwh": 1}}, "bad_payload"),
    ({"ts": TS, "values": {}}, "bad_payload"),
    ({"ts": TS, "values": {"energy_kwh": "12"}}, "bad_payload"),
    ({"ts": TS, "values": {"energy_kwh": True}}, "bad_payload"),
    ({"records": []}, "bad_payload"),
    ({"seq": -1, "ts": TS, "values": {"energy_kwh": 1}}, "bad_payload"),
    ({"ts": TS, "values": {"rainfall_mm": 1}}, "unknown_metric"),
    ({"ts": TS, "values": {"energy_btu": 1}}, "unknown_unit"),
    ({"ts": "2026-11-22T14:05:00", "values": {"energy_kwh": 1}}, "naive_time"),
    ({"ts": "yesterday", "values": {"energy_kwh": 1}}, "bad_time"),
    ({"ts": 1000, "values": {"energy_kwh": 1}}, "bad_time"),
    ({"ts": "2027-01-01T00:00:00+07:00", "values": {"energy_kwh": 1}}, "future_time"),
    ({"ts": TS, "values": {"energy_kwh": -5}}, "out_of_range"),
    ({"device_id": "M2", "ts": TS, "values": {"energy_kwh": 1}}, "device_mismatch"),
    ({"records": [{"ts": TS, "values": {"energy_kwh": i}} for i in range(11)]}, "too_many_readings"),
    ([], "bad_payload"),
    ([{"bn": "M2:", "bt": T, "n": "energy", "v": 1}], "device_mismatch"),
    ([{"bt": T, "n": "energy", "vs": "x"}], "unknown_field"),
    ([{"bt": T, "n": "energy", "v": 1, "crit_": 1}], "unknown_field"),
    ([{"bt": T, "n": "energy"}], "bad_senml"),
    ([{"bt": T, "v": 1}], "bad_senml"),
    ([{"bt": T, "n": "energy", "u": "BTU", "v": 1}], "unknown_unit"),
    ([{"bt": T, "n": "wind", "v": 1}], "unknown_metric"),
    ([{"n": "energy", "v": 1, "t": -5}], "bad_time"),
    ([{"bt": T, "n": "energy", "vb": True}], "bad_senml"),
    ([{"bt": T, "n": "energy", "v": 1}, {"n": "energy", "v": 2, "seq": 3}], "bad_senml"),
    ([{"bt": T, "n": "energy", "v": 1}] * 11, "too_many_readings"),
    (b"x" * 5000, "oversized_payload"),
    (b'{"ts": 1795331100, "values": {"energy_kwh": 1' + b"0" * 400 + b"}}", "out_of_range"),
    ([{"bt": T, "n": ["energy"], "v": 1}], "bad_senml"),
    ([{"bt": T, "n": "energy", "u": {"k": 1}, "v": 1}], "bad_senml"),
    ([{"bt": T, "n": "energy", "v": 1, "t": "soon"}], "bad_senml"),
    (b"", "bad_payload"),
    ([{"bver": 11, "bt": T, "n": "energy", "v": 1}], "unsupported_version"),
    ([{"bt": T, "n": "energy", "v": 1}, {"bver": 2**40, "n": "energy", "v": 2, "t": 60}], "unsupported_version"),
    ([{"bver": 0, "bt": T, "n": "energy", "v": 1}], "bad_senml"),
    ([{"bver": 10.5, "bt": T, "n": "energy", "v": 1}], "bad_senml"),
    ([{"bver": "10", "bt": T, "n": "energy", "v": 1}], "bad_senml"),
    ([{"bver": 10, "bt": T, "n": "energy", "v": 1}, {"bver": 9, "n": "energy", "v": 2, "t": 60}], "bad_senml"),
    ([{"bt": T, "n": "energy", "v": 1}, {"bver": 9, "n": "energy", "v": 2, "t": 60}], "bad_senml"),
]


@pytest.mark.parametrize(("payload", "reason"), REFUSALS)
def test_each_refusal_has_its_reason_and_leaves_the_batch_unchanged(payload: object, reason: str) -> None:
    batch = BatchBuilder()
    ok, _ = decode({"ts": TS, "values": {"energy_kwh": 1.0}}, batch=batch)
    assert ok.refusal is None
    out, b = decode(payload, batch=batch)
    assert out.refusal is not None, f"expected {reason}"
    assert out.refusal.reason == reason, out.refusal.detail
    assert out.refusal.detail
    assert rows(b) == [(7, 1, T0_US, 1.0, -1, NOW_US)], "a refused message must leave nothing behind"


@pytest.mark.parametrize(
    ("topic", "reason", "ref"),
    [
        ("other/v1/lampang/M1/up", "bad_topic", "M1"),
        (f"{ROOT}/lampang/M1/down", "bad_topic", "M1"),
        (f"{ROOT}/Lampang/M1/up", "bad_topic", "M1"),
        (f"{ROOT}/lampang/M1/up/extra", "bad_topic", "M1"),
        (f"{ROOT}/lampang/NOPE/up", "unknown_device", "NOPE"),
        (f"{ROOT}/chiang-mai/M1/up", "city_mismatch", "M1"),
        (f"{ROOT}/lampang/M1", "bad_topic", "M1"),
        (ROOT, "bad_topic", None),
    ],
)
def test_topic_refusals(topic: str, reason: str, ref: str | None) -> None:
    out, b = decode({"ts": TS, "values": {"energy_kwh": 1}}, topic=topic)
    assert out.refusal is not None and out.refusal.reason == reason
    assert out.device_ref == ref
    assert len(b) == 0


def test_a_topic_decodes_the_same_the_second_time_and_the_topic_cache_stays_bounded() -> None:
    """What a topic says is worked out once (a per-root cache): the second message on each topic gets the same
    outcome as the first, and past TOPIC_CACHE topics the cache starts over instead of growing."""
    root = "cache/v1"
    limits = Limits(topic_root=root)
    ts = int(T0.timestamp())
    cases = [
        (f"{root}/lampang/M1/up", None, "M1"),
        (f"{root}/lampang/NOPE/up", "unknown_device", "NOPE"),
        (f"{root}/Lampang/M1/up", "bad_topic", "M1"),
        (f"{root}/lampang/alerts/critical", None, None),
    ]
    for _ in range(2):
        for topic, reason, ref in cases:
            b = BatchBuilder()
            out = decode_message(
                b, registry(), topic, json.dumps({"ts": ts, "values": {"energy_kwh": 1}}).encode(), NOW_US, limits
            )
            assert (out.refusal.reason if out.refusal else None, out.device_ref) == (reason, ref)
            assert len(b) == (1 if topic.endswith("M1/up") and reason is None else 0)
    for i in range(codec.TOPIC_CACHE + 10):
        decode_message(BatchBuilder(), registry(), f"{root}/lampang/D{i}/up", b"{}", NOW_US, limits)
        assert len(codec._TOPICS[root]) <= codec.TOPIC_CACHE


def test_senml_versions_up_to_10_are_accepted() -> None:
    """RFC 8428 section 4.4: only a version higher than the receiver's (10, RFC 8428's own) is refused."""
    for pack in (
        [{"bver": 10, "bt": T, "n": "energy", "v": 1}, {"bver": 10, "n": "energy", "v": 2, "t": 60}],
        [{"bt": T, "n": "energy", "v": 1}, {"bver": 10, "n": "energy", "v": 2, "t": 60}],  # default 10, then 10
        [{"bver": 5, "bt": T, "n": "energy", "v": 1}],
        [{"bver": 10.0, "bt": T, "n": "energy", "v": 1}],  # JSON has one number type: 10.0 is the integer 10
    ):
        out, _ = decode(pack)
        assert out.refusal is None and out.readings == len(pack), out.refusal


def test_outbound_topics_are_neither_decoded_nor_refused() -> None:
    for topic in (f"{ROOT}/lampang/alerts/critical", f"{ROOT}/x/alerts", f"{ROOT}/lampang/M1/cmd/reboot"):
        out, b = decode(b"{not json", topic=topic)
        assert out.outbound and out.refusal is None and len(b) == 0


def test_status_messages() -> None:
    out, _ = decode(b"online", topic=f"{ROOT}/lampang/M1/status")
    assert out.status == "online" and out.refusal is None
    out, _ = decode(b"rebooting", topic=f"{ROOT}/lampang/M1/status")
    assert out.refusal is not None and out.refusal.reason == "bad_status"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=1_600_000_000_000, max_value=NOW_US // 1000),  # epoch milliseconds
            st.floats(min_value=0, max_value=1e9, allow_nan=False),
            st.sampled_from(["kwh", "wh"]),
        ),
        min_size=1,
        max_size=10,
    ),
    st.booleans(),
)
def test_random_messages_decode_to_the_reference_values(records: list[tuple[int, float, str]], senml: bool) -> None:
    scale = {"kwh": 1.0, "wh": 0.001}
    if senml:
        payload: object = [{"bn": "M1:", "n": "energy", "u": {"kwh": "kWh", "wh": "Wh"}[u], "v": v, "bt": ms / 1000}
                           for ms, v, u in records]  # fmt: skip
    else:
        payload = {"records": [{"ts": ms / 1000, "values": {f"energy_{u}": v}} for ms, v, u in records]}
    out, b = decode(payload)
    assert out.refusal is None
    assert b.ts_us == [ms * 1000 for ms, _, _ in records]
    assert b.value == [pytest.approx(v * scale[u]) for _, v, u in records]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)
FIELDS = st.sampled_from(["bn", "bt", "n", "u", "v", "vb", "t", "seq", "ts", "values", "records", "energy_kwh"])


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        JSON,
        st.lists(st.dictionaries(FIELDS, JSON, max_size=5), max_size=4),
        st.dictionaries(FIELDS, JSON, max_size=5),
    )
)
def test_any_json_is_either_decoded_or_refused_never_raised(doc: object) -> None:
    batch = BatchBuilder()
    out, b = decode(json.dumps(doc, allow_nan=True).encode(), batch=batch)
    if out.refusal is None:
        assert len(b) == out.readings and len(set(map(len, (b.device_id, b.metric_id, b.ts_us, b.value)))) == 1
    else:
        assert len(b) == 0 and out.refusal.reason not in ("", "decoder_error")
