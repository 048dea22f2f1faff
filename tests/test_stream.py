"""The stream loop with an injected clock: tests advance time, never sleep."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence

import psycopg
import pytest

from lccm.ingest.codec import Limits
from lccm.ingest.decoder import RegistryHolder, make_decoder
from lccm.ingest.registry import Registry
from lccm.runtime import DbSink, load_registry
from lccm.store.writer import ReadingColumns, WriteResult
from lccm.stream.batch import BatchBuilder, FlushPolicy
from lccm.stream.loop import RawMessage, Sink, StreamLoop
from lccm.workers import Backoff, Worker
from tests._registry import registry

ROOT = "lccm/v1"
T = 1795331100  # 2026-11-22T07:05:00Z


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class MemorySink:
    """Keeps what was written; can be told to fail the next N writes."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, int, float]] = []
        self.fail_next = 0
        self.dead: list[str] = []

    def __call__(self, batch: BatchBuilder, cols: ReadingColumns) -> WriteResult:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("database went away")
        new = list(
            zip(
                cols.device_id.tolist(), cols.metric_id.tolist(), cols.ts_us.tolist(), cols.value.tolist(), strict=False
            )
        )
        self.rows += new
        self.dead += [d.reason for d in batch.dead_letters]
        return WriteResult(len(new), 0, len(batch.dead_letters))


def msg(i: int, energy: float, token: Hashable, device: str = "M1") -> RawMessage:
    payload = f'{{"seq": {i}, "ts": {T + 60 * i}, "values": {{"energy_kwh": {energy}}}}}'.encode()
    return RawMessage(f"{ROOT}/lampang/{device}/up", payload, (T + 3600) * 1_000_000, token)


def make_loop(
    sink: Sink,
    clock: FakeClock,
    max_readings: int = 100,
    max_wait_s: float = 0.05,
    acked: list[Hashable] | None = None,
) -> tuple[StreamLoop, queue.SimpleQueue[RawMessage], list[Hashable]]:
    inbox: queue.SimpleQueue[RawMessage] = queue.SimpleQueue()
    acked = [] if acked is None else acked

    def ack(tokens: Sequence[Hashable]) -> None:
        acked.extend(tokens)

    loop = StreamLoop(
        inbox=inbox,
        decode=make_decoder(RegistryHolder(registry), Limits()),
        sink=sink,
        ack=ack,
        policy=FlushPolicy(max_readings, max_wait_s),
        dedup_cache_bytes=2**20,
        clock=clock,
    )
    return loop, inbox, acked


def test_flush_by_size() -> None:
    sink, clock = MemorySink(), FakeClock()
    loop, inbox, acked = make_loop(sink, clock, max_readings=3)
    for i in range(7):
        inbox.put(msg(i, 10.0 + i, i))
    loop.pump()
    assert loop.flush_if_due() is not None  # 3 readings: due by size without any time passing
    assert len(sink.rows) == 3 and acked == [0, 1, 2]


def test_flush_by_deadline_uses_the_injected_clock() -> None:
    sink, clock = MemorySink(), FakeClock()
    loop, inbox, acked = make_loop(sink, clock, max_readings=100, max_wait_s=0.05)
    inbox.put(msg(0, 1.0, "a"))
    loop.pump()
    assert loop.flush_if_due() is None and acked == []
    clock.now += 0.049
    assert loop.flush_if_due() is None
    clock.now += 0.002
    assert loop.flush_if_due() is not None
    assert acked == ["a"] and len(sink.rows) == 1


def test_duplicates_within_and_across_batches_are_dropped_but_acked() -> None:
    sink, clock = MemorySink(), FakeClock()
    loop, inbox, acked = make_loop(sink, clock)
    for token, i in enumerate([0, 1, 1, 2]):  # message 1 twice in one batch
        inbox.put(msg(i, 5.0, token))
    loop.pump()
    loop.flush()
    for token, i in enumerate([2, 3], start=10):  # message 2 again, in the next batch
        inbox.put(msg(i, 5.0, token))
    loop.pump()
    loop.flush()
    assert sorted(r[2] for r in sink.rows) == [(T + 60 * i) * 1_000_000 for i in range(4)]
    assert loop.stats.duplicates_dropped == 2
    assert acked == [0, 1, 2, 3, 10, 11]


def test_a_failed_write_keeps_its_batch_and_nothing_is_acked_before_it_succeeds() -> None:
    """The flush raises and keeps the batch; the worker running the loop (lccm/workers.py) retries it with backoff."""
    sink, clock = MemorySink(), FakeClock()
    acks_seen_during_failure: list[int] = []
    loop, inbox, acked = make_loop(sink, clock)
    sink.fail_next = 3
    real_sink_call = sink.__call__

    def watching_sink(batch: BatchBuilder, cols: ReadingColumns) -> WriteResult:
        acks_seen_during_failure.append(len(acked))
        return real_sink_call(batch, cols)

    loop._sink = watching_sink
    inbox.put(msg(0, 1.0, "x"))
    loop.pump()
    for _ in range(3):
        with pytest.raises(ConnectionError):
            loop.flush()
        assert acked == [] and loop.stats.batches == 0
    loop.flush()
    assert acks_seen_during_failure == [0, 0, 0, 0]
    assert acked == ["x"] and len(sink.rows) == 1 and loop.stats.write_retries == 3


def test_keys_of_a_failed_batch_are_not_remembered() -> None:
    """A dedup window that remembered an uncommitted batch would drop the redelivered copy: data loss."""
    sink, clock = MemorySink(), FakeClock()
    loop, inbox, _ = make_loop(sink, clock)
    inbox.put(msg(0, 1.0, "first"))
    loop.pump()
    sink.fail_next = 1
    with pytest.raises(ConnectionError):
        loop.flush()
    loop.flush()  # the retry succeeds
    inbox.put(msg(0, 1.0, "redelivered"))
    loop.pump()
    loop.flush()
    assert len(sink.rows) == 1 and loop.stats.duplicates_dropped == 1


def test_dead_letters_travel_with_the_batch() -> None:
    sink, clock = MemorySink(), FakeClock()
    loop, inbox, acked = make_loop(sink, clock)
    inbox.put(RawMessage(f"{ROOT}/lampang/M1/up", b"{oops", T * 1_000_000, "bad"))
    inbox.put(msg(0, 1.0, "good"))
    loop.pump()
    loop.flush()
    assert sink.dead == ["bad_json"] and acked == ["bad", "good"]
    assert dict(loop.stats.dead_letters) == {"bad_json": 1}


def test_real_database_sink_stores_once_across_a_replayed_batch(fresh_db: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("INSERT INTO sites (site_code, name, kind, city) VALUES ('S', 's', 'building', 'lampang')")
        conn.execute(
            "INSERT INTO devices (device_id, site_id, kind, name, cadence_s)"
            " VALUES ('M1', 1, 'electricity_meter', 'm', 60)"
        )
        reg = load_registry(conn)
    assert reg.devices == {"M1": 1}
    sink = DbSink(fresh_db)
    for attempt in range(2):  # the second run is a full replay, as after a crash before the ack
        inbox: queue.SimpleQueue[RawMessage] = queue.SimpleQueue()
        loop = StreamLoop(
            inbox=inbox,
            decode=make_decoder(RegistryHolder(lambda: reg), Limits()),
            sink=sink,
            ack=lambda tokens: None,
            policy=FlushPolicy(100, 0.05),
            dedup_cache_bytes=2**20,
            clock=FakeClock(),
        )
        for i in range(5):
            inbox.put(msg(i, 100.0 + i, i))
        loop.pump()
        result = loop.flush()
        assert result is not None
        assert (result.inserted, result.duplicates) == ((5, 0) if attempt == 0 else (0, 5))
    sink.close()
    with psycopg.connect(fresh_db) as conn:
        got = conn.execute("SELECT value FROM readings ORDER BY ts").fetchall()
    assert [v for (v,) in got] == pytest.approx([100.0, 101.0, 102.0, 103.0, 104.0])


def test_a_device_imported_a_moment_ago_is_accepted_from_its_first_message() -> None:
    # The registry was loaded at t=0; the device is imported at t=1 and sends at once (well inside the 5 s reload
    # interval): the refusal makes the holder probe, the fingerprint has changed, it reloads, the message is stored.
    clock = FakeClock()
    devices = {"X1": 1}
    loads: list[float] = []
    probes: list[float] = []

    def loader() -> Registry:
        loads.append(clock.now)
        return registry(dict(devices))

    def probe() -> tuple[str, ...]:
        probes.append(clock.now)
        return tuple(sorted(devices))

    decode = make_decoder(RegistryHolder(loader, clock=clock, probe=probe, probe_interval_s=0.5), Limits())
    clock.now += 1.0
    devices["M1"] = 7
    batch = BatchBuilder()
    decode(batch, msg(0, 100.0, "a"))
    assert len(batch) == 1 and not batch.dead_letters and len(loads) == 2
    # A device nobody registered, flooding: at most one probe per interval, and no reload while nothing changed.
    before = len(probes)
    for i in range(50):
        decode(batch, msg(i, 1.0, i, device="NOPE"))
    assert len(probes) == before and len(loads) == 2  # all within 0.5 s of the last probe
    clock.now += 0.6
    decode(batch, msg(51, 1.0, 51, device="NOPE"))
    assert len(probes) == before + 1 and len(loads) == 2
    assert {d.reason for d in batch.dead_letters} == {"unknown_device"} and len(batch.dead_letters) == 51


# --- overlapped: the stream thread hands batches to a writer (in_flight >= 1) -----------------------------------------
class GatedSink(MemorySink):
    """A database that commits only when the test lets it: records what was committed and what was acked at that
    moment, so an ack before its commit shows."""

    def __init__(self, acked: list[Hashable]) -> None:
        super().__init__()
        self.gate = threading.Semaphore(0)
        self.writing = threading.Event()
        self.acked_at_commit: list[list[Hashable]] = []
        self._acked = acked

    def __call__(self, batch: BatchBuilder, cols: ReadingColumns) -> WriteResult:
        self.writing.set()
        assert self.gate.acquire(timeout=10), "the test never let the write commit"
        result = super().__call__(batch, cols)
        self.acked_at_commit.append(list(self._acked))
        return result


def overlapped(sink: Sink, acked: list[Hashable], max_readings: int) -> tuple[StreamLoop, Worker, Worker]:
    inbox: queue.SimpleQueue[RawMessage] = queue.SimpleQueue()
    loop = StreamLoop(
        inbox=inbox,
        decode=make_decoder(RegistryHolder(registry), Limits()),
        sink=sink,
        ack=acked.extend,
        policy=FlushPolicy(max_readings, 3600.0),
        dedup_cache_bytes=2**20,
        in_flight=1,
    )
    fast = Backoff(0.01, 0.02)
    stream = Worker("stream", loop.step, drain=loop.finish, idle_s=0.0, backoff=fast)
    writer = Worker("stream-writer", loop.write_step, drain=loop.write_pending, idle_s=0.0, backoff=fast)
    return loop, stream, writer


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def test_overlapped_acks_after_each_commit_in_order_while_the_next_batch_is_decoded() -> None:
    acked: list[Hashable] = []
    sink = GatedSink(acked)
    loop, stream, writer = overlapped(sink, acked, max_readings=2)
    inbox = loop._inbox
    writer.start()
    stream.start()
    try:
        for i in range(6):
            inbox.put(msg(i, 10.0 + i, i))
        # batch 1 (messages 0, 1) is being written and is not committed: nothing acked; batch 2 waits for room;
        # batch 3 is decoded meanwhile
        _until(sink.writing.is_set, "the writer never started")
        _until(lambda: len(loop._batch) == 2 and len(loop._ready) == 1, "the stream did not go on decoding")
        assert acked == []
        for _ in range(3):
            sink.gate.release()
        _until(lambda: acked == [0, 1, 2, 3, 4, 5], "not every message was acked")
        # each batch's acks came after its commit, never before, and in order
        assert sink.acked_at_commit == [[], [0, 1], [0, 1, 2, 3]]
        assert [r[3] for r in sink.rows] == [10.0 + i for i in range(6)]
        assert loop.stats.batches == 3 and loop.stats.readings_stored == 6
    finally:
        for _ in range(10):
            sink.gate.release()
        stream.stop(5)
        writer.stop(5)


def test_overlapped_dedup_against_the_batch_in_flight_and_a_failed_write_kept_in_order() -> None:
    acked: list[Hashable] = []
    sink = MemorySink()
    sink.fail_next = 3  # the first batch's write fails three times: nothing after it is written or acked before it
    loop, stream, writer = overlapped(sink, acked, max_readings=2)
    inbox = loop._inbox
    for i, token in ((0, "a"), (1, "b"), (1, "b-again"), (2, "c")):  # "b-again": a redelivery of b
        inbox.put(msg(i, 10.0 + i, token))
    writer.start()
    stream.start()
    try:
        _until(lambda: acked == ["a", "b", "b-again", "c"], "not every message was acked")
        assert sorted(sink.rows) == sorted(set(sink.rows)) and len(sink.rows) == 3  # the repeat dropped in memory
        assert loop.stats.write_retries == 3 and loop.stats.duplicates_dropped == 1
    finally:
        stream.stop(5)
        writer.stop(5)


def test_overlapped_stop_writes_what_the_stream_handed_over() -> None:
    """At stop the stream's drain hands its last batch over and the writer's drain, after it, writes it."""
    acked: list[Hashable] = []
    sink = MemorySink()
    loop, _, writer = overlapped(sink, acked, max_readings=100)  # never due by size, nor by time here
    for i in range(3):
        loop._inbox.put(msg(i, 10.0 + i, i))
    sink.fail_next = 1  # the writer's first try fails: its drain still writes the batch
    writer.start()
    loop.finish()  # as the stream worker's drain
    assert len(loop._batch) == 0
    assert writer.stop(5)
    assert acked == [0, 1, 2] and len(sink.rows) == 3
