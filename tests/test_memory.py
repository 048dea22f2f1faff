"""The byte budgets of one ingest process (issue 14, item 2): the inbox, the dedup cache and the alert evaluator's
per-device state each hold their budget when filled past it, and nothing is lost for it."""

from __future__ import annotations

import queue
import threading
from collections.abc import Hashable, Sequence

import numpy as np
import psycopg
import pytest

from lccm.engine.alerts import NO_TS, SeriesInfo
from lccm.ingest.codec import Limits
from lccm.ingest.decoder import RegistryHolder, make_decoder
from lccm.store.writer import ReadingColumns
from lccm.stream.alerts import SPAN_BYTES, DeliveryClock, DeviceCache, Span, sample_watermarks, watermarks_at
from lccm.stream.batch import FlushPolicy
from lccm.stream.dedup import KEY_BYTES, Keys, RecentReadings
from lccm.stream.inbox import MESSAGE_OVERHEAD, ByteBoundedInbox
from lccm.stream.loop import DeviceSet, RawMessage, StreamLoop
from tests._registry import registry
from tests.test_stream import FakeClock, MemorySink, msg


def cols(device: np.ndarray, ts: np.ndarray, value: np.ndarray, metric: int = 1) -> ReadingColumns:
    n = len(device)
    return ReadingColumns(
        device_id=np.asarray(device, dtype=np.int32),
        metric_id=np.full(n, metric, dtype=np.int16),
        ts_us=np.asarray(ts, dtype=np.int64),
        value=np.asarray(value, dtype=np.float64),
        seq=np.zeros(n, dtype=np.int64),
        received_at_us=np.zeros(n, dtype=np.int64),
    )


# --- the dedup cache --------------------------------------------------------------------------------------------


def test_dedup_cache_holds_its_byte_budget_and_keeps_the_newest() -> None:
    budget = 1000 * KEY_BYTES
    cache = RecentReadings(budget)
    for b in range(50):  # 50 batches of 100 readings: five times the capacity
        ts = np.arange(100, dtype=np.int64) + 100 * b
        cache.remember(Keys.of(cols(np.full(100, 7), ts, ts * 0.5)))
        assert len(cache) <= cache.capacity == 1000
        assert cache.nbytes <= budget
    newest = np.arange(4900, 5000, dtype=np.int64)
    assert cache.contains(Keys.of(cols(np.full(100, 7), newest, newest * 0.5))).all()
    oldest = np.arange(100, dtype=np.int64)
    assert not cache.contains(Keys.of(cols(np.full(100, 7), oldest, oldest * 0.5))).any()
    assert len(cache) >= 3 * cache.capacity // 4


def test_dedup_cache_matches_only_the_exact_reading() -> None:
    cache = RecentReadings(10_000 * KEY_BYTES)
    ts = np.arange(10, dtype=np.int64)
    cache.remember(Keys.of(cols(np.full(10, 3), ts, np.ones(10))))
    assert cache.contains(Keys.of(cols(np.full(10, 3), ts, np.ones(10)))).all()
    assert not cache.contains(Keys.of(cols(np.full(10, 3), ts, np.full(10, 2.0)))).any()  # a correction
    assert not cache.contains(Keys.of(cols(np.full(10, 4), ts, np.ones(10)))).any()  # another device
    assert not cache.contains(Keys.of(cols(np.full(10, 3), ts, np.ones(10), metric=2))).any()


def test_a_hash_collision_only_misses() -> None:
    """Two different readings with the same hash: neither is taken for the other."""
    cache = RecentReadings(100 * KEY_BYTES)
    one = np.ones(1, dtype=np.uint64)
    a = Keys(one * 5, one * 1, one * 10, one * 20)
    b = Keys(one * 5, one * 1, one * 10, one * 21)
    c = Keys(one * 5, one * 2, one * 10, one * 20)
    cache.remember(a)
    cache.remember(c)
    assert cache.contains(a).all() and cache.contains(c).all()
    assert not cache.contains(b).any()


def test_repeats_within_a_batch_keep_the_first() -> None:
    k = Keys.of(cols(np.array([1, 1, 1, 2]), np.array([5, 5, 5, 5]), np.array([1.0, 1.0, 2.0, 1.0])))
    assert k.first_occurrences().tolist() == [True, False, True, True]


def make_loop(
    inbox: queue.SimpleQueue[RawMessage] | ByteBoundedInbox, sink: MemorySink, max_readings: int = 100, **kw: int
) -> StreamLoop:
    acked: list[Hashable] = []

    def ack(tokens: Sequence[Hashable]) -> None:
        acked.extend(tokens)

    loop = StreamLoop(
        inbox=inbox,
        decode=make_decoder(RegistryHolder(registry), Limits()),
        sink=sink,
        ack=ack,
        policy=FlushPolicy(max_readings, 0.05),
        clock=FakeClock(),
        dedup_cache_bytes=kw.get("dedup_cache_bytes", 2**20),
    )
    loop.acked = acked  # type: ignore[attr-defined]
    return loop


def test_a_small_dedup_cache_sends_what_it_forgot_to_the_database() -> None:
    """Redeliveries older than the cache reach the sink (the database's key drops them); recent ones are dropped
    in memory; no reading is lost either way."""
    inbox: queue.SimpleQueue[RawMessage] = queue.SimpleQueue()
    sink = MemorySink()
    loop = make_loop(inbox, sink, max_readings=5, dedup_cache_bytes=20 * KEY_BYTES)
    for i in range(60):  # an hour of minutes (the received time allows no more)
        inbox.put(msg(i, 10.0 + i, i))
    while loop.pump():
        loop.flush()
    assert len(sink.rows) == 60
    for i in (0, 1, 57, 58):  # redelivered: two forgotten, two remembered
        inbox.put(msg(i, 10.0 + i, f"again-{i}"))
    loop.pump()
    loop.flush()
    assert len(loop.dedup_cache) <= 20
    assert len(sink.rows) == 62 and loop.stats.duplicates_dropped == 2
    assert {r[2] for r in sink.rows} == {(1795331100 + 60 * i) * 1_000_000 for i in range(60)}


# --- the inbox --------------------------------------------------------------------------------------------------


def big(i: int, size: int) -> RawMessage:
    """Message ``i`` (its token), padded to about ``size`` bytes; readings repeat every hour (60 messages)."""
    base = msg(i % 60, 1.0 + i % 60, i)
    return RawMessage(base.topic, base.payload + b" " * size, base.received_at_us, base.token)


def test_the_inbox_makes_the_producer_wait_past_its_budget_and_loses_nothing() -> None:
    size = 10_000
    budget = 5 * (size + 200)
    inbox = ByteBoundedInbox(budget)
    produced = threading.Event()

    def produce() -> None:
        for i in range(50):
            inbox.put(big(i, size))
        produced.set()

    t = threading.Thread(target=produce)
    t.start()
    assert not produced.wait(0.3)  # blocked: the budget holds about four of them
    assert inbox.queued_bytes <= budget and inbox.qsize() < 6
    got = [inbox.get(timeout=5).token for _ in range(50)]
    t.join(5)
    assert produced.is_set() and got == list(range(50))
    assert inbox.waits > 0 and inbox.peak_bytes <= budget and inbox.queued_bytes == 0


def test_a_message_bigger_than_the_budget_passes_alone() -> None:
    inbox = ByteBoundedInbox(2**20)
    inbox.put(big(0, 2**21))  # empty: admitted whatever its size
    with pytest.raises(queue.Full):
        inbox.put(big(1, 10), timeout=0.05)  # nothing more until it is taken
    assert inbox.get_nowait().token == 0
    inbox.put(big(1, 10), timeout=0.05)
    assert (
        inbox.qsize() == 1 and inbox.queued_bytes == len(big(1, 10).payload) + len(big(1, 10).topic) + MESSAGE_OVERHEAD
    )
    with pytest.raises(queue.Empty):
        ByteBoundedInbox(2**20).get(timeout=0.01)


def test_the_stream_loop_drains_a_full_inbox_and_acks_everything() -> None:
    inbox = ByteBoundedInbox(3 * (2_000 + 300))
    sink = MemorySink()
    loop = make_loop(inbox, sink, max_readings=7)

    def produce() -> None:
        for i in range(300):
            inbox.put(big(i, 2_000))

    t = threading.Thread(target=produce)
    t.start()
    while len(loop.acked) < 300:  # type: ignore[attr-defined]
        loop.step()
        loop.flush()
    t.join(5)
    assert len(sink.rows) == 60 and sorted(loop.acked) == list(range(300))  # type: ignore[attr-defined]
    assert inbox.waits > 0 and inbox.peak_bytes <= inbox.budget_bytes


# --- the alert evaluator's per-device state ---------------------------------------------------------------------


def test_a_device_no_index_rule_watches_keeps_two_times() -> None:
    clock = DeliveryClock("event", 900_000_000, history_bytes=4096)
    clock.keep_history_of(frozenset({2}))
    for i in range(10_000):
        for d in (1, 2):
            clock.remember(d, Span(i * 10, i * 10 + 5, i * 10 + 5), i * 10 + 5)
    assert len(clock.history(1)[0]) == 0
    assert len(clock.history(2)[0]) == clock.history_spans == 4096 // SPAN_BYTES  # capped
    assert clock.first_seen(1) == 0 and clock.newest() == {1: 99_995, 2: 99_995}
    assert clock.nbytes() < 2 * 200 + 4096 + 200


def test_pruned_history_gives_the_same_watermarks_after_the_frontier() -> None:
    rng = np.random.default_rng(3)
    clock = DeliveryClock("wall", 900_000_000, history_bytes=1 << 20)
    spans = []
    for i in range(500):
        hi = int(i * 300_000_000 + rng.integers(0, 300_000_000))
        lo = hi - int(rng.integers(0, 3_600_000_000))  # some batches carry old data
        wm = hi + int(rng.integers(0, 2_000_000_000))
        spans.append(Span(lo, hi, wm))
        clock.remember(9, spans[-1], hi)
    frontier = 80_000_000_000
    clock.prune(9, frontier)
    his, wms = clock.history(9)
    assert len(his) < 500 and (his > frontier).all()
    ts = np.sort(rng.integers(frontier + 1, 160_000_000_000, 400))
    expected = sample_watermarks(ts, spans, int(NO_TS))
    assert (watermarks_at(ts, his, wms, int(NO_TS)) == expected).all()


# --- what stays per device ----------------------------------------------------------------------------------------


def test_the_stream_counts_each_device_seen_once() -> None:
    seen = DeviceSet()
    seen.update(np.array([5, 3, 5], dtype=np.int32))
    seen.update(range(4))  # 3 again, and 0, 1, 2
    seen.update(np.array([100_000], dtype=np.int32))  # grows
    seen.update([])
    assert len(seen) == 6
    assert all(d in seen for d in (0, 1, 2, 3, 5, 100_000)) and 4 not in seen and 100_001 not in seen


def test_the_evaluators_device_catalogue_holds_each_shared_value_once(fresh_db: str) -> None:
    with psycopg.connect(fresh_db) as conn:
        conn.execute(
            "INSERT INTO sites (id, site_code, name, kind, city, lat, lon) VALUES"
            " (1, 'S1', 'One', 'building', 'Lampang', 18.29, 99.49), (2, 'S2', 'Two', 'station', 'Lampang', 1, 1)"
        )
        conn.execute(
            "INSERT INTO devices (id, device_id, site_id, kind, name, cadence_s, meta) VALUES"
            " (1, 'M1', 1, 'electricity_meter', 'a', 900, '{}'), (2, 'M2', 1, 'electricity_meter', 'b', 900, '{}'),"
            " (3, 'Q1', 2, 'aq_station', 'c', 1, '{\"tags\": [\"roof\"]}'),"
            " (4, 'Q2', 2, 'aq_station', 'd', 300, '{\"tags\": [\"roof\"]}')"
        )
        cache = DeviceCache(lambda: 0, 60_000_000)
        assert cache.refresh(conn, force=True)
        organisation = conn.execute("SELECT id FROM organisations WHERE code = 'lampang'").fetchone()
    assert organisation is not None
    us = 1_000_000
    assert cache.devices == {
        1: SeriesInfo(1, "M1", "S1", "electricity_meter", "building", 900 * us, 18.29, 99.49),
        2: SeriesInfo(2, "M2", "S1", "electricity_meter", "building", 900 * us, 18.29, 99.49),
        3: SeriesInfo(3, "Q1", "S2", "aq_station", "station", us, 1.0, 1.0, frozenset({"roof"})),
        4: SeriesInfo(4, "Q2", "S2", "aq_station", "station", 300 * us, 1.0, 1.0, frozenset({"roof"})),
    }
    assert cache.organisations == dict.fromkeys((1, 2, 3, 4), organisation[0])
    one, two, q1, q2 = (cache.devices[d] for d in (1, 2, 3, 4))
    assert one.site is two.site and one.device_kind is two.device_kind and one.lat is two.lat
    assert one.cadence_us is two.cadence_us and one.tags is two.tags and q1.tags is q2.tags
    # Shared per field: an organisation id of 1 and a latitude of 1.0 are equal keys of one dict, not of two.
    assert type(q1.lat) is float and type(cache.organisations[3]) is int
