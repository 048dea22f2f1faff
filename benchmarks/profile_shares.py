"""Time shares of an ingest process from a py-spy profile (``benchmarks/ingest.py --profile DIR``).

Reads py-spy's raw collapsed stacks (``--threads``, best with ``--idle --native``: every sample of every thread, so
a thread's samples are its wall time) and prints, per thread, the share of the recording it spent in each stage of
the pipeline, split by state:

- ``cpu``: running (or in a C call that does not wait);
- ``gil``: waiting to take the GIL (CPython 3.11 waits for it on a condition variable, ``pthread_cond_*wait``;
  its locks and queues wait on semaphores, so a condition-variable wait under Python code is the GIL);
- ``wait``: waiting on a socket, a lock, an event or a queue (``poll``, ``select``, ``recv``, a Python lock's
  ``PyThread_acquire_lock_timed``, ``futex`` ...): idle, or waiting for the database or the broker.

Threads that only waited (connection-pool workers, schedulers) are left out.

Stages are recognised by the first rule of ``STAGES`` that names a frame of the stack (so a COPY inside
``write_batch`` counts as COPY, not as the commit around it). The last line is one JSON object.

Run: ``.venv/bin/python benchmarks/profile_shares.py DIR/batched-deployed.txt``
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

# (stage, function names): the first rule with a frame in the stack names the stage.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("COPY encoding", ("encode_readings",)),
    ("COPY (send, server work)", ("_copy_readings",)),
    ("queue rows (one statement: rollup, sample, late, day)", ("_enqueue",)),
    ("BEGIN/COMMIT, dead letters", ("write_batch",)),
    ("dedup", ("StreamLoop._dedup", "RecentReadings.remember", "RecentReadings.contains", "Keys.of")),
    ("array building", ("BatchBuilder.columns", "ReadingColumns.take")),
    ("hand-off to the writer (waiting for room)", ("StreamLoop._hand_off",)),
    ("decode: JSON parse (orjson)", ("_load_json",)),
    ("decode: readings into lists", ("decode_message", "make_decoder.<locals>.decode")),
    ("ack (paho)", ("MqttSource.ack",)),
    ("alert hand-over (alert_queue insert)", ("alert_lines",)),
    ("waiting for messages", ("ByteBoundedInbox.get", "ByteBoundedInbox.get_nowait")),
    ("stats, observer", ("StreamLoop._account", "StreamLoop._report")),
    ("writer: waiting for a batch", ("StreamLoop.write_step",)),
    ("paho: receive, parse, hand to the inbox", ("_Client._packet_read", "MqttSource._on_message")),
    ("paho: network loop", ("Client.loop_forever", "Client._loop", "Client.loop")),
    ("energy updater", ("EnergyUpdater.drain",)),
    ("sample updater", ("SampleUpdater.drain",)),
    ("AQI updater", ("AqiUpdater.drain",)),
    ("day counter (reading_days)", ("DayUpdater.drain",)),
    ("alert evaluator", ("AlertEvaluator.drain", "AlertEvaluator.run_once")),
    ("notification dispatch", ("Notifications.step", "Notifications.dispatch_pending")),
)
_GIL = re.compile(r"^pthread_cond_(timed)?wait ")
_IO_CALLS = (
    r"poll|ppoll|select|pselect6?|epoll_wait|recv|recvfrom|send|sendto|read|write|connect|accept4?"
    r"|sem_\w*wait\w*|do_futex_wait\w*|futex\w*|clock_nanosleep|nanosleep|PyThread_acquire_lock_timed|_multiprocessing_SemLock_acquire_impl"
)
_IO = re.compile(rf"^(__)?({_IO_CALLS}) ")
_FRAME_FN = re.compile(r"^(.*) \([^()]*\)$")


def parse(path: Path) -> dict[str, Counter[tuple[str, str]]]:
    """thread name -> Counter of (stage, state) -> samples."""
    out: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = frames[0].removeprefix("thread ")  # "(tid): name"
        out[thread][(_stage(frames[1:]), _state(frames[1:]))] += int(count)
    return {_label(t): c for t, c in out.items()}


def _label(thread: str) -> str:
    tid, _, name = thread.partition(": ")
    if name.startswith("paho-mqtt-client-"):  # one per client: the ingest source's, the alert publisher's
        return "paho " + name.removeprefix("paho-mqtt-client-")
    return name or tid


def _stage(frames: Sequence[str]) -> str:
    names = {m.group(1) for f in frames if (m := _FRAME_FN.match(f))}
    for stage, fns in STAGES:
        if any(fn in names for fn in fns):
            return stage
    return "other"


def _state(frames: Sequence[str]) -> str:
    for f in reversed(frames[-4:]):  # the leaf and the few C frames above it
        if _GIL.match(f):
            return "gil"
        if _IO.match(f):
            return "wait"
    return "cpu"


def report(threads: dict[str, Counter[tuple[str, str]]], min_share: float) -> tuple[str, dict[str, object]]:
    total = max((sum(c.values()) for c in threads.values()), default=0)  # the busiest thread: the recording's length
    lines = [f"{'thread / stage':<46} {'wall':>6} {'cpu':>6} {'gil':>6} {'wait':>6}   (shares of the recording)"]
    summary: dict[str, object] = {"samples_per_thread_max": total, "threads": {}}
    for thread, counts in sorted(threads.items(), key=lambda kv: -sum(kv[1].values())):
        n = sum(counts.values())
        if not total or (n - counts_state(counts, "wait")) / total < min_share:
            continue
        by_state = Counter({st: sum(v for (_, s), v in counts.items() if s == st) for st in ("cpu", "gil", "wait")})
        lines.append(_row(thread, n, by_state, total))
        stages: dict[str, dict[str, float]] = {}
        for stage in sorted({s for s, _ in counts}, key=lambda s: -sum(v for (g, _), v in counts.items() if g == s)):
            sc = Counter({st: counts[(stage, st)] for st in ("cpu", "gil", "wait")})
            m = sum(sc.values())
            stages[stage] = {k: round(v / total, 4) for k, v in sc.items()} | {"wall": round(m / total, 4)}
            if m / total >= min_share:
                lines.append(_row("  " + stage, m, sc, total))
        threads_out = summary["threads"]
        assert isinstance(threads_out, dict)
        threads_out[thread] = {"wall": round(n / total, 4), **{k: round(v / total, 4) for k, v in by_state.items()}}
        threads_out[thread]["stages"] = stages
    return "\n".join(lines), summary


def counts_state(counts: Counter[tuple[str, str]], state: str) -> int:
    return sum(v for (_, s), v in counts.items() if s == state)


def _row(label: str, n: int, by_state: Counter[str], total: int) -> str:
    return f"{label[:46]:<46} {n / total:>6.1%} " + " ".join(
        f"{by_state[s] / total:>6.1%}" for s in ("cpu", "gil", "wait")
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("profile", type=Path, help="py-spy raw output (record --format raw --threads)")
    ap.add_argument("--min-share", type=float, default=0.005, help="hide rows below this share (default 0.5 %%)")
    args = ap.parse_args(argv)
    text, summary = report(parse(args.profile), args.min_share)
    print(text)
    print(json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
