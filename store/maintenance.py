"""Retention on plain PostgreSQL. TimescaleDB's own retention policy does this job where the extension exists."""

from __future__ import annotations

import psycopg

from lccm.store.migrate import current_layout


def apply_retention(conn: psycopg.Connection, retention_days: int) -> int:
    """Delete readings older than the retention period; returns rows deleted (0 under TimescaleDB)."""
    if current_layout(conn) != "postgres-brin":
        return 0
    row = conn.execute("SELECT prune_readings(make_interval(days => %s))", (retention_days,)).fetchone()
    conn.commit()
    return int(row[0]) if row else 0
