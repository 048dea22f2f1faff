"""Breakpoint tables and categories of the Thai AQI (PCD, 2023) and the US EPA AQI (2024).

Every figure is published by PCD (Thai AQI, 2023) or US EPA (AQI, 2024); docs/reference.md#thai-aqi and
docs/reference.md#us-epa-aqi give them with their sources. A table is a list of bands ``[c_lo, c_hi] -> [i_lo,
i_hi]`` in the table's own unit, with the precision (decimals) the table is printed in; consecutive bands are one
precision step apart (15.0 / 15.1), which :class:`BreakpointTable` checks.
Concentrations are brought to that precision before the lookup (EPA: truncated, EPA-454/B-24-002; PCD: a setting,
see :mod:`engine.aqi`).

Units match the store's canonical units (``pm25``/``pm10`` µg/m³, ``so2``/``no2``/``o3`` ppb, ``co`` ppm) except the
EPA ozone tables, printed in ppm as EPA publishes them; :mod:`engine.aqi` converts ppb to ppm before the lookup.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from lccm.engine.timebase import bkk_us, utc_us

POLLUTANTS: Final = ("pm25", "pm10", "o3", "co", "no2", "so2")
"""Pollutant keys, in the order used for the output columns; a tie between sub-indices goes to the first."""

Pollutant = Literal["pm25", "pm10", "o3", "co", "no2", "so2"]
POLLUTANT_NAMES: Final = MappingProxyType(
    {"pm25": "PM2.5", "pm10": "PM10", "o3": "O3", "co": "CO", "no2": "NO2", "so2": "SO2"}
)
"""How people write each pollutant (texts for people: status reasons)."""

THAI_TABLE_IN_FORCE_FROM_US: Final = bkk_us(2023, 6, 1)  # PCD table of 2023, in force from 1 June 2023
EPA_TABLE_IN_FORCE_FROM_US: Final = utc_us(2024, 5, 6)  # EPA 2024 PM2.5 revision (PM NAAQS rule), effective 6 May 2024


@dataclass(frozen=True, slots=True)
class BreakpointTable:
    """One pollutant's sub-index table. The last band may be open (``c_hi`` = inf, ``i_hi`` = NaN)."""

    key: str  # e.g. "pm25_24h"
    pollutant: str
    averaging_h: int
    unit: str
    decimals: int  # the table's precision: concentrations are cut to this many decimals before the lookup
    c_lo: tuple[float, ...]
    c_hi: tuple[float, ...]
    i_lo: tuple[float, ...]
    i_hi: tuple[float, ...]
    source: str

    def __post_init__(self) -> None:
        n = len(self.c_lo)
        if not (n and len(self.c_hi) == len(self.i_lo) == len(self.i_hi) == n):
            raise ValueError(f"{self.key}: band columns of unequal length")
        scale = 10**self.decimals
        for k in range(n):
            if not self.c_lo[k] < self.c_hi[k]:
                raise ValueError(f"{self.key}: band {k} is empty")
            if k + 1 < n:
                # the next band starts one precision step above this one's top, with the next AQI integer
                if round(self.c_hi[k] * scale) + 1 != round(self.c_lo[k + 1] * scale):
                    raise ValueError(f"{self.key}: bands {k} and {k + 1} are not one precision step apart")
                if self.i_hi[k] + 1 != self.i_lo[k + 1]:
                    raise ValueError(f"{self.key}: AQI bands {k} and {k + 1} are not consecutive")
        if math.isinf(self.c_hi[-1]) != math.isnan(self.i_hi[-1]):
            raise ValueError(f"{self.key}: an open last band needs c_hi = inf and i_hi = NaN")

    @property
    def open_top(self) -> bool:
        """True when the last band has no upper breakpoint (the Thai red band, '> 200')."""
        return math.isinf(self.c_hi[-1])


def _table(
    key: str, unit: str, decimals: int, rows: list[tuple[float, float, float, float]], source: str
) -> BreakpointTable:
    pollutant, avg = key.rsplit("_", 1)
    return BreakpointTable(
        key=key,
        pollutant=pollutant,
        averaging_h=int(avg.removesuffix("h")),
        unit=unit,
        decimals=decimals,
        c_lo=tuple(r[0] for r in rows),
        c_hi=tuple(r[1] for r in rows),
        i_lo=tuple(r[2] for r in rows),
        i_hi=tuple(r[3] for r in rows),
        source=source,
    )


INF = math.inf
NAN = math.nan

# ------------------------------------------------------------------------------------------------ Thai AQI (PCD)
# PCD, Thai AQI table in force from 1 June 2023 (docs/reference.md#thai-aqi). Averaging: PM 24 h moving, O3 and CO
# 8 h moving, NO2 and SO2 1 h. The red band has no upper breakpoint in any source; how a concentration in it becomes
# a number is a setting (engine.aqi.RedBandRule), UNCONFIRMED.
_TH = "PCD, Thai AQI table in force from 1 June 2023; docs/reference.md#thai-aqi"
THAI_TABLES: Final[dict[str, BreakpointTable]] = {
    t.pollutant: t
    for t in (
        _table(
            "pm25_24h",
            "ug/m3",
            1,
            [
                (0.0, 15.0, 0, 25),
                (15.1, 25.0, 26, 50),
                (25.1, 37.5, 51, 100),
                (37.6, 75.0, 101, 200),
                (75.1, INF, 201, NAN),
            ],
            _TH,
        ),
        _table(
            "pm10_24h",
            "ug/m3",
            0,
            [(0, 50, 0, 25), (51, 80, 26, 50), (81, 120, 51, 100), (121, 180, 101, 200), (181, INF, 201, NAN)],
            _TH,
        ),
        _table(
            "o3_8h",
            "ppb",
            0,
            [(0, 35, 0, 25), (36, 50, 26, 50), (51, 70, 51, 100), (71, 120, 101, 200), (121, INF, 201, NAN)],
            _TH,
        ),
        _table(
            "co_8h",
            "ppm",
            1,
            [(0.0, 4.4, 0, 25), (4.5, 6.4, 26, 50), (6.5, 9.0, 51, 100), (9.1, 30.0, 101, 200), (30.1, INF, 201, NAN)],
            _TH,
        ),
        _table(
            "no2_1h",
            "ppb",
            0,
            [(0, 60, 0, 25), (61, 106, 26, 50), (107, 170, 51, 100), (171, 340, 101, 200), (341, INF, 201, NAN)],
            _TH,
        ),
        _table(
            "so2_1h",
            "ppb",
            0,
            [(0, 100, 0, 25), (101, 200, 26, 50), (201, 300, 51, 100), (301, 400, 101, 200), (401, INF, 201, NAN)],
            _TH,
        ),
    )
}

# --------------------------------------------------------------------------------------------------- US EPA AQI
# US EPA, EPA-454/B-24-002 (May 2024), with the PM2.5 edges of the 2024 revision; the other pollutants as in 40 CFR 58
# Appendix G (docs/reference.md#us-epa-aqi). Ozone in ppm as published. Two rules of the table: 8-h O3 does not
# define AQI > 300 (that needs 1-h O3), 1-h SO2 does not define AQI >= 200 (that needs 24-h SO2).
_US = "US EPA, AQI technical assistance document EPA-454/B-24-002 (May 2024); docs/reference.md#us-epa-aqi"
EPA_TABLES: Final[dict[str, BreakpointTable]] = {
    t.key: t
    for t in (
        _table(
            "pm25_24h",
            "ug/m3",
            1,
            [
                (0.0, 9.0, 0, 50),
                (9.1, 35.4, 51, 100),
                (35.5, 55.4, 101, 150),
                (55.5, 125.4, 151, 200),
                (125.5, 225.4, 201, 300),
                (225.5, 325.4, 301, 500),
            ],
            _US,
        ),
        _table(
            "pm10_24h",
            "ug/m3",
            0,
            [
                (0, 54, 0, 50),
                (55, 154, 51, 100),
                (155, 254, 101, 150),
                (255, 354, 151, 200),
                (355, 424, 201, 300),
                (425, 604, 301, 500),
            ],
            _US,
        ),
        _table(
            "o3_8h",
            "ppm",
            3,
            [
                (0.000, 0.054, 0, 50),
                (0.055, 0.070, 51, 100),
                (0.071, 0.085, 101, 150),
                (0.086, 0.105, 151, 200),
                (0.106, 0.200, 201, 300),
            ],
            _US,
        ),
        # 1-h O3 has no bands below AQI 101; 2024 merges 301-400 and 401-500 into 301-500 (for
        # O3 1-h the two old bands lie on one line, so the merge changes no value)
        _table(
            "o3_1h",
            "ppm",
            3,
            [(0.125, 0.164, 101, 150), (0.165, 0.204, 151, 200), (0.205, 0.404, 201, 300), (0.405, 0.604, 301, 500)],
            _US,
        ),
        _table(
            "co_8h",
            "ppm",
            1,
            [
                (0.0, 4.4, 0, 50),
                (4.5, 9.4, 51, 100),
                (9.5, 12.4, 101, 150),
                (12.5, 15.4, 151, 200),
                (15.5, 30.4, 201, 300),
                (30.5, 50.4, 301, 500),
            ],
            _US,
        ),
        _table(
            "so2_1h",
            "ppb",
            0,
            [(0, 35, 0, 50), (36, 75, 51, 100), (76, 185, 101, 150), (186, 304, 151, 200)],
            _US,
        ),
        _table("so2_24h", "ppb", 0, [(305, 604, 201, 300), (605, 1004, 301, 500)], _US),
        _table(
            "no2_1h",
            "ppb",
            0,
            [
                (0, 53, 0, 50),
                (54, 100, 51, 100),
                (101, 360, 101, 150),
                (361, 649, 151, 200),
                (650, 1249, 201, 300),
                (1250, 2049, 301, 500),
            ],
            _US,
        ),
    )
}


# --------------------------------------------------------------------------------------------------- categories
@dataclass(frozen=True, slots=True)
class Category:
    """One AQI category: its AQI range (``aqi_hi`` None = no upper end), names and colour."""

    index: int
    aqi_lo: int
    aqi_hi: int | None
    name_en: str
    name_th: str
    colour_name: str
    colour_hex: str
    source: str


THAI_COLOURS_HEX_DEFAULT: Final = ("#00BFF3", "#00A651", "#FDC04E", "#F26522", "#CD0000")
"""UNCONFIRMED: PCD publishes colour names, not codes. These are the rgb values one public Thai AQI site uses
(rgb(0,191,243), (0,166,81), (253,192,78), (242,101,34), (205,0,0)); pass your own to :func:`thai_categories`
(docs/reference.md#thai-aqi)."""

_THAI_ROWS: Final = (
    (0, 25, "Very good", "ดีมาก", "blue"),
    (26, 50, "Good", "ดี", "green"),
    (51, 100, "Moderate", "ปานกลาง", "yellow"),
    (101, 200, "Starting to affect health", "เริ่มมีผลกระทบต่อสุขภาพ", "orange"),
    (201, None, "Affects health", "มีผลกระทบต่อสุขภาพ", "red"),
)  # PCD 2023 table; names and colours as Thai PBS World and AirBKK print them (docs/reference.md#thai-aqi)


def thai_categories(colours_hex: tuple[str, ...] = THAI_COLOURS_HEX_DEFAULT) -> tuple[Category, ...]:
    """The five Thai AQI categories (PCD, 2023), with the given colour codes (UNCONFIRMED, see above)."""
    if len(colours_hex) != len(_THAI_ROWS):
        raise ValueError(f"need {len(_THAI_ROWS)} colour codes, got {len(colours_hex)}")
    for code in colours_hex:
        if len(code) != 7 or code[0] != "#" or any(c not in "0123456789abcdefABCDEF" for c in code[1:]):
            raise ValueError(f"colour code {code!r} is not of the form #RRGGBB")
    return tuple(
        Category(k, lo, hi, en, th, colour, hex_.upper(), _TH)
        for k, ((lo, hi, en, th, colour), hex_) in enumerate(zip(_THAI_ROWS, colours_hex, strict=True))
    )


THAI_CATEGORIES: Final = thai_categories()
THAI_GOOD_CATEGORIES: Final = 2
"""The leading Thai categories that call the air good (very good, good): an incomplete index, a lower bound, in one
of them says nothing about the air, so it is never shown as good (the API's map colour, the dashboard's map)."""

EPA_GOOD_CATEGORIES: Final = 1
"""The leading EPA categories that call the air good (Good): see :data:`THAI_GOOD_CATEGORIES`."""

# Names, colour names and hex codes as EPA-454/B-24-002 and open-source EPA AQI modules give them
# (docs/reference.md#us-epa-aqi). The Thai wording is the one the Thai AQI definition page uses for the US
# categories (not an EPA text).
EPA_CATEGORIES: Final = tuple(
    Category(k, lo, hi, en, th, colour, hex_, _US)
    for k, (lo, hi, en, th, colour, hex_) in enumerate(
        (
            (0, 50, "Good", "ดี", "green", "#00E400"),
            (51, 100, "Moderate", "ปานกลาง", "yellow", "#FFFF00"),
            (101, 150, "Unhealthy for sensitive groups", "ไม่ดีต่อกลุ่มเสี่ยง", "orange", "#FF7E00"),
            (151, 200, "Unhealthy", "ไม่ดี", "red", "#FF0000"),
            (201, 300, "Very unhealthy", "ไม่ดีอย่างยิ่ง", "purple", "#8F3F97"),
            (301, None, "Hazardous", "อันตราย", "maroon", "#7E0023"),
        )
    )
)


# ------------------------------------------------------------------------------------------ settings of the tables
# The values below are choices the published tables leave open (docs/reference.md#thai-aqi,
# docs/reference.md#averaging-and-completeness). They live here, beside the tables, so that lccm/settings.py can
# type its LCCM_AQI_* fields with them; engine.aqi.AqiSettings holds them at run time.

Precision = Literal["round_half_up", "truncate"]
"""How a Thai window average is brought to the table's precision before the lookup (UNCONFIRMED for PCD)."""

IncompletePolicy = Literal["withhold", "partial"]
"""What the Thai index does with a window below the completeness rule (PCD publishes no rule): ``"withhold"`` the
sub-index (no value, status withheld) or compute it from the hours present (``"partial"``, status incomplete)."""


@dataclass(frozen=True, slots=True)
class RedBandRule:
    """How a concentration in the Thai red band (AQI > 200, no upper breakpoint published) becomes a number.

    UNCONFIRMED for the 2023 table (docs/reference.md#thai-aqi). Kinds, all starting at 201 on the band's lower
    edge C_red:

    - ``"to_top"``: linear up to ``top_aqi`` at ``top_concentration``, the same line beyond it. Open-source Thai AQI
      code maps PM2.5 75.1-500 to 201-500; PCD's pre-2023 bulletins (as reported by Pattaya Today) fit 1 AQI per
      µg/m³ (106 -> 216, 136 -> 246 over a red edge of 91), i.e. ``top_concentration = C_red + (top_aqi - 201)``.
    - ``"extend"``: the slope of the 101-200 band carried on (no number invented).
    - ``"cap"``: 201 ("above 200"): the category is right, the number carries no more information.
    """

    kind: Literal["to_top", "extend", "cap"] = "extend"
    top_concentration: float = math.nan
    top_aqi: float = 500.0

    def __post_init__(self) -> None:
        if self.kind not in ("to_top", "extend", "cap"):
            raise ValueError(f"unknown red-band rule {self.kind!r}: expected to_top, extend or cap")
        if self.kind == "to_top" and not (math.isfinite(self.top_concentration) and self.top_aqi > 201):
            raise ValueError("a to_top red-band rule needs a finite top_concentration and top_aqi > 201")


THAI_ABOVE_200_DEFAULT: Final[Mapping[str, RedBandRule]] = MappingProxyType(
    {
        "pm25": RedBandRule("to_top", top_concentration=500.0, top_aqi=500.0),  # 75.1-500 -> 201-500, as open code
        "pm10": RedBandRule("extend"),  # no source gives a top for the other pollutants
        "o3": RedBandRule("extend"),
        "co": RedBandRule("extend"),
        "no2": RedBandRule("extend"),
        "so2": RedBandRule("extend"),
    }
)


def check_red_band_rules(rules: Mapping[str, RedBandRule]) -> None:
    """Refuse a rule for an unknown pollutant, or a ``to_top`` rule whose top is not above the red edge."""
    unknown = set(rules) - set(POLLUTANTS)
    if unknown:
        raise ValueError(f"thai_above_200 has unknown pollutants {sorted(unknown)}")
    for p, rule in rules.items():
        edge = THAI_TABLES[p].c_lo[-1]
        if rule.kind == "to_top" and not rule.top_concentration > edge:
            raise ValueError(f"thai_above_200[{p!r}]: top_concentration must be above the red edge {edge}")
