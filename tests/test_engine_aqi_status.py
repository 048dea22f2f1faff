"""Coverage and status of every sub-index, and the AQI of current conditions (NowCast for PM and O3), by hand.

Tables: PCD Thai AQI of 2023 (docs/reference.md#thai-aqi), US EPA AQI 2024 (docs/reference.md#us-epa-aqi).
Rules: a window average is complete with ceil(0.75 x window) hours (18 of 24, 6 of 8, 1 of 1); a NowCast with 2 of
the 3 latest hours (docs/reference.md#nowcast); the ozone NowCast weighs 8 hours with no weight floor (AirNow, 21
April 2016). A pollutant with data within a week counts as measured; a measured pollutant without a sub-index is
missing, and the overall AQI then says so (docs/reference.md#averaging-and-completeness).
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytest

from lccm.engine import aqi
from lccm.engine.aqi import AqiSettings
from lccm.engine.counters import Impl
from lccm.engine.kernels import IMPLS
from lccm.engine.timebase import US_PER_H, bkk_us

T0 = bkk_us(2026, 3, 1)
NAN = np.nan


@pytest.fixture(params=IMPLS, scope="module")
def impl(request: pytest.FixtureRequest) -> Impl:
    return cast(Impl, request.param)


def _grid(n: int) -> np.ndarray:
    return T0 + US_PER_H * np.arange(n, dtype=np.int64)


def _cov(
    series: str, status: str, window: int, with_data: int, needed: int, of_latest: int, latest: int
) -> dict[str, Any]:
    return {
        "series": series, "status": status, "window_h": window, "hours_with_data": with_data, "needed": needed,
        "of_latest_h": of_latest, "latest_with_data": latest,
    }  # fmt: skip


def test_a_new_station_after_three_hours(impl: Impl) -> None:
    # PM2.5 30 ug/m3, PM10 60 ug/m3, SO2 20 ppb in each of 3 hours.
    hourly = {"pm25": [30.0] * 3, "pm10": [60.0] * 3, "so2": [20.0] * 3}
    thai = aqi.thai_aqi(_grid(3), hourly, impl=impl)
    # Thai: PM needs 18 of 24 hours (3 present): withheld. SO2 1-h 20 ppb: 25 / 100 x 20 = 5 -> very good. The AQI 5
    # is a lower bound that names what it lacks - not "very good" by omission.
    assert thai.aqi[2] == 5 and thai.responsible_names()[2] == "so2" and thai.status[2] == aqi.INCOMPLETE
    got = aqi.describe(thai, 2)
    assert got is not None
    assert (got.status, got.missing) == ("incomplete", ("pm25", "pm10"))
    assert got.coverage == {
        "pm25": _cov("pm25_24h", "withheld", 24, 3, 18, 24, 3),
        "pm10": _cov("pm10_24h", "withheld", 24, 3, 18, 24, 3),
        "so2": _cov("so2_1h", "complete", 1, 1, 1, 1, 1),
    }
    assert got.reason == (
        "PM2.5 24-h average withheld: 3 of 24 hours with data, 18 needed; PM10 24-h average withheld: 3 of 24 hours"
        " with data, 18 needed. The AQI shown is the highest sub-index available; with PM2.5 and PM10 it may be"
        " higher."
    )
    now = aqi.epa_nowcast_aqi(_grid(3), hourly, impl=impl)
    # NowCast of a flat series is its value. PM2.5 30.0 in 9.1-35.4 -> 51-100: 49 / 26.3 x 20.9 + 51 = 89.94 -> 90
    # (Moderate); PM10 60 in 55-154: 49 / 99 x 5 + 51 = 53.47 -> 53; SO2 20 in 0-35: 50 / 35 x 20 = 28.57 -> 29.
    assert [now.sub_index[p][2] for p in ("pm25", "pm10", "so2")] == [90, 53, 29]
    assert now.aqi[2] == 90 and now.status[2] == aqi.COMPLETE
    got = aqi.describe(now, 2)
    assert got is not None and (got.status, got.missing, got.reason) == ("complete", (), None)
    assert got.coverage["pm25"] == _cov("pm25_nowcast", "complete", 12, 3, 2, 3, 3)
    # hour 0: one value among the 3 latest hours: no NowCast; SO2 alone gives the index, PM is missing
    first = aqi.describe(now, 0)
    assert first is not None and first.missing == ("pm25", "pm10") and now.aqi[0] == 29
    assert first.coverage["pm25"] == _cov("pm25_nowcast", "withheld", 12, 1, 2, 3, 1)


def test_a_seven_hour_gap(impl: Impl) -> None:
    # PM2.5 40 ug/m3 and NO2 50 ppb for hours 0..23, nothing in 24..30, again at 31 and 32.
    values = [40.0] * 24 + [NAN] * 7 + [40.0] * 2
    hourly = {"pm25": values, "no2": [v / 40 * 50 for v in values]}
    thai = aqi.thai_aqi(_grid(33), hourly, impl=impl)
    # Hour 23: PM2.5 24 h mean 40.0: 99 / 37.4 x 2.4 + 101 = 107.35 -> 107; NO2 50: 25 / 60 x 50 = 20.83 -> 21.
    assert thai.aqi[23] == 107 and thai.status[23] == aqi.COMPLETE
    # Hours 31 and 32: the 24-h window holds 17 hours with data (the gap takes 7): PM2.5 withheld - for the next
    # 24 hours after any gap longer than 6 hours. NO2's 21 is the index, with PM2.5 named as missing.
    for h in (31, 32):
        got = aqi.describe(thai, h)
        assert got is not None and thai.aqi[h] == 21
        assert (got.status, got.missing) == ("incomplete", ("pm25",))
        assert got.coverage["pm25"] == _cov("pm25_24h", "withheld", 24, 17, 18, 24, 17)
        assert got.reason == (
            "PM2.5 24-h average withheld: 17 of 24 hours with data, 18 needed. The AQI shown is the highest sub-index"
            " available; with PM2.5 it may be higher."
        )
    now = aqi.epa_nowcast_aqi(_grid(33), hourly, impl=impl)
    # Hour 31: 1 of the 3 latest hours: no NowCast. NO2 50 ppb in 0-53: 50 / 53 x 50 = 47.17 -> 47.
    got = aqi.describe(now, 31)
    assert got is not None and now.aqi[31] == 47 and got.missing == ("pm25",)
    assert got.reason == (
        "PM2.5 NowCast withheld: 1 of the 3 latest hours with data, 2 needed. The AQI shown is the highest sub-index"
        " available; with PM2.5 it may be higher."
    )
    # Hour 32: 2 of the 3 latest; the 12-h window 21..32 holds 5 hours, all 40: NowCast 40.0 ->
    # 49 / 19.9 x 4.5 + 101 = 112.08 -> 112, complete.
    got = aqi.describe(now, 32)
    assert got is not None and now.aqi[32] == 112 and got.status == "complete"
    assert got.coverage["pm25"] == _cov("pm25_nowcast", "complete", 12, 5, 2, 3, 2)


def test_pm25_complete_but_pm10_not(impl: Impl) -> None:
    # PM2.5 20 ug/m3 for hours 0..23; PM10 150 ug/m3 only for hours 10..23 (14 of 24).
    hourly = {"pm25": [20.0] * 24, "pm10": [NAN] * 10 + [150.0] * 14}
    thai = aqi.thai_aqi(_grid(24), hourly, impl=impl)
    # PM2.5 20.0 in 15.1-25.0 -> 26-50: 24 / 9.9 x 4.9 + 26 = 37.88 -> 38 (good) - but PM10 is withheld.
    got = aqi.describe(thai, 23)
    assert got is not None and thai.aqi[23] == 38 and got.missing == ("pm10",)
    assert got.coverage["pm10"] == _cov("pm10_24h", "withheld", 24, 14, 18, 24, 14)
    assert got.coverage["pm25"] == _cov("pm25_24h", "complete", 24, 24, 18, 24, 24)
    # Before hour 10 PM10 is not measured yet: not missing. PM2.5 is withheld then (fewer than 18 hours): no index.
    early = aqi.describe(thai, 9)
    assert early is not None and (early.status, early.missing) == ("withheld", ("pm25",)) and np.isnan(thai.aqi[9])
    assert early.reason == "No index: PM2.5 24-h average withheld: 10 of 24 hours with data, 18 needed."
    # With the partial rule (PCD publishes none) PM10 comes from its 14 hours, marked incomplete: 150 in 121-180 ->
    # 101-200: 99 / 59 x 29 + 101 = 149.66 -> 150, which is the index (nothing missing, but not complete).
    partial = aqi.thai_aqi(_grid(24), hourly, AqiSettings(thai_incomplete="partial"), impl=impl)
    got = aqi.describe(partial, 23)
    assert got is not None and partial.aqi[23] == 150 and partial.responsible_names()[23] == "pm10"
    assert (got.status, got.missing) == ("incomplete", ())
    assert got.coverage["pm10"] == _cov("pm10_24h", "incomplete", 24, 14, 18, 24, 14)
    assert got.reason == "PM10 24-h average from 14 of 24 hours with data (18 needed for a complete average)."
    # The US AQI of current conditions: PM10 NowCast 150 over 12 hours in 55-154: 49 / 99 x 95 + 51 = 98.02 -> 98.
    now = aqi.epa_nowcast_aqi(_grid(24), hourly, impl=impl)
    assert now.aqi[23] == 98 and now.responsible_names()[23] == "pm10" and now.status[23] == aqi.COMPLETE


def test_all_pollutants_withheld(impl: Impl) -> None:
    hourly = {"pm25": [50.0], "o3": [40.0]}  # one hour of data
    thai = aqi.thai_aqi(_grid(1), hourly, impl=impl)
    got = aqi.describe(thai, 0)
    assert got is not None and np.isnan(thai.aqi[0]) and thai.category[0] == -1
    assert (got.status, got.missing) == ("withheld", ("pm25", "o3"))
    assert got.reason == (
        "No index: PM2.5 24-h average withheld: 1 of 24 hours with data, 18 needed; O3 8-h average withheld: 1 of 8"
        " hours with data, 6 needed."
    )
    now = aqi.describe(aqi.epa_nowcast_aqi(_grid(1), hourly, impl=impl), 0)
    assert now is not None and now.reason == (
        "No index: PM2.5 NowCast withheld: 1 of the 3 latest hours with data, 2 needed; O3 NowCast withheld: 1 of the"
        " 3 latest hours with data, 2 needed."
    )


def test_a_pollutant_seen_within_the_horizon_is_missing_after_it(impl: Impl) -> None:
    grid = _grid(2)
    hourly = {"pm25": [NAN, NAN], "no2": [50.0, 50.0]}
    # PM2.5's latest hour was 100 h before the grid: still measured (within 168 h), so missing.
    got = aqi.describe(aqi.thai_aqi(grid, hourly, seen_before_us={"pm25": grid[0] - 100 * US_PER_H}, impl=impl), 1)
    assert got is not None and got.missing == ("pm25",)
    assert got.coverage["pm25"] == _cov("pm25_24h", "withheld", 24, 0, 18, 24, 0)
    # 168 h before the first hour: measured no longer (a sensor taken away stops being reported missing a week on)
    gone = aqi.thai_aqi(grid, hourly, seen_before_us={"pm25": grid[0] - 168 * US_PER_H}, impl=impl)
    got = aqi.describe(gone, 1)
    assert got is not None and (got.status, got.missing, got.reason) == ("complete", (), None)
    assert "pm25" not in got.coverage and gone.aqi[1] == 21
    # several stations: the horizon applies per station
    both = aqi.thai_aqi(
        grid, {"pm25": np.full((2, 2), NAN), "no2": np.full((2, 2), 50.0)},
        seen_before_us={"pm25": np.array([grid[0] - US_PER_H, NAN])}, impl=impl,
    )  # fmt: skip
    assert list(both.status[1]) == [aqi.INCOMPLETE, aqi.COMPLETE]
    described = aqi.describe(both, 1, station=0)
    assert described is not None and described.missing == ("pm25",)


def test_nothing_measured_gives_no_row(impl: Impl) -> None:
    res = aqi.thai_aqi(_grid(2), {"pm25": [NAN, NAN]}, impl=impl)
    assert list(res.status) == [aqi.NOT_MEASURED] * 2 and aqi.describe(res, 1) is None


def test_ozone_nowcast_as_airnow_publishes_it(impl: Impl) -> None:
    # AirNow's worked example (21 April 2016), latest first: 63, 69, 80, 74, 60, missing, 35, 22 ppb.
    # w = 1 - (80 - 22) / 80 = 0.275 (no floor for ozone); sum w^k c_k = 89.925 over sum w^k = 1.377693 (k = 5
    # missing): 65.27 ppb -> 0.065 ppm (truncated) in 0.055-0.070 -> 51-100: 49 / 0.015 x 0.010 + 51 = 83.67 -> 84.
    oldest_first = [22.0, 35.0, NAN, 60.0, 74.0, 80.0, 69.0, 63.0]
    w = 0.275
    num = sum(c * w**k for k, c in enumerate(reversed(oldest_first)) if not np.isnan(c))
    den = sum(w**k for k, c in enumerate(reversed(oldest_first)) if not np.isnan(c))
    assert num == pytest.approx(89.925, abs=5e-4) and den == pytest.approx(1.377693, abs=1e-6)
    res = aqi.epa_nowcast_aqi(_grid(8), {"o3": oldest_first}, impl=impl)
    assert res.average["o3_nowcast"][7] == pytest.approx(num / den, rel=1e-12)
    assert res.aqi[7] == 84 and res.status[7] == aqi.COMPLETE
    got = aqi.describe(res, 7)
    assert got is not None and got.coverage["o3"] == _cov("o3_nowcast", "complete", 8, 7, 2, 3, 3)
    # the PM rule would floor w at 0.5 and give a different figure: the ozone rule is its own
    pm_style, _ = aqi.nowcast(np.array(oldest_first), hours=8, min_weight=0.5, impl=impl)
    assert pm_style[7] != pytest.approx(num / den, rel=1e-3)


def test_ozone_nowcast_without_weight_at_the_latest_hour(impl: Impl) -> None:
    # w = min / max = 0 (a zero hour) and the latest hour missing: no weight left, so no NowCast (not a division
    # by zero); 2 of the 3 latest hours are there, so the rule alone would allow one.
    got, _ = aqi.nowcast(np.array([5.0, 0.0, 10.0, NAN]), hours=8, min_weight=0.0, impl=impl)
    assert np.isnan(got[3]) and got[2] == 10.0


def test_settings_refuse_what_cannot_work() -> None:
    with pytest.raises(ValueError, match="measured_within_h"):
        AqiSettings(measured_within_h=23)
    with pytest.raises(ValueError, match="thai_incomplete"):
        AqiSettings(thai_incomplete="guess")  # type: ignore[arg-type]
