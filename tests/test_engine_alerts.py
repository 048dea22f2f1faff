"""engine/alerts.py: the rule model and the state machine, on hand-written sequences with the expected times worked
out in the comments, plus a brute-force reference of the raise/clear semantics and batch invariance."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from lccm.engine.alerts import (
    NO_TS,
    AlertRule,
    Averaging,
    SeriesInfo,
    SeriesState,
    Transition,
    evaluate,
    evaluate_offline,
    flat_runs,
    min_count,
    moving_mean,
    sample_values,
    schedule_mask,
    with_flat_carry,
)
from lccm.engine.timebase import BANGKOK, us_from_datetime

MIN = 60_000_000
CADENCE = 5 * MIN
T0 = us_from_datetime(datetime(2026, 1, 10, 9, 0, tzinfo=BANGKOK))
LATE_AFTER = 15 * MIN
STATION = SeriesInfo(1, "LPG-AQ-05", "LPG-AQ-05", "aq_station", "station", CADENCE, 18.273, 99.721)


def rule(**kw: Any) -> AlertRule:
    base: dict[str, Any] = {"key": "r", "name": {"en": "r", "th": "r"}, "severity": "warning", "holdoff": 0}
    return AlertRule.model_validate({**base, **kw})


# EGAT's Mae Moh rule (docs/reference.md#mae-moh-so2-rule): 0.15 ppm = 150 ppb held 6 min raises, below 0.05 ppm
# = 50 ppb clears.
MAE_MOH = rule(metric="so2_ppb", **{"raise": {"above": 150, "for": "6min"}}, clear={"below": 50}, holdoff="30min")


def run(
    r: AlertRule,
    values: Sequence[float],
    *,
    start: int = T0,
    step: int = CADENCE,
    state: SeriesState | None = None,
    lag: int = 0,
    sched: list[bool] | None = None,
) -> tuple[SeriesState, list[Transition]]:
    """Raw samples every `step` from `start`; each arrives `lag` behind its event time."""
    ts = start + step * np.arange(len(values), dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    inside = np.ones(len(v), bool) if sched is None else np.asarray(sched)
    return evaluate(
        r, state or SeriesState(), ts, v, np.isfinite(v), inside, ts + lag, max_gap_us=3 * CADENCE,
        late_after_us=LATE_AFTER,
    )  # fmt: skip


def at(i: int) -> int:
    return T0 + i * CADENCE


def summary(out: list[Transition]) -> list[tuple[str, int]]:
    return [(t.kind, (t.at_us - T0) // CADENCE) for t in out]


# --- rule model -----------------------------------------------------------------------------------------------


def test_the_short_form_reads_as_the_long_form_and_round_trips() -> None:
    assert MAE_MOH.raise_ is not None and MAE_MOH.clear is not None
    assert (MAE_MOH.raise_.op, MAE_MOH.raise_.value, MAE_MOH.raise_.for_s) == ("above", 150.0, 360.0)
    assert (MAE_MOH.clear.op, MAE_MOH.clear.value, MAE_MOH.holdoff_s) == ("below", 50.0, 1800.0)
    assert AlertRule.model_validate(MAE_MOH.definition()) == MAE_MOH
    avg = Averaging.model_validate({"window": "24h"})
    assert (avg.window_s, avg.min_fraction) == (86400.0, 0.75)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"clear": {"above": 40}}, "clear must point the other way"),
        ({"clear": {"below": 160}}, "wrong side of the raise value 150.0"),
        ({"raise": None}, "needs a raise condition"),
        ({"index": "aqi_th"}, "exactly one of metric or index"),
        ({"metric": None, "index": "aqi_xx"}, "unknown index 'aqi_xx'"),
        ({"dedup_key": "{station}"}, "dedup_key uses"),
        ({"raise": {"above": 1, "below": 2}}, "exactly one of above"),
        ({"raise": {"above": 150, "for": "six minutes"}}, "is not a duration"),
        ({"raise": {"above": float("nan")}}, "finite number"),
        ({"kind": "offline"}, "needs after_cadences"),
        ({"kind": "offline", "after_cadences": 3}, "does not take metric, raise, clear"),
        ({"kind": "out_of_range", "range": [5, 1], "raise": None, "clear": None}, "low < high"),
        ({"schedule": {"when": "working_hours", "working_hours": ["17:00", "08:00"]}}, "start before they end"),
    ],
)
def test_an_invalid_rule_is_refused_with_a_message_that_says_why(change: dict[str, Any], message: str) -> None:
    d = {**MAE_MOH.definition(), **change}
    d = {k: v for k, v in d.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        AlertRule.model_validate(d)


def test_scope_near_mae_moh_takes_the_stations_within_10_km_only() -> None:
    r = rule(metric="so2_ppb", **{"raise": {"above": 150}}, scope={"near": {"lat": 18.30, "lon": 99.74, "km": 10}})
    # Sop Pat station 18.273 N 99.721 E: 0.027 deg lat = 3.0 km, 0.019 deg lon x cos(18.3) = 2.0 km -> ~3.6 km.
    assert r.scope.matches(STATION)
    city_hall = SeriesInfo(2, "LPG-AQ-01", "LPG-AQ-01", "aq_station", "station", CADENCE, 18.2885, 99.4912)
    assert not r.scope.matches(city_hall)  # 0.249 deg lon ~ 26 km west
    no_coordinates = SeriesInfo(3, "X", "X", "aq_station", "station", CADENCE)
    assert not r.scope.matches(no_coordinates)
    assert r.dedup(STATION) == "LPG-AQ-05/LPG-AQ-05/so2_ppb"


# --- the state machine ----------------------------------------------------------------------------------------


def test_six_minutes_above_150_ppb_needs_three_readings_and_clears_only_below_50() -> None:
    # readings every 5 min: 0:120 1:160 2:170 3:180 -> above from #1; #1 to #3 is 10 min >= 6 min: raised at #3
    # (#2 is 5 min < 6). Then 140, 100, 60 stay raised (hysteresis: not below 50), 45 at #7 clears at once.
    state, out = run(MAE_MOH, [120, 160, 170, 180, 140, 100, 60, 45, 40])
    assert summary(out) == [("raised", 3), ("cleared", 7)]
    raised, cleared = out
    assert raised.started_us == at(1) and raised.value == 180 and not raised.late
    assert cleared.value == 45 and cleared.peak == 180 and cleared.reason == "condition"
    assert state.phase == "idle" and state.cleared_us == at(7) and state.last_ts_us == at(8)


def test_two_readings_above_are_not_six_minutes_and_a_dip_restarts_the_count() -> None:
    # 160, 160 (5 min), 140 breaks it, 160, 160, 160: #3..#5 = 10 min -> raised at #5, started at #3.
    _, out = run(MAE_MOH, [160, 160, 140, 160, 160, 160])
    assert summary(out) == [("raised", 5)]
    assert out[0].started_us == at(3)


def test_a_gap_longer_than_three_cadences_breaks_the_duration() -> None:
    # 160 at 0 min, then silence, 160 at 20 min and 25 min: 20 - 0 > 15 min (3 cadences), so the count restarts
    # at 20 min and 25 - 20 = 5 min < 6: nothing raised.
    ts = np.array([T0, T0 + 20 * MIN, T0 + 25 * MIN])
    v = np.array([160.0, 160.0, 160.0])
    _, out = evaluate(MAE_MOH, SeriesState(), ts, v, np.ones(3, bool), np.ones(3, bool), ts,
                      max_gap_us=3 * CADENCE, late_after_us=LATE_AFTER)  # fmt: skip
    assert out == []


def test_hysteresis_and_durations_suppress_flapping_that_a_bare_threshold_shows() -> None:
    noisy = [160, 140, 170, 145, 155, 148, 160, 152, 149, 165, 60, 55, 140, 160, 145]
    bare = rule(metric="so2_ppb", **{"raise": {"above": 150}})  # clear = "not above 150", no duration, no hold-off
    _, flappy = run(bare, noisy)
    # above 150 at #0 #2 #4 #6 #7 #9 #13 -> raised at each first of a run: 0, 2, 4, 6, 9, 13 (6 raises)
    assert [k for k, _ in summary(flappy)].count("raised") == 6
    _, out = run(MAE_MOH, noisy)
    # never three readings in a row above 150 except #6 #7 (10 min? #6 and #7 are 5 min apart, #8 = 149 breaks)
    assert out == []
    _, out = run(MAE_MOH, [*noisy[:6], 160, 160, 160, 100, 120, 140, 60, 55, 140, 160, 160, 160])
    # raised at #8 (#6..#8 = 10 min); 100..55 never below 50: no clear, so #15-#17 raise nothing new
    assert summary(out) == [("raised", 8)]


def test_a_raise_within_the_holdoff_reopens_instead_of_raising_anew() -> None:
    # raised #2 (0..2), cleared #3 (40 < 50), above again #4..#6 -> raise at #6: 15 min after the clear < 30 min
    # hold-off: reopened. Then cleared #7, and above #14..#16: 16 - 7 = 45 min after that clear: a new raise.
    values = [160, 160, 160, 40, 160, 160, 160, 40, 40, 40, 40, 40, 40, 40, 160, 160, 160]
    _, out = run(MAE_MOH, values)
    assert summary(out) == [("raised", 2), ("cleared", 3), ("reopened", 6), ("cleared", 7), ("raised", 16)]


def test_a_buffered_device_replaying_six_hours_records_its_alerts_as_late() -> None:
    values = [120, 160, 170, 180, 140, 45]
    _, live = run(MAE_MOH, values, lag=30_000_000)  # arrives 30 s after the event
    _, replay = run(MAE_MOH, values, lag=6 * 60 * MIN)  # buffered on the device for 6 hours
    assert summary(live) == summary(replay) == [("raised", 3), ("cleared", 5)]
    assert [t.late for t in live] == [False, False]
    assert [t.late for t in replay] == [True, True]
    # exactly at the horizon is on time, one microsecond past it is late
    _, edge = run(MAE_MOH, values, lag=LATE_AFTER)
    _, past = run(MAE_MOH, values, lag=LATE_AFTER + 1)
    assert [t.late for t in edge] == [False, False] and [t.late for t in past] == [True, True]


def test_unknown_values_break_a_pending_raise_and_never_clear() -> None:
    nan = math.nan
    _, out = run(MAE_MOH, [160, 160, nan, 160, 160, 160, nan, nan, 30])
    # #0 #1 pending, NaN breaks; #3..#5 raise at #5; NaNs keep it raised; 30 at #8 clears
    assert summary(out) == [("raised", 5), ("cleared", 8)]


def test_splitting_a_series_into_batches_gives_the_same_transitions() -> None:
    values = [120, 160, 170, 180, 140, 45, 160, 160, 160, 160, 30, 30]
    _, whole = run(MAE_MOH, values)
    for cut in range(1, len(values)):
        state, first = run(MAE_MOH, values[:cut])
        _, second = run(MAE_MOH, values[cut:], start=at(cut), state=state)
        assert first + second == whole, cut
    # a batch that repeats samples already seen (a replay) adds nothing
    state, _ = run(MAE_MOH, values)
    again, out = run(MAE_MOH, values, state=state)
    assert out == [] and again == state


def reference(values: list[float], up: float, hold: int, down: float) -> list[tuple[str, int]]:
    """Brute force, no carry state: at each reading, is the raise condition met at every one of the last k
    readings with k x cadence >= hold (and not raised)? is the value below the clear level (raised)?"""
    need = math.ceil(hold / CADENCE)  # readings after the first: t - t0 >= hold
    out, raised = [], False
    for i, v in enumerate(values):
        if not raised and i >= need and all(x > up for x in values[i - need : i + 1]):
            out.append(("raised", i))
            raised = True
        elif raised and v < down:
            out.append(("cleared", i))
            raised = False
    return out


@settings(max_examples=200, deadline=None)
@given(hs.lists(hs.sampled_from([10.0, 45.0, 60.0, 149.0, 150.0, 151.0, 200.0]), max_size=40), hs.data())
def test_the_machine_agrees_with_a_brute_force_reference_and_with_itself_in_batches(
    values: list[float], data: hs.DataObject
) -> None:
    r = rule(metric="so2_ppb", **{"raise": {"above": 150, "for": "6min"}}, clear={"below": 50})
    _, whole = run(r, values)
    assert summary(whole) == reference(values, 150, 6 * MIN, 50)
    cuts = sorted(data.draw(hs.sets(hs.integers(0, len(values)), max_size=4)))
    state, got = SeriesState(), []
    for a, b in zip([0, *cuts], [*cuts, len(values)], strict=True):
        state, part = run(r, values[a:b], start=at(a), state=state)
        got += part
    assert got == whole


# --- signals --------------------------------------------------------------------------------------------------


def test_moving_mean_and_its_completeness_rule() -> None:
    # 1-h window at a 5-min cadence promises 12 readings; 75 % -> at least 9.
    avg = Averaging.model_validate({"window": "1h", "min_fraction": 0.75})
    assert min_count(avg, CADENCE) == 9
    ts = T0 + CADENCE * np.arange(14, dtype=np.int64)
    v = np.arange(14, dtype=np.float64) * 10.0  # 0, 10, ..., 130
    mean, known = moving_mean(ts, v, 0, 60 * MIN, 9)
    # at #8: (t-1h, t] holds #0..#8 (9 readings) -> mean 40, known; at #7: 8 readings -> unknown
    assert known.tolist()[7:9] == [False, True] and mean[8] == pytest.approx(40.0)
    # at #13: the window (#13 - 60 min, #13] = (#1, #13] -> #2..#13, 12 readings, mean (20+...+130)/12 = 75
    assert mean[13] == pytest.approx(75.0) and known[13]
    # history before `first` is used by the windows, not evaluated
    tail, _ = moving_mean(ts, v, 12, 60 * MIN, 9)
    assert tail.tolist() == pytest.approx(mean[12:].tolist())


def test_a_24_hour_pm25_mean_rule_raises_on_the_mean_not_on_a_spike() -> None:
    pm = rule(metric="pm25_ugm3", average={"window": "1h"}, **{"raise": {"above": 37.5}}, clear={"at_or_below": 35})
    ts = T0 + CADENCE * np.arange(24, dtype=np.int64)
    v = np.full(24, 30.0)
    v[10] = 200.0  # one spike: the hour's mean becomes (11 x 30 + 200) / 12 = 44.2 at #11 ... #21 while in window
    values, known = sample_values(pm, ts, v, 0, cadence_us=CADENCE, state=SeriesState())
    assert values[11] == pytest.approx((11 * 30 + 200) / 12) and known[11]
    _, out = evaluate(pm, SeriesState(), ts, values, known, np.ones(24, bool), ts, max_gap_us=3 * CADENCE,
                      late_after_us=LATE_AFTER)  # fmt: skip
    # known from #8 (9 readings); #10: (9 x 30 + 200) / 11 = 42.7 > 37.5 -> raised at #10; the spike leaves the
    # window after #21 (#22's window is (#10, #22]): mean 30 <= 35 -> cleared at #22
    assert summary(out) == [("raised", 10), ("cleared", 22)]


def test_flatline_counts_equal_readings_across_batches() -> None:
    assert flat_runs(np.array([1.0, 2, 2, 2, 3]), 0.0, 0.0, 0).tolist() == [1, 1, 2, 3, 1]
    assert flat_runs(np.array([5.0, 5.0, 6.0]), 0.0, 5.0, 4).tolist() == [5, 6, 1]  # continues a run of four 5s
    flat = rule(kind="flatline", metric="pm25_ugm3", readings=4)
    values = np.array([10.0, 11, 12, 12, 12, 12, 12, 13])  # four 12s: #2..#5 -> raised at #5, 13 at #7 clears
    ts = T0 + CADENCE * np.arange(8, dtype=np.int64)
    whole: list[Transition] = []
    state = SeriesState()
    for a, b in ((0, 4), (4, 8)):  # split inside the run of 12s
        runs, known = sample_values(flat, ts[a:b], values[a:b], 0, cadence_us=CADENCE, state=state)
        state, out = evaluate(flat, state, ts[a:b], runs, known, np.ones(b - a, bool), ts[a:b],
                              max_gap_us=None, late_after_us=LATE_AFTER)  # fmt: skip
        state = with_flat_carry(flat, state, values[a:b], runs)
        whole += out
    assert summary(whole) == [("raised", 5), ("cleared", 7)]


def test_out_of_range_raises_on_the_implausible_reading_and_clears_inside_the_range() -> None:
    r = rule(kind="out_of_range", metric="pm25_ugm3", range=[0, 1000])
    ts = T0 + CADENCE * np.arange(4, dtype=np.int64)
    dist, known = sample_values(r, ts, np.array([20.0, 1200.0, 1100.0, 30.0]), 0, cadence_us=CADENCE,
                                state=SeriesState())  # fmt: skip
    assert dist.tolist() == [0, 200, 100, 0]
    _, out = evaluate(r, SeriesState(), ts, dist, known, np.ones(4, bool), ts, max_gap_us=None,
                      late_after_us=LATE_AFTER)  # fmt: skip
    assert summary(out) == [("raised", 1), ("cleared", 3)]


# --- offline --------------------------------------------------------------------------------------------------


def test_offline_is_raised_once_the_watermark_passes_n_cadences_and_cleared_by_new_data() -> None:
    off = rule(kind="offline", after_cadences=6)
    seen = T0
    limit = 6 * CADENCE  # 30 min
    kw = {"cadence_us": CADENCE, "late_after_us": LATE_AFTER}
    state, out = evaluate_offline(off, SeriesState(), seen_us=seen, watermark_us=seen + limit, late_ref_us=seen + limit,
                                  **kw)  # fmt: skip
    assert out == [] and state == SeriesState()  # exactly 30 min of silence is not yet "more than"
    state, out = evaluate_offline(off, state, seen_us=seen, watermark_us=seen + limit + 1, late_ref_us=seen + limit,
                                  **kw)  # fmt: skip
    assert [(t.kind, t.at_us, t.late) for t in out] == [("raised", seen + limit, False)]
    again, out = evaluate_offline(off, state, seen_us=seen, watermark_us=seen + 10 * limit, late_ref_us=0, **kw)
    assert out == [] and again == state  # still offline: nothing new
    back = seen + 2 * limit
    state, out = evaluate_offline(off, state, seen_us=back, watermark_us=back, late_ref_us=back, **kw)
    assert [(t.kind, t.at_us, t.reason) for t in out] == [("cleared", back, "data_resumed")]
    # a device never seen is not judged
    assert evaluate_offline(off, SeriesState(), seen_us=int(NO_TS), watermark_us=back, late_ref_us=back, **kw)[1] == []


# --- schedules ------------------------------------------------------------------------------------------------


def bkk(y: int, mo: int, d: int, h: int, mi: int = 0) -> int:
    return us_from_datetime(datetime(y, mo, d, h, mi, tzinfo=BANGKOK))


def test_outside_working_hours_counts_weekends_thai_holidays_and_nights() -> None:
    after_hours = rule(metric="power_w", **{"raise": {"above": 40000}}).schedule.model_copy(
        update={"when": "outside_working_hours"}
    )
    songkran = {date(2026, 4, 13), date(2026, 4, 14), date(2026, 4, 15)}  # Thai public holidays (holidays.Thailand)
    cases = {
        bkk(2026, 4, 10, 10): False,  # Friday 10:00: working
        bkk(2026, 4, 10, 8, 29): True,  # Friday 08:29: before 08:30
        bkk(2026, 4, 10, 16, 30): True,  # 16:30 is the end (exclusive)
        bkk(2026, 4, 11, 10): True,  # Saturday
        bkk(2026, 4, 13, 10): True,  # Monday, Songkran holiday
        bkk(2026, 4, 16, 10): False,  # Thursday after Songkran
    }
    mask = schedule_mask(after_hours, np.array(list(cases)), holidays=songkran)
    assert mask.tolist() == list(cases.values())


def test_sun_up_at_lampang_matches_the_published_sunrise_and_sunset_ranges() -> None:
    # NOAA equations (docs/reference.md#streetlight-operating-hours): Lampang sunrise 05:45-06:56, sunset 17:44-19:02
    # ICT over the year.
    day = rule(metric="power_w", **{"raise": {"above": 500}}, schedule={"when": "sun_up", "sun_margin": 0}).schedule
    times = [bkk(2026, 1, 10, 5, 44), bkk(2026, 1, 10, 6, 57), bkk(2026, 1, 10, 12), bkk(2026, 1, 10, 17, 43),
             bkk(2026, 1, 10, 19, 3)]  # fmt: skip
    assert schedule_mask(day, np.array(times), lat=18.29, lon=99.49).tolist() == [False, True, True, True, False]


def test_an_alert_raised_at_night_clears_when_its_schedule_ends() -> None:
    r = rule(metric="power_w", **{"raise": {"above": 40000}}, schedule={"when": "outside_working_hours"})
    start = bkk(2026, 4, 10, 7, 50)  # Friday; 08:30 is reading #8
    ts = start + CADENCE * np.arange(12, dtype=np.int64)
    v = np.full(12, 55000.0)
    sched = schedule_mask(r.schedule, ts)
    _, out = evaluate(r, SeriesState(), ts, v, np.ones(12, bool), sched, ts, max_gap_us=None, late_after_us=LATE_AFTER)
    assert [(t.kind, t.at_us, t.reason) for t in out] == [("raised", ts[0], "condition"),
                                                          ("cleared", bkk(2026, 4, 10, 8, 30), "schedule")]  # fmt: skip


def test_the_shipped_rules_state_their_thresholds_in_canonical_units() -> None:
    from lccm.alerts import default_rules_file, load_rules_file

    rules = {r.key: r for r in load_rules_file(default_rules_file())}
    ppm_to_ppb = 1000.0  # store/migrations/001_core.sql: so2 'ppm' scale 1000 -> canonical ppb
    so2 = rules["so2_mae_moh_operational"]
    assert so2.raise_ is not None and so2.clear is not None
    assert (so2.raise_.value, so2.raise_.for_s, so2.clear.value) == (0.15 * ppm_to_ppb, 360.0, 0.05 * ppm_to_ppb)
    assert rules["so2_1h_thai_standard"].raise_.value == 0.3 * ppm_to_ppb  # type: ignore[union-attr]
    pm = rules["pm25_24h_thai_standard"]
    assert pm.raise_ is not None and pm.average is not None
    assert (pm.raise_.op, pm.raise_.value, pm.average.window_s) == ("above", 37.5, 24 * 3600)
    assert {rules["aqi_th_101"].raise_.value, rules["aqi_th_201"].raise_.value} == {101, 201}  # type: ignore[union-attr]
    assert {r.kind for r in rules.values()} == {"threshold", "offline", "flatline", "out_of_range"}
    assert {r.schedule.when for r in rules.values()} >= {"outside_working_hours", "sun_up"}


def test_the_rule_file_loader_names_every_bad_rule_and_field_at_once(tmp_path: Path) -> None:
    from lccm.alerts import load_rules_file
    from lccm.engine.alerts import AlertRulesInvalid

    path = tmp_path / "rules.yaml"
    path.write_text(
        """
rules:
  - key: so2_mae_moh
    name: {en: SO2, th: SO2}
    metric: so2_ppb
    raise: {above: high, for: 6min}
    severity: critical
  - key: pm25
    name: {en: PM, th: PM}
    metric: pm1_ugm3
    raise: {above: 37.5}
    severity: warning
  - key: pm25
    name: {en: PM, th: PM}
    metric: pm25_ugm3
    raise: {above: 37.5}
    clear: {above: 40}
    severity: warning
  - name: {en: no key, th: no key}
    kind: offline
    after_cadences: 3
    severity: urgent
""",
        encoding="utf-8",
    )
    with pytest.raises(AlertRulesInvalid) as info:
        load_rules_file(path, metric_keys={"so2_ppb", "pm25_ugm3"})
    found = {(e.rule, e.field) for e in info.value.errors}
    assert found == {
        ("so2_mae_moh", "raise.value"),  # "high" is not a number
        ("pm25", "metric"),  # pm1_ugm3 is not in the catalogue
        ("pm25", ""),  # the third rule (also named pm25): its clear points the same way as its raise
        ("#4", "key"),  # no key: named by position
        ("#4", "severity"),
    }
    text = str(info.value)
    assert "rule 'pm25' field metric: unknown metric 'pm1_ugm3'" in text
    assert "clear must point the other way" in text
    from lccm.engine.alerts import parse_rules

    with pytest.raises(AlertRulesInvalid, match="rule 'r' field key: the key 'r' is used by an earlier rule"):
        parse_rules([MAE_MOH.definition(), MAE_MOH.definition()])
