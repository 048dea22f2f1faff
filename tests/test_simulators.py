"""The virtual city: physics, determinism, payloads against the contract, fault injection, MQTT publishing.

The contract checks here are written from docs/contract.md on purpose: they share no code with ingest/ (which is
what the simulator exists to test) nor with the simulator's own encoders.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import json
import math
import re
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astral import Observer
from astral.sun import sunrise, sunset

from lccm.simulators.city import CSV_COLUMNS, City, load_city
from lccm.simulators.environment import Environment
from lccm.simulators.faults import MALFORMED_REASONS
from lccm.simulators.listen import Collector
from lccm.simulators.models import model_for
from lccm.simulators.run import GroundTruth, SimConfig, generate, run_simulation
from lccm.simulators.truth import Message

ICT = dt.timezone(dt.timedelta(hours=7))
T0 = dt.datetime(2026, 11, 3, 6, 0, tzinfo=ICT)  # a Tuesday


@pytest.fixture(scope="module")
def city() -> City:
    return load_city()


def at(*args: int) -> float:
    return dt.datetime(*args, tzinfo=ICT).timestamp()  # type: ignore[arg-type,misc]


def cfg(**kw: Any) -> SimConfig:
    base: dict[str, Any] = {"start": T0, "end": T0 + dt.timedelta(hours=1), "seed": 7}
    base.update(kw)
    return SimConfig(**base)


def up(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m.kind == "up"]


# An independent reading of the contract ------------------------------------------------------------------------------

_MV = 24.45
# metric -> (canonical unit, {SenML unit: (key suffix, scale)}, (min, max))
CATALOGUE: dict[str, tuple[str, dict[str, tuple[str, float]], tuple[float, float]]] = {
    "energy": (
        "kWh",
        {"kWh": ("kwh", 1.0), "Wh": ("wh", 0.001), "MWh": ("mwh", 1000.0), "J": ("j", 1 / 3.6e6)},
        (0, 1e12),
    ),
    "power": ("W", {"W": ("w", 1.0), "kW": ("kw", 1000.0)}, (-1e9, 1e9)),
    "voltage": ("V", {"V": ("v", 1.0)}, (0, 1e6)),
    "current": ("A", {"A": ("a", 1.0)}, (0, 1e5)),
    "power_factor": ("/", {"/": ("", 1.0)}, (-1, 1)),
    "lamp_on": ("", {"": ("", 1.0)}, (0, 1)),
    "dimming": ("%", {"%": ("pct", 1.0)}, (0, 100)),
    "fuel": ("l", {"l": ("l", 1.0), "L": ("litre", 1.0), "m3": ("m3", 1000.0)}, (0, 1e12)),
    "pm25": ("ug/m3", {"ug/m3": ("ugm3", 1.0)}, (0, 5000)),
    "pm10": ("ug/m3", {"ug/m3": ("ugm3", 1.0)}, (0, 10000)),
    "so2": ("ppb", {"ppb": ("ppb", 1.0), "ppm": ("ppm", 1000.0), "ug/m3": ("ugm3", _MV / 64.066)}, (0, 1e5)),
    "no2": ("ppb", {"ppb": ("ppb", 1.0), "ppm": ("ppm", 1000.0), "ug/m3": ("ugm3", _MV / 46.0055)}, (0, 1e5)),
    "o3": ("ppb", {"ppb": ("ppb", 1.0), "ppm": ("ppm", 1000.0), "ug/m3": ("ugm3", _MV / 47.9982)}, (0, 1e5)),
    "co": ("ppm", {"ppm": ("ppm", 1.0), "ppb": ("ppb", 0.001), "mg/m3": ("mgm3", _MV / 28.010)}, (0, 1e4)),
    "temperature": ("Cel", {"Cel": ("c", 1.0)}, (-60, 70)),
    "humidity": ("%RH", {"%RH": ("pct", 1.0)}, (0, 100)),
}
KEYS = {
    (f"{metric}_{suffix}" if suffix else metric): (metric, scale)
    for metric, (_c, units, _r) in CATALOGUE.items()
    for suffix, scale in units.values()
}
SLUG = re.compile(r"^[a-z0-9-]{1,32}$")
DEVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SENML_FIELDS = {"bn", "bt", "bu", "bv", "bver", "n", "u", "v", "vb", "t", "seq"}


class Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def classify(
    topic: str, payload: bytes, registered: set[str], now_s: float, city: str = "lampang"
) -> tuple[str | None, set]:
    """(dead-letter reason or None, readings) for one message, as docs/contract.md describes; every registered
    device is in ``city``."""
    try:
        return None, _decode(topic, payload, registered, now_s, city)
    except Refused as refused:
        return refused.reason, set()


def _decode(topic: str, payload: bytes, registered: set[str], now_s: float, city: str) -> set:
    parts = topic.split("/")
    if len(parts) != 5 or parts[:2] != ["lccm", "v1"] or not SLUG.match(parts[2]) or not DEVICE.match(parts[3]):
        raise Refused("bad_topic")
    device, leaf = parts[3], parts[4]
    if device in registered and parts[2] != city:
        raise Refused("city_mismatch")
    if leaf == "status":
        if payload not in (b"online", b"offline"):
            raise Refused("bad_status")
        return set()
    if leaf != "up":
        raise Refused("bad_topic")
    if len(payload) > 262_144:
        raise Refused("oversized_payload")
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Refused("bad_json") from None
    if device not in registered:
        raise Refused("unknown_device")
    rows = _senml(doc, device) if isinstance(doc, list) else _plain(doc, device)
    if not rows:
        raise Refused("bad_payload")
    if len(rows) > 5000:
        raise Refused("too_many_readings")
    out = set()
    for metric, ts_us, value in rows:
        if not math.isfinite(value):
            raise Refused("non_finite_value")
        lo, hi = CATALOGUE[metric][2]
        if not lo <= value <= hi:
            raise Refused("out_of_range")
        if ts_us > (now_s + 300) * 1e6:
            raise Refused("future_time")
        out.add((device, metric, ts_us, value))
    return out


def _plain(doc: Any, device: str) -> list[tuple[str, int, float]]:
    if not isinstance(doc, dict):
        raise Refused("bad_payload")
    if "device_id" in doc and doc["device_id"] != device:
        raise Refused("device_mismatch")
    if "records" in doc:
        records = doc["records"]
    elif "ts" in doc and "values" in doc:
        records = [{"ts": doc["ts"], "values": doc["values"]}]
    else:
        raise Refused("bad_payload")
    rows = []
    for rec in records:
        if not isinstance(rec, dict) or "ts" not in rec or not isinstance(rec.get("values"), dict):
            raise Refused("bad_payload")
        ts_us = _time_us(rec["ts"])
        for key, value in rec["values"].items():
            if key not in KEYS:
                stem = key.rsplit("_", 1)[0]
                raise Refused("unknown_unit" if stem in CATALOGUE else "unknown_metric")
            metric, scale = KEYS[key]
            if isinstance(value, bool):
                if metric != "lamp_on":
                    raise Refused("bad_payload")
                value = float(value)
            if not isinstance(value, int | float):
                raise Refused("bad_payload")
            rows.append((metric, ts_us, float(value) * scale))
    return rows


def _time_us(ts: Any) -> int:
    if isinstance(ts, bool):
        raise Refused("bad_time")
    if isinstance(ts, int | float):
        return round(ts * 1_000_000)
    if isinstance(ts, str):
        try:
            parsed = dt.datetime.fromisoformat(ts)
        except ValueError:
            raise Refused("bad_time") from None
        if parsed.tzinfo is None:
            raise Refused("naive_time")
        return (parsed - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    raise Refused("bad_time")


def _senml(pack: list, device: str) -> list[tuple[str, int, float]]:
    rows = []
    bt = 0.0
    for i, rec in enumerate(pack):
        if not isinstance(rec, dict):
            raise Refused("bad_senml")
        for key in rec:
            if key in ("vs", "vd", "s") or key.endswith("_"):
                raise Refused("unknown_field")
            if key not in SENML_FIELDS or (key == "seq" and i > 0):
                raise Refused("bad_senml")
        if "bn" in rec and rec["bn"] not in (f"{device}:", f"urn:dev:lccm:{device}:"):
            raise Refused("device_mismatch")
        if "bver" in rec and rec["bver"] > 10:  # RFC 8428 section 4.4; this system implements version 10
            raise Refused("unsupported_version")
        bt = float(rec.get("bt", bt))
        if "n" not in rec or ("v" not in rec and "vb" not in rec):
            raise Refused("bad_senml")
        metric = rec["n"]
        if metric not in CATALOGUE:
            raise Refused("unknown_metric")
        unit = rec.get("u", CATALOGUE[metric][0])
        if unit not in CATALOGUE[metric][1]:
            raise Refused("unknown_unit")
        value = float(rec["vb"]) if "vb" in rec else rec["v"]
        when = bt + float(rec.get("t", 0))
        if when < 2**28:
            raise Refused("bad_time")
        rows.append((metric, round(when * 1_000_000), float(value) * CATALOGUE[metric][1][unit][1]))
    return rows


def registered_ids(city: City) -> set[str]:
    return {d.device_id for d in city.devices}


# The city ------------------------------------------------------------------------------------------------------------


def test_city_has_the_expected_assets(city: City) -> None:
    counts = city.counts()
    assert 22 <= counts["municipal_buildings"] <= 28
    assert 1900 <= counts["lamp"] <= 2100
    assert 36 <= counts["streetlight_cabinet"] <= 44
    assert counts["aq_station"] == 6 and counts["aq_near_plant"] == 2
    assert 27 <= counts["vehicles"] <= 33
    assert counts["generators"] == 4
    assert city.slug == "lampang" and abs(city.lat - 18.29) < 0.01 and abs(city.lon - 99.49) < 0.01
    lamps = city.devices_of("lamp")
    assert {lp.params["led"] for lp in lamps} == {True, False}  # LED and high-pressure sodium
    assert {d.payload for d in city.devices} == {"plain", "senml"}


def test_registry_csv_has_one_row_per_device(city: City, tmp_path: Path) -> None:
    path = tmp_path / "devices.csv"
    assert city.devices_csv(path) == len(city.devices)
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert len(rows) == len({r["device_id"] for r in rows}) == len(city.devices)
    assert {r["device_kind"] for r in rows} == {
        "electricity_meter",
        "streetlight_cabinet",
        "lamp",
        "aq_station",
        "fuel_meter",
    }
    assert {r["site_kind"] for r in rows} == {"building", "street", "station", "fleet", "plant"}
    by_id = {r["device_id"]: r for r in rows}
    assert by_id["LPG-TH-01-M1"]["site_name_th"] == "สำนักงานเทศบาลนครลำปาง"
    assert by_id["LPG-SL-C01-L0001"]["site_code"] == by_id["LPG-SL-C01"]["site_code"]
    for known in ("LPG-TH-01-M1", "LPG-SL-C01", "LPG-SL-C01-L0001", "LPG-AQ-01", "LPG-FL-V01", "LPG-GEN-01"):
        assert known in by_id
    assert all(r["city"] == "lampang" and float(r["cadence_s"]) > 0 for r in rows)
    assert not {d.device_id for d in city.rogue_devices} & set(by_id)
    # The register's wrap point in the canonical unit: 999999.9 kWh by 0.1, 99999999 Wh by 1, 99999.99 kWh by 0.01.
    assert by_id["LPG-TH-01-M1"]["register_modulus"] == "1000000"
    assert by_id["LPG-TH-01-M2"]["register_modulus"] == "100000"
    assert by_id["LPG-WP-01-M1"]["register_modulus"] == "100000"
    assert by_id["LPG-FL-V01"]["register_modulus"] == by_id["LPG-GEN-01"]["register_modulus"] == "1000000"
    for r in rows:
        has_register = r["device_kind"] in ("electricity_meter", "streetlight_cabinet", "fuel_meter")
        assert (r["register_modulus"] != "") == has_register, r
    for d in city.devices:
        if d.register is not None:  # wraps where the stream wraps it
            scale = 0.001 if d.register.unit == "Wh" else 1.0
            assert float(by_id[d.device_id]["register_modulus"]) == pytest.approx(d.register.modulus * scale)
    lean = tmp_path / "lean.csv"
    city.devices_csv(lean, register_modulus=False)
    with lean.open(encoding="utf-8") as fh:
        assert tuple(next(csv.reader(fh))) == CSV_COLUMNS[:-1]


# Determinism ---------------------------------------------------------------------------------------------------------

SAMPLE = ["LPG-TH-01-M*", "LPG-SL-C05", "LPG-SL-C05-L000[1-3]", "LPG-AQ-0[56]", "LPG-FL-V0[12]", "LPG-GEN-01"]


def test_same_seed_gives_identical_bytes(city: City) -> None:
    config = cfg(device_filter=SAMPLE, faults=True, end=T0 + dt.timedelta(hours=6))
    first = [(m.topic, m.payload, m.published) for m in generate(city, config)]
    second = [(m.topic, m.payload, m.published) for m in generate(city, config)]
    assert first == second and len(first) > 300
    other = [(m.topic, m.payload, m.published) for m in generate(city, cfg(**{**config.__dict__, "seed": 8}))]
    assert other != first


def test_a_device_sends_the_same_bytes_alone_or_in_company(city: City) -> None:
    def sent(config: SimConfig) -> list[bytes]:
        return [m.payload for m in up(list(generate(city, config))) if m.device_id == "LPG-AQ-05"]

    alone = sent(cfg(device_filter=["LPG-AQ-05"], faults=True))
    together = sent(cfg(device_filter=SAMPLE, faults=True))
    assert alone == together and alone


# Physics -------------------------------------------------------------------------------------------------------------


def test_streetlights_off_at_noon_on_at_midnight(city: City) -> None:
    env = Environment(city, 7)
    lamps = city.devices_of("lamp")[::10]
    noon = np.array([at(2026, 11, 3, 12, 0), at(2026, 6, 15, 12, 0)])
    midnight = np.array([at(2026, 11, 4, 0, 0), at(2026, 6, 16, 0, 0)])
    off = [model_for(lp, env).values(noon)["lamp_on"] for lp in lamps]
    on = [model_for(lp, env).values(midnight)["lamp_on"] for lp in lamps]
    assert np.all(np.array(off) == 0)
    assert np.mean(on) > 0.95  # ~1 % of lamps are burnt out


def test_streetlights_switch_within_minutes_of_sunset_and_sunrise(city: City) -> None:
    day = dt.date(2026, 11, 3)
    observer = Observer(latitude=city.lat, longitude=city.lon)
    dusk, dawn = sunset(observer, day, tzinfo=ICT), sunrise(observer, day + dt.timedelta(days=1), tzinfo=ICT)
    config = cfg(
        device_filter=["LPG-SL-C0[2-4]-L000[1-2]"],
        start=dt.datetime(2026, 11, 3, 16, 0, tzinfo=ICT),
        end=dt.datetime(2026, 11, 4, 9, 0, tzinfo=ICT),
    )
    states: dict[str, list[tuple[int, float]]] = {}
    for m in up(list(generate(city, config))):
        states.setdefault(m.device_id, []).extend((r[2], r[3]) for r in m.readings if r[1] == "lamp_on")
    assert len(states) == 6
    for series in states.values():
        series.sort()
        switches = [t for (t, v), (_, prev) in zip(series[1:], series, strict=False) if v != prev]
        assert len(switches) == 2, series
        on_at = dt.datetime.fromtimestamp(switches[0] / 1e6, ICT)
        off_at = dt.datetime.fromtimestamp(switches[1] / 1e6, ICT)
        assert abs((on_at - dusk).total_seconds()) < 15 * 60
        assert abs((off_at - dawn).total_seconds()) < 15 * 60


def test_office_load_follows_working_days_and_thai_holidays(city: City) -> None:
    env = Environment(city, 7)
    meter = model_for(city.device("LPG-TH-01-M1"), env)
    tuesday, sunday, constitution_day = at(2026, 12, 8, 10, 0), at(2026, 12, 13, 10, 0), at(2026, 12, 10, 10, 0)
    power = meter.values(np.array([tuesday, sunday, constitution_day]))["power"]
    assert power[0] > 2 * power[1] and power[0] > 2 * power[2]
    # Air-conditioning follows temperature: the same hour in hot April draws more than in cool December.
    april = meter.values(np.array([at(2026, 4, 21, 14, 0)]))["power"][0]
    december = meter.values(np.array([at(2026, 12, 15, 14, 0)]))["power"][0]
    assert april > december


def test_pm25_is_worse_in_the_burning_season_and_so2_comes_in_plumes_near_the_plant(city: City) -> None:
    env = Environment(city, 7)
    march = np.arange(at(2026, 3, 1, 0, 0), at(2026, 4, 1, 0, 0), 3600.0)
    july = np.arange(at(2026, 7, 1, 0, 0), at(2026, 8, 1, 0, 0), 3600.0)
    near: list[float] = []
    far: list[float] = []
    for station in city.devices_of("aq_station"):
        model = model_for(station, env)
        in_march, in_july = model.values(march), model.values(july)
        assert in_march["pm25"].mean() > 2 * in_july["pm25"].mean()
        (near if city.near_plant(station) else far).append(in_march["so2"].max())
    episodes = env.smoke_episodes_ugm3(np.arange(at(2026, 1, 1, 0, 0), at(2026, 5, 1, 0, 0), 3600.0))
    assert 60 < episodes.max() < 260  # multi-day episodes reaching 100-250 µg/m3 with the seasonal base
    assert min(near) > 40 and max(far) < 0.5 * min(near)


def test_registers_roll_over_at_their_modulus(city: City) -> None:
    messages = up(list(generate(city, cfg(device_filter=["LPG-WP-01-M1", "LPG-WW-01-M1"]))))
    for device_id in ("LPG-WP-01-M1", "LPG-WW-01-M1"):
        register = city.device(device_id).register
        assert register is not None
        values = [r[3] for m in messages if m.device_id == device_id for r in m.readings if r[1] == "energy"]
        sent = [v / (0.001 if register.unit == "Wh" else 1.0) for v in values]
        drops = [i for i in range(1, len(sent)) if sent[i] < sent[i - 1]]
        assert len(drops) == 1, sent
        i = drops[0]
        assert max(sent) <= register.max_value
        # Wrapped, not reset: the step across the wrap equals a normal step.
        across = sent[i] + register.modulus - sent[i - 1]
        assert 0 < across < 3 * (sent[i + 1] - sent[i])


def test_registers_agree_across_runs_with_different_starts(city: City) -> None:
    def energy(start: dt.datetime) -> dict[int, float]:
        config = cfg(device_filter=["LPG-TH-01-M1", "LPG-SL-C07"], start=start, end=start + dt.timedelta(hours=3))
        return {r[2]: r[3] for m in up(list(generate(city, config))) for r in m.readings if r[1] == "energy"}

    early, late = energy(T0), energy(T0 + dt.timedelta(hours=1, minutes=30))
    shared = set(early) & set(late)
    assert len(shared) > 10
    assert all(abs(early[t] - late[t]) < 0.11 for t in shared)


# Payloads against the contract ---------------------------------------------------------------------------------------

EVERY_FORM = [
    "LPG-TH-01-M[12]",  # plain ISO; SenML in Wh / kW
    "LPG-OF-02-M1",  # plain records, epoch
    "LPG-SCH-04-M1",  # power in kW
    "LPG-SL-C01",  # cabinet SenML batches
    "LPG-SL-C01-L0001",  # HPS lamp, SenML
    "LPG-SL-C05-L0001",  # LED lamp, true/false
    "LPG-SL-C07-L0001",  # LED lamp SenML with vb
    "LPG-AQ-0[2456]",  # plain ISO, plain records, SO2 in ppm, µg/m3 with urn base name
    "LPG-FL-V30",  # SenML fuel
    "LPG-GEN-0[34]",
]


def test_valid_messages_decode_to_their_ground_truth(city: City) -> None:
    config = cfg(device_filter=EVERY_FORM, start=T0 + dt.timedelta(hours=11), end=T0 + dt.timedelta(hours=15))
    messages = list(generate(city, config))
    ids = registered_ids(city)
    checked = 0
    for m in messages:
        reason, readings = classify(m.topic, m.payload, ids, time.time())
        assert reason is None, (reason, m.payload[:200])
        if m.kind == "up":
            assert readings == set(m.readings), m.payload[:200]
            checked += len(readings)
    assert checked > 1000
    # Both forms, batched records, and every device kind appear.
    payloads = [m.payload for m in up(messages)]
    assert any(p.startswith(b"[") for p in payloads) and any(b'"records"' in p for p in payloads)
    assert any(b'"vb":' in p for p in payloads) and any(b"+07:00" in p for p in payloads)
    assert {city.device(m.device_id).kind for m in up(messages)} == {
        "electricity_meter",
        "streetlight_cabinet",
        "lamp",
        "aq_station",
        "fuel_meter",
    }


@pytest.mark.parametrize("reason", MALFORMED_REASONS)
def test_each_malformed_kind_gets_its_reason(city: City, reason: str) -> None:
    config = cfg(
        device_filter=["LPG-TH-01-M1", "LPG-AQ-01", "LPG-SL-C05-L0001"],
        fault_overrides={"malformed": {reason: 1.0}},
        end=T0 + dt.timedelta(minutes=20),
    )
    messages = [m for m in generate(city, config) if m.seq is not None]
    assert messages
    ids = registered_ids(city)
    for m in messages:
        assert m.intended_reason == reason and not m.readings
        got, _ = classify(m.topic, m.payload, ids, time.time())
        assert got == reason, m.payload[:300]


def test_corrections_resend_one_reading_with_another_value_after_it_and_change_nothing_else(city: City) -> None:
    devices = ["LPG-TH-01-M[12]", "LPG-AQ-0[24]", "LPG-SL-C05-L0001", "LPG-FL-V30"]
    plain = list(generate(city, cfg(device_filter=devices, end=T0 + dt.timedelta(hours=6))))
    config = cfg(device_filter=devices, fault_overrides={"correction": 0.2}, end=T0 + dt.timedelta(hours=6))
    messages = list(generate(city, config))
    fixes = [m for m in messages if "correction" in m.faults]
    others = [m for m in messages if "correction" not in m.faults]
    assert len(fixes) > 20
    assert sorted(r for m in others for r in m.readings) == sorted(r for m in plain for r in m.readings)
    first: dict[tuple[str, str, int], tuple[float, float]] = {}  # key -> (value, send_s) of its first sending
    for m in sorted(others, key=lambda m: m.send_s):
        for d, metric, ts, v in m.readings:
            first.setdefault((d, metric, ts), (v, m.send_s))
    ids = registered_ids(city)
    for m in fixes:
        reason, readings = classify(m.topic, m.payload, ids, time.time())
        assert reason is None and not m.readings, m.payload[:200]  # valid contract, nothing new to store
        [(d, metric, ts, v)] = m.corrections
        assert readings == {(d, metric, ts, v)}
        stored, sent_at = first[(d, metric, ts)]
        assert v != stored and abs(v - stored) > 1e-9 * max(abs(v), abs(stored)), (metric, v, stored)
        assert sent_at < m.send_s
    truth = GroundTruth.from_messages(messages)
    assert truth.expected_conflicts() == {r for m in fixes for r in m.corrections}


def test_unregistered_devices_are_marked_unknown_device(city: City) -> None:
    messages = up(list(generate(city, cfg(device_filter=["LPG-AQ-01"], rogue=True, end=T0 + dt.timedelta(hours=2)))))
    rogue = [m for m in messages if not city.has_device(m.device_id)]
    assert rogue and all(m.intended_reason == "unknown_device" for m in rogue)
    for m in rogue:
        assert classify(m.topic, m.payload, registered_ids(city), time.time())[0] == "unknown_device"


# Faults --------------------------------------------------------------------------------------------------------------


def test_transport_faults(city: City) -> None:
    overrides = {"drop": 0.1, "duplicate": 0.1, "reorder": 0.1, "late": 0.05}
    config = cfg(
        device_filter=["LPG-TH-01-M1", "LPG-AQ-0*"], fault_overrides=overrides, end=T0 + dt.timedelta(hours=12)
    )
    messages = up(list(generate(city, config)))
    kinds = Counter(f for m in messages for f in m.faults)
    assert all(kinds[k] > 5 for k in ("drop", "duplicate", "reorder", "late"))
    assert all(not m.published for m in messages if "drop" in m.faults)
    by_seq = Counter((m.device_id, m.seq) for m in messages)
    dups = [m for m in messages if "duplicate" in m.faults]
    assert all(by_seq[(m.device_id, m.seq)] == 2 for m in dups)
    for device_id in {m.device_id for m in messages}:
        seqs = [m.seq or 0 for m in messages if m.device_id == device_id and m.published]
        assert seqs != sorted(seqs)  # reordered / late messages arrive after later ones
    for m in messages:
        if "late" in m.faults:
            newest = max(r[2] for r in m.readings) / 1e6 if m.readings else m.send_s
            assert m.send_s - newest >= 1800 - 1
    assert [m.send_s for m in messages] == sorted(m.send_s for m in messages)


def test_value_faults(city: City) -> None:
    overrides = {"clock_skew": 1.0, "stuck": 0.05, "spike": 0.1, "register_reset": 0.05, "clock_skew_s": [-600, -60]}
    config = cfg(
        device_filter=["LPG-WP-02-M1", "LPG-AQ-03"], fault_overrides=overrides, end=T0 + dt.timedelta(hours=12)
    )
    messages = up(list(generate(city, config)))
    kinds = Counter(f for m in messages for f in m.faults)
    assert kinds["clock_skew"] == len(messages)
    assert kinds["stuck"] > 0 and kinds["spike"] > 0 and kinds["register_reset"] > 0
    # Clock skew: event times are off the device's 5-minute grid by the same whole number of seconds.
    for device_id in ("LPG-WP-02-M1", "LPG-AQ-03"):
        offsets = {(r[2] // 1_000_000) % 300 for m in messages if m.device_id == device_id for r in m.readings}
        assert len(offsets) == 1
    energy = [r[3] for m in messages if m.device_id == "LPG-WP-02-M1" for r in m.readings if r[1] == "energy"]
    after_reset = [
        i for i, m in enumerate(m for m in messages if m.device_id == "LPG-WP-02-M1") if "register_reset" in m.faults
    ]
    assert any(energy[i] < 100 for i in after_reset)  # the register restarted from 0
    stuck_runs = [m for m in messages if "stuck" in m.faults]
    assert len(stuck_runs) >= 6
    config_ok = cfg(device_filter=["LPG-AQ-03"], end=T0 + dt.timedelta(hours=12))
    clean = {r[:3]: r[3] for m in up(list(generate(city, config_ok))) for r in m.readings}
    skew = {r[:3] for m in messages for r in m.readings if r[0] == "LPG-AQ-03"}
    assert not skew & set(clean)  # skewed event times are what the device sent


# Consumption ground truth -------------------------------------------------------------------------------------------

REGISTER_SAMPLE = [
    "LPG-TH-01-M[12]",  # kWh by 0.1; Wh by 1 (SenML)
    "LPG-WP-01-M1",  # near_rollover: wraps at 100000 kWh in every run
    "LPG-WW-01-M[12]",  # near_rollover in Wh; SenML
    "LPG-SL-C07",  # streetlight cabinet
    "LPG-FL-V0[1-5]",  # fleet fuel meters
    "LPG-GEN-01",  # generator: weekly test on Wednesday 10:00
]
# Tuesday 06:00 to Wednesday 12:00: working hours, a night of streetlights, the generator's test run.
CONSUMPTION_END = T0 + dt.timedelta(hours=30)


def register_series(city: City, truth: GroundTruth) -> dict[str, list[tuple[int, float]]]:
    """device_id -> its stored register readings (ts_us, canonical value), one per time, in time order."""
    out: dict[str, dict[int, float]] = {}
    for device_id, metric, ts_us, value in truth.expected_readings():
        register = city.device(device_id).register
        if register is not None and metric == register.metric:
            out.setdefault(device_id, {})[ts_us] = value
    return {d: sorted(series.items()) for d, series in out.items()}


def canonical(city: City, device_id: str) -> tuple[float, float]:
    """(modulus, resolution) of a device's register in its canonical unit."""
    register = city.device(device_id).register
    assert register is not None
    scale = 0.001 if register.unit == "Wh" else 1.0
    return register.modulus * scale, register.resolution * scale


def wrapped(delta: float, modulus: float) -> float:
    return delta + modulus if delta < 0 else delta


def delta_sum(series: list[tuple[int, float]], modulus: float, lo_us: int, hi_us: int) -> float:
    """Sum of the register deltas (with rollover) between the readings at lo_us and hi_us."""
    part = [v for ts, v in series if lo_us <= ts <= hi_us]
    return sum(wrapped(b - a, modulus) for a, b in itertools.pairwise(part))


def test_consumed_equals_the_register_deltas_without_faults(city: City) -> None:
    config = cfg(device_filter=REGISTER_SAMPLE, end=CONSUMPTION_END)
    truth = GroundTruth.from_messages(generate(city, config))
    series = register_series(city, truth)
    consumed = truth.consumed()
    spans = truth.true_spans()
    assert set(consumed) == set(series) and len(series) == 12
    rollovers = 0
    for device_id, readings in series.items():
        metric = city.device(device_id).register.metric  # type: ignore[union-attr]
        modulus, resolution = canonical(city, device_id)
        span = spans[(device_id, metric)]
        assert (span.first_us, span.last_us) == (readings[0][0], readings[-1][0])
        expected = delta_sum(readings, modulus, span.first_us, span.last_us)
        # The display truncates to whole steps: each end is off by less than one step.
        assert consumed[device_id][metric] == pytest.approx(expected, abs=resolution * 1.001), device_id
        rollovers += sum(1 for a, b in itertools.pairwise(readings) if b[1] < a[1])
    assert rollovers >= 2  # the pumping station and the wastewater blowers wrap in every run
    assert consumed["LPG-GEN-01"]["fuel"] == pytest.approx(4.5, abs=0.2)  # 30 min test at 9 l/h
    assert all(consumed[f"LPG-FL-V0{i}"]["fuel"] > 1 for i in range(1, 6))
    # The integral of the true power: the mean of the power readings over the same span agrees within a few %.
    power = [r[3] for m in truth.delivered() for r in m.readings if r[0] == "LPG-TH-01-M1" and r[1] == "power"]
    span = spans[("LPG-TH-01-M1", "energy")]
    hours = (span.last_us - span.first_us) / 3.6e9
    assert consumed["LPG-TH-01-M1"]["energy"] == pytest.approx(np.mean(power) / 1000 * hours, rel=0.05)
    assert truth.register_events() == [] and truth.summary()["register_resets"] == 0


def test_consumed_ignores_value_and_transport_faults(city: City) -> None:
    overrides = {
        "stuck": 0.05,
        "spike": 0.1,
        "register_reset": 0.03,
        "drop": 0.1,
        "duplicate": 0.1,
        "reorder": 0.1,
        "late": 0.05,
        "malformed": {"bad_json": 0.03, "out_of_range": 0.03},
    }
    faulty = GroundTruth.from_messages(
        generate(city, cfg(device_filter=REGISTER_SAMPLE, end=CONSUMPTION_END, fault_overrides=overrides))
    )
    clean = register_series(
        city, GroundTruth.from_messages(generate(city, cfg(device_filter=REGISTER_SAMPLE, end=CONSUMPTION_END)))
    )
    kinds = Counter(f for m in faulty.messages for f in m.faults)
    assert all(kinds[k] > 5 for k in ("stuck", "register_reset", "drop", "duplicate", "late", "malformed:bad_json"))
    faulty_series = register_series(city, faulty)
    differs = 0
    for (device_id, metric), span in faulty.true_spans().items():
        modulus, resolution = canonical(city, device_id)
        # The fault-free run has every reading: its deltas between the same two instants are the consumption.
        expected = delta_sum(clean[device_id], modulus, span.first_us, span.last_us)
        assert faulty.consumed()[device_id][metric] == pytest.approx(expected, abs=resolution * 1.001), device_id
        naive = delta_sum(faulty_series[device_id], modulus, span.first_us, span.last_us)
        differs += abs(naive - expected) > 10 * resolution
    assert differs >= 3  # the registers as stored really are wrong (resets, stuck values)
    # A skewed clock shifts the event times, not the consumption between the same readings.
    skewed = GroundTruth.from_messages(
        generate(city, cfg(device_filter=REGISTER_SAMPLE, end=CONSUMPTION_END, fault_overrides={"clock_skew": 1.0}))
    )
    plain = GroundTruth.from_messages(generate(city, cfg(device_filter=REGISTER_SAMPLE, end=CONSUMPTION_END)))
    assert skewed.consumed() == plain.consumed()
    assert {s.first_us for s in skewed.true_spans().values()}.isdisjoint(
        s.first_us for s in plain.true_spans().values()
    )


def test_register_events_reconstruct_the_consumption(city: City, tmp_path: Path) -> None:
    overrides = {"register_reset": 0.05, "drop": 0.1, "duplicate": 0.05, "late": 0.05, "clock_skew": 0.5}
    config = cfg(device_filter=REGISTER_SAMPLE, end=CONSUMPTION_END, fault_overrides=overrides)
    truth = GroundTruth.from_messages(generate(city, config))
    events = truth.register_events()
    resets = [m for m in truth.messages if "register_reset" in m.faults and "duplicate" not in m.faults]
    assert len(events) == len(resets) > 10 and truth.summary()["register_resets"] == len(events)
    assert all(e.new_start == 0.0 and e.metric in ("energy", "fuel") and e.old_final_register >= 0 for e in events)
    stored = {(r[0], r[2]): r[3] for r in truth.expected_readings() if r[1] in ("energy", "fuel")}
    shown = [stored[(e.device_id, e.at_us)] for e in events if (e.device_id, e.at_us) in stored]
    assert shown and all(v == 0.0 for v in shown)  # the first reading after a reset shows 0
    series = register_series(city, truth)
    consumed = truth.consumed()
    for device_id, readings in series.items():
        modulus, resolution = canonical(city, device_id)
        mine = [e for e in events if e.device_id == device_id]
        # As the engine would with known events: a segment ends at old_final and the next starts at new_start.
        total = 0.0
        for (t0, r0), (t1, r1) in itertools.pairwise(readings):
            value = r0
            for e in (e for e in mine if t0 < e.at_us <= t1):
                total += wrapped(e.old_final_register - value, modulus)
                value = e.new_start
            total += wrapped(r1 - value, modulus)
        metric = city.device(device_id).register.metric  # type: ignore[union-attr]
        tolerance = resolution * (1.001 + sum(1 for e in mine if readings[0][0] < e.at_us <= readings[-1][0]))
        assert consumed[device_id][metric] == pytest.approx(total, abs=tolerance), device_id
    # The truth file keeps all of it.
    path = tmp_path / "truth.jsonl"
    truth.write_jsonl(path)
    again = GroundTruth.read_jsonl(path)
    assert again.consumed() == consumed and again.register_events() == events
    assert again.true_spans() == truth.true_spans()


def test_lamp_on_seconds_between_the_first_and_last_stored_reading(city: City) -> None:
    config = cfg(
        device_filter=["LPG-SL-C0[2-4]-L000[1-3]"],
        start=dt.datetime(2026, 11, 3, 16, 0, tzinfo=ICT),
        end=dt.datetime(2026, 11, 4, 9, 0, tzinfo=ICT),
    )
    truth = GroundTruth.from_messages(generate(city, config))
    lit = truth.lamp_on_seconds()
    assert len(lit) == 9
    for device_id, seconds in lit.items():
        states = sorted(
            {(r[2], r[3]) for m in truth.delivered() for r in m.readings if r[0] == device_id and r[1] == "lamp_on"}
        )
        on = [t for (t, v), (_, prev) in zip(states[1:], states, strict=False) if v == 1 and prev == 0]
        off = [t for (t, v), (_, prev) in zip(states[1:], states, strict=False) if v == 0 and prev == 1]
        if city.device(device_id).params["failed"]:
            assert seconds == 0.0 and not on
            continue
        assert len(on) == len(off) == 1 and seconds == (off[0] - on[0]) / 1e6
        assert 11 * 3600 < seconds < 13 * 3600  # a November night in Lampang
    # A stuck display does not change how long the lamp was lit; dropped readings only narrow the span.
    stuck = GroundTruth.from_messages(generate(city, cfg(**{**config.__dict__, "fault_overrides": {"stuck": 0.3}})))
    assert sum(1 for m in stuck.messages if "stuck" in m.faults) > 10
    assert stuck.lamp_on_seconds() == lit


# Publishing through a real broker ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.skip("mosquitto is not installed")
    port = _free_port()
    conf = tmp_path_factory.mktemp("mosquitto") / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_inflight_messages 0\n"
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("mosquitto did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_publish_with_faults_every_acked_message_arrives(city: City, broker: int) -> None:
    sub = Collector("127.0.0.1", broker)
    try:
        config = cfg(
            port=broker,
            device_filter=EVERY_FORM,
            faults=True,
            end=T0 + dt.timedelta(hours=8),
            fault_overrides={"drop": 0.02, "duplicate": 0.03, "malformed": {"bad_json": 0.01, "naive_time": 0.01}},
            client_id_prefix="test-faults",
        )
        truth = run_simulation(city, config)
        sub.wait_for(truth.acked_count())
    finally:
        sub.close()
    assert truth.counters["not_acked"] == 0 and truth.counters["dropped"] > 0
    assert len(sub.received) == truth.acked_count() > 1000
    ids = registered_ids(city)
    readings: set = set()
    reasons: Counter[str] = Counter()
    for topic, payload in sub.received:
        reason, got = classify(topic, payload, ids, time.time())
        readings |= got
        if reason:
            reasons[reason] += 1
    assert readings == truth.expected_readings()
    assert reasons == truth.expected_dead_letters()
    assert {"bad_json", "naive_time", "unknown_device"} <= set(reasons)
    statuses = [(t, p) for t, p in sub.received if t.endswith("/status")]
    assert statuses.count((f"lccm/v1/lampang/{EVERY_FORM[1]}/status", b"online")) == 1
    assert truth.summary()["acked"] == truth.acked_count()


def test_publish_mqtt311_small_window_and_jsonl(city: City, broker: int, tmp_path: Path) -> None:
    sub = Collector("127.0.0.1", broker, protocol="3.1.1")
    try:
        config = cfg(
            port=broker,
            protocol="3.1.1",
            clients=1,
            window=3,
            device_filter=["LPG-SL-C1[0-2]*"],
            client_id_prefix="test-311",
            truth_path=tmp_path / "truth.jsonl",
        )
        truth = run_simulation(city, config)
        sub.wait_for(truth.acked_count())
    finally:
        sub.close()
    assert len(sub.received) == truth.acked_count() == len(truth.messages)
    again = GroundTruth.read_jsonl(tmp_path / "truth.jsonl")
    assert again.expected_readings() == truth.expected_readings()
    assert len(again.messages) == len(truth.messages)
    path = tmp_path / "copy.jsonl"
    truth.write_jsonl(path)
    assert GroundTruth.read_jsonl(path).acked_count() == truth.acked_count()


def test_accelerated_time_and_stopping(city: City, broker: int) -> None:
    # 20 simulated minutes at 1200x: about one second of wall time.
    config = cfg(
        port=broker,
        speed=1200.0,
        device_filter=["LPG-AQ-0*"],
        end=T0 + dt.timedelta(minutes=20),
        client_id_prefix="test-speed",
    )
    began = time.monotonic()
    truth = run_simulation(city, config)
    took = time.monotonic() - began
    assert 0.8 < took < 4.0
    assert truth.acked_count() == len(truth.messages) > 20
    # Open-ended real-time run, ended by the caller: offline statuses still go out.
    stop = threading.Event()
    timer = threading.Timer(0.7, stop.set)
    timer.start()
    open_ended = SimConfig(port=broker, speed=1.0, device_filter=["LPG-AQ-01"], client_id_prefix="test-stop")
    truth = run_simulation(city, open_ended, stop_event=stop)
    timer.cancel()
    assert truth.stopped_early
    assert [m.payload for m in truth.messages if m.kind == "status"] == [b"online", b"offline"]


def test_event_times_ahead_of_the_clock_are_marked_future_time(city: City, broker: int) -> None:
    tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    config = SimConfig(
        port=broker,
        start=tomorrow,
        end=tomorrow + dt.timedelta(minutes=15),
        device_filter=["LPG-AQ-01"],
        client_id_prefix="test-future",
    )
    truth = run_simulation(city, config)
    telemetry = [m for m in truth.messages if m.kind == "up"]
    assert telemetry and all(m.intended_reason == "future_time" for m in telemetry)
    assert truth.expected_readings() == set()
