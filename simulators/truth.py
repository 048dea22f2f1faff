"""Ground truth: every message the simulator produced, what it meant, and what the broker acknowledged.

Tests and benchmarks compare the system's database with this: `expected_readings()` is what must be stored,
`expected_dead_letters()` what must be refused and why. `consumed()` is the true energy and fuel consumption over
the span the system has readings for (whatever faults the registers showed), `register_events()` the register
resets the simulator injected, and `lamp_on_seconds()` how long each lamp was truly lit.
"""

from __future__ import annotations

import base64
import collections
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson

# (device_id, metric, event time in epoch microseconds, value in the canonical unit)
Reading = tuple[str, str, int, float]
# (metric, event time in epoch microseconds as sent, true cumulative quantity at that reading's true instant):
# for a register metric (energy, fuel) the true consumption in the canonical unit since the city's register anchor;
# for lamp_on the seconds the lamp was truly lit since the device's first reading of the run.
TrueCumulative = tuple[str, int, float]
LAMP_ON = "lamp_on"


class RegisterEvent(NamedTuple):
    """A register reset the simulator injected, in the shape of a known reset event for the engine.

    at_us: event time (as the device sent it) of the first reading after the reset, which shows new_start.
    old_final_register: the value (canonical unit, as the register would have displayed it, quantised and wrapped)
    the register held at that instant just before it was reset; NaN if unknown (this simulator always knows it).
    """

    device_id: str
    metric: str  # energy | fuel
    at_us: int
    old_final_register: float
    new_start: float = 0.0


class TrueSpan(NamedTuple):
    """Truth between the first and last stored reading of one (device, metric)."""

    first_us: int  # event time of the first stored reading (as sent, skewed clocks included)
    last_us: int  # event time of the last stored reading
    amount: float  # true consumption (canonical unit) or lit seconds (lamp_on) between the two


@dataclass(slots=True)
class Message:
    device_id: str
    topic: str
    seq: int | None
    payload: bytes
    send_s: float  # simulated time the device sends it
    readings: tuple[Reading, ...] = ()
    kind: str = "up"  # up | status
    retain: bool = False
    faults: tuple[str, ...] = ()
    intended_reason: str | None = None
    published: bool = True  # False: dropped on purpose (never sent)
    acked: bool = False  # the broker acknowledged it (PUBACK)
    index: int = -1  # order in which it was handed to the publisher
    publish_wall_s: float | None = None
    # One entry per register / lamp_on reading the message was built from (also when it was malformed on purpose).
    true_cumulative: tuple[TrueCumulative, ...] = ()
    # (metric, at_us, old_final_register) when the device's register was reset at this message's first reading.
    register_reset: tuple[str, int, float] | None = None
    # A correction message (fault "correction"): its one reading, another value for a reading sent before. It is
    # not in `readings` (the first value stays stored); the system lists it as a conflict.
    corrections: tuple[Reading, ...] = ()

    @property
    def valid(self) -> bool:
        return self.intended_reason is None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "device_id": self.device_id,
            "topic": self.topic,
            "kind": self.kind,
            "seq": self.seq,
            "retain": self.retain,
            "send_s": self.send_s,
            "published": self.published,
            "acked": self.acked,
            "publish_wall_s": self.publish_wall_s,
            "faults": list(self.faults),
            "intended_reason": self.intended_reason,
            "readings": [list(r) for r in self.readings],
            "true_cumulative": [list(c) for c in self.true_cumulative],
            "register_reset": None if self.register_reset is None else list(self.register_reset),
            "corrections": [list(r) for r in self.corrections],
            "payload_b64": base64.b64encode(self.payload).decode("ascii"),
        }

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Message:
        return cls(
            device_id=row["device_id"],
            topic=row["topic"],
            seq=row["seq"],
            payload=base64.b64decode(row["payload_b64"]),
            send_s=row["send_s"],
            readings=tuple((r[0], r[1], int(r[2]), float(r[3])) for r in row["readings"]),
            kind=row["kind"],
            retain=row["retain"],
            faults=tuple(row["faults"]),
            intended_reason=row["intended_reason"],
            published=row["published"],
            acked=row["acked"],
            index=row["index"],
            publish_wall_s=row["publish_wall_s"],
            true_cumulative=tuple((c[0], int(c[1]), float(c[2])) for c in row.get("true_cumulative", ())),
            register_reset=_reset_from_json(row.get("register_reset")),
            corrections=tuple((r[0], r[1], int(r[2]), float(r[3])) for r in row.get("corrections", ())),
        )


def _reset_from_json(value: Any) -> tuple[str, int, float] | None:
    if value is None:
        return None
    # orjson writes NaN as null
    return str(value[0]), int(value[1]), math.nan if value[2] is None else float(value[2])


@dataclass
class GroundTruth:
    messages: list[Message] = field(default_factory=list)
    # Counters kept even when messages are not (long runs stream them to a file instead).
    counters: collections.Counter[str] = field(default_factory=collections.Counter)
    started_wall_s: float | None = None
    finished_wall_s: float | None = None
    sim_start_s: float | None = None
    sim_end_s: float | None = None
    stopped_early: bool = False
    keep_messages: bool = True
    _sink: IO[bytes] | None = None
    # Kept by record() so the consumption truth survives keep_messages=False:
    # (device_id, metric) -> [first_us, cumulative at first, last_us, cumulative at last] over stored readings.
    _spans: dict[tuple[str, str], list[Any]] = field(default_factory=dict, repr=False)
    _resets: list[RegisterEvent] = field(default_factory=list, repr=False)

    @classmethod
    def from_messages(cls, messages: Iterable[Message]) -> GroundTruth:
        """The truth of messages from `generate()` as if a broker had acknowledged every published one (tests)."""
        truth = cls()
        for msg in messages:
            msg.acked = msg.published
            truth.record(msg)
        return truth

    def record(self, msg: Message) -> None:
        """Account for a finished message (acked, refused by the broker, dropped on purpose or never acked)."""
        c = self.counters
        c["messages"] += 1
        c[f"kind:{msg.kind}"] += 1
        if not msg.published:
            c["dropped"] += 1
        else:
            c["published"] += 1
            c["acked" if msg.acked else "not_acked"] += 1
        for f in msg.faults:
            c[f"fault:{f}"] += 1
        if msg.intended_reason:
            c[f"reason:{msg.intended_reason}"] += 1
        if msg.acked and msg.kind == "up" and msg.valid:
            c["readings_acked"] += len(msg.readings)
            self._account_stored(msg)
        if msg.register_reset is not None and "duplicate" not in msg.faults:
            metric, at_us, old_final = msg.register_reset
            self._resets.append(RegisterEvent(msg.device_id, metric, at_us, old_final))
        if self._sink is not None:
            self._sink.write(orjson.dumps(msg.to_json()) + b"\n")
        if self.keep_messages:
            self.messages.append(msg)

    def _account_stored(self, msg: Message) -> None:
        for metric, ts_us, value in msg.true_cumulative:
            span = self._spans.get((msg.device_id, metric))
            if span is None:
                self._spans[(msg.device_id, metric)] = [ts_us, value, ts_us, value]
                continue
            if ts_us < span[0]:
                span[0], span[1] = ts_us, value
            if ts_us > span[2]:
                span[2], span[3] = ts_us, value

    def delivered(self) -> Iterator[Message]:
        return (m for m in self.messages if m.published and m.acked)

    def expected_readings(self) -> set[Reading]:
        """Readings of acknowledged, valid telemetry messages (a duplicate counts once): what must be stored."""
        out: set[Reading] = set()
        for m in self.delivered():
            if m.kind == "up" and m.valid:
                out.update(m.readings)
        return out

    def expected_conflicts(self) -> set[Reading]:
        """The other values of delivered corrections whose first value was delivered (and is stored): what
        ``reading_conflicts`` must list (device, metric, time, offered value)."""
        stored = {(d, m, t): v for d, m, t, v in self.expected_readings()}
        return {
            (d, m, t, v)
            for msg in self.delivered()
            for d, m, t, v in msg.corrections
            if (d, m, t) in stored and stored[(d, m, t)] != v
        }

    def expected_dead_letters(self) -> collections.Counter[str]:
        """Reasons of acknowledged malformed messages, once per publish (a duplicated bad message counts twice)."""
        return collections.Counter(m.intended_reason for m in self.delivered() if m.intended_reason is not None)

    def true_spans(self) -> dict[tuple[str, str], TrueSpan]:
        """(device_id, metric) -> TrueSpan for every register metric and lamp_on the system has readings of.

        A reading counts as stored when it is in a published, acknowledged, valid telemetry message (the readings
        of `expected_readings()`); first and last are by event time as sent (a device's clock skew is constant,
        so the order is the true order).
        """
        return {
            key: TrueSpan(int(first_us), int(last_us), float(last_v - first_v))
            for key, (first_us, first_v, last_us, last_v) in self._spans.items()
        }

    def consumed(self) -> dict[str, dict[str, float]]:
        """device_id -> {metric: true consumption} in the canonical unit (kWh for energy, l for fuel).

        Interval: from the true instant of the device's FIRST stored reading of that register metric to the true
        instant of its LAST one (stored = in a published, acknowledged, valid telemetry message; see
        `true_spans()` for the two event times). Nothing outside it: the system cannot know consumption before its
        first reading or after its last, whereas between them it has everything it needs (a dropped, late or
        malformed message in between only moves where the energy falls). One stored reading gives 0.0; a device
        with no stored reading of a metric is absent.

        Value: the integral of the device's true rate over that interval, i.e. the register's true increments
        before any fault (the same integral the register is built from, on its fixed 15-minute grid). Faults do not
        enter it: a rollover or a register_reset changes what the register displays, not what was consumed; a stuck
        register repeats an old value while consumption goes on; a spike is a display error; clock skew shifts the
        event times sent, not the true instants (the interval is between the true instants of the two readings);
        drops, duplicates, reordering and late delivery only decide which readings are stored. With faults off,
        it equals the sum of the register deltas (with rollover) between the first and last readings, to within
        the register's resolution (its display is truncated to whole steps).
        """
        out: dict[str, dict[str, float]] = {}
        for (device_id, metric), span in self.true_spans().items():
            if metric != LAMP_ON:
                out.setdefault(device_id, {})[metric] = span.amount
        return out

    def lamp_on_seconds(self) -> dict[str, float]:
        """lamp device_id -> seconds it was truly lit between its first and last stored lamp_on reading.

        Same interval rule as `consumed()`. Exact to the second: a lamp's switching instants are reading instants
        (rounded up to the second the new state holds), so the true state is constant between readings of the
        device; a stuck lamp_on display does not change it.
        """
        return {device_id: span.amount for (device_id, metric), span in self.true_spans().items() if metric == LAMP_ON}

    def register_events(self) -> list[RegisterEvent]:
        """Every register reset the simulator injected (published or not), sorted by (device_id, at_us).

        The reset happens at a message's first reading (at_us), which shows new_start = 0 unless that reading is
        stuck on an older value; readings from at_us on are of the restarted register. Dropped or malformed
        messages still carry a reset: the device's register restarted whether or not the system heard of it.
        """
        return sorted(self._resets, key=lambda e: (e.device_id, e.at_us))

    def acked_count(self) -> int:
        return sum(1 for _ in self.delivered())

    def write_jsonl(self, path: Path | str) -> int:
        with Path(path).open("wb") as fh:
            for m in self.messages:
                fh.write(orjson.dumps(m.to_json()) + b"\n")
        return len(self.messages)

    @classmethod
    def read_jsonl(cls, path: Path | str) -> GroundTruth:
        truth = cls()
        with Path(path).open("rb") as fh:
            for line in fh:
                if line.strip():
                    truth.record(Message.from_json(orjson.loads(line)))
        return truth

    def open_sink(self, path: Path | str) -> None:
        self._sink = Path(path).open("wb")  # noqa: SIM115 - closed in close_sink()

    def close_sink(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def summary(self) -> dict[str, Any]:
        c = self.counters
        elapsed = None
        if self.started_wall_s is not None and self.finished_wall_s is not None:
            elapsed = round(self.finished_wall_s - self.started_wall_s, 3)
        return {
            "messages": c["messages"],
            "published": c["published"],
            "acked": c["acked"],
            "not_acked": c["not_acked"],
            "dropped_on_purpose": c["dropped"],
            "status_messages": c["kind:status"],
            "readings_acked": c["readings_acked"],
            "register_resets": len(self._resets),
            "faults": {k.split(":", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("fault:")},
            "intended_reasons": {k.split(":", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("reason:")},
            "sim_start_s": self.sim_start_s,
            "sim_end_s": self.sim_end_s,
            "wall_s": elapsed,
            "stopped_early": self.stopped_early,
        }
