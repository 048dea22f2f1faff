"""Storage side of the device partitions (migration 019, docs/partitions.md): the partition count recorded for the
database, the workers' heartbeats and their leases on partitions. Every time here is PostgreSQL's ``now()``, so the
workers' own clocks never decide who owns what."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql


class PartitionCountMismatch(RuntimeError):
    """The database was set up with another partition count than this process's setting."""

    def __init__(self, recorded: int, configured: int) -> None:
        super().__init__(
            f"this database's derived data is split into {recorded} device partitions, but LCCM_PARTITIONS is"
            f" {configured}: set LCCM_PARTITIONS={recorded} on every ingest process (the count cannot change while"
            " queued work and leases exist)"
        )
        self.recorded = recorded
        self.configured = configured


def partition_of(device_pk: int, partitions: int) -> int:
    """A device's partition: its primary key mod the count (the SQL below says ``device_id % P`` alike)."""
    return device_pk % partitions


def ensure_partitions(conn: psycopg.Connection, partitions: int) -> int:
    """Record the partition count at first start (and a lease row per partition); PartitionCountMismatch if the
    database already has another one. Returns the count."""
    with conn.transaction():
        conn.execute("INSERT INTO partition_config (partitions) VALUES (%s) ON CONFLICT DO NOTHING", (partitions,))
        row = conn.execute("SELECT partitions FROM partition_config").fetchone()
        recorded = int(row[0]) if row else partitions
        if recorded != partitions:
            raise PartitionCountMismatch(recorded, partitions)
        conn.execute(
            "INSERT INTO worker_leases (partition) SELECT generate_series(0, %s - 1) ON CONFLICT DO NOTHING",
            (partitions,),
        )
    return recorded


def beat(conn: psycopg.Connection, owner: str, lease_s: float) -> int:
    """Record that ``owner`` is alive; forget workers silent for ten lease times. Returns the workers alive (seen
    within the lease time), this one included."""
    conn.execute(
        "INSERT INTO worker_heartbeats (owner) VALUES (%s) ON CONFLICT (owner) DO UPDATE SET seen_at = now()",
        (owner,),
    )
    conn.execute("DELETE FROM worker_heartbeats WHERE seen_at < now() - 10 * %s * interval '1 second'", (lease_s,))
    row = conn.execute(
        "SELECT count(*) FROM worker_heartbeats WHERE seen_at >= now() - %s * interval '1 second'", (lease_s,)
    ).fetchone()
    return max(1, int(row[0]) if row else 1)


def standing(conn: psycopg.Connection, lease_s: float) -> tuple[int, int]:
    """(workers alive as :func:`beat` counts them, partitions nobody holds): what the fair shares and a worker's
    takings depend on. Reads only."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM worker_heartbeats WHERE seen_at >= now() - %s * interval '1 second'),"
        " (SELECT count(*) FROM worker_leases WHERE owner IS NULL OR expires_at <= now())",
        (lease_s,),
    ).fetchone()
    return (max(1, int(row[0])), int(row[1])) if row else (1, 0)


def renew(conn: psycopg.Connection, owner: str, lease_s: float) -> list[int]:
    """Extend the owner's leases; returns the partitions it holds. Never waits for its own claims: they lock the rows
    FOR KEY SHARE (:func:`hold`) and a renewal changes only the expiry (FOR NO KEY UPDATE), which does not conflict.
    When renewals waited for the claims (FOR UPDATE against FOR SHARE), a claim longer than the lease (numba compiling
    the kernels at the first claim, a backlog on a loaded machine) let every lease of the process expire while it ran:
    seen for 3-7 s in runs of benchmarks/scale.py, when another process could have taken them as the claim ended."""
    rows = conn.execute(
        "UPDATE worker_leases SET expires_at = now() + %s * interval '1 second' WHERE partition IN ("
        "  SELECT partition FROM worker_leases WHERE owner = %s ORDER BY partition FOR NO KEY UPDATE)"
        " AND owner = %s RETURNING partition",
        (lease_s, owner, owner),
    ).fetchall()
    return sorted(int(r[0]) for r in rows)


def take(conn: psycopg.Connection, owner: str, lease_s: float, count: int) -> list[int]:
    """Take up to ``count`` partitions nobody holds (never owned, released, or expired), lowest first; rows another
    worker is using (locked) are skipped."""
    if count <= 0:
        return []
    rows = conn.execute(
        "UPDATE worker_leases SET owner = %s, expires_at = now() + %s * interval '1 second'"
        " WHERE partition IN (SELECT partition FROM worker_leases WHERE owner IS NULL OR expires_at <= now()"
        "   ORDER BY partition LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING partition",
        (owner, lease_s, count),
    ).fetchall()
    return sorted(int(r[0]) for r in rows)


def release(conn: psycopg.Connection, owner: str, partitions: Sequence[int] | None = None) -> list[int]:
    """Give up the owner's leases on these partitions (all of them by default): free for another worker at once."""
    wanted = None if partitions is None else list(partitions)
    rows = conn.execute(
        "UPDATE worker_leases SET owner = NULL, expires_at = '-infinity' WHERE partition IN ("
        "  SELECT partition FROM worker_leases WHERE owner = %s AND (%s::int[] IS NULL OR partition = ANY(%s::int[]))"
        "  ORDER BY partition FOR UPDATE) AND owner = %s RETURNING partition",
        (owner, wanted, wanted, owner),
    ).fetchall()
    return sorted(int(r[0]) for r in rows)


def forget(conn: psycopg.Connection, owner: str) -> None:
    """The owner stops: its leases go back and it no longer counts among the workers alive."""
    release(conn, owner)
    conn.execute("DELETE FROM worker_heartbeats WHERE owner = %s", (owner,))


def hold(conn: psycopg.Connection, owner: str, partitions: Sequence[int]) -> list[int]:
    """In the caller's transaction: which of these partitions the owner still holds (lease not expired), locked FOR
    KEY SHARE until that transaction ends, so none of them changes hands while it derives their state: a takeover
    (:func:`take`) and a release lock FOR UPDATE, which conflicts; a renewal does not (:func:`renew`)."""
    if not partitions:
        return []
    rows = conn.execute(
        "SELECT partition FROM worker_leases WHERE owner = %s AND expires_at > now() AND partition = ANY(%s)"
        " ORDER BY partition FOR KEY SHARE",
        (owner, list(partitions)),
    ).fetchall()
    return [int(r[0]) for r in rows]


def leases(conn: psycopg.Connection) -> dict[int, str | None]:
    """Partition -> its owner while the lease holds (None: free)."""
    rows = conn.execute(
        "SELECT partition, CASE WHEN expires_at > now() THEN owner END FROM worker_leases ORDER BY partition"
    ).fetchall()
    return {int(p): o for p, o in rows}


@dataclass(frozen=True, slots=True)
class Held:
    """The partitions a transaction holds (locked by :func:`hold`) out of ``count``: a queue claim takes only rows
    of devices in them."""

    count: int
    partitions: list[int]


# A queue row's device in the held partitions (:func:`partition_of`), or any device without leases: the claims'
# filter, with :func:`partition_params`.
IN_PARTITIONS = "(%s::int IS NULL OR device_id %% %s::int = ANY(%s::int[]))"


def partition_params(held: Held | None) -> tuple[int | None, int | None, list[int] | None]:
    return (None, None, None) if held is None else (held.count, held.count, held.partitions)


def claim(
    conn: psycopg.Connection,
    queue: str,
    columns: Sequence[str],
    merged: sql.Composable,
    *,
    limit: int,
    held: Held | None,
    params: Sequence[object] = (),
    key: str = "ctid",
    oldest_first: str = "queued_at",
    binary: bool = False,
) -> list[tuple[Any, ...]]:
    """In the caller's transaction, which has locked its leases (:func:`hold`): delete up to ``limit`` rows of the
    work queue ``queue``, oldest first by ``oldest_first``, of devices in ``held`` (None: any device), and return the
    rows of ``merged``, a query over them as ``taken`` (its ``columns``; ``params`` fill its placeholders). Rows
    another transaction has claimed are skipped, not waited for; if the caller's transaction fails they come back.
    ``key`` picks the rows to delete: the physical row (``ctid``, a direct heap fetch of each row, which the lock
    taken here keeps in place until the transaction ends) or a key of the queue's own. ``binary``: the result in
    PostgreSQL's binary format."""
    query = sql.SQL(
        "WITH taken AS (DELETE FROM {queue} WHERE {key} = ANY(ARRAY("
        "  SELECT {key} FROM {queue} WHERE " + IN_PARTITIONS + " ORDER BY {order} LIMIT %s FOR UPDATE SKIP LOCKED))"
        "  RETURNING {columns}) {merged}"
    ).format(
        queue=sql.Identifier(queue),
        key=sql.Identifier(key),
        order=sql.Identifier(oldest_first),
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        merged=merged,
    )
    return conn.execute(query, (*partition_params(held), limit, *params), binary=binary).fetchall()
