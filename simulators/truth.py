"""Ground truth: every message the simulator produced, what it meant, and what the broker acknowledged.

Tests and benchmarks compare the system's database with this: `expected_readings()` is what must be stored,
`expected_dead_letters()` what must be refused and why.
"""

from __future__ import annotations

import base64
import collections
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

# (device_id, metric, event time in epoch microseconds, value in the canonical unit)
Reading = tuple[str, str, int, float]


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
        )


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
        if self._sink is not None:
            self._sink.write(orjson.dumps(msg.to_json()) + b"\n")
        if self.keep_messages:
            self.messages.append(msg)

    def delivered(self) -> Iterator[Message]:
        return (m for m in self.messages if m.published and m.acked)

    def expected_readings(self) -> set[Reading]:
        """Readings of acknowledged, valid telemetry messages (a duplicate counts once): what must be stored."""
        out: set[Reading] = set()
        for m in self.delivered():
            if m.kind == "up" and m.valid:
                out.update(m.readings)
        return out

    def expected_dead_letters(self) -> collections.Counter[str]:
        """Reasons of acknowledged malformed messages, once per publish (a duplicated bad message counts twice)."""
        return collections.Counter(m.intended_reason for m in self.delivered() if m.intended_reason is not None)

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
            "faults": {k.split(":", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("fault:")},
            "intended_reasons": {k.split(":", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("reason:")},
            "sim_start_s": self.sim_start_s,
            "sim_end_s": self.sim_end_s,
            "wall_s": elapsed,
            "stopped_early": self.stopped_early,
        }
