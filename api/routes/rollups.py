"""Rollups of instantaneous readings (power, voltage, PM2.5 ...), streetlight burning time, and late data.

15min, 1h, 1d, 1mo and fy rows come from the stored rollups (migration 004), which the sample updater keeps from
raw readings; days, months and Thai fiscal years are cut in Asia/Bangkok time. 1min is computed on request from
raw readings by the same engine function (a city's worth of 1-minute rows is not worth storing), so its range is
limited to two days.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from lccm.api.deps import Conn, RequiredFrom, RequiredTo, check_range
from lccm.api.errors import InvalidParameter, ResultTooLarge
from lccm.api.principal import CurrentPrincipal, Scope
from lccm.engine.combine import regroup_devices
from lccm.engine.rollups import sample_rollup
from lccm.engine.timebase import US_PER_MIN, datetime_from_us, us_from_datetime
from lccm.store import queries, rollup_queries

router = APIRouter(tags=["rollups"])

Interval = Literal["1min", "15min", "1h", "1d", "1mo", "fy"]
GroupBy = Literal["device", "site", "kind", "city"]
MAX_RANGE: dict[str, timedelta] = {
    "1min": timedelta(days=2),
    "15min": timedelta(days=31),
    "1h": timedelta(days=366),
    "1d": timedelta(days=3660),
    "1mo": timedelta(days=7320),
    "fy": timedelta(days=7320),
}
MAX_ROWS = 50_000
MAX_RAW_READINGS = 2_000_000  # the 1-minute path reads raw readings; beyond this, ask for a narrower scope


class SampleRowOut(BaseModel):
    bucket_start: datetime
    group: str | None = Field(description="the group's key (device id, site code, kind or city)")
    devices: int
    n: int = Field(description="readings in the bucket")
    sum: float
    min: float
    max: float
    mean: float = Field(description="mean of all the group's readings in the bucket")
    last: float = Field(description="the latest reading's value")
    last_ts: datetime
    sum_of_device_means: float = Field(description="each device's mean, added up (e.g. a site's total power)")


class SamplesOut(BaseModel):
    metric: str
    unit: str
    start: datetime
    end: datetime
    interval: Interval
    group_by: GroupBy
    rows: list[SampleRowOut]


def _check(start: datetime, end: datetime, interval: str) -> None:
    check_range(start, end)
    if end - start > MAX_RANGE[interval]:
        raise InvalidParameter(
            "to", f"the range is longer than {MAX_RANGE[interval].days} days, the limit for interval={interval}"
        )


@router.get(
    "/rollups",
    response_model=SamplesOut,
    responses={404: {"description": "unknown metric"}, 422: {"description": "bad parameters, range too long"}},
)
def rollups(
    conn: Conn,
    principal: CurrentPrincipal,
    metric: Annotated[str, Query(description="a catalogue metric name, e.g. power, pm25, so2, voltage, lamp_on")],
    start: RequiredFrom,
    end: RequiredTo,
    interval: Annotated[Interval, Query(description="1min is computed from raw readings (at most 2 days)")] = "1h",
    group_by: GroupBy = "device",
    site_code: str | None = None,
    device_id: str | None = None,
    kind: Annotated[str | None, Query(description="device kind, e.g. electricity_meter, aq_station")] = None,
) -> SamplesOut:
    """Sum, min, max, mean, count and last of one metric per bucket starting in [from, to) and per group."""
    _check(start, end, interval)
    m = queries.get_metric(conn, metric)
    if m is None:
        raise InvalidParameter("metric", f"unknown metric {metric!r}; GET /metrics lists them")
    if m.kind == "register":
        raise InvalidParameter("metric", f"{metric} is a cumulative register: GET /energy gives its amounts")
    filters = {"site_code": site_code, "device_id": device_id, "kind": kind}
    if interval == "1min":
        rows = _one_minute(conn, m.id, group_by, start, end, filters, principal.scope)
    else:
        rows = [
            SampleRowOut.model_validate(r, from_attributes=True)
            for r in rollup_queries.sample_series(
                conn, metric_id=m.id, resolution=interval, group_by=group_by, start=start, end=end,
                limit=MAX_ROWS + 1, scope=principal.scope, **filters,
            )
        ]  # fmt: skip
    if len(rows) > MAX_ROWS:
        raise ResultTooLarge("to", f"more than {MAX_ROWS} rows; use a coarser interval, group or a narrower scope")
    return SamplesOut(metric=m.name, unit=m.unit, start=start, end=end, interval=interval, group_by=group_by, rows=rows)


def _one_minute(
    conn: Conn, metric_id: int, group_by: str, start: datetime, end: datetime, filters: dict[str, str | None],
    scope: Scope,
) -> list[SampleRowOut]:  # fmt: skip
    raw = rollup_queries.raw_series(
        conn, metric_id=metric_id, group_by=group_by, start=start, end=end, limit=MAX_RAW_READINGS + 1, scope=scope,
        **filters,
    )  # fmt: skip
    if len(raw.ts_us) > MAX_RAW_READINGS:
        raise ResultTooLarge("to", f"more than {MAX_RAW_READINGS} readings for 1-minute rollups; narrow the scope")
    if not len(raw.ts_us):
        return []
    lo, hi = us_from_datetime(start), us_from_datetime(end)
    edges = np.arange(lo - lo % US_PER_MIN, hi + US_PER_MIN, US_PER_MIN, dtype=np.int64)
    n_dev = len(raw.group_of_device)
    per_device = sample_rollup(raw.device_idx, raw.ts_us, raw.value, edges, n_dev)
    keys = list(dict.fromkeys(raw.group_of_device))
    group_of_device = np.array([keys.index(g) for g in raw.group_of_device], np.int64)
    grouped = regroup_devices(per_device, group_of_device, len(keys))
    means = np.where(per_device.count > 0, per_device.mean, 0.0)
    mean_sums = np.zeros(grouped.count.shape)
    np.add.at(mean_sums.T, group_of_device, means.T)
    devices = np.zeros(grouped.count.shape, np.int64)
    np.add.at(devices.T, group_of_device, (per_device.count > 0).T.astype(np.int64))
    b, g = np.nonzero(grouped.count > 0)
    return [
        SampleRowOut(
            bucket_start=datetime_from_us(int(edges[i]), UTC), group=keys[j], devices=int(devices[i, j]),
            n=int(grouped.count[i, j]), sum=float(grouped.sum[i, j]), min=float(grouped.min[i, j]),
            max=float(grouped.max[i, j]), mean=float(grouped.sum[i, j] / grouped.count[i, j]),
            last=float(grouped.last[i, j]), last_ts=datetime_from_us(int(grouped.last_ts_us[i, j]), UTC),
            sum_of_device_means=float(mean_sums[i, j]),
        )
        for i, j in zip(b.tolist(), g.tolist(), strict=True)
    ]  # fmt: skip


class LampRowOut(BaseModel):
    bucket_start: datetime
    group: str | None
    lamps: int
    burning_h: float = Field(description="lamp hours burning")
    day_burning_h: float = Field(description="lamp hours burning while the sun is up")
    outage_h: float = Field(description="lamp hours off while the sun is down")
    night_known_h: float = Field(description="lamp hours of night with a known state")
    outage_fraction: float | None = Field(description="outage_h / night_known_h")
    unknown_h: float = Field(description="lamp hours with no known state (no reading within twice the cadence)")
    cabinet_energy_kwh: float | None = Field(description="energy metered by the group's streetlight cabinets")


class StreetlightsOut(BaseModel):
    start: datetime
    end: datetime
    interval: Interval
    group_by: GroupBy
    rows: list[LampRowOut]


@router.get("/streetlights", response_model=StreetlightsOut)
def streetlights(
    conn: Conn,
    principal: CurrentPrincipal,
    start: RequiredFrom,
    end: RequiredTo,
    interval: Literal["15min", "1h", "1d", "1mo", "fy"] = "1d",
    group_by: GroupBy = "site",
    site_code: str | None = None,
    device_id: str | None = None,
) -> StreetlightsOut:
    """Burning hours, day burning and night outages of lamps (from their lamp_on state and sunrise/sunset at the
    site), with the energy of the streetlight cabinets, per bucket starting in [from, to) and per group."""
    _check(start, end, interval)
    rows = rollup_queries.lamp_series(
        conn, resolution=interval, group_by=group_by, start=start, end=end, site_code=site_code,
        device_id=device_id, limit=MAX_ROWS + 1, scope=principal.scope,
    )  # fmt: skip
    if len(rows) > MAX_ROWS:
        raise ResultTooLarge("to", f"more than {MAX_ROWS} rows; use a coarser interval, group or a narrower scope")
    return StreetlightsOut(
        start=start, end=end, interval=interval, group_by=group_by,
        rows=[
            LampRowOut(
                bucket_start=r.bucket_start, group=r.group, lamps=r.lamps, burning_h=r.on_s / 3600,
                day_burning_h=r.day_on_s / 3600, outage_h=r.night_off_s / 3600, night_known_h=r.night_known_s / 3600,
                outage_fraction=r.night_off_s / r.night_known_s if r.night_known_s > 0 else None,
                unknown_h=r.unknown_s / 3600, cabinet_energy_kwh=r.cabinet_energy_kwh,
            )
            for r in rows
        ],
    )  # fmt: skip


class LateSpanOut(BaseModel):
    id: int
    device_id: str
    metric: str
    lo: datetime = Field(description="earliest event time of the late readings")
    hi: datetime = Field(description="latest event time of the late readings")
    readings: int
    received_at: datetime
    resolved_at: datetime | None = Field(description="when `lccm recompute` covered the span; null = still open")


@router.get("/late-data", response_model=list[LateSpanOut])
def late_data(
    conn: Conn,
    principal: CurrentPrincipal,
    include_resolved: bool = False,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[rollup_queries.LateSpan]:
    """Readings that arrived later than the live horizon (setting late_horizon_s, default 7 days): stored, but
    their closed periods are not recomputed live. `lccm recompute --from --to` over the range does, and resolves
    them. Newest first."""
    return rollup_queries.late_spans(conn, include_resolved=include_resolved, limit=limit, scope=principal.scope)
