"""Readings that arrive behind their series' frontier are evaluated (issue 11, "late alerts happen").

The case: a station loses its link, buffers its readings, and when the link is back sends its newest reading first
and replays the buffer after. Before this change the replayed readings lay behind the frontier the newest one had
set, and an SO2 episode in them raised nothing. Now the evaluator runs the series again from a checkpoint before
them (engine.alerts.checkpoint_before) and reconciles the run with what was recorded (engine.alerts.revise): the
episode becomes a late alert, visible at GET /alerts?late=true with its events and paged to nobody, and the live
state of the series goes on undisturbed.

Expected times and values are worked out by hand in the comments from the rule (Mae Moh: above 150 ppb held 6 min
raises, below 50 ppb clears, hold-off 30 min; 5-minute cadence, so three readings above 150 raise at the third).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import psycopg
from psycopg_pool import ConnectionPool
from starlette.exceptions import StarletteDeprecationWarning

from lccm.api.app import create_app
from lccm.engine.alert_kinds import ClearReason, TransitionKind
from lccm.engine.alerts import (
    CHECKPOINT_BASE_US,
    AlertRule,
    SeriesState,
    checkpoint_before,
    keep_checkpoints,
)
from lccm.settings import Settings
from lccm.store import alerts as st
from lccm.store.writer import NO_SEQ, ReadingColumns
from tests._auth import admin_headers
from tests._db import device_pk, us
from tests.test_alerts_store_api import MAE_MOH, PLUME, SO2, alerts, at, cols, commit, evaluator, paged
from tests.test_alerts_store_api import db as db  # fixture: registry with Sop Pat and the Mae Moh rule

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

if TYPE_CHECKING:
    from lccm.stream.alerts import AlertEvaluator

MIN = 60_000_000
LOW = 5.0  # ppb: clean air at Sop Pat


def readings(conn: psycopg.Connection, device: str, points: Sequence[tuple[datetime, float]], received: datetime
             ) -> ReadingColumns:  # fmt: skip
    """One batch with explicit event times, all received at ``received`` (the wall clock of its arrival)."""
    n = len(points)
    return ReadingColumns(
        device_id=np.full(n, device_pk(conn, device), np.int32),
        metric_id=np.full(n, SO2, np.int16),
        ts_us=np.array([us(t) for t, _ in points], dtype=np.int64),
        value=np.array([v for _, v in points], dtype=np.float64),
        seq=np.full(n, NO_SEQ, np.int64),
        received_at_us=np.full(n, us(received), np.int64),
    )


def replay(db: str, ev: AlertEvaluator, values: Sequence[float], first: int, received: datetime) -> None:
    """The station's buffer, readings #first, #first+1 ..., arriving together at ``received``."""
    with psycopg.connect(db) as conn:
        commit(db, readings(conn, "MM1-S", [(at(first + i), v) for i, v in enumerate(values)], received))
    ev.run_once()


def live(db: str, ev: AlertEvaluator, values: Sequence[float], first: int) -> None:
    """Readings sent as they are taken (20 s after their event time), one batch each."""
    with psycopg.connect(db) as conn:
        for i, v in enumerate(values):
            commit(db, cols(conn, "MM1-S", SO2, at(first + i), [v]))
            ev.run_once()


def events(db: str, alert_id: int) -> list[tuple[str, datetime, bool, bool]]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT kind, at, late, page FROM alert_events WHERE alert_id = %s ORDER BY id", (alert_id,)
        ).fetchall()
    return [(str(k), t, bool(late), bool(page)) for k, t, late, page in rows]


# --- the station that replays its buffer after its newest reading ---------------------------------------------


def test_a_buffered_episode_replayed_after_a_newer_reading_is_a_late_alert_that_pages_nobody(db: str) -> None:
    ev = evaluator(db, clock="wall", late_after_s=900)
    live(db, ev, [LOW, LOW], 0)  # #0, #1 on time
    # The link is down from #2 to #19; at #20 (T0 + 100 min) it is back: the newest reading goes first ...
    live(db, ev, [LOW], 20)
    assert alerts(db) == []
    # ... then the buffer, #2..#19, arrives at #20 + 1 min: the plume (PLUME from #2: 160 at #3, 170 at #4, 180 at
    # #5: above 150 for 10 min >= 6 -> raised at #5, the condition began at #3; 45 < 50 at #9 -> cleared at #9),
    # then clean air.
    buffer = PLUME + [LOW] * 9  # #2..#19
    replay(db, ev, buffer, 2, at(20) + timedelta(minutes=1))
    [a] = alerts(db)
    assert (a.state, a.late, a.started_at, a.raised_at, a.cleared_at) == ("cleared", True, at(3), at(5), at(9))
    assert (a.raised_value, a.threshold, a.peak_value, a.cleared_value, a.clear_reason) == (
        180, 150, 180, 45, ClearReason.CONDITION,
    )  # fmt: skip
    # Both changes were found 101 min after #0, more than 15 min after #5 and #9: late, recorded, not paged.
    assert events(db, a.id) == [("raised", at(5), True, False), ("cleared", at(9), True, False)]
    assert paged(db) == []
    print(f"late alert {a.id}: {a.rule_key} {a.device_id} state={a.state} late={a.late} raised {a.raised_at:%H:%M}Z"
          f" ({a.raised_value:g} ppb) cleared {a.cleared_at:%H:%M}Z ({a.cleared_value:g} ppb), peak {a.peak_value:g};"
          f" events (kind, at, late, paged): {[(k, f'{t:%H:%M}Z', lt, pg) for k, t, lt, pg in events(db, a.id)]};"
          f" paged now: {paged(db)}")  # fmt: skip

    # The same buffer again (a redelivery): the run again finds the episode recorded; nothing changes.
    replay(db, ev, buffer, 2, at(20) + timedelta(minutes=2))
    assert [x.id for x in alerts(db)] == [a.id] and len(events(db, a.id)) == 2 and paged(db) == []

    # The live state went on undisturbed: a plume now, on time, raises and clears a new alert, paged both times
    # (#21..#29 = PLUME: raised at #24, cleared at #28; 75 min after the late clear, outside the 30-min hold-off).
    live(db, ev, PLUME, 21)
    late, now = alerts(db)
    assert (now.late, now.raised_at, now.cleared_at, now.flaps) == (False, at(24), at(28), 0)
    assert [(t.alert_id, t.kind, t.at) for t in paged(db)] == [
        (now.id, TransitionKind.RAISED, at(24)), (now.id, TransitionKind.CLEARED, at(28)),
    ]  # fmt: skip
    assert late.id == a.id and late.state == "cleared"


def test_the_api_shows_the_late_alert_with_its_events(db: str) -> None:
    ev = evaluator(db, clock="wall", late_after_s=900)
    live(db, ev, [LOW, LOW], 0)
    live(db, ev, [LOW], 20)
    replay(db, ev, PLUME + [LOW] * 9, 2, at(20) + timedelta(minutes=1))
    with (
        ConnectionPool(db, min_size=1, max_size=2, open=True) as pool,
        TestClient(create_app(Settings(database_url=db), pool), headers=admin_headers(db)) as client,
    ):
        late = client.get("/alerts", params={"late": "true"}).json()["items"]
        assert client.get("/alerts", params={"late": "false"}).json()["items"] == []
        [item] = late
        assert (item["late"], item["state"], item["raised_at"], item["cleared_at"]) == (
            True, "cleared", "2026-01-10T02:25:00Z", "2026-01-10T02:45:00Z",
        )  # fmt: skip  # #5 = 02:00Z + 25 min, #9 = + 45 min
        detail = client.get(f"/alerts/{item['id']}").json()
        assert [(e["kind"], e["at"], e["late"], e["page"], e["notified_at"]) for e in detail["events"]] == [
            ("raised", "2026-01-10T02:25:00Z", True, False, None),
            ("cleared", "2026-01-10T02:45:00Z", True, False, None),
        ]


def test_a_replay_showing_the_episode_still_running_opens_the_alert_late(db: str) -> None:
    ev = evaluator(db, clock="wall", late_after_s=900)
    live(db, ev, [LOW, LOW], 0)
    # Back at #12 with 200 ppb: alone after a 55-min gap (over 3 cadences) it only starts a pending raise.
    live(db, ev, [200.0], 12)
    assert alerts(db) == []
    # The buffer arrives 20 min after #11: 160, 170, 180 at #9..#11 -> raised at #11 (held 10 min), the condition
    # began at #9; #12 (200) continues it. The present changes: the series is raised; late (20 min > 15): no page.
    replay(db, ev, [LOW] * 7 + [160.0, 170.0, 180.0], 2, at(11) + timedelta(minutes=20))
    [a] = alerts(db)
    assert (a.state, a.late, a.started_at, a.raised_at, a.raised_value) == ("open", True, at(9), at(11), 180)
    # Live again: 200 at #13, then 40 (< 50) at #14: cleared on time; not paged, as its raise was not.
    live(db, ev, [200.0, 40.0], 13)
    [a] = alerts(db)
    assert (a.state, a.cleared_at, a.peak_value) == ("cleared", at(14), 200)
    assert events(db, a.id) == [("raised", at(11), True, False), ("cleared", at(14), False, False)]
    assert paged(db) == []


def test_a_reading_arriving_after_its_successors_that_breaks_the_raise_withdraws_the_alert(db: str) -> None:
    ev = evaluator(db, clock="wall", late_after_s=900)
    live(db, ev, [LOW, LOW], 0)
    live(db, ev, [160.0, 170.0, 180.0], 2)  # #2..#4 above 150 for 10 min: raised at #4, paged
    [a] = alerts(db)
    assert (a.state, a.raised_at, a.late) == ("open", at(4), False)
    # A reading taken between #3 and #4 (the analyser's extra sample) arrives a minute after #4: 40 ppb. With it the
    # condition held from #4 only, 0 min < 6: the raise at #4 never held, and one evaluation over every reading has
    # no alert. The alert is withdrawn (closed by the evaluator, a 'revised' event saying why), not paged again.
    with psycopg.connect(db) as conn:
        extra = readings(
            conn, "MM1-S", [(at(3) + timedelta(minutes=2, seconds=30), 40.0)], at(4) + timedelta(minutes=1)
        )
    commit(db, extra)
    ev.run_once()
    [a] = alerts(db)
    assert (a.state, a.clear_reason, a.closed_by) == ("closed", ClearReason.WITHDRAWN, "evaluator")
    with psycopg.connect(db) as conn:
        events = st.alert_events(conn, a.id)
    assert [(e.kind, e.page) for e in events] == [(TransitionKind.RAISED, True), (TransitionKind.REVISED, False)]
    assert events[-1].note is not None and events[-1].note.startswith("withdrawn:")
    assert [(t.kind, t.at) for t in paged(db)] == [(TransitionKind.RAISED, at(4))]
    # The condition goes on: 190 at #5, #6 -> held from #4 to #6 = 10 min: raised at #6, as one evaluation over every
    # reading raises it: a new alert (nothing was cleared before it: no hold-off), paged.
    live(db, ev, [190.0, 190.0], 5)
    _, b = alerts(db)
    assert (b.state, b.started_at, b.raised_at, b.flaps, b.peak_value) == ("open", at(4), at(6), 0, 190)
    assert [(t.kind, t.at) for t in paged(db)] == [(TransitionKind.RAISED, at(4)), (TransitionKind.RAISED, at(6))]


def test_readings_further_behind_than_the_catch_up_horizon_are_counted_not_evaluated(db: str) -> None:
    ev = evaluator(db, clock="event", catchup_s=3600)  # readings are evaluated up to an hour behind their series
    live(db, ev, [LOW] * 3, 30)  # #30..#32, silent to #49, then #50..#52
    live(db, ev, [LOW] * 3, 50)
    replay(db, ev, PLUME, 2, at(52))  # #2..#10: more than 3.5 h behind #52
    assert alerts(db) == []
    replay(db, ev, PLUME, 41, at(52))  # #41..#49, 15 to 55 min behind: evaluated, raised at #44, cleared at #48
    [a] = alerts(db)
    # late: found when the city's event-time watermark stood at #52, 40 min after #44 (more than 15)
    assert (a.raised_at, a.cleared_at, a.late) == (at(44), at(48), True)
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT sum(behind_frontier) FROM alert_behind").fetchone()
    assert row is not None and row[0] == 2  # both replays reached behind the frontier
    assert (ev.totals.unevaluated, ev.totals.revised) == (1, 1)


# --- the pure parts ------------------------------------------------------------------------------------------


def idle(last_us: int, **kw: int) -> SeriesState:
    return SeriesState(last_ts_us=last_us, **kw)  # type: ignore[arg-type]


def test_checkpoints_stay_few_and_always_leave_one_shortly_before_a_late_reading() -> None:
    horizon = 7 * 24 * 60 * MIN
    kept: tuple[SeriesState, ...] = ()
    f = 0
    worst = 0.0
    for step in range(1, 7 * 24 * 12 * 2):  # two weeks of runs, one per 5-minute reading
        f = step * 5 * MIN
        kept = keep_checkpoints(kept, idle(f), horizon_us=horizon)
        assert len(kept) <= 12
        if step % 7 == 0:  # readings that many minutes late, up to the horizon, find a checkpoint before them
            for lateness in [MIN, 4 * MIN, 16 * MIN, 70 * MIN, 6 * 60 * MIN, 30 * 60 * MIN, 4 * 24 * 60 * MIN]:
                if lateness > min(f, horizon) - 2 * CHECKPOINT_BASE_US:
                    continue
                c = checkpoint_before(kept, f - lateness)
                assert c is not None and c.last_ts_us < f - lateness, (step, lateness)
                worst = max(worst, (f - c.last_ts_us) / (lateness + CHECKPOINT_BASE_US))
    assert worst <= 4.0  # the run again covers at most about 4x the readings' own lateness
    assert all(f - c.last_ts_us <= horizon for c in kept) and f - kept[-1].last_ts_us < CHECKPOINT_BASE_US
    print(f"{len(kept)} checkpoints after two weeks; a run again covers at most {worst:.2f} x (lateness + 15 min)")


def test_a_pristine_start_serves_any_earlier_instant_and_a_raised_one_does_not() -> None:
    start = idle(100)
    assert checkpoint_before([start, idle(500, cleared_us=300)], 50) == idle(49)
    assert checkpoint_before([idle(100, cleared_us=90)], 50) is None
    assert checkpoint_before([start, idle(500)], 501) == idle(500)


def test_a_reading_found_before_the_raise_re_times_the_alert_and_the_api_shows_the_revision(db: str) -> None:
    ev = evaluator(db, clock="wall", late_after_s=900)
    live(db, ev, [LOW, LOW], 0)
    # #2 is delayed; #3..#5 = 160, 170, 180 arrive live: above 150 from #3, 10 min at #5 -> raised at #5, paged.
    live(db, ev, [160.0, 170.0, 180.0], 3)
    [a] = alerts(db)
    assert (a.started_at, a.raised_at, a.raised_value) == (at(3), at(5), 180)
    # #2 = 160 arrives a minute after #5 (on time: 6 min < 15). With it the condition began at #2 and held 10 min at
    # #4: one evaluation over every reading raises at #4 (170 ppb). The alert is re-timed, not raised again.
    with psycopg.connect(db) as conn:
        commit(db, readings(conn, "MM1-S", [(at(2), 160.0)], at(5) + timedelta(minutes=1)))
    ev.run_once()
    [a] = alerts(db)
    assert (a.state, a.started_at, a.raised_at, a.raised_value, a.peak_value) == ("open", at(2), at(4), 170, 180)
    assert [(t.kind, t.at) for t in paged(db)] == [(TransitionKind.RAISED, at(5))]  # the correction: not paged
    with (
        ConnectionPool(db, min_size=1, max_size=2, open=True) as pool,
        TestClient(create_app(Settings(database_url=db), pool), headers=admin_headers(db)) as client,
    ):
        detail = client.get(f"/alerts/{a.id}").json()
    assert (detail["started_at"], detail["raised_at"]) == ("2026-01-10T02:10:00Z", "2026-01-10T02:20:00Z")
    assert [(e["kind"], e["actor"], e["page"]) for e in detail["events"]] == [
        ("raised", None, True), ("revised", "evaluator", False),
    ]  # fmt: skip
    assert detail["events"][1]["note"] == (
        "re-timed by readings that arrived behind the series' frontier: started 2026-01-10T02:15:00Z ->"
        " 2026-01-10T02:10:00Z; raised 2026-01-10T02:25:00Z -> 2026-01-10T02:20:00Z"
    )
    # Redelivered: nothing more.
    with psycopg.connect(db) as conn:
        commit(db, readings(conn, "MM1-S", [(at(2), 160.0)], at(5) + timedelta(minutes=2)))
    ev.run_once()
    assert len(events(db, a.id)) == 2


def test_one_episode_recorded_as_two_alerts_is_merged_once_the_reading_between_them_arrives(db: str) -> None:
    # The Mae Moh rule with a 10-minute clear and no hold-off: a clear and a new raise make a second alert.
    with psycopg.connect(db) as conn:
        rule = {**MAE_MOH, "clear": {"below": 50, "for": "10min"}, "holdoff": "0s"}
        st.put_rule(conn, "so2_mae_moh", AlertRule.model_validate(rule).definition(), "file")
    ev = evaluator(db, clock="wall", late_after_s=3600)
    live(db, ev, [LOW, LOW, 160.0, 170.0, 180.0, 200.0, LOW], 0)  # raised at #4 (above 150 from #2); LOW at #6
    live(db, ev, [LOW, 200.0, 200.0, 200.0], 8)  # #7 delayed; LOW at #6, #8: cleared at #8; raised again at #11
    first, second = alerts(db)
    assert (first.raised_at, first.cleared_at, second.started_at, second.raised_at) == (at(4), at(8), at(9), at(11))
    # #7 = 200 arrives: the clear at #8 never held (below 50 at #6 and #8 only, broken at #7), so one evaluation
    # over every reading has one alert, raised at #4, still active, its peak 200. The first is re-timed (open again),
    # the second merged into it; nothing is paged.
    with psycopg.connect(db) as conn:
        commit(db, readings(conn, "MM1-S", [(at(7), 200.0)], at(11) + timedelta(minutes=1)))
    ev.run_once()
    first, second = alerts(db)
    assert (first.state, first.started_at, first.raised_at, first.cleared_at, first.flaps, first.peak_value) == (
        "open", at(2), at(4), None, 0, 200,
    )  # fmt: skip
    assert (second.state, second.clear_reason, second.closed_by) == ("closed", ClearReason.MERGED, "evaluator")
    with psycopg.connect(db) as conn:
        notes = [(e.kind, e.note) for e in st.alert_events(conn, second.id)]
    assert notes[-1] == (
        TransitionKind.REVISED,
        f"merged into alert {first.id}: one episode once readings that arrived behind the series' frontier are known",
    )
    assert [(t.kind, t.at) for t in paged(db)] == [
        (TransitionKind.RAISED, at(4)), (TransitionKind.CLEARED, at(8)), (TransitionKind.RAISED, at(11)),
    ]  # fmt: skip
    # It goes on: below 50 from #12 for 10 min clears it at #14, paged.
    live(db, ev, [LOW, LOW, LOW], 12)
    first, _ = alerts(db)
    assert (first.state, first.cleared_at) == ("cleared", at(14))
    assert [(t.kind, t.at) for t in paged(db)][-1] == (TransitionKind.CLEARED, at(14))
