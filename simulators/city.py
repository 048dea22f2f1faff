"""The virtual municipality: sites and devices read from a city YAML file, and the registry CSV export.

`load_city()` returns a City whose devices carry everything the models and encoders need (kind, cadence, payload
form, units, register spec, physical parameters). Nothing here touches MQTT or the clock.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from lccm.simulators.noise import stable_key, uniform
from lccm.simulators.units import unit_for

DEFAULT_CITY = "lampang.yaml"  # package data: lccm/simulators/cities/

DEVICE_KINDS = ("electricity_meter", "streetlight_cabinet", "lamp", "aq_station", "fuel_meter")
SITE_KINDS = ("building", "street", "station", "fleet", "plant")
PAYLOAD_FORMS = ("plain", "senml")
TIME_FORMATS = ("iso", "epoch")

METRICS_BY_KIND: dict[str, tuple[str, ...]] = {
    "electricity_meter": ("energy", "power", "voltage", "current", "power_factor"),
    "streetlight_cabinet": ("energy", "power", "voltage"),
    "lamp": ("lamp_on", "dimming"),  # LED lamps add power
    "aq_station": ("pm25", "pm10", "so2", "no2", "o3", "co", "temperature", "humidity"),
    "fuel_meter": ("fuel",),
}

CSV_COLUMNS = (
    "site_code",
    "site_name",
    "site_name_th",
    "site_kind",
    "city",
    "lat",
    "lon",
    "floor_area_m2",
    "device_id",
    "device_kind",
    "device_name",
    "cadence_s",
    "rated_kw",
    # The register value at which it wraps to 0, in the metric's canonical unit (kWh, l); blank = no register.
    "register_modulus",
)


@dataclass(frozen=True, slots=True)
class Site:
    code: str
    name: str
    name_th: str
    kind: str
    lat: float
    lon: float
    floor_area_m2: float | None = None


@dataclass(frozen=True, slots=True)
class RegisterSpec:
    """A cumulative register as the device shows it: wraps to 0 after `max`, counts in steps of `resolution`."""

    metric: str  # energy | fuel
    unit: str  # the unit the device sends it in
    max_value: float
    resolution: float
    start: float | None = None  # reading at the city's register anchor; None = drawn from the seed
    near_rollover: bool = False

    @property
    def modulus(self) -> float:
        """Where the register wraps to 0, in the unit it is sent in (max 99999.99 by 0.01 wraps at 100000)."""
        return self.max_value + self.resolution

    @property
    def canonical_modulus(self) -> float:
        """The modulus in the metric's canonical unit (kWh, l): 99999999 Wh by 1 wraps at 100000 kWh."""
        value = self.modulus * unit_for(self.metric, self.unit).scale
        return float(f"{value:.12g}")  # 99999.99 + 0.01 and 1e8 x 0.001 are 100000, not 100000.00000000001

    @property
    def decimals(self) -> int:
        return max(0, -math.floor(math.log10(self.resolution) + 1e-9))


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    kind: str
    name: str
    site: Site
    cadence_s: int
    rated_kw: float | None
    metrics: tuple[str, ...]
    units: dict[str, str | None]  # metric -> SenML unit it is sent in (None = canonical)
    payload: str = "plain"
    time_format: str = "epoch"
    batch_records: int = 1
    include_device_id: bool = True
    lamp_bool: bool = False
    bn_style: str = "plain"  # plain: "<id>:" | urn: "urn:dev:lccm:<id>:"
    register: RegisterSpec | None = None
    params: dict[str, Any] = field(default_factory=dict)
    registered: bool = True

    def unit(self, metric: str) -> str | None:
        return self.units.get(metric)


@dataclass(frozen=True, slots=True)
class PowerPlant:
    name: str
    name_th: str
    lat: float
    lon: float
    near_km: float


@dataclass
class City:
    slug: str
    name: str
    name_th: str
    lat: float
    lon: float
    id_prefix: str
    register_anchor_s: float
    office_hours: tuple[float, float]
    power_plant: PowerPlant
    climate: dict[str, Any]
    air: dict[str, Any]
    grid: dict[str, Any]
    streetlights: dict[str, Any]
    fault_config: dict[str, Any]
    sites: list[Site]
    devices: list[Device]
    rogue_devices: list[Device]
    source: Path

    def __post_init__(self) -> None:
        self._by_id = {d.device_id: d for d in self.devices}

    def device(self, device_id: str) -> Device:
        return self._by_id[device_id]

    def has_device(self, device_id: str) -> bool:
        return device_id in self._by_id

    def devices_of(self, kind: str) -> list[Device]:
        return [d for d in self.devices if d.kind == kind]

    def counts(self) -> dict[str, int]:
        out: Counter[str] = Counter(d.kind for d in self.devices)
        out.update(f"site:{s.kind}" for s in self.sites)
        out["municipal_buildings"] = sum(1 for s in self.sites if s.kind in ("building", "plant"))
        out["generators"] = sum(1 for d in self.devices if d.params.get("model") == "generator")
        out["vehicles"] = sum(1 for d in self.devices if d.params.get("model") == "vehicle")
        out["aq_near_plant"] = sum(1 for d in self.devices_of("aq_station") if self.near_plant(d))
        return dict(out)

    def distance_to_plant_km(self, device: Device) -> float:
        return haversine_km(device.site.lat, device.site.lon, self.power_plant.lat, self.power_plant.lon)

    def near_plant(self, device: Device) -> bool:
        return self.distance_to_plant_km(device) <= self.power_plant.near_km

    def devices_csv(self, path: Path | str, register_modulus: bool = True) -> int:
        """Write the device registry CSV for `lccm devices import`; one row per device. Returns the row count.

        register_modulus=False leaves out the register_modulus column (a registry without rollover information).
        """
        columns = CSV_COLUMNS if register_modulus else tuple(c for c in CSV_COLUMNS if c != "register_modulus")
        rows = [self.csv_row(d) for d in self.devices]
        with Path(path).open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        return len(rows)

    def csv_row(self, d: Device) -> dict[str, str]:
        row = {
            "site_code": d.site.code,
            "site_name": d.site.name,
            "site_name_th": d.site.name_th,
            "site_kind": d.site.kind,
            "city": self.slug,
            "lat": f"{d.site.lat:.5f}",
            "lon": f"{d.site.lon:.5f}",
            "floor_area_m2": _num(d.site.floor_area_m2),
            "device_id": d.device_id,
            "device_kind": d.kind,
            "device_name": d.name,
            "cadence_s": str(d.cadence_s),
            "rated_kw": _num(d.rated_kw),
            # Electricity meters, streetlight cabinets and fuel meters have a register; lamps and stations none.
            "register_modulus": _num(d.register.canonical_modulus) if d.register is not None else "",
        }
        return row


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def parse_hhmm(text: str) -> float:
    """'16:30' -> 16.5 hours; '24:00' is allowed as the end of the day."""
    hours, minutes = text.split(":")
    return int(hours) + int(minutes) / 60.0


def load_city(path: Path | str | None = None) -> City:
    """Load a city YAML file (None = the packaged Lampang city)."""
    if path is None:
        packaged = resources.files(__package__).joinpath("cities", DEFAULT_CITY)
        return _CityBuilder(yaml.safe_load(packaged.read_text(encoding="utf-8")), Path(str(packaged))).build()
    source = Path(path)
    with source.open(encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    return _CityBuilder(raw, source).build()


class _CityBuilder:
    """Turns the YAML document into sites and devices; one method per section keeps each rule in one place."""

    def __init__(self, raw: dict[str, Any], source: Path) -> None:
        self.raw = raw
        self.source = source
        city = raw["city"]
        self.slug: str = city["slug"]
        self.prefix: str = city["id_prefix"]
        self.defaults: dict[str, dict[str, Any]] = raw.get("defaults", {})
        self.sites: list[Site] = []
        self.devices: list[Device] = []
        self.site_by_short: dict[str, Site] = {}

    def build(self) -> City:
        city = self.raw["city"]
        anchor = dt.datetime.fromisoformat(str(city["register_anchor"]))
        if anchor.tzinfo is None:
            raise ValueError("city.register_anchor needs a UTC offset")
        hours = city.get("office_hours", ["08:30", "16:30"])
        self._buildings()
        self._streetlights()
        self._aq_stations()
        self._fleet()
        self._generators()
        plant = self.raw["power_plant"]
        ids = [d.device_id for d in self.devices]
        duplicates = [i for i, n in Counter(ids).items() if n > 1]
        if duplicates:
            raise ValueError(f"duplicate device ids in {self.source}: {duplicates[:5]}")
        return City(
            slug=self.slug,
            name=city["name"],
            name_th=city.get("name_th", ""),
            lat=float(city["lat"]),
            lon=float(city["lon"]),
            id_prefix=self.prefix,
            register_anchor_s=anchor.timestamp(),
            office_hours=(parse_hhmm(hours[0]), parse_hhmm(hours[1])),
            power_plant=PowerPlant(
                plant["name"], plant.get("name_th", ""), plant["lat"], plant["lon"], plant.get("near_km", 10.0)
            ),
            climate=self.raw["climate"],
            air=self.raw["air"],
            grid=self.raw.get("grid", {}),
            streetlights=self.raw["streetlights"],
            fault_config=self.raw.get("faults", {}),
            sites=self.sites,
            devices=self.devices,
            rogue_devices=self._rogues(),
            source=self.source,
        )

    def _site(self, short: str, name: str, name_th: str, kind: str, lat: float, lon: float, area: Any) -> Site:
        if kind not in SITE_KINDS:
            raise ValueError(f"site {short}: kind {kind!r} not in {SITE_KINDS}")
        site = Site(f"{self.prefix}-{short}", name, name_th, kind, float(lat), float(lon), _opt_float(area))
        self.sites.append(site)
        self.site_by_short[short] = site
        return site

    def _device(
        self,
        device_id: str,
        kind: str,
        name: str,
        site: Site,
        spec: dict[str, Any],
        *,
        rated_kw: float | None,
        metrics: tuple[str, ...] | None = None,
        register: RegisterSpec | None = None,
        params: dict[str, Any] | None = None,
        registered: bool = True,
    ) -> Device:
        opts = {**self.defaults.get(kind, {}), **{k: v for k, v in spec.items() if v is not None}}
        metrics = metrics or METRICS_BY_KIND[kind]
        units: dict[str, str | None] = {m: None for m in metrics}
        units.update(opts.get("units", {}) or {})
        for metric, unit in units.items():
            unit_for(metric, unit)  # fail at load time, not mid-run
        payload = opts.get("payload", "plain")
        time_format = opts.get("time_format", "epoch")
        if payload not in PAYLOAD_FORMS or time_format not in TIME_FORMATS:
            raise ValueError(f"{device_id}: payload {payload!r} / time_format {time_format!r} not supported")
        cadence = int(opts.get("cadence_s", 300))
        batch = int(opts.get("batch_records", 1))
        if 21600 % (cadence * batch):
            raise ValueError(f"{device_id}: cadence_s x batch_records must divide 6 hours")
        return Device(
            device_id=device_id,
            kind=kind,
            name=name,
            site=site,
            cadence_s=cadence,
            rated_kw=rated_kw,
            metrics=tuple(metrics),
            units=units,
            payload=payload,
            time_format=time_format,
            batch_records=batch,
            include_device_id=bool(opts.get("include_device_id", True)),
            lamp_bool=bool(opts.get("lamp_bool", False)),
            bn_style=opts.get("bn_style", "plain"),
            register=register,
            params=params or {},
            registered=registered,
        )

    def _register(self, metric: str, unit: str | None, spec: dict[str, Any] | None, **extra: Any) -> RegisterSpec:
        spec = spec or {}
        unit_name = unit_for(metric, unit).unit
        return RegisterSpec(
            metric=metric,
            unit=unit_name,
            max_value=float(spec.get("max", 999999.9)),
            resolution=float(spec.get("resolution", 0.1)),
            start=_opt_float(spec.get("start")),
            near_rollover=bool(extra.get("near_rollover", False)),
        )

    def _buildings(self) -> None:
        for b in self.raw.get("buildings", []):
            site = self._site(
                b["code"],
                b["name"],
                b.get("name_th", ""),
                b.get("site_kind", "building"),
                b["lat"],
                b["lon"],
                b.get("floor_area_m2"),
            )
            for m in b["meters"]:
                device_id = f"{site.code}-{m['suffix']}"
                units = m.get("units", {}) or {}
                params = {
                    "model": "building",
                    "profile": b["profile"],
                    "base_kw": float(m["base_kw"]),
                    "occupied_kw": float(m.get("occupied_kw", 0.0)),
                    "ac_kw_per_c": float(m.get("ac_kw_per_c", 0.0)),
                }
                register = self._register(
                    "energy", units.get("energy"), m.get("register"), near_rollover=m.get("near_rollover", False)
                )
                self.devices.append(
                    self._device(
                        device_id,
                        "electricity_meter",
                        f"{b['name']} {m.get('name', 'main meter')}",
                        site,
                        _device_opts(m),
                        rated_kw=float(m["rated_kw"]),
                        register=register,
                        params=params,
                    )
                )

    def _streetlights(self) -> None:
        sl = self.raw["streetlights"]
        models = sl["lamp_models"]
        on_lo, on_hi = sl["on_offset_min"]
        off_lo, off_hi = sl["off_offset_min"]
        for cab in sl["cabinets"]:
            code = cab["code"]
            site = self._site(
                f"SL-{code}",
                f"Streetlights {cab['road']} segment {cab['segment']} (cabinet {code})",
                f"ไฟถนน {cab['road_th']} ช่วงที่ {cab['segment']} (ตู้ {code})",
                "street",
                cab["lat"],
                cab["lon"],
                None,
            )
            key = stable_key(site.code, "switching")
            on_offset_s = round(60 * (on_lo + (on_hi - on_lo) * float(uniform(key, 0)[0])))
            off_offset_s = round(60 * (off_lo + (off_hi - off_lo) * float(uniform(key, 1)[0])))
            lamps = self._lamps(cab, site, models, sl, on_offset_s, off_offset_s)
            n_led = sum(1 for lp in lamps if lp.params["led"])
            cabinet_id = site.code
            rated_w = n_led * models["led"]["rated_w"] + (len(lamps) - n_led) * models["hps"]["rated_w"] * (
                1 + models["hps"].get("ballast_loss_share", 0.0)
            )
            params = {
                "model": "cabinet",
                "on_offset_s": on_offset_s,
                "off_offset_s": off_offset_s,
                "n_led_ok": sum(1 for lp in lamps if lp.params["led"] and not lp.params["failed"]),
                "n_hps_ok": sum(1 for lp in lamps if not lp.params["led"] and not lp.params["failed"]),
                "n_led": n_led,
            }
            self.devices.append(
                self._device(
                    cabinet_id,
                    "streetlight_cabinet",
                    f"Streetlight cabinet {code} {cab['road']}",
                    site,
                    _device_opts(cab.get("cabinet", {})),
                    rated_kw=round(rated_w / 1000.0 + sl.get("cabinet_control_w", 0) / 1000.0, 3),
                    register=self._register("energy", None, sl.get("cabinet_register")),
                    params=params,
                )
            )
            self.devices.extend(lamps)

    def _lamps(
        self,
        cab: dict[str, Any],
        site: Site,
        models: dict[str, Any],
        sl: dict[str, Any],
        on_offset_s: int,
        off_offset_s: int,
    ) -> list[Device]:
        n = int(cab["lamps"])
        n_led = round(n * float(cab.get("led_share", 1.0)))
        lamps = []
        for i in range(n):
            lamp_id = f"{site.code}-L{i + 1:04d}"
            led = i < n_led
            failed = float(uniform(stable_key(lamp_id, "failed"), 0)[0]) < float(sl.get("failed_share", 0.0))
            delay_s = int(float(uniform(stable_key(lamp_id, "relay"), 0)[0]) * 20)
            model = models["led" if led else "hps"]
            metrics = ("lamp_on", "dimming", "power") if led else ("lamp_on", "dimming")
            spec = {"payload": cab.get("lamp_payload"), "lamp_bool": cab.get("lamp_bool")}
            lamps.append(
                self._device(
                    lamp_id,
                    "lamp",
                    f"{'LED' if led else 'HPS'} {model['rated_w']} W lamp {i + 1} on {cab['road']}",
                    site,
                    spec,
                    rated_kw=model["rated_w"] / 1000.0,
                    metrics=metrics,
                    params={
                        "model": "lamp",
                        "led": led,
                        "failed": failed,
                        "on_offset_s": on_offset_s + delay_s,
                        "off_offset_s": off_offset_s + delay_s,
                    },
                )
            )
        return lamps

    def _aq_stations(self) -> None:
        for st in self.raw.get("aq_stations", []):
            site = self._site(st["code"], st["name"], st.get("name_th", ""), "station", st["lat"], st["lon"], None)
            self.devices.append(
                self._device(
                    site.code,
                    "aq_station",
                    st["name"],
                    site,
                    _device_opts(st),
                    rated_kw=None,
                    params={"model": "aq", "traffic": float(st.get("traffic", 0.5))},
                )
            )

    def _fleet(self) -> None:
        fleet = self.raw.get("fleet")
        if not fleet:
            return
        s = fleet["site"]
        site = self._site(s["code"], s["name"], s.get("name_th", ""), "fleet", s["lat"], s["lon"], None)
        number = 0
        for vt in fleet["vehicle_types"]:
            for k in range(int(vt["count"])):
                number += 1
                start_h, end_h = (parse_hhmm(h) for h in vt["hours"])
                self.devices.append(
                    self._device(
                        f"{self.prefix}-FL-V{number:02d}",
                        "fuel_meter",
                        f"{vt['name']} {k + 1}",
                        site,
                        _device_opts(vt),
                        rated_kw=None,
                        register=self._register("fuel", (vt.get("units") or {}).get("fuel"), fleet["fuel_register"]),
                        params={
                            "model": "vehicle",
                            "vehicle_type": vt["type"],
                            "start_h": start_h,
                            "end_h": end_h,
                            "days": vt.get("days", "working"),
                            "use_share": float(vt.get("use_share", 0.8)),
                            "duty": float(vt.get("duty", 0.4)),
                            "fuel_lph": float(vt["fuel_lph"]),
                        },
                    )
                )

    def _generators(self) -> None:
        for g in self.raw.get("generators", []):
            site = self.site_by_short[g["site"]]
            self.devices.append(
                self._device(
                    f"{self.prefix}-{g['code']}",
                    "fuel_meter",
                    g["name"],
                    site,
                    _device_opts(g),
                    rated_kw=float(g["rated_kw"]),
                    register=self._register("fuel", (g.get("units") or {}).get("fuel"), g.get("register")),
                    params={
                        "model": "generator",
                        "test_weekday": int(g["test_weekday"]),
                        "test_h": parse_hhmm(g["test_time"]),
                        "test_min": float(g["test_min"]),
                        "test_lph": float(g["test_lph"]),
                        "run_lph": float(g["run_lph"]),
                    },
                )
            )

    def _rogues(self) -> list[Device]:
        """Unregistered devices: look like ordinary devices of their kind, but are absent from the registry CSV."""
        out = []
        for r in self.raw.get("rogue_devices", []) or []:
            kind = r["kind"]
            site = Site(f"{self.prefix}-ROGUE", "Unregistered device", "", "building", 18.29, 99.49, None)
            register = self._register("energy", None, None) if kind == "electricity_meter" else None
            params: dict[str, Any]
            if kind == "electricity_meter":
                params = {
                    "model": "building",
                    "profile": "office",
                    "base_kw": 3.0,
                    "occupied_kw": 8.0,
                    "ac_kw_per_c": 0.5,
                }
            elif kind == "aq_station":
                params = {"model": "aq", "traffic": 0.5}
            else:
                raise ValueError(f"rogue device kind {kind!r}: only electricity_meter and aq_station")
            out.append(
                self._device(
                    r["device_id"],
                    kind,
                    "rogue",
                    site,
                    _device_opts(r),
                    rated_kw=None,
                    register=register,
                    params=params,
                    registered=False,
                )
            )
        return out


_DEVICE_OPTION_KEYS = (
    "cadence_s",
    "payload",
    "time_format",
    "batch_records",
    "units",
    "include_device_id",
    "lamp_bool",
    "bn_style",
)


def _device_opts(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry[k] for k in _DEVICE_OPTION_KEYS if k in entry}


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def select_devices(devices: Iterable[Device], patterns: Iterable[str]) -> list[Device]:
    """Devices whose id matches any of the shell-style patterns (fnmatch, case-sensitive)."""
    pats = list(patterns)
    return [d for d in devices if any(fnmatchcase(d.device_id, p) for p in pats)]
