"""Versioned migrations. SQL files in ``migrations/`` run once each, in order, under an advisory lock.

After the SQL, the readings layout is chosen once and recorded in ``store_layout``: a TimescaleDB hypertable with
compression and retention policies when the extension can be created, otherwise a BRIN index on event time (cheap
for append-mostly time series) plus the ``prune_readings`` function that a retention job calls.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources

import psycopg

log = logging.getLogger(__name__)

_LOCK_KEY = 0x4C43434D  # "LCCM"


@dataclass(frozen=True)
class MigrationResult:
    applied: list[str]
    layout: str


def _migration_files() -> list[tuple[str, str]]:
    folder = resources.files("lccm.store").joinpath("migrations")
    return [(name, folder.joinpath(name).read_text(encoding="utf-8")) for name in packaged_migrations()]


@dataclass(frozen=True)
class SchemaVersion:
    """How the database's applied migrations compare with the ones this code ships."""

    pending: list[str]  # shipped, not applied: the code needs `lccm migrate` first
    unknown: list[str]  # applied, not shipped: a newer version migrated this database (reported, not fatal)

    @property
    def current(self) -> bool:
        return not self.pending

    @property
    def problem(self) -> str | None:
        """Why this code cannot use the database yet, in one line (None: it can)."""
        if not self.pending:
            return None
        return f"{len(self.pending)} migration(s) not applied ({', '.join(self.pending)}): run `lccm migrate`"


def packaged_migrations() -> list[str]:
    """The names of the migrations this code ships, in order."""
    folder = resources.files("lccm.store").joinpath("migrations")
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))


def schema_version(conn: psycopg.Connection) -> SchemaVersion:
    """Compare ``schema_migrations`` with the packaged list; a database never migrated has every one pending.
    Read-only (no lock, no DDL): for readiness probes."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    applied = {str(r[0]) for r in conn.execute("SELECT name FROM schema_migrations")} if exists and exists[0] else set()
    shipped = packaged_migrations()
    return SchemaVersion(pending=[n for n in shipped if n not in applied], unknown=sorted(applied - set(shipped)))


def migrate(
    conn: psycopg.Connection, *, retention_days: int = 3 * 365, compress_after_days: int = 7
) -> MigrationResult:
    """Bring the schema up to date; safe to call from several processes at once."""
    conn.autocommit = False
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
        applied = []
        for name, sql in _migration_files():
            if name in done:
                continue
            log.info("applying migration %s", name)
            conn.execute(sql.encode())  # trusted files shipped with the package
            conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
            applied.append(name)
        layout = _ensure_layout(conn, retention_days, compress_after_days)
    return MigrationResult(applied=applied, layout=layout)


def _ensure_layout(conn: psycopg.Connection, retention_days: int, compress_after_days: int) -> str:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS store_layout ("
        " layout text NOT NULL, detail text NOT NULL, chosen_at timestamptz NOT NULL DEFAULT now())"
    )
    row = conn.execute("SELECT layout FROM store_layout").fetchone()
    if row is not None:
        return str(row[0])
    if _timescaledb_available(conn):
        _make_hypertable(conn, retention_days, compress_after_days)
        layout, detail = (
            "timescaledb",
            (f"hypertable on ts, 1-day chunks, compress after {compress_after_days} d, retain {retention_days} d"),
        )
    else:
        conn.execute("CREATE INDEX readings_ts_brin ON readings USING brin (ts) WITH (pages_per_range = 32)")
        layout, detail = "postgres-brin", f"BRIN on ts; prune_readings() keeps {retention_days} d"
    conn.execute(
        """
        CREATE OR REPLACE FUNCTION prune_readings(keep interval) RETURNS bigint
        LANGUAGE plpgsql AS $$
        DECLARE n bigint;
        BEGIN
            DELETE FROM readings WHERE ts < now() - keep;
            GET DIAGNOSTICS n = ROW_COUNT;
            RETURN n;
        END $$
        """
    )
    conn.execute("INSERT INTO store_layout (layout, detail) VALUES (%s, %s)", (layout, detail))
    log.info("readings layout: %s (%s)", layout, detail)
    return layout


def _timescaledb_available(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    return row is not None


def _make_hypertable(conn: psycopg.Connection, retention_days: int, compress_after_days: int) -> None:
    conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    conn.execute("SELECT create_hypertable('readings', by_range('ts', INTERVAL '1 day'), migrate_data => true)")
    conn.execute(
        "ALTER TABLE readings SET (timescaledb.compress,"
        " timescaledb.compress_segmentby = 'device_id, metric_id', timescaledb.compress_orderby = 'ts')"
    )
    conn.execute("SELECT add_compression_policy('readings', make_interval(days => %s))", (compress_after_days,))
    conn.execute("SELECT add_retention_policy('readings', make_interval(days => %s))", (retention_days,))


def current_layout(conn: psycopg.Connection) -> str | None:
    row = conn.execute("SELECT layout FROM store_layout").fetchone()
    return None if row is None else str(row[0])
