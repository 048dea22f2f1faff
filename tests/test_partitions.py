"""Device partitions and their leases (issue 14 item 1, docs/partitions.md) on the real PostgreSQL: the partition
count recorded once, fair shares that rebalance when workers join and leave, takeover after a lease expires, and
claims that never reach a partition the worker does not hold."""

from __future__ import annotations

import functools
import threading
import time
from datetime import UTC, datetime

import numpy as np
import psycopg
import pytest

from lccm.store.energy import Spans, claim_spans, enqueue
from lccm.store.leases import PartitionCountMismatch, ensure_partitions, leases, partition_of
from lccm.stream.partitions import CHECK_S, Leases
from tests._db import us

P = 8


def _leases(url: str, owner: str, lease_s: float = 30.0) -> Leases:
    return Leases(functools.partial(psycopg.connect, url), P, lease_s, owner=owner)


def _owned(url: str) -> dict[str | None, list[int]]:
    with psycopg.connect(url) as conn:
        out: dict[str | None, list[int]] = {}
        for p, o in leases(conn).items():
            out.setdefault(o, []).append(p)
        return out


def test_the_partition_count_is_recorded_once_and_another_count_is_refused(fresh_db: str) -> None:
    with psycopg.connect(fresh_db) as conn:
        assert ensure_partitions(conn, P) == P
        assert ensure_partitions(conn, P) == P  # the next process, same setting
        with pytest.raises(PartitionCountMismatch, match="LCCM_PARTITIONS=8"):
            ensure_partitions(conn, 16)
        assert sorted(leases(conn)) == list(range(P))


def test_workers_share_the_partitions_fairly_and_rebalance_when_one_joins_or_leaves(fresh_db: str) -> None:
    with psycopg.connect(fresh_db) as conn:
        ensure_partitions(conn, P)
    a = _leases(fresh_db, "a")
    a.step()
    assert a.held == list(range(P))  # alone: everything
    b = _leases(fresh_db, "b")
    b.step()
    assert b.held == []  # nothing free yet: a holds all, and b's heartbeat is its first
    a.step()  # a sees two workers: keeps its fair share ceil(8/2) = 4, gives up the rest
    assert a.held == [0, 1, 2, 3]
    b.step()
    assert b.held == [4, 5, 6, 7]
    c = _leases(fresh_db, "c")
    for w in (c, a, b, c):  # ceil(8/3) = 3 each at most
        w.step()
    owned = _owned(fresh_db)
    assert sorted(p for ps in owned.values() for p in ps) == list(range(P))
    assert all(len(owned.get(w, [])) <= 3 for w in "abc") and None not in owned
    c.release_all()  # a worker that stops gives its partitions back at once
    a.step()
    b.step()
    assert sorted(a.held + b.held) == list(range(P)) and len(a.held) == len(b.held) == 4


def test_a_dead_workers_partitions_are_taken_over_once_its_leases_expire(fresh_db: str) -> None:
    with psycopg.connect(fresh_db) as conn:
        ensure_partitions(conn, P)
    dead = _leases(fresh_db, "dead", lease_s=1.0)
    dead.step()
    alive = _leases(fresh_db, "alive", lease_s=1.0)
    alive.step()
    assert alive.held == []  # the lease holds: no takeover yet
    time.sleep(1.2)  # the dead worker never renews (PostgreSQL's clock decides the expiry)
    alive.step()
    assert alive.held == list(range(P))


def test_a_claim_takes_only_rows_of_held_partitions_and_a_lease_in_use_is_not_taken_over(fresh_db: str) -> None:
    devices = list(range(1, 17))  # two devices in each of the 8 partitions
    t = us(datetime(2026, 1, 1, tzinfo=UTC))
    with psycopg.connect(fresh_db) as conn:
        ensure_partitions(conn, P)
        n = len(devices)
        ones = np.ones(n, np.int64)
        enqueue(conn, Spans(np.array(devices, np.int32), ones.astype(np.int16), t * ones, (t + 60_000_000) * ones))
        conn.commit()
    a, b = _leases(fresh_db, "a", lease_s=1.0), _leases(fresh_db, "b")
    a.step()
    b.step()
    a.step()  # a keeps 0-3
    b.step()  # b takes 4-7
    with psycopg.connect(fresh_db) as conn, conn.transaction():
        held = a.hold(conn)
        assert held.partitions == [0, 1, 2, 3]
        got = claim_spans(conn, held=held)
        assert got.device_id.tolist() == [d for d in devices if partition_of(d, P) in (0, 1, 2, 3)]
        # a's leases expire while its transaction still derives their state: nobody may take them until it ends.
        time.sleep(1.2)
        c = _leases(fresh_db, "c")
        c.step()
        assert c.held == []
    c.step()  # a's transaction has ended: its expired partitions are free (c's share: ceil(8/3), a looks alive to it)
    assert c.held and set(c.held) <= {0, 1, 2, 3}
    with psycopg.connect(fresh_db) as conn, conn.transaction():
        assert a.hold(conn).partitions == []  # a lost them: its next claim holds nothing, so takes nothing
        assert claim_spans(conn, held=a.hold(conn)).device_id.tolist() == []
    with psycopg.connect(fresh_db) as conn, conn.transaction():
        rest = claim_spans(conn, held=b.hold(conn))
        assert rest.device_id.tolist() == [d for d in devices if partition_of(d, P) in (4, 5, 6, 7)]


def test_renewals_and_claims_of_one_process_never_deadlock(fresh_db: str) -> None:
    """The leases worker renews (and gives up) rows its own updaters hold FOR SHARE: both lock in partition order."""
    with psycopg.connect(fresh_db) as conn:
        ensure_partitions(conn, P)
    a = _leases(fresh_db, "a")
    a.step()
    errors: list[BaseException] = []

    def claims() -> None:
        try:
            with psycopg.connect(fresh_db) as conn:
                for _ in range(40):
                    with conn.transaction():
                        assert a.hold(conn).partitions
                        time.sleep(0.01)
        except BaseException as e:  # reported below: a deadlock aborts one side with DeadlockDetected
            errors.append(e)

    t = threading.Thread(target=claims)
    t.start()
    others = [_leases(fresh_db, f"w{i}") for i in range(3)]
    while t.is_alive():
        a.step()  # renews, and gives up its surplus as the others join
        for w in others:
            w.step()
    t.join()
    assert errors == []
    assert sorted(p for w in (a, *others) for p in w.held) == list(range(P))


def test_a_joining_worker_gets_its_share_at_the_next_ticks_not_after_two_steps(fresh_db: str) -> None:
    """The leases worker ticks (Leases.tick): between its steps (every 10 s here) it looks whether the shares may
    have changed, so a joiner's share is given up and taken at the next ticks of both, not a step of each later."""
    with psycopg.connect(fresh_db) as conn:
        ensure_partitions(conn, P)
    a, b = _leases(fresh_db, "a"), _leases(fresh_db, "b")  # lease 30 s: a step every 10 s
    assert a.tick() <= CHECK_S
    assert a.held == list(range(P))
    b.tick()
    assert b.held == []  # a holds everything until it looks again
    a.tick()  # two workers alive now: a gives up its surplus at once
    assert a.held == [0, 1, 2, 3]
    b.tick()  # below its share with partitions free: takes them at once
    assert b.held == [4, 5, 6, 7]

    def expiries() -> list[object]:
        with psycopg.connect(fresh_db) as conn:
            return [r[0] for r in conn.execute("SELECT expires_at FROM worker_leases ORDER BY partition")]

    before = expiries()
    for w in (a, b, a, b):
        w.tick()  # settled: they only look; the next renewal is their next step
    assert expiries() == before and a.held == [0, 1, 2, 3] and b.held == [4, 5, 6, 7]


def test_a_renewal_never_waits_for_the_claims_so_a_long_claim_keeps_its_leases(fresh_db: str) -> None:
    """A claim that lasts longer than the lease (a cold start compiling the kernels, a backlog) must not let its
    process's leases expire: renewals do not wait for it, and a takeover still cannot happen while it runs."""
    with psycopg.connect(fresh_db) as conn:
        ensure_partitions(conn, P)
    a = _leases(fresh_db, "a", lease_s=1.0)
    a.step()
    with psycopg.connect(fresh_db) as conn, conn.transaction():
        assert a.hold(conn).partitions == list(range(P))  # a claim in every partition, open for 1.5 lease times
        done = threading.Event()

        def renew() -> None:
            a.step()
            done.set()

        threading.Thread(target=renew, daemon=True).start()
        assert done.wait(0.5)  # renewed at once, not when the claim ends
        time.sleep(0.8)
        a.step()
        c = _leases(fresh_db, "c")
        c.step()
        assert c.held == []  # a's leases hold (renewed) and are in use
        assert _owned(fresh_db) == {"a": list(range(P))}
    a.release_all()  # the claim has ended: a release waits for claims in flight only
    assert _owned(fresh_db) == {None: list(range(P))}
