"""The alert evaluator's claim, columnar (stream/alerts.py: claimed_work, store/alerts.py: claim_queued): what a run
takes from the hand-over is the same as taking its rows one by one, in commit order, as docs/partitions.md#alerts
states it. The expectations are worked out row by row here, not by the code under test:

- a row's watermark is its batch's receipt (wall clock), or the running maximum of the batches' newest event time
  over the rows in commit order, from where the last run left it (event clock); the stream is live when the newest
  batch's watermark is within the late-after limit of its newest event time (always on the event clock);
- a span delivers its newest event time when that came within the limit, else the watermark it arrived under; a
  device's delivery clock is the newest of its spans' and its stored one, the city's arrival clock the newest of
  every span's and every batch's own newest data;
- a device's first and newest event time are the extremes of its spans and its stored ones;
- a device an index rule watches keeps (newest event time, watermark) per batch in commit order, the spans of one
  batch (one watermark) widened into one entry, the newest ``history_spans`` of them."""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np
import psycopg
import pytest

from lccm.store import alerts as st
from lccm.store.leases import Held
from lccm.store.writer import NO_SEQ, ReadingColumns, write_batch
from lccm.stream.alerts import DeliveryClock, Span, claimed_work
from tests.test_window_readings import S, _devices

LATE_US = 900_000_000
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00Z


def _rows(seed: int, n_batches: int = 40) -> st.QueuedRows:
    """Batches in commit order, each with a few series: some on time, some replayed hours late, some received long
    after they were read (wall clock late), metrics in any order within a batch."""
    rnd = random.Random(seed)
    cols: dict[str, list[int]] = defaultdict(list)
    newest_so_far = T0
    for _ in range(n_batches):
        base = newest_so_far + rnd.randrange(-3 * 3600, 600) * 1_000_000
        series = rnd.sample([(d, m) for d in range(1, 9) for m in (1, 2, 3, -7)], rnd.randrange(1, 12))
        spans = []
        for d, m in series:
            lo = base + rnd.randrange(0, 300) * 1_000_000
            spans.append((d, m, lo, lo + rnd.randrange(0, 600) * 1_000_000))
        newest = max(hi for *_, hi in spans)
        newest_so_far = max(newest_so_far, newest)
        received = newest + rnd.choice((5, 60, 1000, 4 * 3600)) * 1_000_000
        for d, m, lo, hi in spans:
            for k, v in (("d", d), ("m", m), ("lo", lo), ("hi", hi), ("n", newest), ("r", received)):
                cols[k].append(v)

    def a(k: str) -> np.ndarray:
        return np.array(cols[k], np.int64)

    return st.QueuedRows(a("d"), a("m"), a("lo"), a("hi"), a("n"), a("r"))


def _stored() -> list[st.DeviceClockRow]:
    """Clocks stored by earlier runs for some of the devices (2 watched by an index rule, with spans)."""
    return [
        st.DeviceClockRow(1, T0 - 86_400_000_000, T0 + 7_200_000_000, T0 + 7_200_000_000, []),
        st.DeviceClockRow(2, T0 - 3_600_000_000, T0 - 60_000_000, T0 - 60_000_000, [T0 - 60_000_000, T0]),
        st.DeviceClockRow(5, T0 + 10**12, T0 + 10**12, T0 + 10**12, []),
    ]


def _columns(rows: list[st.DeviceClockRow]) -> st.StoredClocks:
    def a(attr: str) -> np.ndarray:
        return np.array([getattr(r, attr) for r in rows], np.int64)

    spans = {r.device_id: r.spans for r in rows if r.spans}
    return st.StoredClocks(a("device_id"), a("first_us"), a("newest_us"), a("delivered_us"), spans)


@pytest.mark.parametrize("clock", ["wall", "event"])
@pytest.mark.parametrize("seed", range(6))
def test_a_claim_taken_at_once_is_the_claim_taken_row_by_row(clock: str, seed: int) -> None:
    rows = _rows(seed)
    index_devices = frozenset({2, 3})
    history_spans = 5
    clock_ = DeliveryClock(clock, LATE_US, history_bytes=16 * history_spans)  # type: ignore[arg-type]
    clock_.index_devices = index_devices
    event0 = T0 - 1_000_000
    clock_.event_wm_us, clock_.arrival_wm_us = event0, T0 - 5_000_000
    clock_.load(_columns(_stored()))

    pending = claimed_work(rows, clock_)

    # Row by row.
    event_wm, arrival = event0, T0 - 5_000_000
    seen = {r.device_id: (r.first_us, r.newest_us) for r in _stored()}
    delivered = {r.device_id: r.delivered_us for r in _stored()}
    history: dict[int, list[list[int]]] = {2: [[T0 - 60_000_000, T0]]}
    spans: dict[tuple[int, int], list[Span]] = defaultdict(list)
    arrived: dict[int, int] = {}
    live = True
    for d, m, lo, hi, newest, received in zip(
        *(a.tolist() for a in (rows.device_id, rows.metric_id, rows.lo_us, rows.hi_us)),
        rows.batch_newest_us.tolist(), rows.batch_received_us.tolist(), strict=True,
    ):  # fmt: skip
        event_wm = max(event_wm, newest)
        wm = received if clock == "wall" else event_wm
        live = clock == "event" or wm - newest <= LATE_US
        gave = hi if wm - hi <= LATE_US else wm
        arrival = max(arrival, gave, newest if wm - newest <= LATE_US else wm)
        spans[(d, m)].append(Span(lo, hi, wm))
        arrived[d] = max(arrived.get(d, gave), gave)
        first, last = seen.get(d, (lo, hi))
        seen[d] = (min(first, lo), max(last, hi))
        delivered[d] = max(delivered.get(d, gave), gave)
        if d in index_devices:
            h = history.setdefault(d, [])
            if h and h[-1][1] == wm:
                h[-1][0] = max(h[-1][0], hi)
            else:
                h.append([hi, wm])
            del h[:-history_spans]

    assert (clock_.event_wm_us, clock_.arrival_wm_us, clock_.live) == (event_wm, arrival, live)
    for (d, m), expected in spans.items():
        assert pending.spans(d, m) == expected
    assert pending.spans(99, 1) == []
    assert pending.arrived == arrived
    assert pending.index_until == {
        d: max(s.hi_us for (dd, _), ss in spans.items() if dd == d for s in ss) for d in arrived
    }
    for m in (1, 2, 3, -7):
        assert pending.devices_of(m) == {d for d, mm in spans if mm == m}
    for d in range(1, 10):
        rows_of_d = pending.rows_of(d)
        assert sorted(pending.lo_us[rows_of_d].tolist()) == sorted(s.lo_us for (dd, _), ss in spans.items()
                                                                    if dd == d for s in ss)  # fmt: skip
    changed = {r.device_id: r for r in clock_.changed()}
    assert set(changed) == set(arrived)
    for d, r in changed.items():
        assert (r.first_us, r.newest_us, r.delivered_us) == (*seen[d], delivered[d])
        assert r.spans == ([v for pair in history[d] for v in pair] if d in index_devices else None)


def test_no_rows_claimed_change_nothing() -> None:
    clock = DeliveryClock("wall", LATE_US)
    clock.event_wm_us, clock.arrival_wm_us, clock.live = T0, T0, False
    empty = np.zeros(0, np.int64)
    pending = claimed_work(st.QueuedRows(empty, empty, empty, empty, empty, empty), clock)
    assert not pending
    assert (clock.event_wm_us, clock.arrival_wm_us, clock.live, clock.changed()) == (T0, T0, False, [])


def test_the_claim_returns_the_rows_of_the_held_partitions_in_commit_order_and_deletes_them(fresh_db: str) -> None:
    """Rows as written (times to the microsecond, negative metric ids, a device id past 2**16), oldest first by id
    whatever their physical order, only the held partitions' devices, at most the limit; the claimed ones gone."""
    values = [  # (device, metric, lo, hi, newest, received), in commit order
        (7, 3, T0 + 1, T0 + 2, T0 + 9, T0 + 10),
        (70_001, -2, T0 - 123_456_789, T0, T0 + 9, T0 + 10),
        (8, 1, T0 + 5, T0 + 6, T0 + 9, T0 + 10),
        (6, 1, T0 + 999_999, T0 + 1_000_001, T0 + 1_000_001, T0 + 86_400_000_000),
        (9, 2, T0 + 11, T0 + 12, T0 + 20, T0 + 21),
    ]
    with psycopg.connect(fresh_db) as conn:
        for row in values:
            conn.execute(
                "INSERT INTO alert_queue (device_id, metric_id, lo, hi, batch_newest, batch_received)"
                " SELECT %s, %s, t[1], t[2], t[3], t[4] FROM (SELECT array_agg('epoch'::timestamptz + x * interval"
                " '1 microsecond' ORDER BY o) AS t FROM unnest(%s::bigint[]) WITH ORDINALITY AS u(x, o)) s",
                (row[0], row[1], list(row[2:])),
            )
        # Move the first row to the end of the heap: the order is the ids', not the rows' places.
        conn.execute("UPDATE alert_queue SET hi = hi WHERE id = (SELECT min(id) FROM alert_queue)")
        conn.commit()

        claimed = st.claim_queued(conn, 3, Held(2, [1]))  # odd devices
        conn.commit()
        got = list(
            zip(*(a.tolist() for a in (claimed.device_id, claimed.metric_id, claimed.lo_us, claimed.hi_us,
                                       claimed.batch_newest_us, claimed.batch_received_us)), strict=True)
        )  # fmt: skip
        assert got == [values[0], values[1], values[4]]
        assert st.claim_queued(conn, 10, Held(2, [1])).device_id.tolist() == []
        rest = st.claim_queued(conn, 10)
        assert rest.device_id.tolist() == [8, 6] and rest.hi_us.tolist() == [T0 + 6, T0 + 1_000_001]
        assert len(st.claim_queued(conn, 10)) == 0


def test_series_readings_take_after_exclusive_until_inclusive_to_the_microsecond(fresh_db: str) -> None:
    """The evaluator's read of a series past its frontier: a reading at the frontier itself was evaluated, one a
    microsecond after it was not; the series come back in the order asked, each in time order."""
    d1, d2 = _devices(fresh_db)
    points = [(d1, 1, T0 - 1), (d1, 1, T0), (d1, 1, T0 + 1), (d1, 1, T0 + 60 * S), (d1, 1, T0 + 60 * S + 1)]
    points += [(d2, 2, T0 + 5), (d2, 2, T0 - 10 * S)]
    n = len(points)
    cols = ReadingColumns(
        np.array([p[0] for p in points], np.int32), np.array([p[1] for p in points], np.int16),
        np.array([p[2] for p in points], np.int64), np.arange(n, dtype=np.float64) + 0.1,
        np.full(n, NO_SEQ, np.int64), np.full(n, T0 + 600 * S, np.int64),
    )  # fmt: skip
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        write_batch(conn, cols, alerts=False)
        idx, ts, value = st.series_readings(
            conn, [d2, d1, d1], [2, 1, 2], [T0 - 10 * S - 1, T0, T0], [T0 + 5, T0 + 60 * S, T0]
        )
    got = list(zip(idx.tolist(), ts.tolist(), value.tolist(), strict=True))
    assert got == [(0, T0 - 10 * S, 6.1), (0, T0 + 5, 5.1), (1, T0 + 1, 2.1), (1, T0 + 60 * S, 3.1)]


def test_device_clocks_read_back_as_saved(fresh_db: str) -> None:
    """Saved clocks (times to the microsecond, before PostgreSQL's epoch too, span histories of some) come back for
    the devices asked for, those never saved left out."""
    saved = [
        *_stored(),
        st.DeviceClockRow(70_001, -86_400 * S - 1, T0 + 1, T0 + 3, [T0 + 1, T0 + 3, T0 + 2, T0 + 5]),
    ]
    with psycopg.connect(fresh_db) as conn:
        st.save_device_clocks(conn, saved)
        assert len(st.device_clocks(conn, []).device_id) == 0
        got = st.device_clocks(conn, [5, 2, 70_001, 9, 1])
    order = np.argsort(got.device_id)
    assert got.device_id[order].tolist() == [1, 2, 5, 70_001]
    expected = sorted(saved, key=lambda r: r.device_id)
    assert got.first_us[order].tolist() == [r.first_us for r in expected]
    assert got.newest_us[order].tolist() == [r.newest_us for r in expected]
    assert got.delivered_us[order].tolist() == [r.delivered_us for r in expected]
    assert got.spans == {2: [T0 - 60_000_000, T0], 70_001: [T0 + 1, T0 + 3, T0 + 2, T0 + 5]}
