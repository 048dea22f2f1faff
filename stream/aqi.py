"""The AQI updater: drains ``aqi_queue`` (station hours whose pollutant means changed, queued by the sample updater)
and recomputes the Thai AQI, the US EPA AQI and the NowCast overlay of the hours those means reach.

A mean at hour t enters every window ending in t .. t + 23 h (the longest, PM's 24 h), so those hours are
recomputed - but never past the station's latest hour with data: an index needs its own hour's readings, not just
enough of the window's. Inputs are the stored hourly means (sample_buckets, '1h'), so the live path and
``lccm recompute`` agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from lccm.engine.aqi import LOOKBACK_H, AqiResult, AqiSettings, epa_aqi, epa_nowcast_aqi, thai_aqi
from lccm.engine.timebase import US_PER_H
from lccm.store.aqi import (
    POLLUTANT_METRICS,
    AqiRow,
    StationSpan,
    claim_station_hours,
    hourly_pollutant_means,
    replace_aqi,
)
from lccm.store.connect import Connect
from lccm.stream.energy import UpdateResult, drain

_POLLUTANT_OF_METRIC = {m: p for p, m in POLLUTANT_METRICS.items()}


@dataclass(frozen=True, slots=True)
class AqiUpdater:
    connect: Connect
    settings: AqiSettings = field(default_factory=AqiSettings)
    claim_limit: int = 5_000

    def run_once(self) -> UpdateResult:
        with self.connect() as conn, conn.transaction():
            spans = claim_station_hours(conn, self.claim_limit)
            if not spans:
                return UpdateResult(0, 0)
            ranges = [r for r in (_hours(s) for s in spans) if r is not None]
            rows: list[AqiRow] = []
            for device_id, lo_us, hi_us in ranges:
                means = hourly_pollutant_means(conn, [device_id], lo_us - LOOKBACK_H * US_PER_H, hi_us)
                rows += station_rows(device_id, lo_us, hi_us, means, self.settings)
            replace_aqi(conn, ranges, rows)
        return UpdateResult(len(spans), len(rows))

    def drain(self, stop: Callable[[], bool] = lambda: False) -> UpdateResult:
        return drain(self.run_once, stop)


def _hours(span: StationSpan) -> tuple[int, int, int] | None:
    """(station, first hour, last hour) to recompute, or None when the station has no hourly means (yet)."""
    if span.last_hour_us is None:
        return None
    lo = span.lo_us - span.lo_us % US_PER_H
    hi = min(span.hi_us - span.hi_us % US_PER_H + LOOKBACK_H * US_PER_H, span.last_hour_us)
    return (span.device_id, lo, hi) if hi >= lo else None


def station_rows(
    device_id: int,
    lo_us: int,
    hi_us: int,
    means: list[tuple[int, int, int, float]],
    settings: AqiSettings,
) -> list[AqiRow]:
    """Every index's rows of one station's hours [lo, hi], from its hourly means (with the windows' history)."""
    first = lo_us - LOOKBACK_H * US_PER_H
    grid = np.arange(first, hi_us + US_PER_H, US_PER_H, dtype=np.int64)
    hourly: dict[str, np.ndarray] = {}
    for _, metric, hour_us, mean in means:
        series = hourly.setdefault(_POLLUTANT_OF_METRIC[metric], np.full(len(grid), np.nan))
        series[(hour_us - first) // US_PER_H] = mean
    if not hourly:
        return []
    keep = grid >= lo_us
    results = [thai_aqi(grid, hourly, settings), epa_aqi(grid, hourly, settings)]
    pm = {p: v for p, v in hourly.items() if p in ("pm25", "pm10")}
    if pm:
        results.append(epa_nowcast_aqi(grid, pm, settings))
    return [row for result in results for row in _rows(device_id, result, keep)]


def _rows(device_id: int, result: AqiResult, keep: np.ndarray) -> list[AqiRow]:
    names = result.responsible_names()
    out = []
    for h in np.flatnonzero(keep & np.isfinite(result.aqi)).tolist():
        sub = {p: float(v[h]) for p, v in result.sub_index.items() if np.isfinite(v[h])}
        avg = {k: float(v[h]) for k, v in result.average.items() if np.isfinite(v[h])}
        hour_us, aqi, category = int(result.hour_start_us[h]), float(result.aqi[h]), int(result.category[h])
        out.append(AqiRow(result.index, device_id, hour_us, aqi, str(names[h]), category, sub, avg))
    return out
