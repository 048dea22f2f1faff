"""The factor registry (values pinned to TGO's published factors, docs/reference.md#fuel-factors) and emissions split
at factor changes."""

from __future__ import annotations

import bisect
import itertools
import math
import re
from dataclasses import replace
from typing import cast

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lccm.engine.buckets import WeightTable, spread_intervals
from lccm.engine.combine import regroup_devices
from lccm.engine.counters import Impl, Intervals, Quality
from lccm.engine.emissions import bucket_emissions, classify, factor_series, interval_emissions
from lccm.engine.factors import (
    SOURCE_CLASS_BY_KEY,
    SOURCE_CLASSES,
    TGO_FACTORS,
    TGO_REGISTRY,
    EmissionFactor,
    FactorRegistry,
    constant_table,
)
from lccm.engine.kernels import IMPLS
from lccm.engine.timebase import (
    BANGKOK,
    US_PER_H,
    Resolution,
    bkk_us,
    bucket_edges_us,
    datetime_from_us,
    fiscal_year_bounds_us,
    fixed_edges_us,
    utc_us,
)
from tests._reference import anchors, pointers

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CHANGE_US = utc_us(2025, 12, 31, 17)  # 2026-01-01 00:00 Asia/Bangkok
BUILDING = SOURCE_CLASS_BY_KEY["building_electricity"]


@pytest.fixture(params=IMPLS, scope="module")
def impl(request: pytest.FixtureRequest) -> Impl:
    return cast(Impl, request.param)


def intervals(rows: list[tuple[int, int, int, float]], quality: int = Quality.MEASURED) -> Intervals:
    n = len(rows)
    return Intervals(
        device_idx=np.array([r[0] for r in rows], np.int32),
        start_us=np.array([r[1] for r in rows], np.int64),
        end_us=np.array([r[2] for r in rows], np.int64),
        amount=np.array([r[3] for r in rows], np.float64),
        raw=np.array([r[3] for r in rows], np.float64),
        quality=np.full(n, quality, np.int8),
        reasons=np.zeros(n, np.int32),
        bound_per_h=np.zeros(n, np.float64),
        cover_from_us=np.array([r[1] for r in rows], np.int64),
    )


# ----------------------------------------------------------------------------------------------- registry
def test_grid_factor_changes_at_bangkok_new_year_2026() -> None:
    assert bkk_us(2026, 1, 1) == CHANGE_US
    before = TGO_REGISTRY.in_force("grid_th", CHANGE_US - 1)
    after = TGO_REGISTRY.in_force("grid_th", CHANGE_US)
    assert before is not None and before.kgco2e_per_unit == 0.4999
    assert before.source.startswith("TGO CFO emission factors, update of April 2022: Grid Mix Electricity 2016-2018")
    assert after is not None and after.kgco2e_per_unit == 0.4750
    assert after.source.startswith("TGO board decision announced 30 Nov 2025")
    assert TGO_REGISTRY.in_force("grid_th_upstream", CHANGE_US - 1) is None
    upstream = TGO_REGISTRY.in_force("grid_th_upstream", CHANGE_US)
    assert upstream is not None and upstream.kgco2e_per_unit == 0.0812


@pytest.mark.parametrize(
    ("key", "value", "unit"),
    [
        ("diesel_stationary_l", 2.7078, "L"),
        ("diesel_onroad_l", 2.7406, "L"),
        ("diesel_offroad_l", 2.9793, "L"),
        ("gasoline_stationary_l", 2.1894, "L"),
        ("gasoline_onroad_l", 2.2394, "L"),
        ("gasoline_onroad_oxcat_l", 2.2719, "L"),
        ("gasoline_onroad_lowmileage_l", 2.2327, "L"),
        ("lpg_stationary_l", 1.6812, "L"),
        ("lpg_stationary_kg", 3.1134, "kg"),
        ("lpg_mobile_l", 1.7306, "L"),
        ("lpg_mobile_kg", 3.2049, "kg"),
        ("cng_mobile_kg", 2.2609, "kg"),
        ("natural_gas_stationary_mj", 0.0562, "MJ"),
        ("natural_gas_stationary_scf", 0.0573, "scf"),
        ("fuel_oil_a_l", 3.2200, "L"),
        ("fuel_oil_c_l", 3.2457, "L"),
    ],
)
def test_fuel_factors_are_tgo_april_2022_values(key: str, value: float, unit: str) -> None:
    (f,) = TGO_REGISTRY.history(key)
    assert (f.kgco2e_per_unit, f.unit) == (value, unit)
    assert f.source.startswith("TGO CFO emission factors, update of April 2022")
    assert pointers(f.reference) == ["fuel-factors"] and not pointers(f.source)  # the source is printed for people
    assert f.valid_from is None and f.valid_to is None


def test_every_factor_cites_its_issuer_and_a_reference_section_and_nothing_unconfirmed_is_seeded() -> None:
    for f in TGO_FACTORS:
        assert f.source.startswith("TGO "), f  # every seeded factor is TGO's
        (section,) = pointers(f.reference)
        assert section in anchors() and "docs/" not in f.source, f
    values = {f.kgco2e_per_unit for f in TGO_FACTORS}
    assert not values & {0.5986, 0.5813, 0.5812}  # unconfirmed, or undated historical
    assert not any(re.search(r"gasohol|e10|e20|e85|b7|b10", f.key) for f in TGO_FACTORS)


def test_source_classes_map_to_scope_cfo_and_gpc() -> None:
    got = {c.key: (c.scope, c.gpc_ref) for c in SOURCE_CLASSES}
    assert got["building_electricity"] == (2, "I.2.2")
    assert got["streetlight_electricity"] == (2, "I.2.2")
    assert got["generator_diesel"] == (1, "I.2.1")
    assert got["fleet_diesel"] == (1, "II.1.1") and got["fleet_gasoline"] == (1, "II.1.1")
    assert SOURCE_CLASS_BY_KEY["generator_diesel"].factor_key == "diesel_stationary_l"
    assert SOURCE_CLASS_BY_KEY["fleet_diesel"].factor_key == "diesel_onroad_l"
    assert SOURCE_CLASS_BY_KEY["fleet_gasoline"].factor_key == "gasoline_onroad_l"
    for c in SOURCE_CLASSES:
        assert TGO_REGISTRY.history(c.factor_key)
        assert c.metric_id in (1, 8)


def test_registry_refuses_overlaps_and_mixed_units() -> None:
    a = EmissionFactor("x", 1.0, "kWh", "a test factor", None, datetime_from_us(CHANGE_US))
    with pytest.raises(ValueError, match="overlap"):
        FactorRegistry([a, replace(a, valid_from=datetime_from_us(CHANGE_US - 1), valid_to=None)])
    with pytest.raises(ValueError, match="units"):
        FactorRegistry([a, replace(a, unit="L", valid_from=datetime_from_us(CHANGE_US), valid_to=None)])
    with pytest.raises(KeyError):
        TGO_REGISTRY.history("coal")


def test_base_year_factor() -> None:
    cal_2025 = (bkk_us(2025, 1, 1), bkk_us(2026, 1, 1))
    table = TGO_REGISTRY.base_year_table(["grid_th"], *cal_2025)
    assert list(table.value) == [0.4999]
    with pytest.raises(ValueError, match="base year"):
        TGO_REGISTRY.base_year_table(["grid_th"], *fiscal_year_bounds_us(2026))  # the change is inside FY 2026
    with pytest.raises(ValueError, match="base year"):
        TGO_REGISTRY.base_year_table(["grid_th_upstream"], *cal_2025)


# ----------------------------------------------------------------------------------------------- emissions
def test_interval_straddling_the_factor_change_is_split_pro_rata(impl: Impl) -> None:
    # 10 kWh evenly over 16:30-17:30 UTC: 5 kWh x 0.4999 + 5 kWh x 0.4750 = 4.8745 kgCO2e
    iv = intervals([(0, utc_us(2025, 12, 31, 16, 30), utc_us(2025, 12, 31, 17, 30), 10.0)])
    table, series = factor_series(TGO_REGISTRY, [BUILDING])
    kg, without = interval_emissions(iv, table, series, impl=impl)
    assert kg[0] == pytest.approx(4.8745, abs=1e-12) and without[0] == 0.0
    hours = bucket_emissions(iv, bucket_edges_us("1h", int(iv.start_us[0]), int(iv.end_us[0]) - 1), 1, table, series,
                             impl=impl)  # fmt: skip
    np.testing.assert_allclose(hours.kgco2e[:, 0], [2.4995, 2.375], atol=1e-12)
    days = bucket_emissions(iv, bucket_edges_us("1d", int(iv.start_us[0]), int(iv.end_us[0])), 1, table, series,
                            impl=impl)  # fmt: skip
    assert datetime_from_us(days.edges_us[1]).date().isoformat() == "2026-01-01"
    np.testing.assert_allclose(days.kgco2e[:, 0], [2.4995, 2.375], atol=1e-12)
    # the same figure at the 2025 base-year factor
    base, series = factor_series(TGO_REGISTRY, [BUILDING], base_year_us=(bkk_us(2025, 1, 1), bkk_us(2026, 1, 1)))
    kg_base, _ = interval_emissions(iv, base, series, impl=impl)
    assert kg_base[0] == pytest.approx(4.999, abs=1e-12)


def test_fuel_emissions_and_missing_factors(impl: Impl) -> None:
    gen, fleet, upstream = (
        SOURCE_CLASS_BY_KEY[k] for k in ("generator_diesel", "fleet_diesel", "electricity_upstream")
    )
    iv = intervals([
        (0, bkk_us(2025, 6, 1), bkk_us(2025, 6, 1, 1), 10.0),  # 10 L in a generator
        (1, bkk_us(2025, 6, 1), bkk_us(2025, 6, 1, 1), 10.0),  # 10 L in a truck
        (2, bkk_us(2025, 12, 31, 23), bkk_us(2026, 1, 1, 1), 4.0),  # upstream factor only from 2026
        (3, bkk_us(2025, 6, 1), bkk_us(2025, 6, 1, 1), 7.0),  # an unclassified device
    ])  # fmt: skip
    table, series = factor_series(TGO_REGISTRY, [gen, fleet, upstream, None])
    kg, without = interval_emissions(iv, table, series, impl=impl)
    np.testing.assert_allclose(kg, [27.078, 27.406, 2 * 0.0812, 0.0])
    np.testing.assert_allclose(without, [0.0, 0.0, 2.0, 7.0])
    b = bucket_emissions(iv, bucket_edges_us("1mo", bkk_us(2025, 6, 1), bkk_us(2026, 1, 1, 1)), 4, table, series,
                         impl=impl)  # fmt: skip
    assert b.kgco2e.sum() == pytest.approx(kg.sum()) and b.amount_without_factor.sum() == pytest.approx(9.0)
    group, labels = classify([gen, fleet, upstream, None], "scope")
    assert labels == [1, 3]
    by_scope = regroup_devices(b, group, len(labels))
    assert by_scope.kgco2e.sum(axis=0) == pytest.approx([27.078 + 27.406, 2 * 0.0812])
    group, labels = classify([gen, fleet, upstream, None], "gpc_ref")
    assert labels == ["I.2.1", "II.1.1"] and list(group) == [0, 1, -1, -1]


@st.composite
def random_intervals(draw: st.DrawFn) -> tuple[Intervals, int]:
    n_dev = draw(st.integers(1, 3))
    n = draw(st.integers(0, 30))
    rows = []
    for _ in range(n):
        start = CHANGE_US + draw(st.integers(-2 * 86_400, 2 * 86_400)) * 1_000_000
        dur = draw(st.sampled_from([0, 60, 900, 3600, 10 * 3600, 50 * 3600])) * 1_000_000
        rows.append((draw(st.integers(0, n_dev - 1)), start, start + dur, draw(st.floats(0, 1e4))))
    return intervals(rows, draw(st.sampled_from([Quality.MEASURED, Quality.ESTIMATED]))), n_dev


@SETTINGS
@given(random_intervals(), st.sampled_from(["15min", "1h", "1d", "1mo"]))
def test_bucket_and_interval_views_agree(impl: Impl, data: tuple[Intervals, int], res: Resolution) -> None:
    iv, n_dev = data
    lo, hi = (int(iv.start_us.min()), int(iv.end_us.max())) if len(iv) else (CHANGE_US, CHANGE_US)
    edges = bucket_edges_us(res, lo, hi)
    table, series = factor_series(TGO_REGISTRY, [BUILDING] * n_dev)
    b = bucket_emissions(iv, edges, n_dev, table, series, impl=impl)
    kg, without = interval_emissions(iv, table, series, impl=impl)
    assert b.kgco2e.sum() == pytest.approx(kg.sum(), rel=1e-12, abs=1e-9)
    assert not without.any() and not b.amount_without_factor.any()
    # between the two factors, per bucket
    energy = spread_intervals(iv, edges, n_dev, impl=impl).amount
    assert np.all(b.kgco2e >= 0.4750 * energy - 1e-9) and np.all(b.kgco2e <= 0.4999 * energy + 1e-9)
    # buckets entirely on one side of the change carry exactly that side's factor
    after = edges[:-1] >= CHANGE_US
    before = edges[1:] <= CHANGE_US
    np.testing.assert_allclose(b.kgco2e[after], 0.4750 * energy[after], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(b.kgco2e[before], 0.4999 * energy[before], rtol=1e-12, atol=1e-9)
    estimated = iv.quality[0] != Quality.MEASURED if len(iv) else False
    np.testing.assert_allclose(b.kgco2e_estimated, b.kgco2e if estimated else 0.0, rtol=1e-12, atol=1e-9)
    # a constant table is the energy times the constant
    const = bucket_emissions(iv, edges, n_dev, constant_table([0.5]), np.zeros(n_dev), impl=impl)
    np.testing.assert_allclose(const.kgco2e, 0.5 * energy, rtol=1e-12, atol=1e-9)
    other: Impl = "python" if impl == "numba" else "numba"
    np.testing.assert_array_equal(b.kgco2e, bucket_emissions(iv, edges, n_dev, table, series, impl=other).kgco2e)
    np.testing.assert_array_equal(kg, interval_emissions(iv, table, series, impl=other)[0])


def test_a_bucket_straddling_the_change_is_split_inside(impl: Impl) -> None:
    iv = intervals([(0, utc_us(2025, 12, 31, 16, 30), utc_us(2025, 12, 31, 17, 30), 10.0)])
    table, series = factor_series(TGO_REGISTRY, [BUILDING])
    two_hours = np.array([utc_us(2025, 12, 31, 16), utc_us(2025, 12, 31, 18)])
    b = bucket_emissions(iv, two_hours, 1, table, series, impl=impl)
    assert b.kgco2e[0, 0] == pytest.approx(4.8745, abs=1e-12)


@st.composite
def step_tables(draw: st.DrawFn) -> list[tuple[int, float]]:
    """A factor history around CHANGE_US with random steps and holes (NaN)."""
    n = draw(st.integers(1, 6))
    offsets = sorted(set(draw(st.lists(st.integers(-3 * 86_400, 3 * 86_400), min_size=n, max_size=n))))
    values = [draw(st.one_of(st.floats(0.0, 5.0), st.just(math.nan))) for _ in offsets]
    return [(CHANGE_US + o * 1_000_000, v) for o, v in zip(offsets, values, strict=True)]


def oracle_interval(s: int, e: int, a: float, steps: list[tuple[int, float]]) -> tuple[float, float]:
    """Pure-Python (kgCO2e, without factor) of one interval, by explicit pieces."""
    froms = [t for t, _ in steps]

    def value_at(t: int) -> float:
        j = bisect.bisect_right(froms, t) - 1
        return steps[j][1] if j >= 0 else math.nan

    if e == s:
        v = value_at(s)
        return (0.0, a) if math.isnan(v) else (a * v, 0.0)
    cuts = [s, *(t for t in froms if s < t < e), e]
    kg = without = 0.0
    for x, y in itertools.pairwise(cuts):
        v = value_at(x)
        part = a * (y - x) / (e - s)
        if math.isnan(v):
            without += part
        else:
            kg += part * v
    return kg, without


@SETTINGS
@given(random_intervals(), step_tables())
def test_random_factor_histories_match_a_plain_python_oracle(
    impl: Impl, data: tuple[Intervals, int], steps: list[tuple[int, float]]
) -> None:
    iv, n_dev = data
    table = WeightTable(
        np.array([0, len(steps)], np.int64), np.array([t for t, _ in steps], np.int64), np.array([v for _, v in steps])
    )
    series = np.zeros(n_dev, np.int32)
    kg, without = interval_emissions(iv, table, series, impl=impl)
    rows = zip(iv.start_us, iv.end_us, iv.amount, strict=True)
    expect = [oracle_interval(int(s), int(e), float(a), steps) for s, e, a in rows]
    np.testing.assert_allclose(kg, [x for x, _ in expect], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(without, [y for _, y in expect], rtol=1e-12, atol=1e-9)
    if len(iv):
        edges = fixed_edges_us(int(iv.start_us.min()), int(iv.end_us.max()), 2 * US_PER_H)
        b = bucket_emissions(iv, edges, n_dev, table, series, impl=impl)
        assert b.kgco2e.sum() == pytest.approx(kg.sum(), rel=1e-9, abs=1e-9)
        assert b.amount_without_factor.sum() == pytest.approx(without.sum(), rel=1e-9, abs=1e-9)


def test_change_instant_is_bangkok_midnight() -> None:
    (after,) = (f for f in TGO_REGISTRY.history("grid_th") if f.kgco2e_per_unit == 0.4750)
    assert after.valid_from is not None and after.valid_from.tzinfo == BANGKOK
    assert after.valid_from_us == CHANGE_US
