"""Alert rules and their evaluation on event time: a rule model and a deterministic state machine per series.

Pure: no I/O. The stream stage (``stream/alerts.py``) feeds each series' samples in event-time order, with the
watermark each sample arrived under, and stores the carry state and the transitions this module returns.

**Rules** (:class:`AlertRule`, validated by pydantic; the YAML file and the API use the same model, and the same
validation, :func:`parse_rules` / :func:`check_rule`, which name every bad rule and field at once):

- ``threshold`` (default): a signal (a catalogue ``metric`` such as ``pm25_ugm3``, or an ``index`` such as
  ``aqi_th``), optionally averaged (moving mean over ``average.window`` with a completeness fraction), a ``raise``
  condition (``above`` / ``at_or_above`` / ``below`` / ``at_or_below`` a value, held ``for`` a minimum duration)
  and a ``clear`` condition in the opposite direction (hysteresis: for an ``above`` rule the clear value is at most
  the raise value), with its own minimum duration. Without ``clear``, the negation of ``raise`` clears.
- ``offline``: no data from a device for ``after_cadences`` x its cadence, measured on a watermark of delivery
  (stream/alerts.py says which).
- ``flatline``: the same value (within ``tolerance``) for ``readings`` consecutive readings.
- ``out_of_range``: a reading outside ``range: [low, high]`` (plausibility, narrower than the catalogue's limits).

``scope`` selects devices (kinds, site kinds, site codes, device ids, tags, or ``near`` a point such as the Mae Moh
plant); ``schedule`` restricts when the raise condition can hold (``outside_working_hours``: Monday to Friday
08:30-16:30 Bangkok time, Thai public holidays off; ``sun_up``: sunrise + margin to sunset - margin at the site).
Outside its schedule a rule's clear condition holds, so an alert raised at night clears when the working day
starts (``reason = "schedule"``).

**Samples and durations.** A sample is one reading (or one index value) at its event time. "Held for D" means the
condition was met at every sample from the first one that met it (t0) to the current one (t), with no gap between
consecutive samples longer than ``max_gap`` (default 3 x the device's cadence), and t - t0 >= D. So at a 5-minute
cadence "above 150 ppb for 6 minutes" needs three readings (t0, t0 + 5, t0 + 10 min) and raises at the third, the
conservative reading of a sampled signal (the same as Prometheus' ``for:``). A sample whose value is unknown (an
incomplete averaging window, an index that could not be computed) breaks a pending raise or clear.

**State machine** per (rule, series): ``idle -> pending -> raised -> clearing -> idle``. Flapping is suppressed
three ways: the hysteresis band, the minimum durations, and ``holdoff``: a raise within ``holdoff`` of the last
clear *reopens* the cleared alert (transition ``reopened``, not paged again) instead of opening a new one.

**Late.** Each sample carries the watermark it arrived under (wall clock or event-time watermark at receipt, the
stream decides). A transition whose event time is more than ``late_after`` behind that watermark is ``late``: it
is recorded but not paged, so a device replaying six hours of buffered data does not page anyone about the past as
if it were now. Because the watermark belongs to the sample, not to when the evaluator ran, splitting a series into
batches gives the same transitions as one pass.

**Behind the frontier.** Readings older than a series' newest sample are evaluated by running the machine again from
a checkpoint (:func:`keep_checkpoints`, :func:`checkpoint_before`) and reconciling that run with what was recorded
(:func:`revise`): see the section of that name below.

The kinds of change, severities, states and clear reasons are ``lccm.engine.alert_kinds``' enums, shared with every
stage.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lccm.engine.alert_kinds import ClearReason, Severity, TransitionKind
from lccm.engine.streetlights import noaa_sun_times
from lccm.engine.timebase import BKK_OFFSET_US, US_PER_DAY, US_PER_MIN, US_PER_S

NO_TS = np.iinfo(np.int64).min  # "no such instant" in carry state
INDEX_SIGNALS = frozenset({"aqi_th", "aqi_us"})  # indices the AQI engine publishes through the IndexSource seam
RULE_KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
DEDUP_FIELDS = frozenset({"rule", "device", "site", "signal"})

Comparison = Literal["above", "at_or_above", "below", "at_or_below"]
COMPARISONS: tuple[str, ...] = ("above", "at_or_above", "below", "at_or_below")
RuleKind = Literal["threshold", "offline", "flatline", "out_of_range"]
ScheduleWhen = Literal["always", "working_hours", "outside_working_hours", "sun_up", "sun_down"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|min|m|h|d)?\s*$")
_UNIT_S = {None: 1.0, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


def parse_duration_s(value: Any) -> float:
    """Seconds from a number of seconds or a string such as ``30s``, ``6min``, ``24h``, ``7d``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string such as '6min', '24h'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration: give seconds or a string such as '6min', '24h', '7d'")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be finite and >= 0, not {value!r}")
    return seconds


def _hhmm_minutes(text: str) -> int:
    m = _HHMM.match(text)
    if m is None or (m.group(1) == "24" and m.group(2) != "00"):
        raise ValueError(f"{text!r} is not a time of day HH:MM (00:00 to 24:00)")
    return int(m.group(1)) * 60 + int(m.group(2))


class _Model(BaseModel):
    # allow_inf_nan=False: "inf" and "nan" parse as floats and would slip past every comparison.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


# --- rule model -----------------------------------------------------------------------------------------------


class Condition(_Model):
    """``value`` compared by ``op``, held for at least ``for_s`` seconds. YAML: ``{above: 150, for: 6min}``."""

    op: Comparison
    value: float
    for_s: float = Field(default=0.0, ge=0, alias="for")

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "op" in data:
            return data
        ops = [k for k in data if k in COMPARISONS]
        others = {k: v for k, v in data.items() if k not in COMPARISONS}
        if len(ops) != 1:
            raise ValueError(f"give exactly one of {', '.join(COMPARISONS)} (found {ops or 'none'})")
        return {"op": ops[0], "value": data[ops[0]], **others}

    @field_validator("for_s", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration_s(v)

    @property
    def upward(self) -> bool:
        return self.op in ("above", "at_or_above")

    def met(self, v: float) -> bool:
        if self.op == "above":
            return v > self.value
        if self.op == "at_or_above":
            return v >= self.value
        if self.op == "below":
            return v < self.value
        return v <= self.value

    def negation(self) -> Condition:
        opposite = {"above": "at_or_below", "at_or_above": "below", "below": "at_or_above", "at_or_below": "above"}
        return Condition(op=opposite[self.op], value=self.value)  # type: ignore[arg-type]


class Averaging(_Model):
    """Moving mean over (t - window, t]; known only if it holds >= min_fraction of the readings the device's cadence
    promises in the window."""

    window_s: float = Field(gt=0, alias="window")
    min_fraction: float = Field(default=0.75, gt=0, le=1)

    @field_validator("window_s", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration_s(v)


class Near(_Model):
    """Devices whose site lies within ``km`` of a point (great-circle distance)."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    km: float = Field(gt=0)
    name: str = ""


class Scope(_Model):
    """Which devices a rule watches; every list given must match (an empty list matches everything)."""

    device_kinds: tuple[str, ...] = ()
    site_kinds: tuple[str, ...] = ()
    site_codes: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # all of them must be among the device's tags (devices.meta -> 'tags')
    near: Near | None = None

    def matches(self, d: SeriesInfo) -> bool:
        if self.device_kinds and d.device_kind not in self.device_kinds:
            return False
        if self.site_kinds and d.site_kind not in self.site_kinds:
            return False
        if self.site_codes and d.site not in self.site_codes:
            return False
        if self.devices and d.device not in self.devices:
            return False
        if self.tags and not set(self.tags) <= d.tags:
            return False
        if self.near is not None:
            if d.lat is None or d.lon is None:
                return False
            return haversine_km(d.lat, d.lon, self.near.lat, self.near.lon) <= self.near.km
        return True


class Schedule(_Model):
    when: ScheduleWhen = "always"
    working_hours: tuple[str, str] = ("08:30", "16:30")  # Bangkok time, Monday to Friday, Thai holidays off
    sun_margin_s: float = Field(default=1800.0, ge=0, alias="sun_margin")  # photocells switch near twilight

    @field_validator("working_hours")
    @classmethod
    def _hours(cls, v: tuple[str, str]) -> tuple[str, str]:
        if _hhmm_minutes(v[0]) >= _hhmm_minutes(v[1]):
            raise ValueError(f"working hours must start before they end: {v[0]}-{v[1]}")
        return v

    @field_validator("sun_margin_s", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration_s(v)


class Name(_Model):
    en: str = Field(min_length=1)
    th: str = Field(min_length=1)


class AlertRule(_Model):
    key: str = Field(pattern=RULE_KEY_PATTERN)
    name: Name
    kind: RuleKind = "threshold"
    metric: str | None = None  # catalogue key (pm25_ugm3, so2_ppb, power_w, lamp_on ...)
    index: str | None = None  # one of INDEX_SIGNALS
    average: Averaging | None = None
    raise_: Condition | None = Field(default=None, alias="raise")
    clear: Condition | None = None
    range: tuple[float, float] | None = None  # out_of_range: [low, high] inside which a reading is plausible
    readings: int | None = Field(default=None, ge=2)  # flatline: this many consecutive equal readings
    tolerance: float = Field(default=0.0, ge=0)  # flatline: |difference| at most this counts as equal
    after_cadences: float | None = Field(default=None, gt=0)  # offline
    max_gap_s: float | None = Field(default=None, gt=0, alias="max_gap")  # None: 3 x cadence (metric signals)
    holdoff_s: float = Field(default=1800.0, ge=0, alias="holdoff")
    dedup_key: str = "{site}/{device}/{signal}"
    severity: Severity
    scope: Scope = Scope()
    schedule: Schedule = Schedule()
    enabled: bool = True
    description: str = ""
    source: str = ""  # where the threshold comes from: its public source and docs/reference.md#<section>

    @field_validator("max_gap_s", "holdoff_s", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return None if v is None else parse_duration_s(v)

    @field_validator("index")
    @classmethod
    def _known_index(cls, v: str | None) -> str | None:
        if v is not None and v not in INDEX_SIGNALS:
            raise ValueError(f"unknown index {v!r}; one of {', '.join(sorted(INDEX_SIGNALS))}")
        return v

    @field_validator("dedup_key")
    @classmethod
    def _dedup_fields(cls, v: str) -> str:
        names = set(re.findall(r"\{([^{}]*)\}", v))
        unknown = names - DEDUP_FIELDS
        if unknown or not names:
            raise ValueError(f"dedup_key uses {{{', '.join(sorted(DEDUP_FIELDS))}}} only (and at least one): {v!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> AlertRule:
        check = _KIND_CHECKS[self.kind]
        check(self)
        return self

    # -- derived ------------------------------------------------------------------------------------------------

    @property
    def signal(self) -> str:
        return self.metric or self.index or ("device" if self.kind == "offline" else "")

    def conditions(self) -> tuple[Condition, Condition]:
        """(raise, clear) on the sample values this rule's kind computes (see :func:`sample_values`)."""
        if self.kind == "flatline":
            assert self.readings is not None
            return Condition(op="at_or_above", value=self.readings), Condition(op="below", value=self.readings)
        if self.kind == "out_of_range":  # the sample value is the distance outside the range
            return Condition(op="above", value=0.0), Condition(op="at_or_below", value=0.0)
        assert self.raise_ is not None
        return self.raise_, self.clear if self.clear is not None else self.raise_.negation()

    def dedup(self, d: SeriesInfo) -> str:
        return self.dedup_key.format(rule=self.key, device=d.device, site=d.site, signal=self.signal)

    def definition(self) -> dict[str, Any]:
        """The rule as stored and served: JSON types, aliases (raise, for, window ...), durations in seconds."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _check_threshold(r: AlertRule) -> None:
    if (r.metric is None) == (r.index is None):
        raise ValueError("a threshold rule needs exactly one of metric or index")
    if r.raise_ is None:
        raise ValueError("a threshold rule needs a raise condition, e.g. raise: {above: 37.5}")
    if r.average is not None and r.index is not None:
        raise ValueError("average applies to metrics; an index series is averaged by the index itself")
    _forbid(r, "threshold", "range", "readings", "after_cadences")
    if r.clear is not None:
        up = r.raise_.upward
        if r.clear.upward == up:
            want = "below or at_or_below" if up else "above or at_or_above"
            raise ValueError(f"clear must point the other way from raise: {want}")
        if (up and r.clear.value > r.raise_.value) or (not up and r.clear.value < r.raise_.value):
            raise ValueError(
                f"clear value {r.clear.value} is on the wrong side of the raise value {r.raise_.value}: "
                "the hysteresis band would be negative and the alert would flap"
            )


def _check_offline(r: AlertRule) -> None:
    if r.after_cadences is None:
        raise ValueError("an offline rule needs after_cadences (no data for N x the device's cadence)")
    _forbid(r, "offline", "metric", "index", "average", "raise_", "clear", "range", "readings")


def _check_flatline(r: AlertRule) -> None:
    if r.metric is None or r.readings is None:
        raise ValueError("a flatline rule needs metric and readings (how many equal readings in a row)")
    _forbid(r, "flatline", "index", "average", "raise_", "clear", "range", "after_cadences")


def _check_range(r: AlertRule) -> None:
    if r.metric is None or r.range is None:
        raise ValueError("an out_of_range rule needs metric and range: [low, high]")
    if not r.range[0] < r.range[1]:
        raise ValueError(f"range must be [low, high] with low < high, not {list(r.range)}")
    _forbid(r, "out_of_range", "index", "average", "raise_", "clear", "readings", "after_cadences")


def _forbid(r: AlertRule, kind: str, *names: str) -> None:
    given = [n.rstrip("_") for n in names if getattr(r, n) is not None]
    if given:
        raise ValueError(f"a {kind} rule does not take {', '.join(given)}")


_KIND_CHECKS = {
    "threshold": _check_threshold,
    "offline": _check_offline,
    "flatline": _check_flatline,
    "out_of_range": _check_range,
}


# --- series, samples ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """What a rule needs to know about the device behind a series."""

    device_pk: int
    device: str  # the registry's device id
    site: str  # site code
    device_kind: str
    site_kind: str
    cadence_us: int
    lat: float | None = None
    lon: float | None = None
    tags: frozenset[str] = frozenset()


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(a))


def moving_mean(
    ts_us: np.ndarray, value: np.ndarray, first: int, window_us: int, min_count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean over (t - window, t] at each reading from index ``first`` on, and whether it holds >= min_count readings.

    ``ts_us`` ascending; the readings before ``first`` are history the windows may reach into."""
    ts = np.ascontiguousarray(ts_us, dtype=np.int64)
    v = np.ascontiguousarray(value, dtype=np.float64)
    idx = np.arange(first, ts.shape[0])
    lo = np.searchsorted(ts, ts[idx] - window_us, side="right")
    csum = np.concatenate(([0.0], np.cumsum(v)))
    count = idx + 1 - lo
    mean = (csum[idx + 1] - csum[lo]) / np.maximum(count, 1)
    return mean, count >= min_count


def min_count(avg: Averaging, cadence_us: int) -> int:
    """Readings a window must hold: min_fraction of what the cadence promises (at least one)."""
    expected = avg.window_s * US_PER_S / max(cadence_us, 1)
    return max(1, math.ceil(avg.min_fraction * expected - 1e-9))


def out_of_range_distance(value: np.ndarray, low: float, high: float) -> np.ndarray:
    """How far each value lies outside [low, high] (0 inside)."""
    v = np.asarray(value, dtype=np.float64)
    return np.maximum(np.maximum(low - v, v - high), 0.0)


def flat_runs(value: np.ndarray, tolerance: float, carry_value: float, carry_count: int) -> np.ndarray:
    """Length of the run of equal values (|difference| <= tolerance from the run's first value) ending at each
    reading, continuing the run carried in from the previous batch."""
    out = np.empty(len(value), dtype=np.float64)
    ref, n = carry_value, carry_count
    for i, x in enumerate(np.asarray(value, dtype=np.float64).tolist()):
        if n > 0 and abs(x - ref) <= tolerance:
            n += 1
        else:
            ref, n = x, 1
        out[i] = n
    return out


def schedule_mask(
    schedule: Schedule,
    ts_us: np.ndarray,
    *,
    holidays: Collection[date] = (),
    lat: float | None = None,
    lon: float | None = None,
) -> np.ndarray:
    """Whether each instant lies inside the schedule (Bangkok calendar; sun times at lat/lon, NOAA method)."""
    ts = np.asarray(ts_us, dtype=np.int64)
    if schedule.when == "always":
        return np.ones(ts.shape, dtype=bool)
    if schedule.when in ("working_hours", "outside_working_hours"):
        inside = working_mask(ts, schedule.working_hours, holidays)
        return inside if schedule.when == "working_hours" else ~inside
    if lat is None or lon is None:
        raise ValueError("a sun_up / sun_down schedule needs the site's lat and lon")
    local_days = (ts + BKK_OFFSET_US) // US_PER_DAY
    rise, sets = noaa_sun_times(local_days.astype("datetime64[D]"), lat, lon)
    margin = int(schedule.sun_margin_s * US_PER_S)
    up = (ts >= rise + margin) & (ts < sets - margin)
    down = (ts < rise - margin) | (ts >= sets + margin)
    return up if schedule.when == "sun_up" else down


def working_mask(ts_us: np.ndarray, hours: tuple[str, str], holidays: Collection[date]) -> np.ndarray:
    """Monday to Friday, not a holiday, between the working hours (Bangkok time)."""
    local = np.asarray(ts_us, dtype=np.int64) + BKK_OFFSET_US
    day = local // US_PER_DAY
    minute = (local - day * US_PER_DAY) // US_PER_MIN
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
    off = np.array(sorted({np.datetime64(h, "D").astype(np.int64) for h in holidays}), dtype=np.int64)
    holiday = np.isin(day, off)
    start, end = _hhmm_minutes(hours[0]), _hhmm_minutes(hours[1])
    return (weekday < 5) & ~holiday & (minute >= start) & (minute < end)


# --- the state machine ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeriesState:
    """Carry state of one (rule, series). ``last_ts_us`` is the frontier: samples at or before it were seen."""

    phase: Literal["idle", "pending", "raised", "clearing"] = "idle"
    since_us: int = int(NO_TS)  # first sample of the current pending raise / pending clear
    last_ts_us: int = int(NO_TS)
    started_us: int = int(NO_TS)  # when the raised alert's condition began
    raised_us: int = int(NO_TS)
    cleared_us: int = int(NO_TS)  # last clear, for the hold-off
    peak: float | None = None  # most extreme value of the current (or last cleared) alert, over its reopenings
    reopened: int = 0  # how often the current (or last cleared) alert was reopened
    flat_value: float = 0.0  # flatline carry: value and length of the run at the frontier
    flat_count: int = 0
    seen_us: int = int(NO_TS)  # offline: how far the device had delivered when raised
    # The alert the series owned at this state, as the writer recorded it (0: none; None: not recorded, a state
    # from before it was): what a run again from a checkpoint continues (:func:`revise`). Not the machine's.
    alert_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> SeriesState:
        if not data:
            return cls()
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True, slots=True)
class Transition:
    """What the state machine decided at one sample: raised, reopened or cleared (the store records it as an alert
    event of the same kind)."""

    kind: TransitionKind
    at_us: int  # event time of the sample that completed the condition
    started_us: int  # raise: when the condition began; clear: when the clear condition began
    value: float  # the sample's value (averaged, index, run length, distance outside the range)
    late: bool
    reason: ClearReason = ClearReason.CONDITION  # cleared: why
    peak: float | None = None  # the alert's most extreme value while raised so far, over its reopenings


@dataclass(slots=True)
class _Machine:
    """The mutable working copy of a SeriesState while a batch of samples runs through it."""

    raise_c: Condition
    clear_c: Condition
    holdoff_us: int
    late_after_us: int
    s: dict[str, Any]
    out: list[Transition] = field(default_factory=list)

    def raise_at(self, t: int, v: float, wm: int) -> None:
        s = self.s
        recent = s["cleared_us"] != NO_TS and t - s["cleared_us"] < self.holdoff_us
        kind = TransitionKind.REOPENED if recent else TransitionKind.RAISED
        # A reopening continues the alert: its peak too (kept through the clear for that).
        peak = v if not recent or s["peak"] is None else self.extreme(s["peak"], v)
        self.out.append(Transition(kind, t, s["since_us"], v, wm - t > self.late_after_us, peak=peak))
        reopened = s["reopened"] + 1 if recent else 0
        s.update(phase="raised", started_us=s["since_us"], raised_us=t, since_us=NO_TS, peak=peak, reopened=reopened)

    def clear_at(self, t: int, v: float, wm: int, reason: ClearReason) -> None:
        s = self.s
        late = wm - t > self.late_after_us
        self.out.append(Transition(TransitionKind.CLEARED, t, s["since_us"], v, late, reason, s["peak"]))
        s.update(phase="idle", cleared_us=t, since_us=NO_TS, started_us=NO_TS, raised_us=NO_TS)

    def extreme(self, a: float, b: float) -> float:
        return max(a, b) if self.raise_c.upward else min(a, b)

    def track_peak(self, v: float) -> None:
        peak = self.s["peak"]
        self.s["peak"] = v if peak is None else self.extreme(peak, v)


def evaluate(
    rule: AlertRule,
    state: SeriesState,
    ts_us: np.ndarray,
    value: np.ndarray,
    known: np.ndarray,
    in_schedule: np.ndarray,
    watermark_us: np.ndarray,
    *,
    max_gap_us: int | None,
    late_after_us: int,
) -> tuple[SeriesState, list[Transition]]:
    """Run one series' samples (ascending event time) through the rule's state machine.

    ``known`` is False where the value could not be computed; ``in_schedule`` where the rule's schedule holds;
    ``watermark_us`` the watermark each sample arrived under. Samples at or before ``state.last_ts_us`` are skipped
    (already seen). Returns the new state and the transitions, in event-time order.
    """
    raise_c, clear_c = rule.conditions()
    m = _Machine(raise_c, clear_c, int(rule.holdoff_s * US_PER_S), late_after_us, asdict(state))
    s = m.s
    for t, v, ok, sched, wm in zip(
        np.asarray(ts_us).tolist(),
        np.asarray(value, dtype=np.float64).tolist(),
        np.asarray(known, dtype=bool).tolist(),
        np.asarray(in_schedule, dtype=bool).tolist(),
        np.asarray(watermark_us).tolist(),
        strict=True,
    ):
        if t <= s["last_ts_us"]:
            continue
        gap = max_gap_us is not None and s["last_ts_us"] != NO_TS and t - s["last_ts_us"] > max_gap_us
        s["last_ts_us"] = t
        _step(m, t, v, ok, sched, wm, gap)
    return SeriesState(**s), m.out


def _step(m: _Machine, t: int, v: float, ok: bool, sched: bool, wm: int, gap: bool) -> None:
    s = m.s
    phase = s["phase"]
    if phase in ("idle", "pending"):
        if not (sched and ok and m.raise_c.met(v)):
            s.update(phase="idle", since_us=NO_TS)
            return
        if phase == "idle" or gap:
            s.update(phase="pending", since_us=t)
        if t - s["since_us"] >= m.raise_c.for_s * US_PER_S:
            m.raise_at(t, v, wm)
        return
    # raised / clearing: outside the schedule the condition no longer applies, so the clear condition holds.
    if ok and sched:
        m.track_peak(v)
    clear_ok = (not sched) or (ok and m.clear_c.met(v))
    if not clear_ok:
        s.update(phase="raised", since_us=NO_TS)
        return
    if phase == "raised" or gap:
        s.update(phase="clearing", since_us=t)
    if t - s["since_us"] >= m.clear_c.for_s * US_PER_S:
        m.clear_at(t, v if ok else math.nan, wm, ClearReason.CONDITION if sched else ClearReason.SCHEDULE)


def evaluate_offline(
    rule: AlertRule,
    state: SeriesState,
    *,
    seen_us: int,
    cadence_us: int,
    watermark_us: int,
    late_ref_us: int,
    late_after_us: int,
    resumed_us: int | None = None,
) -> tuple[SeriesState, list[Transition]]:
    """An offline rule for one device: raised once the watermark passes how far the device has delivered
    (``seen_us``) by more than after_cadences x cadence (at that instant, ``seen + N x cadence``), cleared by the
    next data seen, at ``resumed_us`` (when it came back; by default ``seen_us``), never before the raise."""
    assert rule.after_cadences is not None
    m = _Machine(Condition(op="above", value=0), Condition(op="at_or_below", value=0),
                 int(rule.holdoff_s * US_PER_S), late_after_us, asdict(state))  # fmt: skip
    s = m.s
    if seen_us == NO_TS:
        return state, []
    limit = int(rule.after_cadences * cadence_us)
    if s["phase"] == "raised":
        if seen_us > s["seen_us"]:  # data resumed
            at = max(seen_us if resumed_us is None else resumed_us, s["raised_us"])
            m.clear_at(at, (at - s["seen_us"]) / US_PER_S, late_ref_us, ClearReason.DATA_RESUMED)
            s["seen_us"] = seen_us
        return SeriesState(**s), m.out
    last = max(seen_us, s["seen_us"])
    due = last + limit
    if watermark_us <= due:
        return state, []  # not overdue: nothing to remember (the device's newest data is stored elsewhere)
    s.update(seen_us=last, since_us=last)
    m.raise_at(due, limit / US_PER_S, late_ref_us)
    s["last_ts_us"] = due
    return SeriesState(**s), m.out


def sample_values(
    rule: AlertRule,
    ts_us: np.ndarray,
    value: np.ndarray,
    first: int,
    *,
    cadence_us: int,
    state: SeriesState,
) -> tuple[np.ndarray, np.ndarray]:
    """The values the rule compares, at the readings from index ``first`` on (earlier ones are averaging history):
    the reading, its moving mean, the flat-run length or the distance outside the range; and whether known."""
    v = np.asarray(value, dtype=np.float64)
    if rule.kind == "flatline":
        runs = flat_runs(v[first:], rule.tolerance, state.flat_value, state.flat_count)
        return runs, np.ones(runs.shape, dtype=bool)
    if rule.kind == "out_of_range":
        assert rule.range is not None
        dist = out_of_range_distance(v[first:], *rule.range)
        return dist, np.ones(dist.shape, dtype=bool)
    if rule.average is None:
        return v[first:], np.isfinite(v[first:])
    window_us = int(rule.average.window_s * US_PER_S)
    return moving_mean(ts_us, v, first, window_us, min_count(rule.average, cadence_us))


def with_flat_carry(rule: AlertRule, state: SeriesState, value: np.ndarray, runs: np.ndarray) -> SeriesState:
    """The flatline run carried to the next batch: the last value and its run length."""
    if rule.kind != "flatline" or not len(value):
        return state
    n = int(runs[-1])
    # The run's reference is its first value: n readings back from the end.
    ref = float(np.asarray(value, dtype=np.float64)[-n]) if n <= len(value) else state.flat_value
    return replace(state, flat_value=ref, flat_count=n)


def default_max_gap_us(rule: AlertRule, cadence_us: int) -> int | None:
    """Continuity limit between samples: the rule's max_gap, else 3 x cadence for metric signals (an index series
    has its own cadence, unknown here: no limit)."""
    if rule.max_gap_s is not None:
        return int(rule.max_gap_s * US_PER_S)
    if rule.index is not None:
        return None
    return 3 * cadence_us


# --- readings behind the frontier: checkpoints and revisions --------------------------------------------------
#
# A series' state is the machine's carry at its frontier. Readings that arrive behind it (a station that sent its
# newest reading first and replays its buffer after) are evaluated by running the machine again from a checkpoint,
# an earlier state kept for the purpose, over every stored reading up to the frontier; :func:`revise` then compares
# that run with what was recorded and with the live state, and says what to record and which state to carry on
# from. What late readings imply is recorded, never rewritten away: an episode that nobody recorded becomes a new
# (cleared) alert, and the present alert is opened or cleared only when the full data disagree with the live state.

CHECKPOINT_BASE_US = 15 * US_PER_MIN


def is_pristine(state: SeriesState) -> bool:
    """A state from before any sample (idle, nothing raised or cleared, no flat run): valid at any earlier instant."""
    return replace(state, last_ts_us=int(NO_TS), alert_id=None) == SeriesState()


def checkpoint_before(
    checkpoints: Sequence[SeriesState], lo_us: int, *, oldest_us: int = int(NO_TS)
) -> SeriesState | None:
    """The newest checkpoint from before ``lo_us`` (its frontier is earlier), to run a series again from when readings
    arrive at ``lo_us`` and after, behind its frontier. A pristine oldest checkpoint (the series' start, or a series
    that has never raised) serves any earlier instant too, back to ``oldest_us``. None when ``lo_us`` is not after
    ``oldest_us`` or every checkpoint is newer: the readings lie beyond the history kept."""
    if lo_us <= oldest_us:
        return None
    before = [c for c in checkpoints if c.last_ts_us < lo_us]
    if before:
        return max(before, key=lambda c: c.last_ts_us)
    oldest = min(checkpoints, key=lambda c: c.last_ts_us, default=None)
    if oldest is not None and is_pristine(oldest):
        return replace(oldest, last_ts_us=lo_us - 1)
    return None


def keep_checkpoints(
    checkpoints: Sequence[SeriesState], state: SeriesState, *, horizon_us: int, base_us: int = CHECKPOINT_BASE_US
) -> tuple[SeriesState, ...]:
    """The checkpoints to keep after a run that ended in ``state``: with ``state`` among the candidates, the oldest
    in each age bucket behind its frontier (younger than ``base_us``, then [base x 2^k, base x 2^(k+1))), none older
    than ``horizon_us``. About log2(horizon / base) + 2 states (11 for 7 days on 15 minutes), spaced so that readings
    arriving a time t behind the frontier find a checkpoint at most about 2t + base before them: the run again is
    bounded by the readings' own lateness."""
    if state.last_ts_us == NO_TS:
        return tuple(checkpoints)
    f = state.last_ts_us
    oldest: dict[int, SeriesState] = {}
    for c in (*checkpoints, state):
        age = f - c.last_ts_us
        if c.last_ts_us == NO_TS or age < 0 or age > horizon_us:
            continue
        bucket = -1 if age < base_us else int(math.log2(age / base_us))
        if bucket not in oldest or c.last_ts_us < oldest[bucket].last_ts_us:
            oldest[bucket] = c
    return tuple(sorted(oldest.values(), key=lambda c: c.last_ts_us))


def checkpoints_to_json(checkpoints: Sequence[SeriesState]) -> list[dict[str, Any]]:
    """Compact: the fields that differ from a fresh state (most checkpoints are idle: two or three fields)."""
    fresh = asdict(SeriesState())
    return [{k: v for k, v in asdict(c).items() if v != fresh[k]} for c in checkpoints]


def checkpoints_from_json(data: Any) -> tuple[SeriesState, ...]:
    return tuple(SeriesState.from_json(d) if d else SeriesState() for d in data) if isinstance(data, list) else ()


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """What one alert holds, as the writer records it from its series' transitions: when its condition began and it
    was raised (its first raise; a reopening continues it), the value shown at the raise, its peak (the most extreme
    value while raised, over its reopenings too), its last clear (None: active) and how often it was reopened."""

    started_us: int
    raised_us: int
    raised_value: float
    peak: float | None
    cleared_us: int | None = None
    cleared_value: float | None = None
    reason: ClearReason | None = None
    flaps: int = 0

    def overlaps(self, other: AlertRecord) -> bool:
        """Whether the two intervals of event time, from the condition's start to the clear, meet."""
        end, other_end = _end(self.cleared_us), _end(other.cleared_us)
        return self.started_us <= other_end and other.started_us <= end

    def same(self, other: AlertRecord) -> bool:
        """Equal times, reason and reopenings, and values equal but for the last bits (a moving mean sums the same
        readings from another origin when a series is run again from a checkpoint)."""
        times = (self.started_us, self.raised_us, self.cleared_us, self.reason, self.flaps)
        return times == (other.started_us, other.raised_us, other.cleared_us, other.reason, other.flaps) and all(
            _close(a, b)
            for a, b in (
                (self.raised_value, other.raised_value), (self.peak, other.peak),
                (self.cleared_value, other.cleared_value),
            )
        )  # fmt: skip


def _end(cleared_us: int | None) -> int:
    return np.iinfo(np.int64).max if cleared_us is None else cleared_us


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return (a is None or math.isnan(a)) == (b is None or math.isnan(b))
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


@dataclass(frozen=True, slots=True)
class RecordedAlert:
    """An alert already recorded under the rule and dedup key of a series being revised: whether it is the series'
    own device's (a dedup key may be shared by devices) and what it holds."""

    alert_id: int
    own: bool
    record: AlertRecord

    def as_of(self, state: SeriesState) -> AlertRecord:
        """The alert as it was at a checkpoint where it was the series' alert: its reopenings and peak as the state
        carries them; active if the state is raised (else the reopening that follows makes it active)."""
        rec = self.record
        flaps = state.reopened
        if state.phase in _UP:
            return replace(rec, peak=state.peak, cleared_us=None, cleared_value=None, reason=None, flaps=flaps)
        return replace(rec, peak=state.peak if state.peak is not None else rec.peak, flaps=flaps)


@dataclass(frozen=True, slots=True)
class Correction:
    """A recorded alert that a run again over every stored reading contradicts: re-timed (``new``: what it holds
    now), merged into another recorded alert of the same episode (``merged_into``), or withdrawn (its episode does
    not exist once every reading is known: ``new`` None, ``merged_into`` None). ``cleared_by`` is the run again's
    clear that ends a re-timed alert, when the recorded one was not cleared."""

    alert_id: int
    old: AlertRecord
    new: AlertRecord | None
    merged_into: int | None = None
    cleared_by: Transition | None = None


@dataclass(frozen=True, slots=True)
class Revision:
    """What readings behind a series' frontier change: ``corrections`` to recorded alerts; ``replay``, the
    transitions of the alerts nobody recorded, to record as the frontier's transitions are (a past episode becomes a
    cleared alert, one still raised at the frontier an active alert); ``alert_id``, the series' alert once the
    corrections are applied (before the replay); ``state``, the state to carry on from: the run again's."""

    state: SeriesState
    alert_id: int | None
    corrections: tuple[Correction, ...] = ()
    replay: tuple[Transition, ...] = ()


_UP = ("raised", "clearing")


@dataclass
class _Target:
    """An alert of the run again: what it must hold, the recorded alert it is (if any), its transitions."""

    record: AlertRecord
    recorded: RecordedAlert | None
    transitions: list[Transition]


def _targets(
    start: SeriesState, rerun: Sequence[Transition], end: SeriesState, carried: RecordedAlert | None
) -> list[_Target]:
    """The alerts of the run again, from its transitions as the writer records them (a raise opens an alert, a
    reopening continues the last one, a clear ends it), the first continuing the series' alert at the checkpoint
    when the checkpoint was raised or the run reopens it."""
    out: list[_Target] = []
    cur: _Target | None = None
    if start.phase in _UP and carried is not None:
        cur = _Target(carried.as_of(start), carried, [])
    for tr in rerun:
        if tr.kind == TransitionKind.REOPENED and cur is None and carried is not None:
            cur = _Target(carried.as_of(start), carried, [])
        if tr.kind == TransitionKind.RAISED or cur is None:
            if tr.kind == TransitionKind.CLEARED:
                continue  # the clear of an alert nobody recorded (before the history kept): nothing to end
            if cur is not None:
                out.append(cur)
            cur = _Target(AlertRecord(tr.started_us, tr.at_us, tr.value, tr.peak), None, [tr])
            continue
        rec = cur.record
        if tr.kind == TransitionKind.REOPENED:
            rec = replace(rec, cleared_us=None, cleared_value=None, reason=None, flaps=rec.flaps + 1, peak=tr.peak)
        else:
            rec = replace(rec, cleared_us=tr.at_us, cleared_value=tr.value, reason=tr.reason, peak=tr.peak)
        cur.record = rec
        cur.transitions.append(tr)
    if cur is not None:
        if cur.record.cleared_us is None and end.phase in _UP:
            cur.record = replace(cur.record, peak=end.peak)
        out.append(cur)
    return out


def revise(
    start: SeriesState,
    rerun_state: SeriesState,
    rerun: Sequence[Transition],
    recorded: Sequence[RecordedAlert],
    *,
    owned_alert: int | None,
) -> Revision:
    """Reconcile a run again from the checkpoint ``start`` up to the frontier (``rerun``: its transitions, with the
    values the alerts show, and ``rerun_state``), over every reading stored now, with the alerts ``recorded`` of the
    rule and dedup key that were active at the checkpoint or after (and the series' alert at the checkpoint), so
    that the series' alerts become those of one evaluation over all its readings:

    - the alerts of the run again are matched, in order, with the series' own recorded alerts: the first continues
      the series' alert at the checkpoint (``start.alert_id``) when the checkpoint was raised or the run reopens it;
      any other is the first recorded alert, not matched yet, that its interval (condition start to clear) overlaps;
    - a matched alert that holds other times or values is re-timed; a recorded alert of the window left over is
      merged into the first matched alert it overlaps (one episode recorded as two), else withdrawn (its episode
      does not exist once every reading is known);
    - an alert of the run again that matches none is recorded by replaying its transitions (a reopening first is a
      raise: it reopens nothing recorded), unless it overlaps an alert of another device of the dedup key (the key
      is shared: that device holds it);
    - the state carried on is the run again's, in full (its alert's times, hold-off and peak).

    So a second run over the same readings (a redelivered batch) finds everything as recorded and changes nothing.
    """
    lo = start.last_ts_us
    own = sorted((a for a in recorded if a.own), key=lambda a: (a.record.raised_us, a.alert_id))
    carried = next((a for a in own if a.alert_id == _checkpoint_alert(start, own)), None)
    targets = _targets(start, rerun, rerun_state, carried)
    in_window = [a for a in own if a.record.cleared_us is None or a.record.cleared_us > lo]
    taken = {t.recorded.alert_id for t in targets if t.recorded is not None}
    for t in targets:
        if t.recorded is None:
            t.recorded = next((a for a in in_window if a.alert_id not in taken and a.record.overlaps(t.record)), None)
            if t.recorded is not None:
                taken.add(t.recorded.alert_id)
    # In the order they can be written: withdrawn and merged alerts first, then the re-timed ones that end before
    # those that become active (at most one active alert per dedup key).
    corrections: list[Correction] = []
    for a in in_window:
        if a.alert_id in taken:
            continue
        into = next((t.recorded for t in targets if t.recorded is not None and t.record.overlaps(a.record)), None)
        corrections.append(Correction(a.alert_id, a.record, None, merged_into=None if into is None else into.alert_id))
    retimed = []
    for t in targets:
        if t.recorded is not None and not t.record.same(t.recorded.record):
            old = t.recorded.record
            clear = t.transitions[-1] if old.cleared_us is None and t.record.cleared_us is not None else None
            retimed.append(Correction(t.recorded.alert_id, old, t.record, cleared_by=clear))
    corrections += sorted(retimed, key=lambda c: c.new is not None and c.new.cleared_us is None)
    others = [a.record for a in recorded if not a.own]
    replay: list[Transition] = []
    for t in targets:
        if t.recorded is None and t.transitions and not any(o.overlaps(t.record) for o in others):
            first, *rest = t.transitions
            replay += [replace(first, kind=TransitionKind.RAISED), *rest]
    gone = {c.alert_id for c in corrections if c.new is None}
    matched = [t.recorded.alert_id for t in targets if t.recorded is not None]
    if matched:
        alert_id: int | None = matched[-1]
    elif carried is not None:
        alert_id = carried.alert_id
    else:
        alert_id = None if owned_alert in gone else owned_alert
    return Revision(rerun_state, alert_id, tuple(corrections), tuple(replay))


def _checkpoint_alert(start: SeriesState, own: Sequence[RecordedAlert]) -> int | None:
    """The series' alert at the checkpoint: as the checkpoint recorded it (0: none), or for a checkpoint taken
    before that was recorded, the series' last own alert raised by then."""
    if start.alert_id is not None:
        return start.alert_id or None
    before = [a for a in own if a.record.raised_us <= start.last_ts_us]
    return before[-1].alert_id if before and not is_pristine(start) else None


# --- the rule file's rules: validation ------------------------------------------------------------------------
#
# The file (the shipped lccm/data/alert-rules.yaml or LCCM_ALERT_RULES_FILE) is read by the composition root
# (lccm/alerts.py); the API validates the rules written to it with the same functions. An error names the rule (its
# key, or its position when the key itself is missing) and the field, e.g. ``rule 'so2_mae_moh' field raise.value:
# Input should be a valid number``. With the metric catalogue's keys given, a rule on a metric the catalogue does not
# have is an error too.


@dataclass(frozen=True, slots=True)
class RuleError:
    rule: str  # the rule's key, or "#<position>" (1-based) when it has none
    field: str  # dotted path inside the rule, "" for the rule as a whole
    message: str

    def __str__(self) -> str:
        where = f" field {self.field}" if self.field else ""
        return f"rule {self.rule!r}{where}: {self.message}"


class AlertRulesInvalid(ValueError):
    """One or more rules are invalid: every problem, each naming its rule and field."""

    def __init__(self, source: str, errors: Sequence[RuleError]) -> None:
        self.source = source
        self.errors = list(errors)
        lines = "\n  ".join(str(e) for e in self.errors)
        super().__init__(f"{len(self.errors)} problem(s) in alert rules from {source}:\n  {lines}")


def validation_errors(rule: str, err: ValidationError) -> list[RuleError]:
    """One RuleError per pydantic error, with the field path as written in the file (aliases: raise, for)."""
    out = []
    for e in err.errors(include_url=False):
        path = ".".join(str(p) for p in e["loc"] if p not in ("function-after[_consistent()]",))
        msg = e["msg"].removeprefix("Value error, ")
        out.append(RuleError(rule, path, msg))
    return out


def check_rule(
    definition: Any, label: str, metric_keys: Collection[str] | None = None
) -> tuple[AlertRule | None, list[RuleError]]:
    """Validate one rule mapping; returns the rule or the errors, naming the rule by its key (``label`` without
    one)."""
    if isinstance(definition, dict) and isinstance(definition.get("key"), str):
        label = definition["key"]
    if not isinstance(definition, dict):
        return None, [RuleError(label, "", f"a rule is a mapping of fields, not {type(definition).__name__}")]
    try:
        rule = AlertRule.model_validate(definition)
    except ValidationError as e:
        return None, validation_errors(label, e)
    if metric_keys is not None and rule.metric is not None and rule.metric not in metric_keys:
        known = ", ".join(sorted(metric_keys))
        return None, [RuleError(label, "metric", f"unknown metric {rule.metric!r}; the catalogue has {known}")]
    return rule, []


def parse_rules(
    definitions: Any, source: str = "<rules>", metric_keys: Collection[str] | None = None
) -> list[AlertRule]:
    """Validate a list of rule mappings; keys must be unique. Raises AlertRulesInvalid listing every problem."""
    if not isinstance(definitions, list):
        raise AlertRulesInvalid(source, [RuleError("-", "rules", "expected a list of rules")])
    rules: list[AlertRule] = []
    errors: list[RuleError] = []
    seen: set[str] = set()
    for i, d in enumerate(definitions, start=1):
        rule, problems = check_rule(d, f"#{i}", metric_keys)
        errors += problems
        if rule is None:
            continue
        if rule.key in seen:
            errors.append(RuleError(rule.key, "key", f"the key {rule.key!r} is used by an earlier rule"))
        seen.add(rule.key)
        rules.append(rule)
    if errors:
        raise AlertRulesInvalid(source, errors)
    return rules
