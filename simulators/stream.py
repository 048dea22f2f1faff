"""One device's message stream: readings -> records -> faults -> payloads, in send-time order.

The physics is vectorised per day (a chunk); faults are decided per message from the device's own random
generator, so a device produces the same bytes whatever other devices run beside it.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from lccm.simulators.city import Device
from lccm.simulators.environment import Environment
from lccm.simulators.faults import SPIKE_METRICS, FaultMix, MalformedContext, build_malformed, spike_value
from lccm.simulators.models import Register, model_for
from lccm.simulators.noise import stable_key, uniform, uniform_scalar
from lccm.simulators.payloads import Item, Record, dumps, plain_document, senml_bn, senml_pack
from lccm.simulators.truth import LAMP_ON, Message, Reading, TrueCumulative
from lccm.simulators.units import METRICS, UnitSpec, quantise, unit_for

CHUNK_S = 86400
US_PER_S = 1_000_000
# How long before its modulus a near_rollover register starts a run, in expected consumption: half of this span.
NEAR_ROLLOVER_SPAN_S = 1200.0


@dataclass(frozen=True, slots=True)
class RunWindow:
    start_s: float
    end_s: float | None
    seed: int
    topic_root: str
    city_slug: str
    anchor_s: float
    near_rollover: bool = True


@dataclass(slots=True)
class _Window:
    index: int
    times: list[float]
    values: dict[str, list[float]]
    register: list[float] | None


@dataclass(frozen=True, slots=True)
class _MetricOut:
    """How one metric leaves the device: unit, clamp bounds in that unit, and whether it is the register."""

    name: str
    unit: UnitSpec
    low: float
    high: float
    is_register: bool


def device_topic(window: RunWindow, device_id: str, leaf: str) -> str:
    return f"{window.topic_root}/{window.city_slug}/{device_id}/{leaf}"


class DeviceStream:
    def __init__(
        self,
        device: Device,
        env: Environment,
        window: RunWindow,
        mix: FaultMix,
        other_device_id: str,
    ) -> None:
        self.device = device
        self.model = model_for(device, env)
        self.window = window
        self.mix = mix
        self.other_device_id = other_device_id
        self.topic = device_topic(window, device.device_id, "up")
        self.status_topic = device_topic(window, device.device_id, "status")
        self.key = stable_key(window.seed, device.device_id)
        self.phase_s = int(uniform(stable_key(self.key, "phase"), 0)[0] * device.cadence_s)
        self.span_s = device.cadence_s * device.batch_records
        self.units: dict[str, UnitSpec] = {m: unit_for(m, device.unit(m)) for m in device.metrics}
        reg_metric = device.register.metric if device.register is not None else ""
        self.outputs = [
            _MetricOut(
                m,
                self.units[m],
                METRICS[m].min_value / self.units[m].scale,
                METRICS[m].max_value / self.units[m].scale,
                m == reg_metric,
            )
            for m in device.metrics
        ]
        self.latency_key = stable_key(self.key, "latency")
        # Per-message decisions and fault parameters come from separate generators so that a fault's parameters
        # never shift the sequence of decisions.
        self.rng = np.random.default_rng(stable_key(self.key, "decide"))
        self.rng_param = np.random.default_rng(stable_key(self.key, "param"))
        # Corrections draw from their own generator: switching them on changes no other decision or parameter.
        self.rng_fix = np.random.default_rng(stable_key(self.key, "correction"))
        self.skew_s = self._clock_skew()
        self.seq = 0
        self.stuck_left = 0
        self.stuck_metric = ""
        self.stuck_value: int | float | bool = 0
        self.last_sent: dict[str, int | float | bool] = {}
        self._held: list[tuple[float, int, Message]] = []
        self._pushed = 0
        self.register: Register | None = None
        self.reg_offset_u = 0.0
        # True lit seconds since the first reading of the run, and the (true time, true state) of the last reading:
        # a lamp's switching instants are reading instants, so its state is constant between two readings.
        self.lamp_on_s = 0.0
        self.lamp_last: tuple[float, float] | None = None
        if device.register is not None:
            self.register = Register(self.model.rate, window.anchor_s)
            self.reg_offset_u = self._initial_register_offset()

    # Set-up --------------------------------------------------------------------------------------------------------
    def _clock_skew(self) -> int:
        rng = np.random.default_rng(stable_key(self.key, "skew"))
        if rng.random() >= self.mix.clock_skew:
            return 0
        lo, hi = self.mix.clock_skew_s
        skew = int(rng.integers(int(lo), int(hi) + 1))
        return skew or 1

    def _initial_register_offset(self) -> float:
        """Register reading (device units) that corresponds to zero energy at the anchor."""
        spec = self.device.register
        assert spec is not None and self.register is not None
        scale = unit_for(spec.metric, spec.unit).scale
        if spec.near_rollover and self.window.near_rollover:
            start = self.window.start_s
            a0, a1 = self.register.values(np.array([start, start + NEAR_ROLLOVER_SPAN_S]))
            margin_u = max(spec.resolution, 0.5 * (a1 - a0) / scale)
            return spec.modulus - margin_u - a0 / scale
        if spec.start is not None:
            return spec.start
        fraction = 0.05 + 0.6 * float(uniform(stable_key(self.key, "register"), 0)[0])
        return math.floor(fraction * spec.modulus / spec.resolution) * spec.resolution

    # Iteration -----------------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Message]:
        for win in self._windows():
            frontier = win.times[-1]
            for msg in self._messages(win):
                heapq.heappush(self._held, (msg.send_s, self._pushed, msg))
                self._pushed += 1
            # Later messages are sent after their own (later) reading times: anything due by now is safe to emit.
            while self._held and self._held[0][0] <= frontier:
                yield heapq.heappop(self._held)[2]
        while self._held:
            yield heapq.heappop(self._held)[2]

    def _windows(self) -> Iterator[_Window]:
        start, end = self.window.start_s, self.window.end_s
        cadence = self.device.cadence_s
        chunk = math.floor((start - self.phase_s) / CHUNK_S)
        while True:
            c0 = chunk * CHUNK_S + self.phase_s
            chunk += 1
            if end is not None and c0 >= end:
                return
            lo = max(c0, start)
            hi = c0 + CHUNK_S if end is None else min(c0 + CHUNK_S, end)
            first = math.ceil((lo - self.phase_s) / cadence) * cadence + self.phase_s
            times = np.arange(first, hi, cadence, dtype=np.float64)
            events = self.model.events(lo, hi)
            if events.size:
                times = np.union1d(times, events)
            if times.size == 0:
                continue
            # Plain lists: the per-message code below indexes them element by element.
            values = {m: v.tolist() for m, v in self.model.values(times).items()}
            register = self.register.values(times).tolist() if self.register is not None else None
            widx = np.floor((times - self.phase_s) / self.span_s).astype(np.int64)
            cuts = [0, *(np.flatnonzero(np.diff(widx)) + 1).tolist(), times.size]
            time_list = times.tolist()
            for a, b in itertools.pairwise(cuts):
                yield _Window(
                    int(widx[a]),
                    time_list[a:b],
                    {m: v[a:b] for m, v in values.items()},
                    None if register is None else register[a:b],
                )

    # One message ---------------------------------------------------------------------------------------------------
    def _messages(self, win: _Window) -> list[Message]:
        # Always draw the same number of decisions per message: changing one rate never reshuffles the others.
        u_drop, u_dup, u_reorder, u_late, u_stuck, u_spike, u_reset, u_bad = self.rng.random(8)
        faults, reset = self._value_faults(win, u_stuck, u_reset)
        spike_at = self._spike_target(win) if u_spike < self.mix.spike else None
        if spike_at is not None:
            faults.append("spike")
        records, readings = self._records(win, spike_at)
        truth = self._true_cumulative(win)
        if self.stuck_left > 0:
            self.stuck_left -= 1
        seq = self.seq
        self.seq += 1
        topic, payload = self.topic, self._encode(seq, records)
        reason = None if self.device.registered else "unknown_device"
        if reason is None and u_bad < self.mix.malformed_total():
            reason = self._pick_malformed(u_bad)
            ctx = MalformedContext(
                self.device, self.topic, self.status_topic, seq, records, payload, self.other_device_id
            )
            topic, payload = build_malformed(reason, ctx)
            faults.append(f"malformed:{reason}")
            readings = ()
        msg = Message(
            device_id=self.device.device_id,
            topic=topic,
            seq=seq,
            payload=payload,
            send_s=win.times[-1] + 1 + int(uniform_scalar(self.latency_key, win.index) * 9),
            readings=readings,
            kind="status" if topic == self.status_topic else "up",
            faults=tuple(faults),
            intended_reason=reason,
            true_cumulative=truth,
            register_reset=reset,
        )
        out = self._transport(msg, u_drop, u_dup, u_reorder, u_late)
        if float(self.rng_fix.random()) < self.mix.correction and msg.published and msg.valid:
            fix = self._correction(msg, records[0])
            if fix is not None:
                out.append(fix)
        return out

    def _correction(self, msg: Message, record: Record) -> Message | None:
        """One reading of ``record`` sent again, one step of the device's precision away, as a message of its own
        sent after the original (per-device order holds on the way to the broker)."""
        numbers = [item for item in record.items if not isinstance(item.value, bool)]
        if not numbers:
            return None
        register = self.device.register.metric if self.device.register is not None else ""
        item = next((i for i in numbers if i.metric != register), numbers[0])
        out = next(o for o in self.outputs if o.name == item.metric)
        step = 10.0**-item.unit.decimals
        value = item.value + step if item.value + step <= out.high else item.value - step
        if not out.low <= value <= out.high:
            return None
        sent: int | float = round(value) if item.unit.decimals == 0 else round(value, item.unit.decimals) + 0.0
        seq = self.seq
        self.seq += 1
        reading = (self.device.device_id, item.metric, record.ts_s * US_PER_S, float(sent) * item.unit.scale)
        return Message(
            device_id=self.device.device_id,
            topic=self.topic,
            seq=seq,
            payload=self._encode(seq, [Record(record.ts_s, (Item(item.unit, sent),))]),
            send_s=msg.send_s + float(self.rng_fix.uniform(30.0, 300.0)),
            faults=("correction",),
            corrections=(reading,),
        )

    def _value_faults(
        self, win: _Window, u_stuck: float, u_reset: float
    ) -> tuple[list[str], tuple[str, int, float] | None]:
        """Clock skew, register reset and stuck runs: faults that change what the device reports.

        Returns the faults and, for a register reset, (metric, event time of the first reading after it in
        microseconds, the register value in the canonical unit just before it).
        """
        faults = ["clock_skew"] if self.skew_s else []
        reset = None
        if win.register is not None and u_reset < self.mix.register_reset:
            spec = self.device.register
            assert spec is not None
            unit = unit_for(spec.metric, spec.unit)
            old_final = float(self._register_sent(win.register[0], unit)) * unit.scale
            reset = (spec.metric, (int(win.times[0]) + self.skew_s) * US_PER_S, old_final)
            self._reset_register(win.register[0])
            faults.append("register_reset")
        if self.stuck_left == 0 and u_stuck < self.mix.stuck:
            self._start_stuck()
        if self.stuck_left > 0:
            faults.append("stuck")
        return faults, reset

    def _true_cumulative(self, win: _Window) -> tuple[TrueCumulative, ...]:
        """The true register amount (canonical, since the anchor) and lit seconds at each reading of the window.

        Computed before any fault touches the display, at the true instants (event times carry the clock skew).
        """
        out: list[TrueCumulative] = []
        spec = self.device.register
        lamp = win.values.get(LAMP_ON)
        for i, t in enumerate(win.times):
            ts_us = (int(t) + self.skew_s) * US_PER_S
            if spec is not None and win.register is not None:
                out.append((spec.metric, ts_us, win.register[i]))
            if lamp is not None:
                if self.lamp_last is not None:
                    last_t, last_on = self.lamp_last
                    self.lamp_on_s += (1.0 if last_on >= 0.5 else 0.0) * (t - last_t)
                self.lamp_last = (t, lamp[i])
                out.append((LAMP_ON, ts_us, self.lamp_on_s))
        return tuple(out)

    def _transport(self, msg: Message, u_drop: float, u_dup: float, u_reorder: float, u_late: float) -> list[Message]:
        """Drop, delay (late / reorder) and duplicate: faults of delivery, not of content."""
        mix = self.mix
        if u_drop < mix.drop:
            msg.published = False
            msg.faults += ("drop",)
            return [msg]
        if u_late < mix.late:
            lo, hi = mix.late_delay_s
            msg.send_s += float(self.rng_param.uniform(lo, hi))
            msg.faults += ("late",)
        elif u_reorder < mix.reorder:
            # Held back past the device's next one to three messages.
            msg.send_s += self.span_s * float(self.rng_param.uniform(1.2, 3.5))
            msg.faults += ("reorder",)
        out = [msg]
        if u_dup < mix.duplicate:
            # The device missed the PUBACK and sends the very same bytes again.
            resend_s = msg.send_s + float(self.rng_param.uniform(1.0, 30.0))
            out.append(dataclasses.replace(msg, send_s=resend_s, faults=(*msg.faults, "duplicate")))
        return out

    def _records(self, win: _Window, spike_at: tuple[int, str] | None) -> tuple[list[Record], tuple[Reading, ...]]:
        device_id = self.device.device_id
        stuck = self.stuck_metric if self.stuck_left > 0 else None
        records: list[Record] = []
        readings: list[Reading] = []
        for i, t in enumerate(win.times):
            ts_s = int(t) + self.skew_s
            ts_us = ts_s * US_PER_S
            items = []
            for out in self.outputs:
                metric = out.name
                sent: int | float | bool
                if metric == stuck:
                    sent = self.stuck_value
                elif out.is_register and win.register is not None:
                    sent = self._register_sent(win.register[i], out.unit)
                else:
                    canonical = win.values[metric][i]
                    if spike_at is not None and spike_at == (i, metric):
                        canonical = spike_value(canonical, metric, float(self.rng_param.uniform(3.0, 8.0)))
                    sent = self._quantise(canonical, out)
                self.last_sent[metric] = sent
                items.append(Item(out.unit, sent))
                readings.append((device_id, metric, ts_us, float(sent) * out.unit.scale))
            records.append(Record(ts_s, tuple(items)))
        return records, tuple(readings)

    def _quantise(self, canonical: float, out: _MetricOut) -> int | float | bool:
        if out.name == "lamp_on":
            on = canonical >= 0.5
            return on if self.device.lamp_bool else int(on)
        sent = quantise(canonical, out.unit)
        # Clamp in the sending unit: noise or rounding must never push a valid reading out of range.
        if sent < out.low:
            return type(sent)(out.low)
        if sent > out.high:
            return type(sent)(out.high)
        return sent

    def _register_sent(self, amount: float, unit: UnitSpec) -> int | float:
        spec = self.device.register
        assert spec is not None
        x = math.fmod(self.reg_offset_u + amount / unit.scale, spec.modulus)
        if x < 0:
            x += spec.modulus
        steps = math.floor(x / spec.resolution + 1e-9)
        value = round(steps * spec.resolution, spec.decimals)
        if value > spec.max_value:
            value = 0.0
        return int(value) if spec.decimals == 0 else value + 0.0

    def _reset_register(self, amount_now: float) -> None:
        spec = self.device.register
        assert spec is not None
        self.reg_offset_u = -amount_now / unit_for(spec.metric, spec.unit).scale

    def _start_stuck(self) -> None:
        lo, hi = self.mix.stuck_messages
        self.stuck_left = int(self.rng_param.integers(int(lo), int(hi) + 1))
        self.stuck_metric = str(self.rng_param.choice(list(self.device.metrics)))
        self.stuck_value = self.last_sent.get(self.stuck_metric, 0)
        if self.stuck_metric not in self.last_sent:
            self.stuck_left = 0  # nothing sent yet to repeat

    def _spike_target(self, win: _Window) -> tuple[int, str] | None:
        candidates = [m for m in self.device.metrics if m in SPIKE_METRICS]
        if not candidates:
            return None
        i = int(self.rng_param.integers(0, len(win.times)))
        return i, str(self.rng_param.choice(candidates))

    def _pick_malformed(self, u: float) -> str:
        acc = 0.0
        last = ""
        for reason, rate in self.mix.malformed.items():
            if rate <= 0:
                continue
            acc += rate
            last = reason
            if u < acc:
                return reason
        return last

    def _encode(self, seq: int, records: list[Record]) -> bytes:
        d = self.device
        if d.payload == "senml":
            bn = senml_bn(d.device_id, d.bn_style) if d.include_device_id else None
            return dumps(senml_pack(bn, seq, records))
        device_id = d.device_id if d.include_device_id else None
        return dumps(plain_document(device_id, seq, records, d.time_format, force_records=d.batch_records > 1))
