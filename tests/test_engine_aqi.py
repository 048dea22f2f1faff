"""AQI lookups, categories, units and the per-hour pipeline, against the published tables.

The tables below are transcribed again, by hand, from the published tables as docs/reference.md gives them (PCD's
Thai AQI of 1 June 2023, docs/reference.md#thai-aqi; US EPA AQI 2024, EPA-454/B-24-002,
docs/reference.md#us-epa-aqi) so the engine's own copy is checked against an independent one: every band edge
(exactly at a breakpoint, one precision step either side, inside the gap between bands) of every pollutant.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import cast

import numpy as np
import pytest

from lccm.engine import aqi
from lccm.engine.aqi import AqiSettings, RedBandRule
from lccm.engine.aqi_tables import EPA_CATEGORIES, EPA_TABLES, THAI_CATEGORIES, THAI_TABLES, thai_categories
from lccm.engine.aqi_units import (
    MOLAR_VOLUME_L_25C_1ATM,
    mgm3_from_ppm,
    ppb_from_ppm,
    ppb_from_ugm3,
    ppm_from_mgm3,
    ppm_from_ppb,
    ugm3_from_ppb,
)
from lccm.engine.counters import Impl
from lccm.engine.kernels import IMPLS
from lccm.engine.timebase import US_PER_H, bkk_us

# (pollutant, decimals, [(c_lo, c_hi, i_lo, i_hi), ...]); the Thai red band starts at the last c_lo below.
Band = tuple[float, float, float, float]
THAI: dict[str, tuple[int, list[Band], float]] = {
    "pm25": (1, [(0.0, 15.0, 0, 25), (15.1, 25.0, 26, 50), (25.1, 37.5, 51, 100), (37.6, 75.0, 101, 200)], 75.1),
    "pm10": (0, [(0, 50, 0, 25), (51, 80, 26, 50), (81, 120, 51, 100), (121, 180, 101, 200)], 181),
    "o3": (0, [(0, 35, 0, 25), (36, 50, 26, 50), (51, 70, 51, 100), (71, 120, 101, 200)], 121),
    "co": (1, [(0.0, 4.4, 0, 25), (4.5, 6.4, 26, 50), (6.5, 9.0, 51, 100), (9.1, 30.0, 101, 200)], 30.1),
    "no2": (0, [(0, 60, 0, 25), (61, 106, 26, 50), (107, 170, 51, 100), (171, 340, 101, 200)], 341),
    "so2": (0, [(0, 100, 0, 25), (101, 200, 26, 50), (201, 300, 51, 100), (301, 400, 101, 200)], 401),
}
# EPA 2024, in store units: O3 converted from the printed ppm to ppb (0.054 ppm = 54 ppb), the others as printed.
EPA: dict[str, tuple[int, list[Band]]] = {
    "pm25_24h": (1, [(0.0, 9.0, 0, 50), (9.1, 35.4, 51, 100), (35.5, 55.4, 101, 150), (55.5, 125.4, 151, 200),
                     (125.5, 225.4, 201, 300), (225.5, 325.4, 301, 500)]),
    "pm10_24h": (0, [(0, 54, 0, 50), (55, 154, 51, 100), (155, 254, 101, 150), (255, 354, 151, 200),
                     (355, 424, 201, 300), (425, 604, 301, 500)]),
    "o3_8h": (0, [(0, 54, 0, 50), (55, 70, 51, 100), (71, 85, 101, 150), (86, 105, 151, 200), (106, 200, 201, 300)]),
    "o3_1h": (0, [(125, 164, 101, 150), (165, 204, 151, 200), (205, 404, 201, 300), (405, 604, 301, 500)]),
    "co_8h": (1, [(0.0, 4.4, 0, 50), (4.5, 9.4, 51, 100), (9.5, 12.4, 101, 150), (12.5, 15.4, 151, 200),
                  (15.5, 30.4, 201, 300), (30.5, 50.4, 301, 500)]),
    "so2_1h": (0, [(0, 35, 0, 50), (36, 75, 51, 100), (76, 185, 101, 150), (186, 304, 151, 200)]),
    "so2_24h": (0, [(305, 604, 201, 300), (605, 1004, 301, 500)]),
    "no2_1h": (0, [(0, 53, 0, 50), (54, 100, 51, 100), (101, 360, 101, 150), (361, 649, 151, 200),
                   (650, 1249, 201, 300), (1250, 2049, 301, 500)]),
}  # fmt: skip

TRUNC = AqiSettings(thai_precision="truncate")
T0 = bkk_us(2026, 3, 1)  # a Bangkok midnight is a whole UTC hour (17:00 UTC the day before)


@pytest.fixture(params=IMPLS, scope="module")
def impl(request: pytest.FixtureRequest) -> Impl:
    return cast(Impl, request.param)


def _edge_cases(decimals: int, bands: list[Band], rule: str) -> list[tuple[float, float]]:
    """(concentration, expected AQI) at and around every breakpoint of a table."""
    step = 10.0**-decimals
    cases: list[tuple[float, float]] = []
    for k, (c_lo, c_hi, i_lo, i_hi) in enumerate(bands):
        cases += [(c_lo, i_lo), (c_hi, i_hi)]  # exactly at each breakpoint: the band's own AQI end
        if k + 1 < len(bands):
            nxt_lo, nxt_i = bands[k + 1][0], bands[k + 1][2]
            cases.append((nxt_lo, nxt_i))  # one precision step above c_hi: the next band
            cases.append((c_hi + 0.4 * step, i_hi))  # in the gap, nearer c_hi: c_hi either way
            cases.append((c_hi + 0.99 * step, i_hi if rule == "truncate" else nxt_i))  # just below the next c_lo
            cases.append((c_hi + 0.5 * step, i_hi if rule == "truncate" else nxt_i))  # half a step: the tie
        if k > 0 or c_lo > 0:
            below = c_lo - step  # one step below c_lo: the previous band's top (NaN below the first band)
            cases.append((below, bands[k - 1][3] if k > 0 else math.nan))
    return cases


@pytest.mark.parametrize("rule", ["round_half_up", "truncate"])
@pytest.mark.parametrize("pollutant", sorted(THAI))
def test_thai_sub_index_at_every_band_edge(pollutant: str, rule: str) -> None:
    decimals, bands, red = THAI[pollutant]
    cases = _edge_cases(decimals, bands, rule)
    cases.append((red, 201))  # the red band starts at 201 whatever the rule above 200
    settings = AqiSettings(thai_precision=cast(aqi.Precision, rule))
    got = aqi.thai_sub_index(pollutant, [c for c, _ in cases], settings)
    np.testing.assert_array_equal(got, [e for _, e in cases], err_msg=f"{pollutant} {rule}: {cases}")


def test_thai_pm25_gap_between_bands_depends_on_the_precision_rule() -> None:
    # 15.0 -> 25, 15.1 -> 26 (PCD 2023 table); 15.05 lies in neither band: rounded half up it is 15.1, truncated 15.0
    assert list(aqi.thai_sub_index("pm25", [15.0, 15.04, 15.05, 15.1])) == [25, 25, 26, 26]
    assert list(aqi.thai_sub_index("pm25", [15.0, 15.04, 15.05, 15.1], TRUNC)) == [25, 25, 25, 26]


def test_thai_sub_index_inside_bands_hand_computed() -> None:
    # PM2.5 50.0: (200 - 101) / (75.0 - 37.6) x (50.0 - 37.6) + 101 = 99 / 37.4 x 12.4 + 101 = 133.82 -> 134
    # PM2.5 20.0: (50 - 26) / (25.0 - 15.1) x (20.0 - 15.1) + 26 = 24 / 9.9 x 4.9 + 26 = 37.88 -> 38
    # O3 60 ppb: (100 - 51) / (70 - 51) x (60 - 51) + 51 = 49 / 19 x 9 + 51 = 74.21 -> 74
    # CO 7.7 ppm: (100 - 51) / (9.0 - 6.5) x (7.7 - 6.5) + 51 = 49 / 2.5 x 1.2 + 51 = 74.52 -> 75
    # NO2 250 ppb: (200 - 101) / (340 - 171) x (250 - 171) + 101 = 99 / 169 x 79 + 101 = 147.28 -> 147
    # SO2 150 ppb: (50 - 26) / (200 - 101) x (150 - 101) + 26 = 24 / 99 x 49 + 26 = 37.88 -> 38
    # PM10 100: (100 - 51) / (120 - 81) x (100 - 81) + 51 = 49 / 39 x 19 + 51 = 74.87 -> 75
    # PM2.5 0.3: 25 / 15 x 0.3 = 0.5 -> 1 (half up)
    # PM2.5 39.3: 99 / 37.4 x 1.7 + 101 = 105.5 exactly -> 106 (in floats it is 105.49999999999999)
    for p, c, expected in [
        ("pm25", 50.0, 134), ("pm25", 20.0, 38), ("o3", 60, 74), ("co", 7.7, 75), ("no2", 250, 147),
        ("so2", 150, 38), ("pm10", 100, 75), ("pm25", 0.3, 1), ("pm25", 39.3, 106),
    ]:  # fmt: skip
        assert aqi.thai_sub_index(p, c)[0] == expected, (p, c)


def test_thai_red_band_rules() -> None:
    # default PM2.5 (as open-source Thai AQI code): 75.1 -> 201 ... 500 -> 500;
    # 100: 201 + 299 / 424.9 x 24.9 = 218.52 -> 219
    assert list(aqi.thai_sub_index("pm25", [75.1, 100.0, 500.0, 600.0])) == [201, 219, 500, 570]
    # 600: 201 + 299 / 424.9 x 524.9 = 570.37 -> 570 (the same line beyond the top)
    # default PM10 (extend the 101-200 slope 99 / 59): 200 -> 201 + 99 / 59 x 19 = 232.88 -> 233
    assert list(aqi.thai_sub_index("pm10", [181, 200])) == [201, 233]
    # PCD's pre-2023 bulletins (Pattaya Today): 1 AQI per µg/m³ above the red edge: top 75.1 + 299 = 374.1 maps to 500
    slope_one = AqiSettings(thai_above_200={"pm25": RedBandRule("to_top", top_concentration=374.1)})
    assert list(aqi.thai_sub_index("pm25", [75.1, 100.0, 140.0], slope_one)) == [201, 226, 266]
    # 100: 201 + 24.9 = 225.9 -> 226; 140: 201 + 64.9 = 265.9 -> 266
    capped = AqiSettings(thai_above_200={p: RedBandRule("cap") for p in THAI})
    for p, (_, _, red) in THAI.items():
        assert list(aqi.thai_sub_index(p, [red, red * 10], capped)) == [201, 201], p


def _epa(key: str, values: list[float], settings: AqiSettings = aqi.DEFAULT_SETTINGS) -> list[float]:
    return list(aqi.epa_sub_index(key, values, settings))


@pytest.mark.parametrize("key", sorted(EPA))
def test_epa_sub_index_at_every_band_edge(key: str) -> None:
    decimals, bands = EPA[key]
    cases = _edge_cases(decimals, bands, "truncate")  # EPA truncates (EPA-454/B-24-002)
    np.testing.assert_array_equal(
        aqi.epa_sub_index(key, [c for c, _ in cases]), [e for _, e in cases], err_msg=f"{key}: {cases}"
    )


def test_epa_truncates_before_the_lookup() -> None:
    # AirNow: "truncated to .001 ppm for O3, 0.1 µg/m3 for PM2.5, 1 µg/m3 for PM10" (EPA-454/B-24-002)
    assert _epa("pm25_24h", [9.09, 9.1, 35.49]) == [50, 51, 100]
    assert _epa("pm10_24h", [54.99, 55.0]) == [50, 51]
    assert _epa("o3_8h", [54.9, 55.0]) == [50, 51]  # 0.0549 ppm truncates to 0.054
    assert _epa("co_8h", [4.49, 4.5]) == [50, 51]
    assert _epa("no2_1h", [53.9, 54]) == [50, 51]
    assert _epa("so2_1h", [35.9, 36]) == [50, 51]
    # an average that is 4.5 in decimals but 4.499999999999999 in floats is 4.5 ppm, not 4.4: AQI 51
    co = (5.6 + 5.6 + 5.6 + 1.2) / 4
    assert co < 4.5 and _epa("co_8h", [co]) == [51]


def test_epa_sub_index_inside_bands_hand_computed() -> None:
    # PM2.5 35.9: (150 - 101) / (55.4 - 35.5) x (35.9 - 35.5) + 101 = 49 / 19.9 x 0.4 + 101 = 101.98 -> 102
    # PM2.5 20.0: (100 - 51) / (35.4 - 9.1) x (20.0 - 9.1) + 51 = 49 / 26.3 x 10.9 + 51 = 71.31 -> 71
    # O3 8-h 87 ppb = 0.087 ppm: (200 - 151) / (0.105 - 0.086) x 0.001 + 151 = 153.58 -> 154
    # NO2 400 ppb: (200 - 151) / (649 - 361) x (400 - 361) + 151 = 49 / 288 x 39 + 151 = 157.64 -> 158
    # CO 10.0 ppm: (150 - 101) / (12.4 - 9.5) x 0.5 + 101 = 109.45 -> 109
    assert _epa("pm25_24h", [35.9, 20.0]) == [102, 71]
    assert _epa("o3_8h", [87]) == [154]
    assert _epa("no2_1h", [400]) == [158]
    assert _epa("co_8h", [10.0]) == [109]


def test_epa_above_the_table() -> None:
    # PM2.5 400: 301 + 199 / 99.9 x (400 - 225.5) = 648.6 -> 649 extended, 500 capped
    assert _epa("pm25_24h", [325.4, 400.0]) == [500, 649]
    assert _epa("pm25_24h", [325.4, 400.0], AqiSettings(epa_above_500="cap")) == [500, 500]
    assert _epa("o3_8h", [201, 300]) == [300, 300]  # 8-h O3 stops at 300 (40 CFR 58 App. G)
    assert _epa("so2_1h", [305, 900]) == [200, 200]  # 1-h SO2 stops at 200 (40 CFR 58 App. G)


def test_epa_ozone_combines_8h_and_1h() -> None:
    # 8-h 60 ppb: 49 / 0.015 x 0.005 + 51 = 67.33 -> 67; 1-h 130 ppb: 49 / 0.039 x 0.005 + 101 = 107.28 -> 107
    assert list(aqi.epa_o3_sub_index([60], [130])) == [67]  # EPA's general rule: the 8-h value
    assert list(aqi.epa_o3_sub_index([60], [130], AqiSettings(epa_o3_1h_always=True))) == [107]
    # 8-h above 0.200 ppm: the 8-h table cannot say more than 300; 1-h 410 ppb: 301 + 199 / 0.199 x 0.005 = 306
    assert list(aqi.epa_o3_sub_index([201, 201, 150], [410, 100, 410])) == [306, 300, 247]
    # 8-h 150 ppb: (300 - 201) / (0.200 - 0.106) x (0.150 - 0.106) + 201 = 99 / 0.094 x 0.044 + 201 = 247.34
    # -> 247; the 8-h value is inside its table, so with the 1-h rule off the 1-h 410 ppb is not used
    assert list(aqi.epa_o3_sub_index([150], [410])) == [247]
    assert list(aqi.epa_o3_sub_index([np.nan, 150], [410, np.nan], AqiSettings(epa_o3_1h_always=True))) == [
        306,
        247,
    ]


def test_epa_so2_uses_the_24h_average_at_200_and_above() -> None:
    # 1-h <= 304: the 1-h table; 1-h >= 305: 200, or the 24-h index where the 24-h average reaches 305
    # (40 CFR 58 Appendix G)
    # 24-h 400: 201 + 99 / 299 x 95 = 232.45 -> 232; 24-h 700: 301 + 199 / 399 x 95 = 348.38 -> 348
    got = aqi.epa_so2_sub_index([304, 305, 305, 700, 700, 100], [np.nan, 100, 400, 700, np.nan, 700])
    assert list(got) == [200, 200, 232, 348, 200, 112]
    # last: 1-h 100 ppb is in 76-185: (150 - 101) / (185 - 76) x (100 - 76) + 101 = 49 / 109 x 24 + 101 = 111.79
    # -> 112; below 305 ppb 1-h the 24-h value is not used
    assert list(aqi.epa_so2_sub_index([100], [700])) == [112]


def test_epa_nowcast_aqi_of_a_hand_computed_nowcast() -> None:
    # latest-first 30, 40, 50 (older hours missing): w = 30 / 50 = 0.6;
    # NowCast = (30 + 0.6 x 40 + 0.36 x 50) / (1 + 0.6 + 0.36) = 72 / 1.96 = 36.7347 -> truncated 36.7 µg/m³
    # AQI = (150 - 101) / (55.4 - 35.5) x (36.7 - 35.5) + 101 = 49 / 19.9 x 1.2 + 101 = 103.95 -> 104
    grid = T0 + US_PER_H * np.arange(5)
    res = aqi.epa_nowcast_aqi(grid, {"pm25": [np.nan, np.nan, 50.0, 40.0, 30.0]})
    assert res.average["pm25_nowcast"][4] == pytest.approx(72 / 1.96, rel=1e-12)
    assert res.aqi[4] == 104
    assert res.responsible_names()[4] == "pm25"
    assert EPA_CATEGORIES[res.category[4]].name_en == "Unhealthy for sensitive groups"
    assert np.isnan(res.aqi[2])  # one valid value among the 3 latest hours: no NowCast


# ------------------------------------------------------------------------------------------------- categories
def test_thai_categories_as_in_the_reference() -> None:
    # PCD 2023 categories (docs/reference.md#thai-aqi); hex codes UNCONFIRMED, by default the rgb of a public Thai site
    expected = [
        (0, 25, "Very good", "ดีมาก", "blue", "#00BFF3"),
        (26, 50, "Good", "ดี", "green", "#00A651"),
        (51, 100, "Moderate", "ปานกลาง", "yellow", "#FDC04E"),
        (101, 200, "Starting to affect health", "เริ่มมีผลกระทบต่อสุขภาพ", "orange", "#F26522"),
        (201, None, "Affects health", "มีผลกระทบต่อสุขภาพ", "red", "#CD0000"),
    ]
    got = [(c.aqi_lo, c.aqi_hi, c.name_en, c.name_th, c.colour_name, c.colour_hex) for c in THAI_CATEGORIES]
    assert got == expected
    assert [int(x, 16) for x in ("00", "BF", "F3")] == [0, 191, 243]  # rgb(0,191,243), as that site prints it
    mine = thai_categories(("#000001", "#000002", "#000003", "#000004", "#abcdef"))
    assert [c.colour_hex for c in mine] == ["#000001", "#000002", "#000003", "#000004", "#ABCDEF"]
    with pytest.raises(ValueError, match="#RRGGBB"):
        thai_categories(("blue", "#000002", "#000003", "#000004", "#000005"))


def test_epa_categories_as_in_the_reference() -> None:
    # EPA-454/B-24-002 names and colours (docs/reference.md#us-epa-aqi)
    got = [(c.aqi_lo, c.aqi_hi, c.name_en, c.colour_hex) for c in EPA_CATEGORIES]
    assert got == [
        (0, 50, "Good", "#00E400"),
        (51, 100, "Moderate", "#FFFF00"),
        (101, 150, "Unhealthy for sensitive groups", "#FF7E00"),
        (151, 200, "Unhealthy", "#FF0000"),
        (201, 300, "Very unhealthy", "#8F3F97"),
        (301, None, "Hazardous", "#7E0023"),
    ]


def test_category_at_every_category_edge() -> None:
    thai = aqi.category_of(np.array([0, 25, 26, 50, 51, 100, 101, 200, 201, 999, np.nan]), THAI_CATEGORIES)
    assert list(thai) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, -1]
    us = aqi.category_of(np.array([0, 50, 51, 100, 101, 150, 151, 200, 201, 300, 301, 500, 650]), EPA_CATEGORIES)
    assert list(us) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5]


def test_engine_tables_refuse_a_gap_or_an_overlap() -> None:
    t = THAI_TABLES["pm25"]
    with pytest.raises(ValueError, match="precision step"):
        type(t)(**{**{f: getattr(t, f) for f in t.__slots__}, "c_lo": (0.0, 15.2, 25.1, 37.6, 75.1)})
    e = EPA_TABLES["pm25_24h"]
    with pytest.raises(ValueError, match="AQI bands"):
        type(e)(**{**{f: getattr(e, f) for f in e.__slots__}, "i_lo": (0, 52, 101, 151, 201, 301)})


# ------------------------------------------------------------------------------------------------------ units
def test_unit_conversions_by_hand() -> None:
    # µg/m³ = ppb x M / 24.45 at 25 °C, 1 atm (docs/reference.md#gas-unit-conversion)
    assert MOLAR_VOLUME_L_25C_1ATM == 24.45
    assert ugm3_from_ppb(300.0, "so2") == pytest.approx(300 * 64.066 / 24.45)  # = 786.086 µg/m³
    assert ugm3_from_ppb(300.0, "so2") == pytest.approx(786.0859, abs=1e-4)
    assert ugm3_from_ppb(170.0, "no2") == pytest.approx(319.8746, abs=1e-4)  # 170 x 46.0055 / 24.45
    assert ugm3_from_ppb(100.0, "o3") == pytest.approx(196.3117, abs=1e-4)  # 100 x 47.9982 / 24.45
    assert mgm3_from_ppm(9.0, "co") == pytest.approx(10.3104, abs=1e-4)  # 9 x 28.010 / 24.45
    assert ppb_from_ugm3(786.0859, "so2") == pytest.approx(300.0, abs=1e-4)
    assert ppm_from_mgm3(10.3104, "co") == pytest.approx(9.0, abs=1e-4)
    assert ppm_from_ppb(54.0) == 0.054 and ppb_from_ppm(0.054) == pytest.approx(54.0)
    # the PCD standards table prints the same pairs to 2 significant figures: NO2 0.17 ppm = 0.32 mg/m³,
    # O3 0.10 ppm = 0.20 mg/m³ (its SO2 0.3 ppm = 780 µg/m³ and CO 9 ppm = 10.26 mg/m³ use a slightly other factor)
    assert round(ugm3_from_ppb(170.0, "no2") / 1000, 2) == 0.32
    assert round(ugm3_from_ppb(100.0, "o3") / 1000, 2) == 0.20
    arr = np.array([0.0, 1.0, 250.0])
    np.testing.assert_allclose(ppb_from_ugm3(ugm3_from_ppb(arr, "no2"), "no2"), arr)
    with pytest.raises(ValueError, match="unknown gas"):
        ugm3_from_ppb(1.0, "nox")


def test_molar_masses_match_the_store_catalogue() -> None:
    # store/migrations/001_core.sql converts µg/m³ (mg/m³ for CO) to ppb (ppm) with the factor 24.45 / M
    sql = (Path(__file__).resolve().parent.parent / "store" / "migrations" / "001_core.sql").read_text()
    found = dict(re.findall(r"\((1[1-4]), '(?:ug|mg)/m3', '\w+', 24\.45 / ([\d.]+)\)", sql))
    by_id = {"11": "so2", "12": "no2", "13": "o3", "14": "co"}
    assert set(found) == set(by_id)
    for metric_id, gas in by_id.items():
        assert ppb_from_ugm3(1.0, gas) == pytest.approx(24.45 / float(found[metric_id]), rel=1e-12), gas


# --------------------------------------------------------------------------------------------------- pipeline
def _grid(n: int) -> np.ndarray:
    return T0 + US_PER_H * np.arange(n, dtype=np.int64)


def test_thai_pipeline_completeness_and_averaging(impl: Impl) -> None:
    # constant PM2.5 50 µg/m³: the 24-h average is 50 (AQI 134) once 18 of 24 hours (75 %) are in the window
    res = aqi.thai_aqi(_grid(30), {"pm25": np.full(30, 50.0)}, impl=impl)
    assert np.isnan(res.aqi[:17]).all() and (res.aqi[17:] == 134).all()
    assert list(res.valid_hours["pm25_24h"][[0, 16, 17, 23, 29]]) == [1, 17, 18, 24, 24]
    full = aqi.thai_aqi(_grid(30), {"pm25": np.full(30, 50.0)}, AqiSettings(completeness=1.0), impl=impl)
    assert np.isnan(full.aqi[:23]).all() and (full.aqi[23:] == 134).all()
    # O3 8-h: 6 of 8 hours needed; NO2 1-h: the hour itself
    res = aqi.thai_aqi(_grid(10), {"o3": np.full(10, 60.0), "no2": [np.nan, 250.0] * 5}, impl=impl)
    assert np.isnan(res.sub_index["o3"][:5]).all()  # hours 0..4: 1..5 valid hours of 8
    assert (res.sub_index["o3"][5:] == 74).all()  # 6 of 8 from hour 5 on; 49 / 19 x 9 + 51 = 74.21
    assert np.isnan(res.sub_index["no2"][0]) and res.sub_index["no2"][1] == 147


def test_thai_pipeline_window_average_by_hand(impl: Impl) -> None:
    # 24 hours: 12 h at 30, 6 h at 90, 6 h missing -> 18 valid; mean = (12 x 30 + 6 x 90) / 18 = 900 / 18 = 50.0
    values = [30.0] * 12 + [np.nan] * 6 + [90.0] * 6
    res = aqi.thai_aqi(_grid(24), {"pm25": values}, impl=impl)
    assert res.average["pm25_24h"][23] == 50.0
    assert res.aqi[23] == 134  # 99 / 37.4 x 12.4 + 101 = 133.82
    values[0] = np.nan  # 17 valid of 24: incomplete
    assert np.isnan(aqi.thai_aqi(_grid(24), {"pm25": values}, impl=impl).aqi[23])


def test_thai_overall_is_the_highest_sub_index(impl: Impl) -> None:
    n = 24
    hourly = {
        "pm25": np.full(n, 20.0),  # 38
        "pm10": np.full(n, 100.0),  # 75
        "co": np.full(n, 7.7),  # 75 (tie with PM10: PM10 comes first)
        "so2": np.array([10.0] * 23 + [350.0]),  # 1-h: 10 -> 3, 350 -> 101 + 99 / 99 x 49 = 150
    }
    res = aqi.thai_aqi(_grid(n), hourly, impl=impl)
    assert res.pollutants == ("pm25", "pm10", "co", "so2")
    assert res.aqi[22] == 75 and res.responsible_names()[22] == "pm10"
    assert res.aqi[23] == 150 and res.responsible_names()[23] == "so2"
    cat = res.categories[res.category[23]]
    assert (cat.name_en, cat.name_th, cat.colour_name) == ("Starting to affect health", "เริ่มมีผลกระทบต่อสุขภาพ", "orange")
    assert res.sub_index["so2"][22] == 3  # 25 / 100 x 10 = 2.5 -> 3
    # hour 0: only SO2's 1-h window is complete (PM needs 18 of 24 hours, CO 6 of 8)
    assert res.aqi[0] == 3 and res.responsible_names()[0] == "so2" and res.category[0] == 0
    assert np.isnan(res.sub_index["pm25"][0]) and np.isnan(res.sub_index["co"][0])
    none = aqi.thai_aqi(_grid(2), {"pm25": [np.nan, 20.0], "no2": [np.nan, np.nan]}, impl=impl)
    assert np.isnan(none.aqi).all() and list(none.responsible) == [-1, -1] and list(none.category) == [-1, -1]
    assert list(none.responsible_names()) == ["", ""]


def test_thai_pipeline_several_stations(impl: Impl) -> None:
    pm = np.column_stack([np.full(24, 50.0), np.full(24, 20.0), np.full(24, np.nan)])
    res = aqi.thai_aqi(_grid(24), {"pm25": pm}, impl=impl)
    assert res.aqi.shape == (24, 3)
    assert res.aqi[23, 0] == 134 and res.aqi[23, 1] == 38 and np.isnan(res.aqi[23, 2])
    assert list(res.category[23]) == [3, 1, -1]


def test_epa_pipeline(impl: Impl) -> None:
    n = 24
    hourly = {
        "pm25": np.full(n, 35.9),  # 102
        "o3": np.full(n, 87.0),  # 8-h 0.087 ppm -> 154
        "so2": np.array(
            [10.0] * 23 + [400.0]
        ),  # 1-h 400 >= 305 with a 24-h mean of (23 x 10 + 400) / 24 = 26.25 -> 200
        "no2": np.full(n, 400.0),  # 158
    }
    res = aqi.epa_aqi(_grid(n), hourly, impl=impl)
    assert set(res.average) == {"pm25_24h", "o3_8h", "o3_1h", "so2_1h", "so2_24h", "no2_1h"}
    assert res.average["so2_24h"][23] == pytest.approx(26.25)
    assert res.sub_index["so2"][23] == 200 and res.aqi[23] == 200 and res.responsible_names()[23] == "so2"
    assert res.aqi[22] == 158 and res.responsible_names()[22] == "no2"
    assert EPA_CATEGORIES[res.category[22]].name_en == "Unhealthy"


def test_bad_input_is_refused_with_a_clear_error() -> None:
    grid = _grid(4)
    with pytest.raises(ValueError, match="consecutive hours"):
        aqi.thai_aqi(grid[[0, 1, 3]], {"pm25": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="whole UTC hours"):
        aqi.thai_aqi(grid + 1, {"pm25": [1.0] * 4})
    with pytest.raises(ValueError, match="at hour 2, station 0 is not a concentration"):
        aqi.thai_aqi(grid, {"pm25": [1.0, 2.0, -3.0, 4.0]})
    with pytest.raises(ValueError, match="unknown pollutants"):
        aqi.thai_aqi(grid, {"pm2.5": [1.0] * 4})
    with pytest.raises(ValueError, match="expected shape"):
        aqi.thai_aqi(grid, {"pm25": [1.0] * 3})
    with pytest.raises(ValueError, match="differ in shape"):
        aqi.thai_aqi(grid, {"pm25": [1.0] * 4, "o3": np.ones((4, 2))})
    with pytest.raises(ValueError, match="unknown pollutants"):  # O3 has its own NowCast since the 2016 AirNow rule
        aqi.epa_nowcast_aqi(grid, {"nox": [1.0] * 4})
    with pytest.raises(ValueError, match="completeness"):
        AqiSettings(completeness=0.0)
    with pytest.raises(ValueError, match="red edge"):
        AqiSettings(thai_above_200={"pm25": RedBandRule("to_top", top_concentration=70.0)})
    with pytest.raises(ValueError, match="to_top"):
        RedBandRule("to_top")
    with pytest.raises(ValueError, match=">= 0"):
        aqi.thai_sub_index("pm25", [-1.0])
    with pytest.raises(ValueError, match="unknown EPA series"):
        aqi.epa_sub_index("pm25", [1.0])


def test_min_valid_hours() -> None:
    assert [aqi.min_valid_hours(w, 0.75) for w in (1, 8, 24)] == [1, 6, 18]
    assert [aqi.min_valid_hours(w, 1.0) for w in (1, 8, 24)] == [1, 8, 24]
    assert aqi.min_valid_hours(24, 0.5) == 12 and aqi.min_valid_hours(8, 0.7) == 6  # 5.6 -> 6
