"""The planner statistics the ingest keeps where autovacuum has not (store/maintenance.py: analyze_stale), on the real
PostgreSQL. This machine's server runs with autovacuum off, so nothing else analyzes the test database."""

from __future__ import annotations

import psycopg
import pytest

from lccm.store.maintenance import analyze_stale, stale_statistics

DEVICES = 40
BUCKETS = 200  # a device's 15-minute buckets: 8,000 rows in the partition


def _fill(conn: psycopg.Connection) -> None:
    conn.execute(
        "INSERT INTO energy_buckets (resolution, device_id, metric_id, bucket_start, amount, amount_estimated,"
        " covered_s, quality, intervals, kgco2e, kgco2e_base)"
        " SELECT '15min', d, 1, timestamptz '2026-01-01 00:00+07' + b * interval '15 min', 1.0 + d, 0, 900, 0, 15,"
        " 0.5, 0.5 FROM generate_series(1, %s) d, generate_series(0, %s - 1) b",
        (DEVICES, BUCKETS),
    )
    conn.commit()
    conn.execute("SELECT pg_stat_force_next_flush()")  # this session's counts reach pg_stat_user_tables now
    conn.commit()


def _analyzed(conn: psycopg.Connection, table: str) -> tuple[object, float]:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        "SELECT s.last_analyze, c.reltuples FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
        " WHERE s.relname = %s",
        (table,),
    ).fetchone()
    assert row is not None
    return row[0], float(row[1])


def _plan(conn: psycopg.Connection) -> str:
    """How a claim's per-meter lookup of its history is planned (the shape of store/energy.py: bound_priors)."""
    rows = conn.execute(
        "EXPLAIN SELECT (SELECT max(b.amount) FROM energy_buckets b WHERE b.resolution = '15min'"
        " AND b.device_id = d.id AND b.metric_id = 1 AND b.bucket_start < timestamptz '2026-01-03 00:00+07'"
        " AND b.bucket_start >= timestamptz '2026-01-01 00:00+07') FROM generate_series(1, 40) d(id)"
    ).fetchall()
    return "\n".join(r[0] for r in rows)


def test_a_changed_table_is_analyzed_once_and_then_planned_by_its_key(fresh_db: str) -> None:
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SHOW autovacuum").fetchone() == ("off",), "the test relies on nothing else analyzing"
        _fill(conn)
        assert _analyzed(conn, "energy_buckets_15min")[0] is None
        # Without statistics the two indexes of the partition look alike and the time index is taken: every
        # device's buckets are read for each device (the claim's plan seen in the deployed benchmark).
        assert "resolution_bucket_start_idx" in _plan(conn)

        stale = dict(stale_statistics(conn, 60.0)).values()
        assert "energy_buckets_15min" in stale and "energy_buckets_1h" not in stale  # unchanged: left alone
        analyzed = analyze_stale(conn, 60.0)
        assert "energy_buckets_15min" in analyzed and "energy_buckets" not in analyzed  # the partition, not the parent
        when, rows = _analyzed(conn, "energy_buckets_15min")
        assert when is not None and rows == DEVICES * BUCKETS
        assert "energy_buckets_15min_pkey" in _plan(conn)

        # Changed again past the threshold, but analyzed less than a minute ago: left alone.
        conn.execute("UPDATE energy_buckets SET amount = amount + 1 WHERE resolution = '15min'")
        conn.commit()
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.commit()
        assert "energy_buckets_15min" not in analyze_stale(conn, 60.0)
        assert _analyzed(conn, "energy_buckets_15min")[0] == when
        # With no floor, the change is over autovacuum's threshold (50 + 10 % of 8,000 rows): analyzed again.
        assert "energy_buckets_15min" in analyze_stale(conn, 0.0)
        assert analyze_stale(conn, 0.0) == []  # nothing changed since


@pytest.mark.parametrize("changed", [49, 51])
def test_the_threshold_is_the_servers_own(fresh_db: str, changed: int) -> None:
    """autovacuum_analyze_threshold (50) + autovacuum_analyze_scale_factor (0.1) x rows (0 before any analyze)."""
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SHOW autovacuum_analyze_threshold").fetchone() == ("50",)
        conn.execute("INSERT INTO worker_heartbeats (owner) SELECT 'w' || g FROM generate_series(1, %s) g", (changed,))
        conn.commit()
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.commit()
        assert ("worker_heartbeats" in analyze_stale(conn, 60.0)) == (changed > 50)
