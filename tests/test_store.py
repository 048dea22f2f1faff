"""Migrations, layout choice and retention on the real PostgreSQL."""

from __future__ import annotations

import time

import numpy as np
import psycopg

from lccm.store.maintenance import apply_retention
from lccm.store.migrate import migrate
from lccm.store.writer import NO_SEQ, ReadingColumns, encode_readings, int_array, write_batch

DAY_US = 86_400 * 1_000_000


def _cols(ts_us: list[int], seq: list[int], values: list[float] | None = None) -> ReadingColumns:
    n = len(ts_us)
    return ReadingColumns(
        device_id=np.full(n, 1, np.int32),
        metric_id=np.full(n, 1, np.int16),
        ts_us=np.asarray(ts_us, np.int64),
        value=np.arange(n, dtype=np.float64) + 0.5 if values is None else np.asarray(values, np.float64),
        seq=np.asarray(seq, np.int64),
        received_at_us=np.asarray(ts_us, np.int64) + 1_000_000,
    )


def test_migrate_is_idempotent_and_records_the_layout(fresh_db: str) -> None:
    with psycopg.connect(fresh_db) as conn:
        again = migrate(conn)
        assert again.applied == []
        assert again.layout == "postgres-brin"  # no TimescaleDB on this machine
        layout = conn.execute("SELECT layout, detail FROM store_layout").fetchall()
        assert len(layout) == 1 and "BRIN" in layout[0][1]
        idx = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'readings_ts_brin'").fetchone()
        assert idx is not None and "brin" in idx[0]


def test_binary_copy_round_trips_values_times_and_null_seq(fresh_db: str) -> None:
    now_us = int(time.time()) * 1_000_000
    cols = _cols([now_us - 3 * DAY_US, now_us - DAY_US + 123_456, now_us], [5, NO_SEQ, 2**62])
    assert encode_readings(cols)[:11] == b"PGCOPY\n\xff\r\n\x00"
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        result = write_batch(conn, cols)
        got = conn.execute(
            "SELECT (extract(epoch FROM ts) * 1e6)::bigint, value, seq,"
            " (extract(epoch FROM received_at) * 1e6)::bigint FROM readings ORDER BY ts"
        ).fetchall()
    assert (result.inserted, result.duplicates) == (3, 0)
    assert got == [
        (now_us - 3 * DAY_US, 0.5, 5, now_us - 3 * DAY_US + 1_000_000),
        (now_us - DAY_US + 123_456, 1.5, None, now_us - DAY_US + 123_456 + 1_000_000),
        (now_us, 2.5, 2**62, now_us + 1_000_000),
    ]


def test_a_partly_duplicate_batch_stores_only_the_new_rows(fresh_db: str) -> None:
    base = int(time.time()) * 1_000_000
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        write_batch(conn, _cols([base, base + 1], [1, 2], [0.5, 1.5]))
        # base + 1 again with the same value: a redelivery (a different value would be a conflict: test_conflicts.py)
        result = write_batch(conn, _cols([base + 1, base + 2, base + 3], [2, 3, 4], [1.5, 2.5, 3.5]))
        n = conn.execute("SELECT count(*) FROM readings").fetchone()
    assert (result.inserted, result.duplicates, result.conflicts) == (2, 1, 0)
    assert n == (4,)


def test_retention_deletes_only_readings_older_than_the_period(fresh_db: str) -> None:
    now_us = int(time.time()) * 1_000_000
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        write_batch(conn, _cols([now_us - 40 * DAY_US, now_us - 31 * DAY_US, now_us - 29 * DAY_US], [1, 2, 3]))
    with psycopg.connect(fresh_db) as conn:
        assert apply_retention(conn, 30) == 2
        assert conn.execute("SELECT seq FROM readings").fetchall() == [(3,)]


def test_int_array_parameters_round_trip_through_postgresql(fresh_db: str) -> None:
    """The writer's and the evaluator's integer arrays go as one text parameter (store/writer.py: int_array)."""
    values = np.array([0, -1, 2**63 - 1, -(2**63), 1_700_000_000_000_000], np.int64)
    with psycopg.connect(fresh_db) as conn:
        got = conn.execute("SELECT %s::bigint[], %s::int[], %s::bigint[]", (
            int_array(values), int_array(iter([3, -4])), int_array(np.zeros(0, np.int64)),
        )).fetchone()  # fmt: skip
    assert got == (values.tolist(), [3, -4], [])
