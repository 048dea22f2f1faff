"""Device physics: what each kind of device would measure at any time, as vectorised pure functions.

A model gives canonical-unit values for its instant/state metrics (`values`), the rate its register grows at
(`rate`: kW for energy meters, l/h for fuel meters) and, for lamps, the instants where the state switches
(`events`), so the reports carry the exact switching time rather than the next polling instant.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np

from lccm.simulators import noise
from lccm.simulators.city import City, Device
from lccm.simulators.environment import Environment, gauss, monthly, traffic, window
from lccm.simulators.noise import stable_key
from lccm.simulators.timebase import (
    DAY_S,
    FloatArray,
    as_array,
    day_of_year,
    is_holiday,
    local_day,
    local_hour,
    weekday,
)

_O3_SEASON = [1.1, 1.3, 1.45, 1.3, 0.9, 0.7, 0.65, 0.65, 0.7, 0.85, 1.0, 1.05]
_COARSE_DUST_UGM3 = [14.0, 16.0, 16.0, 12.0, 6.0, 4.0, 3.0, 3.0, 4.0, 6.0, 10.0, 12.0]
# Cooling starts above this indoor-relevant outdoor temperature.
AC_BASE_C = 24.0


class DeviceModel:
    """Base: no instant metrics, no register, no events."""

    def __init__(self, device: Device, env: Environment) -> None:
        self.device = device
        self.env = env
        self.key = stable_key(env.seed, device.device_id)

    def values(self, t_s: FloatArray) -> dict[str, FloatArray]:
        return {}

    def rate(self, t_s: FloatArray) -> FloatArray:
        """Register growth in canonical units per hour (kW for energy, l/h for fuel)."""
        return np.zeros_like(as_array(t_s))

    def events(self, t0_s: float, t1_s: float) -> FloatArray:
        """Extra reading instants in [t0, t1) where the state changes (whole seconds)."""
        return np.zeros(0)

    def _measurement_noise(self, t_s: FloatArray, salt: str, rel: float) -> FloatArray:
        return 1.0 + rel * noise.normal(stable_key(self.key, salt), np.round(as_array(t_s)).astype(np.int64))


# Buildings ----------------------------------------------------------------------------------------------------------


def occupancy(profile: str, t_s: FloatArray, env: Environment) -> FloatArray:
    """Share of the occupied load switched on, 0..1, for a building use profile."""
    t = as_array(t_s)
    return env.memo(f"occupancy:{profile}", t, lambda x: _occupancy(profile, x, env))


def _occupancy(profile: str, t: FloatArray, env: Environment) -> FloatArray:
    h = env.hour(t)
    working = env.working_day(t).astype(np.float64)
    open_h, close_h = env.city.office_hours
    if profile == "office":
        lunch = 1.0 - 0.12 * window(h, 12.0, 13.0)
        return working * window(h, open_h, close_h, 0.5, 1.0) * lunch
    if profile == "school":
        term = _school_term(t)
        day = window(h, 7.5, 16.0, 0.5, 0.75)
        return working * day * np.where(term, 1.0, 0.18)
    if profile == "health":
        saturday = ((weekday(t) == 5) & ~is_holiday(t)).astype(np.float64)
        return np.maximum(working * window(h, 8.0, 16.5, 0.5, 0.75), 0.5 * saturday * window(h, 8.5, 12.0, 0.5, 0.5))
    if profile == "market":
        return np.maximum(window(h, 4.0, 11.0, 0.5, 1.0), 0.55 * window(h, 16.0, 20.0, 0.5, 0.5))
    if profile == "pumping":
        return np.clip(0.1 + 0.8 * gauss(h, 6.5, 1.5) + 0.7 * gauss(h, 18.5, 1.8), 0.0, 1.0)
    if profile == "wastewater":
        return np.clip(0.3 + 0.6 * gauss(h, 10.0, 2.5) + 0.5 * gauss(h, 20.5, 2.0), 0.0, 1.0)
    if profile == "library":
        open_day = ((weekday(t) != 0) & ~is_holiday(t)).astype(np.float64)
        return open_day * window(h, open_h, close_h, 0.5, 0.5)
    if profile == "sports":
        return np.maximum(window(h, 16.0, 21.0, 0.5, 0.5), 0.3 * window(h, 6.0, 8.0, 0.25, 0.25))
    if profile == "fire":
        return 0.6 + 0.4 * working * window(h, open_h, close_h, 0.5, 0.5)
    if profile == "childcare":
        return working * window(h, 7.5, 16.0, 0.5, 0.5)
    raise ValueError(f"unknown building profile {profile!r}")


def _school_term(t_s: FloatArray) -> np.ndarray:
    """Thai school year: semester 1 mid-May to early October, semester 2 November to late March."""
    doy = day_of_year(t_s)
    return ((doy >= 135) & (doy < 282)) | (doy >= 304) | (doy < 80)


class BuildingMeter(DeviceModel):
    def __init__(self, device: Device, env: Environment) -> None:
        super().__init__(device, env)
        p = device.params
        self.profile: str = p["profile"]
        self.base_kw: float = p["base_kw"]
        self.occupied_kw: float = p["occupied_kw"]
        self.ac_kw_per_c: float = p["ac_kw_per_c"]

    def load_kw(self, t_s: FloatArray) -> FloatArray:
        """True grid import (kW): base + occupancy-driven load + air-conditioning above 24 °C; 0 in an outage."""
        t = as_array(t_s)
        occ = occupancy(self.profile, t, self.env)
        cooling = self.ac_kw_per_c * np.maximum(0.0, self.env.temperature_c(t) - AC_BASE_C) * occ
        wander = 1.0 + 0.04 * noise.smooth(stable_key(self.key, "wander"), t, 1800)
        grid_on = 1.0 - self.env.outage(self.device.site.code, t)
        return (self.base_kw + self.occupied_kw * occ + cooling) * wander * grid_on

    def rate(self, t_s: FloatArray) -> FloatArray:
        return self.load_kw(t_s)

    def values(self, t_s: FloatArray) -> dict[str, FloatArray]:
        t = as_array(t_s)
        load_kw = self.load_kw(t)
        live = load_kw > 0.0
        power_w = load_kw * 1000.0 * self._measurement_noise(t, "power", 0.01)
        cooling_share = np.clip(self.ac_kw_per_c * 8.0 / max(1e-9, self.base_kw + self.occupied_kw), 0.0, 0.5)
        pf = np.clip(0.95 - 0.06 * cooling_share + 0.01 * noise.smooth(stable_key(self.key, "pf"), t, 3600), 0.7, 0.99)
        voltage = (
            229.0
            + 4.0 * noise.smooth(stable_key(self.key, "volt"), t, 2400)
            - 3.0 * load_kw / max(1.0, self.device.rated_kw or 1.0)
        )
        voltage = np.where(live, voltage, 0.0)
        current = np.where(live, power_w / (3.0 * np.maximum(voltage, 1.0) * pf), 0.0)
        return {"power": power_w, "voltage": voltage, "current": current, "power_factor": pf}


# Streetlights -------------------------------------------------------------------------------------------------------


class _Lighting:
    """Shared switching and dimming rules for cabinets and their lamps."""

    def __init__(self, city: City) -> None:
        sl = city.streetlights
        self.led = sl["lamp_models"]["led"]
        self.hps = sl["lamp_models"]["hps"]
        d0, d1 = sl["dim_window"]
        self.dim_start_h = _hours(d0)
        self.dim_end_h = _hours(d1)
        self.control_w = float(sl.get("cabinet_control_w", 0.0))

    def dim_pct(self, t_s: FloatArray) -> FloatArray:
        h = local_hour(t_s)
        dimmed = (h >= self.dim_start_h) | (h < self.dim_end_h)
        return np.where(dimmed, float(self.led["dim_pct"]), 100.0)

    def led_w(self, dim_pct: FloatArray) -> FloatArray:
        floor = float(self.led.get("driver_min_share", 0.1))
        return float(self.led["rated_w"]) * (floor + (1.0 - floor) * dim_pct / 100.0)

    @property
    def hps_w(self) -> float:
        return float(self.hps["rated_w"]) * (1.0 + float(self.hps.get("ballast_loss_share", 0.0)))


def _hours(hhmm: str) -> float:
    hours, minutes = hhmm.split(":")
    return int(hours) + int(minutes) / 60.0


class Cabinet(DeviceModel):
    def __init__(self, device: Device, env: Environment) -> None:
        super().__init__(device, env)
        self.lighting = _Lighting(env.city)
        self.p = device.params

    def power_w(self, t_s: FloatArray) -> FloatArray:
        t = as_array(t_s)
        on = self.env.sun.is_dark(t, self.p["on_offset_s"], self.p["off_offset_s"]).astype(np.float64)
        lit = (
            self.p["n_led_ok"] * self.lighting.led_w(self.lighting.dim_pct(t))
            + self.p["n_hps_ok"] * self.lighting.hps_w
        )
        standby = self.p["n_led"] * float(self.lighting.led.get("standby_w", 0.0))
        return on * lit + (1.0 - on) * standby + self.lighting.control_w

    def rate(self, t_s: FloatArray) -> FloatArray:
        return self.power_w(t_s) / 1000.0

    def values(self, t_s: FloatArray) -> dict[str, FloatArray]:
        t = as_array(t_s)
        power = self.power_w(t) * self._measurement_noise(t, "power", 0.01)
        voltage = 228.0 + 5.0 * noise.smooth(stable_key(self.key, "volt"), t, 2400)
        return {"power": power, "voltage": voltage}


class Lamp(DeviceModel):
    def __init__(self, device: Device, env: Environment) -> None:
        super().__init__(device, env)
        self.lighting = _Lighting(env.city)
        self.p = device.params

    def _on(self, t: FloatArray) -> FloatArray:
        if self.p["failed"]:
            return np.zeros_like(t)
        return self.env.sun.is_dark(t, self.p["on_offset_s"], self.p["off_offset_s"]).astype(np.float64)

    def values(self, t_s: FloatArray) -> dict[str, FloatArray]:
        t = as_array(t_s)
        on = self._on(t)
        level = self.lighting.dim_pct(t) if self.p["led"] else np.full_like(t, 100.0)
        out = {"lamp_on": on, "dimming": on * level}
        if self.p["led"]:
            lit = self.lighting.led_w(level) * self._measurement_noise(t, "power", 0.01)
            out["power"] = on * lit + (1.0 - on) * float(self.lighting.led.get("standby_w", 0.0))
        return out

    def events(self, t0_s: float, t1_s: float) -> FloatArray:
        """Switch-on, switch-off and (LED) dimming instants, rounded up to the second the new state holds."""
        days = np.arange(int(local_day(t0_s)[0]) - 1, int(local_day(t1_s)[0]) + 2)
        midday = days.astype(np.float64) * DAY_S - 7 * 3600 + 12 * 3600
        rise, set_ = self.env.sun.times(midday)
        instants = [set_ + self.p["on_offset_s"], rise + self.p["off_offset_s"]]
        if self.p["led"]:
            local_midnight = days.astype(np.float64) * DAY_S - 7 * 3600
            instants.append(local_midnight + self.lighting.dim_start_h * 3600 + (self.p["on_offset_s"] % 60))
            instants.append(local_midnight + self.lighting.dim_end_h * 3600 + (self.p["on_offset_s"] % 60))
        ev = np.ceil(np.concatenate(instants))
        return np.sort(ev[(ev >= t0_s) & (ev < t1_s)])


# Air quality --------------------------------------------------------------------------------------------------------


class AirStation(DeviceModel):
    def __init__(self, device: Device, env: Environment) -> None:
        super().__init__(device, env)
        self.traffic_weight = float(device.params.get("traffic", 0.5))
        self.plant_km = env.city.distance_to_plant_km(device) if device.registered else 50.0
        u = noise.uniform(stable_key(self.key, "site"), np.arange(3))
        self.pm_factor = 0.9 + 0.2 * float(u[0]) + 0.1 * self.traffic_weight
        self.temp_offset_c = -0.5 + float(u[1])
        self.rh_offset = -3.0 + 6.0 * float(u[2])

    def values(self, t_s: FloatArray) -> dict[str, FloatArray]:
        t = as_array(t_s)
        env = self.env
        k = self.key
        road = self.traffic_weight * traffic(t)
        pm25 = env.pm25_ugm3(t) * self.pm_factor * (1.0 + 0.1 * noise.smooth(stable_key(k, "pm"), t, 6 * 3600))
        pm25 = pm25 * self._measurement_noise(t, "pm25", 0.05) + 3.0 * road
        pm10 = pm25 * (1.5 + 0.15 * noise.smooth(stable_key(k, "pm10"), t, 4 * 3600))
        pm10 = pm10 + monthly(t, _COARSE_DUST_UGM3) + 8.0 * road
        so2_bg = float(env.city.air.get("so2_background_ppb", 2.0))
        so2 = so2_bg * (1.0 + 0.3 * noise.smooth(stable_key(k, "so2"), t, 3 * 3600))
        so2 = so2 + env.so2_plume_ppb(t, stable_key(env.seed, self.device.device_id, "plume"), self.plant_km) * (
            1.0 + 0.15 * noise.smooth(stable_key(k, "plume"), t, 600)
        )
        no2 = (3.0 + 30.0 * road) * (1.0 + 0.2 * noise.smooth(stable_key(k, "no2"), t, 2 * 3600))
        h = local_hour(t)
        sunlight = np.clip(np.sin(np.pi * (h - 7.5) / 10.5), 0.0, 1.0)
        o3 = 8.0 + 48.0 * monthly(t, _O3_SEASON) * sunlight * (
            1.0 + 0.15 * noise.smooth(stable_key(k, "o3"), t, 4 * 3600)
        )
        o3 = np.maximum(1.0, o3 - 0.3 * no2)
        co = 0.2 + 0.9 * road + 0.006 * pm25
        temperature = (
            env.temperature_c(t) + self.temp_offset_c + 0.1 * noise.normal(stable_key(k, "t"), t.astype(np.int64))
        )
        humidity = np.clip(env.humidity_pct(t) + self.rh_offset, 5.0, 100.0)
        return {
            "pm25": pm25,
            "pm10": pm10,
            "so2": so2 * self._measurement_noise(t, "so2", 0.03),
            "no2": no2 * self._measurement_noise(t, "no2", 0.03),
            "o3": o3 * self._measurement_noise(t, "o3", 0.03),
            "co": co * self._measurement_noise(t, "co", 0.03),
            "temperature": temperature,
            "humidity": humidity,
        }


# Fuel ---------------------------------------------------------------------------------------------------------------


class Vehicle(DeviceModel):
    def __init__(self, device: Device, env: Environment) -> None:
        super().__init__(device, env)
        self.p = device.params

    def running(self, t_s: FloatArray) -> FloatArray:
        """1 while the engine runs: inside the duty hours, on a day the vehicle is used, in bursts of trips."""
        t = as_array(t_s)
        p = self.p
        in_hours = window(self.env.hour(t), p["start_h"], p["end_h"])
        day_ok = self.env.working_day(t) if p["days"] == "working" else np.ones(t.shape, dtype=bool)
        used = noise.uniform(stable_key(self.key, "day"), local_day(t)) < p["use_share"]
        trips = (noise.smooth(stable_key(self.key, "trip"), t, 1200) + 1.0) / 2.0 < p["duty"]
        return in_hours * (day_ok & used & trips)

    def rate(self, t_s: FloatArray) -> FloatArray:
        return self.running(t_s) * float(self.p["fuel_lph"])


class Generator(DeviceModel):
    def __init__(self, device: Device, env: Environment) -> None:
        super().__init__(device, env)
        self.p = device.params

    def rate(self, t_s: FloatArray) -> FloatArray:
        """Weekly no-load test at the scheduled slot, full running whenever the site's feeder is out."""
        t = as_array(t_s)
        p = self.p
        test = (weekday(t) == p["test_weekday"]) * window(
            local_hour(t), p["test_h"], p["test_h"] + p["test_min"] / 60.0
        )
        outage = self.env.outage(self.device.site.code, t)
        return np.where(outage > 0, p["run_lph"], test * p["test_lph"])


_MODELS: dict[str, Callable[[Device, Environment], DeviceModel]] = {
    "building": BuildingMeter,
    "cabinet": Cabinet,
    "lamp": Lamp,
    "aq": AirStation,
    "vehicle": Vehicle,
    "generator": Generator,
}


def model_for(device: Device, env: Environment) -> DeviceModel:
    return _MODELS[device.params["model"]](device, env)


# Registers ----------------------------------------------------------------------------------------------------------

KNOT_S = 900
# Sample points inside each 15-minute knot (every 5 minutes): switching is tracked to within a few minutes.
_SUB = np.array([1.0 / 6.0, 0.5, 5.0 / 6.0])
# Evaluate at most this many knots in one vectorised call (memory bound for long anchor spans).
_BLOCK_KNOTS = 20_000


@lru_cache(maxsize=16)
def _knot_times(k0: int, k1: int) -> FloatArray:
    """Sample instants of knots k0..k1-1; cached so devices share one array (and the environment's memo)."""
    ks = np.arange(k0, k1, dtype=np.float64)
    t = ((ks[:, None] + _SUB[None, :]) * KNOT_S).ravel()
    t.flags.writeable = False
    return t


class Register:
    """Cumulative quantity since the anchor: integral of a model's rate on a fixed 5-minute grid.

    The grid is fixed in absolute time, so the value at a time never depends on where a run started. Queries must
    move forward (the simulator's chunks do); the first query integrates once from the anchor.
    """

    def __init__(self, rate: Callable[[FloatArray], FloatArray], anchor_s: float) -> None:
        self._rate = rate
        self._anchor_k = math.floor(anchor_s / KNOT_S)
        self._k: int | None = None  # knot the cumulative value below refers to
        self._cum = 0.0

    def _knot_amounts(self, k0: int, k1: int) -> FloatArray:
        """Amount added in each knot interval k0..k1-1 (canonical units)."""
        parts = []
        for b0 in range(k0, k1, _BLOCK_KNOTS):
            t = _knot_times(b0, min(k1, b0 + _BLOCK_KNOTS))
            rates = self._rate(t).reshape(-1, _SUB.size).mean(axis=1)
            parts.append(rates * (KNOT_S / 3600.0))
        return np.concatenate(parts) if parts else np.zeros(0)

    def _advance_to(self, k: int) -> None:
        if self._k is None or k < self._k:
            lo, hi = sorted((self._anchor_k, k))
            total = float(self._knot_amounts(lo, hi).sum())
            self._cum = total if k >= self._anchor_k else -total
        elif k > self._k:
            self._cum += float(self._knot_amounts(self._k, k).sum())
        self._k = k

    def values(self, t_s: FloatArray) -> FloatArray:
        t = as_array(t_s)
        if t.size == 0:
            return t
        ks = np.floor(t / KNOT_S).astype(np.int64)
        k0, k1 = int(ks.min()), int(ks.max()) + 1
        self._advance_to(k0)
        amounts = self._knot_amounts(k0, k1)
        before = np.concatenate(([0.0], np.cumsum(amounts)))
        idx = ks - k0
        frac = (t - ks * KNOT_S) / KNOT_S
        return self._cum + before[idx] + frac * amounts[idx]
