"""Energy and emissions: a site's live power and today's totals, energy and kgCO2e for any range and interval by
group, the emission-factor registry, and data completeness per device, site and day.

Figures come from ``energy_buckets`` (migration 003), which the energy updater fills from the cumulative registers:
15-minute rows, with hours, Asia/Bangkok days and Asia/Bangkok months summed from them. Calendar days here are
always Bangkok days (UTC+7 all year, no daylight saving).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal, TypedDict

from fastapi import APIRouter, Query

from lccm.api.deps import Conn, RequiredFrom, RequiredTo, check_range
from lccm.api.errors import InvalidParameter, ResultTooLarge, SiteNotFound
from lccm.api.principal import CurrentPrincipal, Scope
from lccm.api.schemas import (
    CompletenessOut,
    DeviceCompletenessOut,
    EmissionFactorOut,
    EnergyOut,
    EnergyRowOut,
    LiveDeviceOut,
    SiteCompletenessOut,
    SiteLiveOut,
    TotalCompletenessOut,
    quality_label,
)
from lccm.engine.timebase import BANGKOK
from lccm.store import live as live_store
from lccm.store import queries

router = APIRouter(tags=["energy"])

Interval = Literal["15min", "1h", "1d", "1mo", "fy"]
GroupBy = Literal["site", "device", "kind", "scope", "cfo_category", "gpc_ref", "city"]
MetricName = Literal["energy", "fuel"]

# Longest range per interval: about a month of quarter-hours, a year of hours, ten years of days, twenty of months.
MAX_RANGE: dict[str, timedelta] = {
    "15min": timedelta(days=31),
    "1h": timedelta(days=366),
    "1d": timedelta(days=3660),
    "1mo": timedelta(days=7320),
    "fy": timedelta(days=7320),
}
# Rows per answer; group_by=device over many devices can exceed it within the range limits.
MAX_ROWS = 50_000
STALE_CADENCES = 3  # a power reading older than this many of its device's cadences is stale


def _bangkok_day(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), tzinfo=BANGKOK)
    return start, start + timedelta(days=1)


def _require_site(conn: Conn, site_code: str | None, scope: Scope) -> None:
    if site_code is not None and queries.get_site(conn, site_code, scope=scope) is None:
        raise SiteNotFound(site_code)  # an empty answer would hide a typo in the site code


# --- live ---------------------------------------------------------------------------------------------------------


@router.get("/sites/{site_code}/live", response_model=SiteLiveOut, responses={404: {"description": "unknown site"}})
def site_live(site_code: str, conn: Conn, principal: CurrentPrincipal) -> SiteLiveOut:
    """Live power and today's (Asia/Bangkok day) energy, fuel and kgCO2e of a site.

    ``power_w`` sums each device's latest ``power`` reading by event time, counting only readings newer than
    3 x the device's cadence; ``power_devices`` and ``power_devices_stale`` say how many devices were counted and
    how many were left out as stale (devices that never sent power are in neither). The today figures sum the
    15-minute buckets since 00:00 Bangkok time, with the worst quality among them.
    """
    return live_summary(conn, site_code, principal.scope, datetime.now(UTC))


def live_summary(conn: Conn, site_code: str, scope: Scope, as_of: datetime) -> SiteLiveOut:
    """The answer of /sites/{code}/live at ``as_of``; the web pages' overview shows the same figures."""
    day_start, day_end = _bangkok_day(as_of.astimezone(BANGKOK).date())
    rows = queries.site_live(
        conn, site_code, as_of=as_of, day_start=day_start, day_end=day_end, stale_cadences=STALE_CADENCES,
        scope=scope,
    )  # fmt: skip
    if not rows:
        _require_site(conn, site_code, scope)  # a site without devices answers with zeros
    return _summary(site_code, rows, as_of, day_start)


@dataclass(frozen=True, slots=True)
class SiteToday:
    """A site's live summary (GET /sites/{code}/live) with the same weekday last week, 00:00 to the same clock time."""

    live: SiteLiveOut  # the site's figures; its ``devices`` are left empty
    week_start: datetime
    week_cut: datetime
    energy_week_kwh: float
    kgco2e_week: float


def sites_today(conn: Conn, scope: Scope, as_of: datetime) -> dict[str, SiteToday]:
    """Every site with devices in scope, by code, in one query (the overview; the figures of live_summary)."""
    day_start, day_end = _bangkok_day(as_of.astimezone(BANGKOK).date())
    week_start, week_cut = day_start - timedelta(days=7), as_of - timedelta(days=7)
    rows = live_store.sites_live(
        conn, as_of=as_of, day_start=day_start, day_end=day_end, week_start=week_start, week_cut=week_cut,
        stale_cadences=STALE_CADENCES, scope=scope,
    )  # fmt: skip
    by_site: dict[str, list[live_store.SiteLiveDevice]] = {}
    for r in rows:
        by_site.setdefault(r.site_code, []).append(r)
    return {code: _today(code, members, as_of, day_start, week_start, week_cut) for code, members in by_site.items()}


def _today(
    code: str, members: list[live_store.SiteLiveDevice], as_of: datetime, day_start: datetime, week_start: datetime,
    week_cut: datetime,
) -> SiteToday:  # fmt: skip
    week_kwh, week_kg = sum(r.energy_week_kwh for r in members), sum(r.kgco2e_week for r in members)
    # The overview shows the site's figures only: without its 2,107 devices' own lines, a tenth of its time.
    summary = _summary(code, members, as_of, day_start, with_devices=False)
    return SiteToday(summary, week_start, week_cut, week_kwh, week_kg)


def _summary(
    site_code: str, rows: Sequence[queries.LiveDevice], as_of: datetime, day_start: datetime, *,
    with_devices: bool = True,
) -> SiteLiveOut:  # fmt: skip
    metered = [r for r in rows if r.kind not in queries.BEHIND_METER_KINDS]  # a lamp's power is its cabinet's too
    fresh = [r for r in metered if r.power_fresh]
    qualities = [r.quality for r in rows if r.quality is not None]
    quality = max(qualities) if qualities else None
    return SiteLiveOut(
        site_code=site_code,
        as_of=as_of,
        day_start=day_start,
        day_start_local=day_start,
        power_w=sum(r.power_w for r in fresh if r.power_w is not None) if fresh else None,
        power_devices=len(fresh),
        power_devices_stale=sum(1 for r in metered if r.power_fresh is False),
        energy_today_kwh=sum(r.energy_kwh for r in rows),
        fuel_today_l=sum(r.fuel_l for r in rows),
        kgco2e_today=sum(r.kgco2e for r in rows),
        quality=quality,
        quality_label=quality_label(quality),
        devices=[
            LiveDeviceOut(
                device_id=r.device_id,
                kind=r.kind,
                cadence_s=r.cadence_s,
                power_w=r.power_w,
                power_ts=r.power_ts,
                power_stale=None if r.power_fresh is None else not r.power_fresh,
                energy_today_kwh=r.energy_kwh,
                fuel_today_l=r.fuel_l,
                kgco2e_today=r.kgco2e,
                quality=r.quality,
            )
            for r in (rows if with_devices else ())
        ],
    )


# --- energy and emissions over a range ----------------------------------------------------------------------------


@router.get(
    "/energy",
    response_model=EnergyOut,
    responses={404: {"description": "unknown site"}, 422: {"description": "bad parameters, range too long"}},
)
def energy(
    conn: Conn,
    principal: CurrentPrincipal,
    start: RequiredFrom,
    end: RequiredTo,
    interval: Annotated[
        Interval,
        Query(description="bucket size; 1d, 1mo and fy are Asia/Bangkok days, months and Thai fiscal years (Oct-Sep)"),
    ] = "1h",
    group_by: Annotated[
        GroupBy, Query(description="city = everything (the sites' city); scope, cfo_category, gpc_ref by source class")
    ] = "site",
    site_code: Annotated[str | None, Query(description="only this site's devices")] = None,
    metric: Annotated[
        MetricName | None, Query(description="energy (kWh) or fuel (l); omitted = both, as separate rows")
    ] = None,
) -> EnergyOut:
    """Energy or fuel, kgCO2e at the factors in force and at the base-year factor, per bucket starting in
    [from, to) and per group, with the worst quality and the fraction of the bucket covered by readings.

    Longest range: 31 days at 15min, 366 days at 1h, 3660 days at 1d, 7320 days at 1mo. Buckets with no data are
    absent. ``factors`` lists the emission factors in force over the range for the devices in scope.
    """
    _check_energy_range(start, end, interval)
    _require_site(conn, site_code, principal.scope)
    metrics = [metric] if metric is not None else list(queries.REGISTER_METRICS)
    rows = energy_rows(conn, principal.scope, start, end, interval, group_by, site_code, metric)
    factors = queries.factors_in_force(
        conn, start=start, end=end, metrics=metrics, site_code=site_code, scope=principal.scope
    )
    return EnergyOut(
        start=start,
        end=end,
        interval=interval,
        group_by=group_by,
        rows=rows,
        factors=[EmissionFactorOut.model_validate(f) for f in factors],
    )


def _check_energy_range(start: datetime, end: datetime, interval: Interval) -> None:
    check_range(start, end)
    if end - start > MAX_RANGE[interval]:
        raise InvalidParameter(
            "to",
            f"the range is longer than {MAX_RANGE[interval].days} days, the limit for interval={interval}; "
            "use a coarser interval or a shorter range",
        )


def energy_rows(
    conn: Conn, scope: Scope, start: datetime, end: datetime, interval: Interval, group_by: GroupBy,
    site_code: str | None, metric: MetricName | None,
) -> list[EnergyRowOut]:  # fmt: skip
    """The ``rows`` of GET /energy, for a caller that has checked the site already and needs no ``factors`` (the
    site page: three series, two queries fewer each)."""
    _check_energy_range(start, end, interval)
    rows = queries.energy_series(
        conn,
        resolution=interval,
        group_by=group_by,
        start=start,
        end=end,
        as_of=datetime.now(UTC),
        metrics=[metric] if metric is not None else list(queries.REGISTER_METRICS),
        site_code=site_code,
        limit=MAX_ROWS + 1,
        scope=scope,
    )
    if len(rows) > MAX_ROWS:
        raise ResultTooLarge(
            "to",
            f"the answer would have more than {MAX_ROWS} rows; use a coarser interval, a shorter range, "
            "a coarser group_by or a site_code",
        )
    return [_energy_row(r) for r in rows]


def _energy_row(r: queries.EnergyRow) -> EnergyRowOut:
    return EnergyRowOut(
        bucket_start=r.bucket_start,
        bucket_start_local=r.bucket_start,
        group=r.group,
        metric=r.metric,  # type: ignore[arg-type]  # one of REGISTER_METRICS, filtered in the query
        unit=r.unit,
        amount=r.amount,
        kgco2e=r.kgco2e,
        kgco2e_base_year=r.kgco2e_base,
        quality=r.quality,
        quality_label=quality_label(r.quality),  # type: ignore[arg-type]  # never None for a stored bucket
        covered_fraction=r.covered_fraction,
        devices=r.devices,
    )


@router.get("/emission-factors", response_model=list[EmissionFactorOut])
def emission_factors(conn: Conn) -> list[queries.EmissionFactorRow]:
    """The emission-factor registry (TGO's published factors, written to the database at start-up): every dated
    value of every factor with its public source, by key then validity."""
    return queries.emission_factors(conn)


# --- completeness -------------------------------------------------------------------------------------------------


@router.get("/completeness", response_model=CompletenessOut, responses={404: {"description": "unknown site"}})
def completeness(
    conn: Conn,
    principal: CurrentPrincipal,
    day: Annotated[date, Query(alias="date", description="an Asia/Bangkok calendar day, YYYY-MM-DD")],
    site_code: Annotated[str | None, Query(description="only this site's devices")] = None,
) -> CompletenessOut:
    """Expected versus received readings per device, per site and in total, over one Bangkok day.

    Readings: ``expected`` = elapsed seconds of the day / the device's cadence (a whole day is 86400 / cadence_s;
    today counts up to now), ``received`` = distinct event times in the day over all metrics (a message carrying
    energy and power at one time is one reading time).

    Messages, for devices that send a sequence number: ``seq_first`` and ``seq_last`` are the lowest and highest
    seq received in the day, ``messages_expected`` = seq_last - seq_first + 1, ``messages_received`` = distinct
    seq, ``messages_lost`` = the difference. This assumes the device did not reboot inside the day (a reboot
    restarts seq at 0, which makes the span wrong), and cannot see messages lost before the day's first or after
    its last received seq.

    The received counts and seq spans are kept per device and day by the ingest's derived-data updaters from the
    readings stored (a duplicate or a redelivered message changes nothing), so this answer is a lookup; they stay
    after retention has removed the day's raw readings. They lag the stored readings by the updaters' queue
    (``day_queue``; metric ``lccm_queue_oldest_age_seconds{queue="day_queue"}``): about a second when the ingest
    keeps up, longer while it catches up with a backlog.
    """
    as_of = datetime.now(UTC)
    day_start, day_end = _bangkok_day(day)
    rows = queries.completeness(conn, day=day, as_of=as_of, site_code=site_code, scope=principal.scope)
    if not rows:
        _require_site(conn, site_code, principal.scope)
    by_site: dict[str, list[queries.DeviceCompleteness]] = {}
    for r in rows:
        by_site.setdefault(r.site_code, []).append(r)
    return CompletenessOut(
        date=day,
        day_start=day_start,
        day_end=day_end,
        as_of=as_of,
        total=TotalCompletenessOut(devices=len(rows), **_counts(rows)),
        sites=[
            SiteCompletenessOut(site_code=code, devices=len(members), **_counts(members))
            for code, members in by_site.items()
        ],
        devices=[
            DeviceCompletenessOut(
                device_id=r.device_id,
                site_code=r.site_code,
                kind=r.kind,
                cadence_s=r.cadence_s,
                seq_first=r.seq_first,
                seq_last=r.seq_last,
                **_counts([r]),
            )
            for r in rows
        ],
    )


def completeness_by_site(conn: Conn, scope: Scope, as_of: datetime) -> dict[str, SiteCompletenessOut]:
    """Today's (Bangkok day, up to ``as_of``) completeness of every site with devices in scope, by code: the
    ``sites`` of GET /completeness for today, in one query (the overview)."""
    rows = queries.completeness(conn, day=as_of.astimezone(BANGKOK).date(), as_of=as_of, scope=scope)
    by_site: dict[str, list[queries.DeviceCompleteness]] = {}
    for r in rows:
        by_site.setdefault(r.site_code, []).append(r)
    return {
        code: SiteCompletenessOut(site_code=code, devices=len(members), **_counts(members))
        for code, members in by_site.items()
    }


class _Counts(TypedDict):
    expected: int
    received: int
    completeness_pct: float | None
    messages_expected: int | None
    messages_received: int | None
    messages_lost: int | None


def _counts(rows: Sequence[queries.DeviceCompleteness]) -> _Counts:
    expected = sum(r.expected for r in rows)
    counted = sum(min(r.received, r.expected) for r in rows)
    spans = [
        (r.seq_last - r.seq_first + 1, r.messages_received or 0)
        for r in rows
        if r.seq_first is not None and r.seq_last is not None
    ]
    messages_expected = sum(e for e, _ in spans) if spans else None
    messages_received = sum(n for _, n in spans) if spans else None
    return _Counts(
        expected=expected,
        received=sum(r.received for r in rows),
        completeness_pct=round(100 * counted / expected, 2) if expected else None,
        messages_expected=messages_expected,
        messages_received=messages_received,
        messages_lost=None
        if messages_expected is None or messages_received is None
        else messages_expected - messages_received,
    )
