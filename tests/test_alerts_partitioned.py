"""The alert evaluator under partition leases (issue 14 item 1, docs/partitions.md#alerts), on the real PostgreSQL:
each evaluator claims only the hand-over of the partitions its process leases, a partition taken over continues
exactly where its last owner committed (series state and device clocks are in the database, not in a process), and
the city's event-time watermark is what every evaluator recorded.

Expected values are worked out by hand from the rules of tests/test_alerts_store_api.py (Mae Moh: above 150 ppb
for 6 min raises, below 50 clears; offline after 6 x 5 min of silence; 5-minute cadence)."""

from __future__ import annotations

import functools
import threading
import time

import psycopg

from lccm.engine.alert_kinds import Severity
from lccm.store import alerts as st
from lccm.store.leases import ensure_partitions, partition_of
from lccm.store.writer import Progress, ReadingColumns, write_batch
from lccm.stream.alerts import AlertEvaluator
from lccm.stream.partitions import Leases
from tests._db import device_pk, us
from tests.test_alerts_store_api import PLUME, PM25, SO2, T0, alerts, at, cols, commit
from tests.test_alerts_store_api import db as db  # fixture: Sop Pat, City Hall, the Mae Moh and offline rules

P = 2


def _pair(url: str) -> tuple[Leases, Leases]:
    """Two processes' leases, one partition each."""
    with psycopg.connect(url) as conn:
        ensure_partitions(conn, P)
    a, b = (Leases(functools.partial(psycopg.connect, url), P, 30.0, owner=o) for o in ("a", "b"))
    a.step()
    b.step()
    a.step()  # two workers alive: a keeps ceil(2 / 2) = 1 and gives up the other
    b.step()
    assert a.held == [0] and b.held == [1]
    return a, b


def _evaluator(url: str, leases: Leases, late_after_s: float = 900.0) -> AlertEvaluator:
    return AlertEvaluator(
        functools.partial(psycopg.connect, url), clock="event", late_after_s=late_after_s, leases=leases
    )


def _queued(url: str) -> list[tuple[int, int]]:
    with psycopg.connect(url) as conn:
        return [(int(d), int(m)) for d, m in conn.execute("SELECT device_id, metric_id FROM alert_queue ORDER BY id")]


def _owners(url: str, a: Leases, b: Leases, device: str) -> tuple[Leases, Leases]:
    """(the leases owning the device's partition, the other)."""
    with psycopg.connect(url) as conn:
        part = partition_of(device_pk(conn, device), P)
    return (a, b) if part in a.held else (b, a)


def test_each_evaluator_claims_its_partitions_only_and_a_taken_over_series_goes_on_exactly(db: str) -> None:
    a, b = _pair(db)
    owner, other = _owners(db, a, b, "MM1-S")
    mine, theirs = _evaluator(db, owner), _evaluator(db, other)
    with psycopg.connect(db) as conn:
        sop_pat = device_pk(conn, "MM1-S")
        commit(db, cols(conn, "MM1-S", SO2, T0, PLUME[:5]))  # #0..#4: raised at #3
        rest = cols(conn, "MM1-S", SO2, at(5), PLUME[5:])
    assert theirs.run_once().claimed == 0 and _queued(db) == [(sop_pat, SO2)]  # not its partition
    assert mine.run_once().raised == 1 and _queued(db) == []
    # The owner stops (its leases go back at once); the other process takes every partition over.
    owner.release_all()
    other.step()
    assert sorted(other.held) == [0, 1]
    assert mine.run_once().skipped  # holds nothing: claims nothing
    commit(db, rest)  # #5..#8: below 50 from #7
    assert theirs.run_once().claimed == 1
    # One alert, raised by the first process and cleared by the second: what one evaluator records
    # (test_alerts_store_api: test_a_plume_raises_and_clears_one_alert_with_its_history_and_two_notifications).
    [alert] = alerts(db)
    assert (alert.state, alert.started_at, alert.raised_at, alert.cleared_at) == ("cleared", at(1), at(3), at(7))
    assert (alert.raised_value, alert.peak_value, alert.cleared_value, alert.flaps) == (180, 180, 45, 0)


def test_a_device_silent_in_a_partition_taken_over_is_judged_offline_on_its_stored_clock(db: str) -> None:
    a, b = _pair(db)
    owner, other = _owners(db, a, b, "MM1-S")
    first = _evaluator(db, owner)
    with psycopg.connect(db) as conn:
        commit(db, cols(conn, "MM1-S", SO2, T0, [5.0, 5.0]))  # last delivered at #1
        first.run_once()
        owner.release_all()
        other.step()
        second = _evaluator(db, other)  # never saw Sop Pat deliver: only the stored clock tells
        commit(db, cols(conn, "CITY-S", PM25, T0, [20.0] * 9))  # the city's clock at #8: 35 min after #1
        second.run_once()
    [alert] = [x for x in alerts(db) if x.rule_key == "aq_offline"]
    # raised at the instant Sop Pat became overdue: #1 + 6 x 5 min = #7
    assert (alert.device_id, alert.state, alert.raised_at, alert.late) == ("MM1-S", "open", at(7), False)


def test_an_evaluator_taking_over_starts_from_the_citys_stored_event_watermark(db: str) -> None:
    a, b = _pair(db)
    owner, other = _owners(db, a, b, "CITY-S")
    with psycopg.connect(db) as conn:
        commit(db, cols(conn, "CITY-S", PM25, T0, [20.0] * 31))  # the city at #30
        _evaluator(db, owner).run_once()
        owner.release_all()  # the other process evaluates from now on, with nothing in memory
        other.step()
        commit(db, cols(conn, "MM1-S", SO2, T0, PLUME))  # Sop Pat replays #0..#8 after: 110 min behind the city
        _evaluator(db, other, late_after_s=3600).run_once()
    [alert] = [x for x in alerts(db) if x.rule_key == "so2_mae_moh"]
    # late: its batch arrived when the city's newest event time stood at #30, 135 min after the raise at #3 (more
    # than the hour of late_after); by its own batch's newest, #8, it would be 25 min and on time
    assert (alert.raised_at, alert.cleared_at, alert.late) == (at(3), at(7), True)


def _waits_for_a_lock(url: str, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if row and row[0]:
                return True
            time.sleep(0.05)
    return False


def test_two_processes_raising_one_dedup_key_at_once_give_one_alert_and_a_duplicate(db: str) -> None:
    a, b = _pair(db)
    owner_s, owner_t = _owners(db, a, b, "MM1-S")[0], _owners(db, a, b, "MM1-T")[0]
    assert owner_s is not owner_t  # Sop Pat's two analysers, one dedup key (MM1/so2_ppb), two processes
    with psycopg.connect(db) as conn:
        spare = device_pk(conn, "MM1-T")
        commit(db, cols(conn, "MM1-S", SO2, T0, PLUME[:5]))  # raises at #3
    errors: list[BaseException] = []
    ev = _evaluator(db, owner_s)
    ev.prepare()

    def run() -> None:
        try:
            ev.run_once()
        except BaseException as e:  # reported by the assertion below
            errors.append(e)

    # The spare analyser's process is in the middle of its run: it holds the key and has inserted its alert.
    with psycopg.connect(db) as other:
        st.lock_dedup_key(other, "so2_mae_moh", "MM1/so2_ppb")
        st.insert_alert(other, st.NewAlert(
            "so2_mae_moh", "MM1/so2_ppb", spare, "so2_ppb", Severity.CRITICAL, us(at(1)), us(at(2)), 170.0, 150.0,
            False,
        ))  # fmt: skip
        t = threading.Thread(target=run)
        t.start()
        assert _waits_for_a_lock(db)  # Sop Pat's run reached the key (or, without the key's lock, the index)
        other.commit()
    t.join(30)
    assert not t.is_alive() and errors == []
    [alert] = alerts(db)  # the spare's, committed first; Sop Pat's raise is its duplicate
    assert alert.device_id == "MM1-T"
    with psycopg.connect(db) as conn:
        events = [(e.kind, e.at, e.device_id) for e in st.alert_events(conn, alert.id)]
    assert events == [("raised", at(2), "MM1-T"), ("duplicate", at(3), "MM1-S")]


def _write(url: str, batch: ReadingColumns, writer: str) -> None:
    """A batch as the ingest process ``writer`` (its MQTT client id) commits it, its progress due (written)."""
    with psycopg.connect(url, autocommit=True) as conn:
        write_batch(conn, batch, progress=Progress(writer))


def test_a_device_whose_data_waits_in_a_slower_process_is_not_judged_offline(db: str) -> None:
    ev = AlertEvaluator(functools.partial(psycopg.connect, db), clock="event")
    with psycopg.connect(db) as conn:
        _write(db, cols(conn, "MM1-S", SO2, T0, [5.0, 5.0]), "slow")  # the slow process has got to #1
        _write(db, cols(conn, "CITY-S", PM25, T0, [20.0] * 9), "fast")  # the fast one to #8: 35 min after #1
        ev.run_once()
        assert alerts(db) == []  # Sop Pat's next readings may be in the slow process's backlog: not silent yet
        _write(db, cols(conn, "MM1-S", SO2, at(2), [5.0] * 7), "slow")  # they were: #2..#8
        ev.run_once()
        assert alerts(db) == []
        _write(db, cols(conn, "CITY-S", PM25, at(9), [20.0] * 7), "fast")  # to #15
        _write(db, cols(conn, "MM1-T", SO2, at(9), [5.0] * 7), "slow")  # the slow one too, without Sop Pat
        ev.run_once()
    [alert] = [x for x in alerts(db) if x.rule_key == "aq_offline"]
    # silent since #8 while every process got to #15: overdue at #8 + 6 x 5 min = #14
    assert (alert.device_id, alert.raised_at) == ("MM1-S", at(14))


def test_a_busy_process_records_its_progress_once_a_second_with_the_newest_of_the_batches_between(db: str) -> None:
    seconds = [100.0]  # the process's monotonic clock, moved by hand
    waiting = [True]  # whether messages wait behind the batch being written
    progress = Progress("p1", waiting=lambda: waiting[0], clock=lambda: seconds[0])

    def write_at(s: float, batch: ReadingColumns) -> None:
        seconds[0] = s
        with psycopg.connect(db, autocommit=True) as conn:
            write_batch(conn, batch, progress=progress)

    def recorded() -> int:
        with psycopg.connect(db) as conn:
            [(newest,)] = conn.execute("SELECT newest_ts FROM ingest_progress WHERE client_id = 'p1'").fetchall()
        return us(newest)

    with psycopg.connect(db) as conn:
        write_at(100.0, cols(conn, "MM1-S", SO2, T0, [5.0, 5.0]))  # the first batch: written, #1
        assert recorded() == us(at(1))
        write_at(100.5, cols(conn, "MM1-S", SO2, at(2), [5.0] * 3))  # to #4, within the second: not written
        write_at(100.9, cols(conn, "CITY-S", PM25, T0, [20.0] * 3))  # to #2: not written
        assert recorded() == us(at(1))
        write_at(101.0, cols(conn, "MM1-T", SO2, T0, [5.0] * 4))  # to #3, a second on: the newest since, #4
        assert recorded() == us(at(4))
        write_at(101.5, cols(conn, "CITY-S", PM25, at(3), [20.0] * 4))  # to #6: not written
        assert recorded() == us(at(4))
        waiting[0] = False  # the last batch of a burst: nothing behind it, written within the second
        write_at(101.6, cols(conn, "MM1-S", SO2, at(5), [5.0]))  # #5: the newest since, #6
        assert recorded() == us(at(6))
