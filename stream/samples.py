"""The sample and lamp updater: drains ``sample_queue``, recomputes the touched 15-minute buckets of instantaneous
and state readings (sum, min, max, count, last) and of lamp burning time (on, day burning, night outage) from raw
readings with the engine, and stores them with their Bangkok hour, day and month roll-ups. Pollutant hours it
changes are queued for the AQI updater (stream/aqi.py).

Like the energy updater, the live path and ``lccm recompute`` are the same code, and work is claimed and written in
one transaction: if anything fails, the queue rows come back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import psycopg

from lccm.engine.rollups import SamplePrefix, sample_rollup
from lccm.engine.streetlights import DayNight, day_night_spans, lamp_hours, noaa_sun_times
from lccm.engine.timebase import BKK_OFFSET_US, US_PER_DAY, US_PER_MIN
from lccm.store.aqi import enqueue_station_hours
from lccm.store.connect import Connect
from lccm.store.energy import BUCKET_US, Spans, claim_spans, window_readings
from lccm.store.samples import (
    LAMP_METRIC,
    LampRows,
    SampleRows,
    lamp_ranges,
    replace_lamps,
    replace_samples,
    sample_ranges,
    sample_readings,
    site_coordinates,
    stored_prefix,
)
from lccm.stream.energy import UpdateResult, chunks, drain
from lccm.stream.partitions import Leases, held_partitions

DEFAULT_GRACE_US = 15 * US_PER_MIN  # photocells switch near civil twilight: the minutes around sunrise/sunset


@dataclass(frozen=True, slots=True)
class SampleUpdater:
    connect: Connect
    grace_us: int = DEFAULT_GRACE_US
    claim_limit: int = 20_000
    cell_budget: int = 4_000_000  # buckets x spans per engine call: bounds the dense result arrays
    leases: Leases | None = None  # None: every partition (one process, `lccm recompute`)
    # Continue a first bucket's stored row with the readings after it (the live path); False re-reads every bucket
    # whole (`lccm recompute`: rebuilds from raw readings, whatever is stored).
    continue_stored: bool = True

    def run_once(self) -> UpdateResult:
        with self.connect() as conn, conn.transaction():
            held = held_partitions(conn, self.leases)
            if held is not None and not held.partitions:
                return UpdateResult(0, 0)
            spans = claim_spans(conn, self.claim_limit, queue="sample_queue", held=held)
            if not len(spans):
                return UpdateResult(0, 0)
            stored = self._samples(conn, spans)
            lamps = spans.take(np.flatnonzero(spans.metric_id == LAMP_METRIC))
            if len(lamps):
                stored += self._lamps(conn, lamps)
        return UpdateResult(len(spans), stored)

    def drain(self, stop: Callable[[], bool] = lambda: False) -> UpdateResult:
        return drain(self.run_once, stop)

    def _samples(self, conn: psycopg.Connection, spans: Spans) -> int:
        ranges = sample_ranges(spans)
        stored = 0
        for chunk in chunks(ranges, self.cell_budget):
            part = ranges.take(chunk)
            # A first bucket whose stored row ends before the new readings is continued from that row, not re-read.
            prefix = continued(conn, part, spans.lo_us[chunk]) if self.continue_stored else None
            from_us = part.lo_us.copy()
            if prefix is not None:
                from_us[prefix.device] = prefix.last_ts_us + 1
            rows = sample_rows(part, *sample_readings(conn, part, from_us), prefix)
            replace_samples(conn, part, rows)
            enqueue_station_hours(conn, Spans(part.device_id, part.metric_id, part.lo_us, part.hi_us - 1))
            stored += len(rows.n)
        return stored

    def _lamps(self, conn: psycopg.Connection, spans: Spans) -> int:
        ranges, windows, hold_us, open_from_us = lamp_ranges(conn, spans)
        where = site_coordinates(conn, ranges.device_id.tolist())
        stored = 0
        for chunk in chunks(ranges, self.cell_budget):
            part, part_windows = ranges.take(chunk), windows.take(chunk)
            span_idx, ts_us, value = window_readings(conn, part_windows)
            rows = lamp_rows(part, span_idx, ts_us, value, hold_us[chunk], open_from_us[chunk], where, self.grace_us)
            replace_lamps(conn, part, rows)
            stored += len(rows.on_s)
        return stored


def continued(conn: psycopg.Connection, ranges: Spans, new_lo_us: np.ndarray) -> SamplePrefix:
    """The stored rows the ranges' first buckets continue from (store/samples.py: stored_prefix)."""
    span, n, total, low, high, last, last_ts_us = stored_prefix(conn, ranges, new_lo_us)
    return SamplePrefix(
        bucket_start_us=ranges.lo_us[span].astype(np.int64), device=span, sum=total, min=low, max=high, count=n,
        last=last, last_ts_us=last_ts_us,
    )  # fmt: skip


def sample_rows(
    ranges: Spans, span_idx: np.ndarray, ts_us: np.ndarray, value: np.ndarray, prefix: SamplePrefix | None = None
) -> SampleRows:
    """The engine's per-bucket statistics of each span's readings, as rows (buckets with readings only); with
    ``prefix``, the first bucket of its ranges continues from the stored row (only the readings after it given)."""
    edges = np.arange(int(ranges.lo_us.min()), int(ranges.hi_us.max()) + BUCKET_US, BUCKET_US, dtype=np.int64)
    stats = sample_rollup(span_idx, ts_us, value, edges, len(ranges), prefix=prefix)
    b, j = np.nonzero(stats.count > 0)
    return SampleRows(
        device_id=ranges.device_id[j],
        metric_id=ranges.metric_id[j],
        bucket_start_us=edges[b],
        n=stats.count[b, j],
        sum=stats.sum[b, j],
        min=stats.min[b, j],
        max=stats.max[b, j],
        last=stats.last[b, j],
        last_ts_us=stats.last_ts_us[b, j],
    )


def lamp_rows(
    ranges: Spans,
    span_idx: np.ndarray,
    ts_us: np.ndarray,
    lamp_on: np.ndarray,
    hold_us: np.ndarray,
    open_from_us: np.ndarray,
    where: dict[int, tuple[float, float] | None],
    grace_us: int,
) -> LampRows:
    """Lamp time per 15-minute bucket of each span's range, with sun times at its site (a site without
    coordinates gets burning and unknown time but no day/night split)."""
    parts: list[LampRows] = []
    sites = [where.get(d) for d in ranges.device_id.tolist()]
    for place in dict.fromkeys(sites):
        members = np.array([j for j, s in enumerate(sites) if s == place], np.int64)
        parts.append(_lamp_group(ranges, members, span_idx, ts_us, lamp_on, hold_us, open_from_us, place, grace_us))
    return LampRows(*(np.concatenate([getattr(p, f) for p in parts]) for f in LampRows.__slots__))


def _lamp_group(
    ranges: Spans,
    members: np.ndarray,
    span_idx: np.ndarray,
    ts_us: np.ndarray,
    lamp_on: np.ndarray,
    hold_us: np.ndarray,
    open_from_us: np.ndarray,
    place: tuple[float, float] | None,
    grace_us: int,
) -> LampRows:
    sub = ranges.take(members)
    local = np.full(len(ranges), -1, np.int32)
    local[members] = np.arange(len(members), dtype=np.int32)
    pick = np.flatnonzero(local[span_idx] >= 0)
    lo, hi = int(sub.lo_us.min()), int(sub.hi_us.max())
    edges = np.arange(lo, hi + BUCKET_US, BUCKET_US, dtype=np.int64)
    sun = sun_spans(place, lo, hi, grace_us)
    out, _, _ = lamp_hours(local[span_idx[pick]], ts_us[pick], lamp_on[pick], edges, sun, hold_us[members], until_us=hi)
    starts = edges[:-1, None]
    # After the last reading's hold (no reading follows yet) the time is not known yet: take it out of "unknown".
    not_yet = np.clip(
        np.minimum(edges[1:, None], sub.hi_us[None, :]) - np.maximum(starts, open_from_us[members]), 0, None
    )
    out.unknown_us[...] -= not_yet
    inside = (starts >= sub.lo_us[None, :]) & (starts < sub.hi_us[None, :])
    accounted = (out.on_us + out.night_known_us + out.unknown_us + out.day_on_us) > 0
    b, j = np.nonzero(inside & accounted)  # no rows for time before a device's first reading
    return LampRows(
        device_id=sub.device_id[j],
        bucket_start_us=edges[b],
        on_s=out.on_us[b, j] / 1e6,
        day_on_s=out.day_on_us[b, j] / 1e6,
        night_off_s=out.night_off_us[b, j] / 1e6,
        night_known_s=out.night_known_us[b, j] / 1e6,
        unknown_s=out.unknown_us[b, j] / 1e6,
    )


def sun_spans(place: tuple[float, float] | None, lo_us: int, hi_us: int, grace_us: int) -> DayNight:
    """Day and night spans over [lo, hi] at a place (a day more on each side, so both ends are covered)."""
    if place is None:
        empty = np.zeros(0, np.int64)
        return DayNight(empty, empty, empty, empty)
    first = (lo_us + BKK_OFFSET_US) // US_PER_DAY - 1
    last = (hi_us + BKK_OFFSET_US) // US_PER_DAY + 1
    dates = np.arange(first, last + 1).astype("datetime64[D]")
    rise, sets = noaa_sun_times(dates, place[0], place[1])
    return day_night_spans(rise, sets, grace_us)
