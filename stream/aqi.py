"""The AQI updater: drains ``aqi_queue`` (station hours whose pollutant means changed, queued by the sample updater)
and recomputes the Thai AQI, the US EPA AQI and the US AQI of current conditions (NowCast for PM and O3) of the
hours those means reach.

A mean at hour t enters every window ending in t .. t + 23 h (the longest, PM's 24 h), so those hours are
recomputed - but never past the station's latest hour with data: an index needs its own hour's readings, not just
enough of the window's. Inputs are the stored hourly means (sample_buckets, '1h'), so the live path and
``lccm recompute`` agree.

Every hour with data from the station gets a row per index, with its status, the missing pollutants, the coverage
of every sub-index and the reason in words (engine.aqi.describe; migration 010): a withheld index is a row without
a number, never a missing row, so nothing drops out silently. A pollutant counts as measured for
``measured_within_h`` hours after its latest hourly mean, looked up before the window's history too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from lccm.engine.aqi import (
    LOOKBACK_H,
    AqiResult,
    AqiSettings,
    describe,
    epa_aqi,
    epa_nowcast_aqi,
    thai_aqi,
)
from lccm.engine.timebase import US_PER_H
from lccm.store.aqi import (
    POLLUTANT_METRICS,
    AqiRow,
    StationSpan,
    claim_station_hours,
    hourly_pollutant_means,
    pollutant_last_hours,
    replace_aqi,
)
from lccm.store.connect import Connect
from lccm.stream.energy import UpdateResult, drain
from lccm.stream.partitions import Leases, held_partitions

_POLLUTANT_OF_METRIC = {m: p for p, m in POLLUTANT_METRICS.items()}


@dataclass(frozen=True, slots=True)
class AqiUpdater:
    connect: Connect
    settings: AqiSettings = field(default_factory=AqiSettings)
    claim_limit: int = 5_000
    leases: Leases | None = None  # None: every partition (one process, `lccm recompute`)

    def run_once(self) -> UpdateResult:
        with self.connect() as conn, conn.transaction():
            held = held_partitions(conn, self.leases)
            if held is not None and not held.partitions:
                return UpdateResult(0, 0)
            spans = claim_station_hours(conn, self.claim_limit, held=held)
            if not spans:
                return UpdateResult(0, 0)
            ranges = [r for r in (_hours(s) for s in spans) if r is not None]
            rows: list[AqiRow] = []
            for device_id, lo_us, hi_us in ranges:
                first = lo_us - LOOKBACK_H * US_PER_H
                means = hourly_pollutant_means(conn, [device_id], first, hi_us)
                seen = pollutant_last_hours(conn, device_id, first - self.settings.measured_within_h * US_PER_H, first)
                seen_before = {_POLLUTANT_OF_METRIC[m]: t for m, t in seen.items()}
                rows += station_rows(device_id, lo_us, hi_us, means, self.settings, seen_before)
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
    seen_before_us: dict[str, int] | None = None,
) -> list[AqiRow]:
    """Every index's rows of one station's hours [lo, hi], from its hourly means (with the windows' history) and,
    per pollutant, the start of its latest hourly mean before that history (``seen_before_us``)."""
    first = lo_us - LOOKBACK_H * US_PER_H
    grid = np.arange(first, hi_us + US_PER_H, US_PER_H, dtype=np.int64)
    seen = seen_before_us or {}
    # A pollutant seen before the history but silent since is still measured: an all-missing series says so.
    hourly: dict[str, np.ndarray] = {p: np.full(len(grid), np.nan) for p in seen}
    for _, metric, hour_us, mean in means:
        series = hourly.setdefault(_POLLUTANT_OF_METRIC[metric], np.full(len(grid), np.nan))
        series[(hour_us - first) // US_PER_H] = mean
    if not hourly:
        return []
    # A row per hour with data from the station (an index needs its own hour's readings): the live path and a
    # recompute then agree over a gap, which has no rows; its first hours after show what it left out.
    keep = (grid >= lo_us) & np.logical_or.reduce([~np.isnan(v) for v in hourly.values()])
    before = {p: float(t) for p, t in seen.items()}
    results = [
        thai_aqi(grid, hourly, settings, seen_before_us=before),
        epa_aqi(grid, hourly, settings, seen_before_us=before),
        epa_nowcast_aqi(grid, hourly, settings, seen_before_us=before),
    ]
    return [row for result in results for row in _rows(device_id, result, keep)]


def _rows(device_id: int, result: AqiResult, keep: np.ndarray) -> list[AqiRow]:
    names = result.responsible_names()
    out = []
    for h in np.flatnonzero(keep & (result.status >= 0)).tolist():
        summary = describe(result, h)
        assert summary is not None  # status >= 0: something is measured
        sub = {p: float(v[h]) for p, v in result.sub_index.items() if np.isfinite(v[h])}
        avg = {k: float(v[h]) for k, v in result.average.items() if np.isfinite(v[h])}
        known = bool(np.isfinite(result.aqi[h]))
        row = AqiRow(
            index_key=result.index,
            device_id=device_id,
            hour_start_us=int(result.hour_start_us[h]),
            aqi=float(result.aqi[h]) if known else None,
            responsible=str(names[h]) if known else None,
            category=int(result.category[h]) if known else None,
            sub_index=sub,
            average=avg,
            status=summary.status,
            reason=summary.reason,
            missing=summary.missing,
            coverage=summary.coverage,
        )
        out.append(row)
    return out
