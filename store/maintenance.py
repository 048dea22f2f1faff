"""Retention on plain PostgreSQL (TimescaleDB's own retention policy does this job where the extension exists), and
the planner statistics of the product's tables where autovacuum has not renewed them."""

from __future__ import annotations

import time

import psycopg
from psycopg import sql

from lccm.store.energy import prune_bound_days
from lccm.store.migrate import current_layout
from lccm.store.writer import DEFAULT_LATE_HORIZON_US


def apply_retention(
    conn: psycopg.Connection, retention_days: int, late_horizon_s: int = DEFAULT_LATE_HORIZON_US // 1_000_000
) -> int:
    """Delete readings older than the retention period; returns rows deleted (0 under TimescaleDB). Also, under
    either layout, the cached learned bounds of days older than the late-data horizon and a margin
    (store/energy.py: prune_bound_days), which no retention policy knows of."""
    prune_bound_days(conn, time.time_ns() // 1_000, late_horizon_s)
    conn.commit()
    if current_layout(conn) != "postgres-brin":
        return 0
    row = conn.execute("SELECT prune_readings(make_interval(days => %s))", (retention_days,)).fetchone()
    conn.commit()
    return int(row[0]) if row else 0


# Autovacuum's rule for analyzing a table (PostgreSQL 15 docs, 25.1.6 "The Autovacuum Daemon": a table is analyzed
# when the rows changed since its last analyze exceed autovacuum_analyze_threshold + autovacuum_analyze_scale_factor
# x its rows), read from the server's own settings, plus a floor between two analyzes of one table.
_STALE = """
SELECT s.schemaname, s.relname
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.schemaname = current_schema() AND c.relkind = 'r'
  AND s.n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::float8
      + current_setting('autovacuum_analyze_scale_factor')::float8 * greatest(c.reltuples, 0)
  AND coalesce(greatest(s.last_analyze, s.last_autoanalyze), '-infinity') < now() - make_interval(secs => %s)
ORDER BY s.n_mod_since_analyze DESC
"""


def stale_statistics(conn: psycopg.Connection, min_interval_s: float) -> list[tuple[str, str]]:
    """The product's tables (schema, name: the current schema's, partitions rather than their parents) whose planner
    statistics autovacuum would renew now and that nobody analyzed in the last ``min_interval_s``."""
    return [(r[0], r[1]) for r in conn.execute(_STALE, (min_interval_s,)).fetchall()]


def analyze_stale(conn: psycopg.Connection, min_interval_s: float) -> list[str]:
    """ANALYZE what :func:`stale_statistics` lists, each in its own statement, skipping a table another session is
    analyzing or altering (SKIP_LOCKED: two ingest processes never wait for each other here). Returns the tables.

    Why the ingest does autovacuum's part: a derived-data claim joins its ranges to the bucket tables by key, and a
    partition PostgreSQL has no statistics for is planned on default estimates. On this machine (autovacuum off) and
    on any new database before autovacuum's first pass, the planner then took the time index of the whole 15-minute
    partition for every range of a claim (docs/scaling.md#planner-statistics)."""
    tables = stale_statistics(conn, min_interval_s)
    for schema, name in tables:
        conn.execute(sql.SQL("ANALYZE (SKIP_LOCKED) {}").format(sql.Identifier(schema, name)))
        conn.commit()
    return [name for _, name in tables]
