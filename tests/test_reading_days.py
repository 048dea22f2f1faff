"""The stored count of each device's reading times per Asia/Bangkok day (store/reading_days.py, migrations 018 and
023), queued by the production writer and counted by the day updater (stream/days.py) once it has drained: checked
against counts by hand, against a pure-Python count of everything written, and against migration 018's own backfill.

Bangkok midnight of 1 January 2026 is 2025-12-31 17:00Z. Device M (with seq), 15-minute cadence:

    seq 1  energy + power at 16:45Z       -> 31 Dec, one reading time
    seq 2  energy at 16:59:59.999999Z and energy + power at 17:00Z (one message straddling midnight)
                                           -> one time on 31 Dec, one on 1 Jan; seq 2 on both days
    seq 3  energy at 17:15Z and 17:30Z     -> 1 Jan, two times, one message
    later: the first batch again (a redelivery), power at 17:15Z (a second metric at a time already counted),
           energy at 17:30Z with another value (a correction: first wins), and seq 5 at 18:00Z received a day late
           -> 1 Jan: received 4 (17:00, 17:15, 17:30, 18:00), seq 2..5, 3 messages (2, 3, 5; 4 lost so far)
    then:  seq 4 at 17:45Z, reordered (a seq inside the day's range: the day is counted again in full)
           -> 1 Jan: received 5, seq 2..5, 4 messages
    then:  seq 2 again at 18:15Z (the device rebooted): a new time, not a new message

    31 Dec: received 2 (16:45, 16:59:59.999999), seq 1..2, 2 messages
     1 Jan: received 6 (17:00, 17:15, 17:30, 17:45, 18:00, 18:15), seq 2..5, 4 messages

Device N (no seq): temperature at 16:00Z and 17:00Z -> one time on each day, messages NULL.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from importlib import resources

import numpy as np
import psycopg
import pytest

from lccm.engine.timebase import BANGKOK
from lccm.imports.registry import parse_registry_csv
from lccm.store import queries, reading_days
from lccm.store.devices import import_registry
from lccm.store.writer import NO_SEQ, ReadingColumns, write_batch
from lccm.stream.days import DayUpdater
from tests._db import REGISTRY_HEADER_EN, device_pk, fresh_database, registry_csv, us

ENERGY, POWER, TEMPERATURE = 1, 2, 15
MIDNIGHT = datetime(2025, 12, 31, 17, tzinfo=UTC)  # 2026-01-01 00:00 Asia/Bangkok
DEC31, JAN1 = date(2025, 12, 31), date(2026, 1, 1)
TICK = timedelta(microseconds=1)
Q = timedelta(minutes=15)
REGISTRY = [
    "CNT,Counted,,building,Lampang,,,,CNT-M,electricity_meter,With seq,900,100",
    "CNT,Counted,,building,Lampang,,,,CNT-N,aq_station,Without seq,900,",
]

Row = tuple[int, int, datetime, float, int]  # device pk, metric id, ts, value, seq (NO_SEQ: none)


def _write(conn: psycopg.Connection, rows: Sequence[Row], received: datetime = MIDNIGHT + timedelta(hours=2)) -> None:
    cols = ReadingColumns(
        device_id=np.array([r[0] for r in rows], np.int32),
        metric_id=np.array([r[1] for r in rows], np.int16),
        ts_us=np.array([us(r[2]) for r in rows], np.int64),
        value=np.array([r[3] for r in rows], np.float64),
        seq=np.array([r[4] for r in rows], np.int64),
        received_at_us=np.full(len(rows), us(received), np.int64),
    )
    write_batch(conn, cols, [])


def _drain(conn: psycopg.Connection) -> None:
    """What the updaters do after the writer's commit: count the queued days in (on a connection of their own)."""
    DayUpdater(lambda: psycopg.connect(conn.info.dsn)).drain()


def _stored(conn: psycopg.Connection) -> dict[tuple[int, date], tuple[int, int | None, int | None, int | None]]:
    """The rows once the day updater has drained the queue."""
    _drain(conn)
    rows = conn.execute(
        "SELECT device_id, day, received, seq_first, seq_last, messages_received FROM reading_days"
    ).fetchall()
    return {(r[0], r[1]): (r[2], r[3], r[4], r[5]) for r in rows}


def _reference(rows: Sequence[Row]) -> dict[tuple[int, date], tuple[int, int | None, int | None, int | None]]:
    """The definition in plain Python over everything the writer kept (the first value of each key)."""
    kept: dict[tuple[int, int, datetime], int] = {}
    for dev, met, ts, _, seq in rows:
        kept.setdefault((dev, met, ts), seq)
    times: dict[tuple[int, date], set[datetime]] = defaultdict(set)
    seqs: dict[tuple[int, date], set[int]] = defaultdict(set)
    for (dev, _, ts), seq in kept.items():
        key = (dev, ts.astimezone(BANGKOK).date())
        times[key].add(ts)
        if seq != NO_SEQ:
            seqs[key].add(seq)
    return {
        k: (len(t), min(seqs[k], default=None), max(seqs[k], default=None), len(seqs[k]) or None)
        for k, t in times.items()
    }


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with fresh_database() as url, psycopg.connect(url, autocommit=True) as conn:
        import_registry(conn, parse_registry_csv(registry_csv(REGISTRY_HEADER_EN, REGISTRY)))
        yield url


def test_counts_by_hand_through_duplicates_redelivery_and_midnight(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        m, n = device_pk(conn, "CNT-M"), device_pk(conn, "CNT-N")
        first: list[Row] = [
            (m, ENERGY, MIDNIGHT - Q, 100.0, 1), (m, POWER, MIDNIGHT - Q, 5.0, 1),
            (m, ENERGY, MIDNIGHT - TICK, 101.0, 2), (m, ENERGY, MIDNIGHT, 101.0, 2), (m, POWER, MIDNIGHT, 6.0, 2),
            (m, ENERGY, MIDNIGHT + Q, 102.0, 3), (m, ENERGY, MIDNIGHT + 2 * Q, 103.0, 3),
            (n, TEMPERATURE, MIDNIGHT - 4 * Q, 30.0, NO_SEQ), (n, TEMPERATURE, MIDNIGHT, 29.0, NO_SEQ),
        ]  # fmt: skip
        _write(conn, first)
        # Committed with the readings: the days' work, queued; the count waits for the updater (the lag).
        assert conn.execute("SELECT count(*) FROM reading_days").fetchone() == (0,)
        queued = conn.execute("SELECT DISTINCT device_id, day FROM day_queue").fetchall()
        assert sorted(queued) == sorted([(m, DEC31), (m, JAN1), (n, DEC31), (n, JAN1)])
        after_first = _stored(conn)
        assert conn.execute("SELECT count(*) FROM day_queue").fetchone() == (0,)
        assert after_first == {
            (m, DEC31): (2, 1, 2, 2), (m, JAN1): (3, 2, 3, 2), (n, DEC31): (1, None, None, None),
            (n, JAN1): (1, None, None, None),
        }  # fmt: skip
        _write(conn, first)  # redelivered whole: nothing new
        assert _stored(conn) == after_first
        later: list[Row] = [
            (m, ENERGY, MIDNIGHT, 101.0, 2),  # a duplicate
            (m, POWER, MIDNIGHT + Q, 7.0, 3),  # a second metric at a time already counted
            (m, ENERGY, MIDNIGHT + 2 * Q, 999.0, 3),  # a correction: the first value stays
        ]
        _write(conn, later)
        assert _stored(conn) == after_first
        late: list[Row] = [(m, ENERGY, MIDNIGHT + 4 * Q, 104.0, 5)]
        _write(conn, late, received=MIDNIGHT + timedelta(days=1))
        assert _stored(conn)[(m, JAN1)] == (4, 2, 5, 3)
        reordered: list[Row] = [(m, ENERGY, MIDNIGHT + 3 * Q, 103.5, 4)]  # seq 4 inside the day's 2..5
        _write(conn, reordered, received=MIDNIGHT + timedelta(days=1))
        assert _stored(conn)[(m, JAN1)] == (5, 2, 5, 4)
        rebooted: list[Row] = [(m, ENERGY, MIDNIGHT + 5 * Q, 105.0, 2)]  # seq 2 again, at a new time
        _write(conn, rebooted)
        stored = _stored(conn)
        assert stored[(m, JAN1)] == (6, 2, 5, 4) and stored[(m, DEC31)] == (2, 1, 2, 2)
        assert stored == _reference(first + later + late + reordered + rebooted)
        # GET /completeness's figures are these rows
        found = {
            r.device_id: (r.received, r.seq_first, r.seq_last, r.messages_received)
            for r in queries.completeness(conn, day=JAN1, as_of=MIDNIGHT + timedelta(days=2), scope=None)
        }
        assert found == {"CNT-M": (6, 2, 5, 4), "CNT-N": (1, None, None, None)}
        # migration 018's backfill counts the same from the readings (then undone: 023's columns stay)
        with conn.transaction(force_rollback=True):
            conn.execute("DROP TABLE reading_days")
            conn.execute(resources.files("lccm.store").joinpath("migrations/018_reading_days.sql").read_text())
            assert _stored(conn) == stored


def test_two_writers_of_one_day_at_once(url: str) -> None:
    """Two writers of one device's day in overlapping transactions (the first commits last): the writers take no
    lock on the day, and once drained the day holds both."""
    day = MIDNIGHT + timedelta(days=10, hours=6)
    with psycopg.connect(url) as first, psycopg.connect(url, autocommit=True) as second:
        dev = device_pk(second, "CNT-N")
        _write(second, [(dev, TEMPERATURE, day - Q, 29.0, NO_SEQ)])
        assert _stored(second)[(dev, day.astimezone(BANGKOK).date())] == (1, None, None, None)
        with first.transaction():
            _write(first, [(dev, TEMPERATURE, day, 30.0, NO_SEQ)])
            _write(second, [(dev, TEMPERATURE, day + Q, 31.0, NO_SEQ)])  # committed while the first is open
            # the day is counted with the second writer's reading; the first's is not committed yet
            assert _stored(second)[(dev, day.astimezone(BANGKOK).date())] == (2, None, None, None)
        assert _stored(second)[(dev, day.astimezone(BANGKOK).date())] == (3, None, None, None)


def test_two_day_updaters_of_one_day_at_once(url: str) -> None:
    """Two claimers of one (device, day) (no leases: ``lccm recompute`` next to a live process), with spans that
    share a time: the second waits for the first one's transaction on the day's row, then sees what it counted (the span
    now overlaps the counted hull: the day is counted again) rather than adding the shared time a second time."""
    day = MIDNIGHT + timedelta(days=12, hours=6)
    key = (0, day.astimezone(BANGKOK).date())
    with psycopg.connect(url, autocommit=True) as conn:
        dev = device_pk(conn, "CNT-N")
        key = (dev, key[1])
        _write(conn, [(dev, TEMPERATURE, day - Q, 29.0, NO_SEQ)])
        assert _stored(conn)[key] == (1, None, None, None)
        _write(conn, [(dev, TEMPERATURE, day, 30.0, NO_SEQ), (dev, TEMPERATURE, day + Q, 31.0, NO_SEQ)])
        _write(conn, [(dev, POWER, day + Q, 1.0, NO_SEQ)])  # a second metric at day + Q: its own queue row
        second = DayUpdater(lambda: psycopg.connect(url), claim_limit=1)
        with psycopg.connect(url) as first, first.transaction():
            taken = reading_days.claim(first, 1)  # the older row: [day, day + Q]
            assert taken[2:] == ([us(day)], [us(day + Q)])
            reading_days.count_claimed(first, *taken)  # counted, locked, not committed yet
            other = threading.Thread(target=second.run_once)  # claims the other row: [day + Q, day + Q]
            other.start()
            with psycopg.connect(url, autocommit=True) as watch:
                while (
                    other.is_alive()
                    and not watch.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    ).fetchone()
                ):
                    other.join(0.01)
            assert other.is_alive()  # waiting for the first claimer's lock
        other.join()
        assert _stored(conn)[key] == (3, None, None, None)


def test_several_batches_in_one_transaction_of_the_callers(url: str) -> None:
    """A caller's own transaction around several writes: each batch adds its own readings once."""
    day = MIDNIGHT + timedelta(days=20, hours=3)
    with psycopg.connect(url, autocommit=True) as conn:
        dev = device_pk(conn, "CNT-M")
        batches: list[list[Row]] = [
            [(dev, ENERGY, day, 1.0, 1), (dev, POWER, day, 1.0, 1)],
            [(dev, ENERGY, day + Q, 2.0, 2)],
            [(dev, ENERGY, day + Q, 2.0, 2)],  # a repeat: nothing inserted
            [(dev, ENERGY, day + 2 * Q, 3.0, 3)],
        ]
        with conn.transaction():
            for rows in batches:
                _write(conn, rows)
        assert _stored(conn)[(dev, day.astimezone(BANGKOK).date())] == (3, 1, 3, 3)


def test_random_batches_against_a_count_in_python(url: str) -> None:
    """Batches in time order and out of it, repeats, second metrics, corrections, rebooted seqs and batches without
    seq, drained after some batches only: the rows are the plain-Python count of everything written."""
    rng = np.random.default_rng(14)
    start = MIDNIGHT + timedelta(days=40) - 3 * Q  # three quarters before a Bangkok midnight, then a day and more
    with psycopg.connect(url, autocommit=True) as conn:
        m, n = device_pk(conn, "CNT-M"), device_pk(conn, "CNT-N")
        written: list[Row] = []
        for i in range(60):
            if i % 3 == 2 and written:
                rows = [written[int(k)] for k in rng.integers(0, len(written), 4)]  # repeats, some corrected
                rows = [(d, met, ts, v + float(rng.integers(0, 2)), s) for d, met, ts, v, s in rows]
            else:
                # mostly forward in time, now and then back into what is counted already
                base = start + Q * int(i * 2 + (rng.integers(-40, 1) if i % 5 == 4 else 0))
                rows = []
                for _ in range(int(rng.integers(1, 6))):
                    dev = m if rng.random() < 0.7 else n
                    ts = base + timedelta(seconds=int(rng.integers(0, 3)) * 450)
                    seq = NO_SEQ if dev == n else int(rng.integers(max(0, i - 3), i + 1)) % 40  # reboot at 40
                    rows.append((dev, [ENERGY, POWER][int(rng.integers(0, 2))], ts, float(rng.integers(0, 9)), seq))
            _write(conn, rows)
            written += rows
            if rng.random() < 0.3:
                _drain(conn)
        ours = {k: v for k, v in _stored(conn).items() if k[1] >= (start - timedelta(days=1)).date()}
        expected = _reference(written)
        assert ours == expected and len(expected) >= 4


def test_rows_keep_their_order_when_some_have_no_seq(url: str) -> None:
    """Within a batch the first reading of a key wins, also when it has no seq and a later one has (the binary COPY
    of a batch mixing NULL and non-NULL seqs keeps the batch's order)."""
    at = MIDNIGHT + timedelta(days=50)
    with psycopg.connect(url, autocommit=True) as conn:
        dev = device_pk(conn, "CNT-M")
        _write(conn, [(dev, ENERGY, at, 1.0, NO_SEQ), (dev, ENERGY, at, 2.0, 7), (dev, POWER, at, 3.0, 7)])
        stored = conn.execute(
            "SELECT metric_id, value, seq FROM readings WHERE device_id = %s AND ts = %s ORDER BY metric_id", (dev, at)
        ).fetchall()
        assert stored == [(ENERGY, 1.0, None), (POWER, 3.0, 7)]
