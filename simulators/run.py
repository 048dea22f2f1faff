"""Run the virtual city: build device streams, pace them in simulated time, publish over MQTT, keep the truth.

    from lccm.simulators.city import load_city
    from lccm.simulators.run import SimConfig, run_simulation
    truth = run_simulation(load_city(), SimConfig(port=1883, start=..., end=..., speed=None))

speed=None replays [start, end) as fast as the broker acknowledges; speed=1.0 is real time; speed=1440 runs a
simulated day per wall-clock minute. `generate()` yields the same messages without any broker (for tests).
"""

from __future__ import annotations

import datetime as dt
import heapq
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lccm.simulators.city import City, Device, load_city, select_devices
from lccm.simulators.environment import Environment
from lccm.simulators.faults import resolve_mix
from lccm.simulators.stream import DeviceStream, RunWindow, device_topic
from lccm.simulators.truth import GroundTruth, Message

__all__ = ["GroundTruth", "Message", "SimConfig", "generate", "main_simulate", "run_simulation", "select"]

DeviceFilter = Sequence[str] | str | Callable[[Device], bool]


@dataclass
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    protocol: str = "5"  # "5" | "3.1.1"
    seed: int = 1
    start: dt.datetime | None = None  # aware; None = now (minus duration_s * speed for accelerated runs)
    end: dt.datetime | None = None  # exclusive; None = run until duration_s / stop_event
    speed: float | None = None  # None = as fast as possible; 1.0 = real time; 1440 = one day per minute
    duration_s: float | None = None  # wall-clock limit
    faults: bool = False  # enable the city YAML's fault mix (and its rogue devices)
    fault_overrides: dict[str, Any] = field(default_factory=dict)  # same shape as the YAML's faults section
    device_filter: DeviceFilter | None = None  # fnmatch patterns ("LPG-AQ-*") or a predicate
    max_devices: int | None = None  # first N devices (registry order) after the filter
    topic_root: str = "lccm/v1"
    client_id_prefix: str = ""  # "" = "lccm-sim-<pid>": two runs sharing a client id would evict each other
    clients: int = 2  # publisher connections (gateway style)
    window: int = 1000  # outstanding QoS 1 messages per connection
    publish_status: bool = True  # retained "online" at start, "offline" at the end
    rogue: bool | None = None  # unregistered devices (unknown_device); None = follow `faults`
    near_rollover: bool = True  # registers flagged near_rollover start each run just below their modulus
    keep_messages: bool = True  # keep every message in GroundTruth.messages (turn off for long runs)
    truth_path: Path | None = None  # stream the ground truth to this JSON-lines file as messages finish
    ack_timeout_s: float = 30.0  # longest wait for a PUBACK while running (a silent broker ends the run)
    stop_grace_s: float = 2.0  # after stop_event: longest wait for the last PUBACKs (offline statuses included)
    connect_timeout_s: float = 10.0
    username: str | None = None
    password: str | None = None
    # Messages whose event time is this far ahead of the wall clock at publish are marked future_time.
    future_tolerance_s: float = 300.0
    # With a speed: replay the past at that speed, but never publish a message before the wall clock reaches its
    # simulated send time; an accelerated run that catches up with now goes on in real time, like real devices.
    cap_at_wall_clock: bool = True

    def window_bounds(self, now_s: float | None = None) -> tuple[float, float | None]:
        now_s = time.time() if now_s is None else now_s
        if self.start is not None:
            start_s = _aware(self.start, "start").timestamp()
        elif self.speed and self.speed > 1 and self.duration_s:
            # Accelerated run ending around now, so event times never run ahead of the system clock.
            start_s = math.floor(now_s - self.duration_s * self.speed)
        else:
            start_s = float(math.floor(now_s))
        end_s = None if self.end is None else _aware(self.end, "end").timestamp()
        if end_s is not None and end_s <= start_s:
            raise ValueError("end must be after start")
        return start_s, end_s


def _aware(value: dt.datetime, name: str) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError(f"SimConfig.{name} must be timezone-aware")
    return value


def select(city: City, cfg: SimConfig) -> list[Device]:
    """Registered devices this run simulates, in registry order."""
    devices = city.devices
    flt = cfg.device_filter
    if isinstance(flt, str):
        devices = select_devices(devices, [flt])
    elif callable(flt):
        devices = [d for d in devices if flt(d)]
    elif flt is not None:
        devices = select_devices(devices, flt)
    if cfg.max_devices is not None:
        devices = devices[: cfg.max_devices]
    return list(devices)


def _streams(city: City, cfg: SimConfig, window: RunWindow, devices: list[Device]) -> list[DeviceStream]:
    env = Environment(city, cfg.seed)
    ids = [d.device_id for d in city.devices]
    position = {d: i for i, d in enumerate(ids)}
    streams = []
    for device in devices:
        mix = resolve_mix(city.fault_config, device, cfg.faults, cfg.fault_overrides)
        # device_mismatch names the next device in the registry: stable whatever subset runs.
        other = ids[(position.get(device.device_id, -1) + 1) % len(ids)]
        streams.append(DeviceStream(device, env, window, mix, other))
    rogue = cfg.faults if cfg.rogue is None else cfg.rogue
    if rogue:
        for device in city.rogue_devices:
            streams.append(DeviceStream(device, env, window, resolve_mix({}, device, False), ids[0]))
    return streams


def _status(window: RunWindow, device_id: str, state: str, send_s: float) -> Message:
    return Message(
        device_id=device_id,
        topic=device_topic(window, device_id, "status"),
        seq=None,
        payload=state.encode(),
        send_s=send_s,
        kind="status",
        retain=True,
    )


def generate(city: City, cfg: SimConfig, now_s: float | None = None) -> Iterator[Message]:
    """Every message of the run in send order, without a broker: online statuses, telemetry, offline statuses.

    With no end the telemetry never ends (and no offline statuses come); stop iterating when you have enough.
    """
    start_s, end_s = cfg.window_bounds(now_s)
    window = RunWindow(start_s, end_s, cfg.seed, cfg.topic_root, city.slug, city.register_anchor_s, cfg.near_rollover)
    devices = select(city, cfg)
    if cfg.publish_status:
        for d in devices:
            yield _status(window, d.device_id, "online", start_s)
    streams = _streams(city, cfg, window, devices)
    last_send = start_s
    for msg in heapq.merge(*streams, key=lambda m: m.send_s):
        last_send = msg.send_s
        yield msg
    if cfg.publish_status:
        for d in devices:
            yield _status(window, d.device_id, "offline", max(last_send, end_s or last_send))


ProgressFn = Callable[[dict[str, Any]], None]


class _Runner:
    """Paces generated messages against the wall clock and hands them to the publisher pool."""

    def __init__(self, city: City, cfg: SimConfig, stop_event: Any, progress: ProgressFn | None) -> None:
        self.city = city
        self.cfg = cfg
        self.stop_event = stop_event
        self.progress = progress
        self.truth = GroundTruth(keep_messages=cfg.keep_messages)
        self.index = 0
        self.last_progress = 0.0
        self.sim_now = 0.0

    def run(self) -> GroundTruth:
        cfg = self.cfg
        start_s, end_s = cfg.window_bounds()
        if end_s is None and cfg.duration_s is None and self.stop_event is None:
            raise ValueError("an open-ended run needs end, duration_s or a stop_event")
        truth = self.truth
        truth.sim_start_s, truth.sim_end_s = start_s, end_s
        if cfg.truth_path is not None:
            truth.open_sink(cfg.truth_path)
        from lccm.simulators.publisher import PublisherPool  # paho only when publishing

        pool = PublisherPool(
            cfg.host,
            cfg.port,
            cfg.protocol,
            cfg.clients,
            cfg.client_id_prefix or f"lccm-sim-{os.getpid()}",
            cfg.window,
            cfg.username,
            cfg.password,
            on_done=self._done,
            stop_event=self.stop_event,
            ack_timeout_s=cfg.ack_timeout_s,
            stop_grace_s=cfg.stop_grace_s,
        )
        try:
            pool.connect(cfg.connect_timeout_s)
            truth.started_wall_s = time.time()
            self._publish_all(pool, start_s)
            pool.flush(cfg.ack_timeout_s)
        finally:
            pool.close()
            truth.finished_wall_s = time.time()
            truth.close_sink()
        truth.messages.sort(key=lambda m: m.index)
        self._report(force=True)
        return truth

    def _publish_all(self, pool: Any, start_s: float) -> None:
        cfg = self.cfg
        wall0 = time.monotonic()
        online: list[str] = []
        window_for_status: RunWindow | None = None
        for msg in generate(self.city, cfg, now_s=start_s if cfg.start is None else None):
            if msg.kind == "status" and msg.payload == b"offline":
                break  # sent below, also after an early stop
            if msg.kind == "status" and msg.payload == b"online" and msg.seq is None:
                online.append(msg.device_id)
            if self._should_stop(wall0):
                self.truth.stopped_early = True
                break
            if cfg.speed:
                target = wall0 + (msg.send_s - start_s) / cfg.speed
                if cfg.cap_at_wall_clock:
                    target = max(target, time.monotonic() + (msg.send_s - time.time()))
                self._sleep_until(pool, target, wall0)
                if self._should_stop(wall0):
                    self.truth.stopped_early = True
                    break
            self.sim_now = msg.send_s
            self._publish(pool, msg)
            self._report()
        if cfg.publish_status:
            window_for_status = RunWindow(start_s, None, cfg.seed, cfg.topic_root, self.city.slug, 0.0)
            for device_id in online:
                self._publish(pool, _status(window_for_status, device_id, "offline", self.sim_now))

    def _should_stop(self, wall0: float) -> bool:
        if self.stop_event is not None and self.stop_event.is_set():
            return True
        return self.cfg.duration_s is not None and time.monotonic() - wall0 >= self.cfg.duration_s

    def _sleep_until(self, pool: Any, target: float, wall0: float) -> None:
        while True:
            left = target - time.monotonic()
            if left <= 0 or self._should_stop(wall0):
                return
            pool.poll()
            self._report()
            if self.stop_event is not None:
                self.stop_event.wait(min(left, 0.2))
            else:
                time.sleep(min(left, 0.2))

    def _publish(self, pool: Any, msg: Message) -> None:
        msg.index = self.index
        self.index += 1
        if not msg.published:
            self.truth.record(msg)
            return
        now = time.time()
        if msg.kind == "up" and msg.intended_reason is None and msg.readings:
            newest_s = max(r[2] for r in msg.readings) / 1_000_000
            if newest_s > now + self.cfg.future_tolerance_s:
                # Simulated time ran ahead of the system clock: the contract refuses these.
                msg.intended_reason = "future_time"
                msg.faults += ("ahead_of_wall_clock",)
        msg.publish_wall_s = now
        if not pool.publish(msg.device_id, msg.topic, msg.payload, msg.retain, msg):
            self._done(msg, False)

    def _done(self, token: object, acked: bool) -> None:
        assert isinstance(token, Message)
        token.acked = acked
        self.truth.record(token)

    def _report(self, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if not force and now - self.last_progress < 1.0:
            return
        self.last_progress = now
        info = self.truth.summary()
        info["sim_now_s"] = self.sim_now
        info["handed_out"] = self.index
        self.progress(info)


def run_simulation(
    city: City,
    cfg: SimConfig,
    stop_event: Any | None = None,
    progress: ProgressFn | None = None,
) -> GroundTruth:
    """Publish the city's telemetry per cfg and return what was sent and acknowledged.

    stop_event: a threading.Event; setting it ends the run (offline statuses are still sent).
    progress: called about once a second with a summary dict (and once at the end).
    """
    return _Runner(city, cfg, stop_event, progress).run()


def _parse_time(value: str | dt.datetime | None) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"time {value!r} needs a UTC offset, e.g. 2026-03-01T00:00:00+07:00")
    return parsed


def main_simulate(
    city_file: Path | str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 1883,
    protocol: str = "5",
    seed: int = 1,
    start: str | dt.datetime | None = None,
    end: str | dt.datetime | None = None,
    speed: float | None = None,
    duration_s: float | None = None,
    faults: bool = False,
    devices: Sequence[str] | None = None,
    max_devices: int | None = None,
    truth_path: Path | str | None = None,
    registry_csv: Path | str | None = None,
    clients: int = 2,
    progress: ProgressFn | None = None,
    stop_event: Any | None = None,
) -> dict[str, Any]:
    """Entry point for a CLI: load the city, optionally write the registry CSV, run, return the summary.

    The ground truth is streamed to truth_path (JSON lines) instead of being kept in memory.
    """
    city = load_city(city_file)
    if registry_csv is not None:
        city.devices_csv(registry_csv)
    cfg = SimConfig(
        host=host,
        port=port,
        protocol=protocol,
        seed=seed,
        start=_parse_time(start),
        end=_parse_time(end),
        speed=speed,
        duration_s=duration_s,
        faults=faults,
        device_filter=list(devices) if devices else None,
        max_devices=max_devices,
        clients=clients,
        keep_messages=False,
        truth_path=Path(truth_path) if truth_path is not None else None,
    )
    truth = run_simulation(city, cfg, stop_event=stop_event, progress=progress)
    return truth.summary()
