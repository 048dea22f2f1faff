"""`lccm demo` as a person at a terminal runs it: Ctrl-C, a second Ctrl-C, runs one after the other, the README.

A terminal's Ctrl-C sends SIGINT to every process of its foreground process group; the demo is started in a session
of its own and signalled with os.killpg, exactly so.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lccm import cli, demo
from lccm.demo_progress import PLAIN_EVERY_S
from lccm.services import LOG_LIMIT_BYTES
from lccm.settings import Settings
from lccm.simulators.city import load_city

README = Path(__file__).resolve().parent.parent / "README.md"
STOP_WITHIN_S = 10  # issue 10: Ctrl-C stops everything within 10 s


def _start(data_dir: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LCCM_")}
    env |= {"LCCM_DATA_DIR": str(data_dir), "LCCM_API_PORT": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "lccm", "demo", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a foreground job
    )


def _lines_until(stream: Iterator[str], pattern: str, seen: list[str]) -> str:
    for line in stream:
        seen.append(line)
        if re.match(pattern, line):
            return line
    raise AssertionError(f"the demo ended before printing a line matching {pattern!r}:\n{''.join(seen)[-3000:]}")


def _servers_of(data_dir: Path) -> list[str]:
    """Command lines of every process still running that names data_dir (postgres -D <dir>/pg, mosquitto -c ...)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(data_dir) in argv:
            found.append(f"{entry.name}: {argv}")
    return found


def _await_no_servers(data_dir: Path, timeout_s: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while (left := _servers_of(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.mark.slow
def test_ctrl_c_stops_everything_and_prints_the_summary(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = _start(data, "--json")
    assert proc.stderr is not None and proc.stdout is not None
    seen: list[str] = []
    try:
        api = _lines_until(proc.stderr, r"API: ", seen)
        progress = _lines_until(proc.stderr, r"\[\s*\d+ s\] ", seen)  # the simulator is publishing
        assert _servers_of(data), "the embedded servers should be running now"
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=STOP_WITHIN_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, "".join(seen) + err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["ended_by"] == "signal" and summary["simulator"]["stopped_early"] is True
    assert summary["readings_stored_this_run"] > 0 and summary["messages"] > 0
    assert summary["database"] == "embedded" and summary["broker"] in {"mosquitto", "amqtt"}
    # Human-readable progress without a terminal: short plain lines, no Python dict.
    assert "http://127.0.0.1:" in api
    assert "{" not in progress and len(progress) < 200 and "readings" in progress and "behind wall clock" in progress
    assert "stopping" in err
    # The broker and PostgreSQL were stopped, not left behind, and removed their pid files.
    assert _servers_of(data) == []
    assert not (data / "broker.pid").exists() and not (data / "pg" / "postmaster.pid").exists()


@pytest.mark.slow
def test_a_second_ctrl_c_forces_the_stop_and_kills_the_servers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = _start(data, "--json")
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        _lines_until(proc.stderr, r"API: ", seen)
        assert _servers_of(data)
        os.killpg(proc.pid, signal.SIGINT)
        _lines_until(proc.stderr, r"stopping", seen)  # the orderly stop has begun
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=STOP_WITHIN_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, "".join(seen) + err
    assert "forced stop (second SIGINT)" in err and out == ""
    assert _await_no_servers(data) == []
    # PostgreSQL was shut down in immediate mode: the next run recovers and works.
    again = _start(data, "--duration", "2", "--json")
    out, err = again.communicate(timeout=180)
    assert again.returncode == 0, err[-3000:]
    assert json.loads(out.strip().splitlines()[-1])["ended_by"] == "duration"


@pytest.mark.slow
def test_runs_leave_the_same_files_in_the_data_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"

    def files() -> set[str]:
        # PostgreSQL's own data directory changes inside as it works; its top level and everything else must not.
        pg = data / "pg"
        return {str(p.relative_to(data)) for p in data.rglob("*") if p.parent == pg or pg not in p.parents}

    snapshots = []
    for _ in range(2):
        done = _start(data, "--duration", "2")
        out, err = done.communicate(timeout=180)
        assert done.returncode == 0, err[-3000:]
        assert "lccm demo: summary" in out and "readings stored" in out  # the table, not a dict
        snapshots.append(files())
    assert snapshots[0] == snapshots[1]
    assert not [f for f in snapshots[1] if re.search(r"\d{4,}", f)], "no file named after a port or a pid"
    assert {"mosquitto.conf", "mosquitto.log", "pg/log"} <= snapshots[1] or {"amqtt.yaml", "amqtt.log"} <= snapshots[1]


def test_readme_states_the_demo_numbers_the_code_uses() -> None:
    text = README.read_text()
    section = text[text.index("## The demo") : text.index("## Commands")]
    city = load_city(Settings().city_file)
    counts = city.counts()

    def number(pattern: str) -> float:
        found = re.search(pattern, section)
        assert found, f"README's demo section no longer says {pattern!r}: keep the numbers checkable"
        return float(found.group(1).replace(",", ""))

    speed = inspect.signature(cli.demo).parameters["speed"].default
    assert speed == demo.DemoOptions().speed == demo.DEFAULT_SPEED
    assert number(r"at (\d+)x") == speed
    replay_h = demo.UNBOUNDED_REPLAY.total_seconds() / 3600
    assert number(r"replays the last (\d+) hours") == replay_h
    assert number(r"\(about (\d+) seconds\)") == replay_h * 3600 / speed
    duration = number(r"`lccm demo --duration (\d+) --json`")
    assert number(r"runs for (\d+) seconds") == duration
    assert number(r"\((\d+) simulated hours at the default speed\)") == duration * speed / 3600
    assert number(r"([\d,]+) devices in") == len(city.devices)
    assert number(r"(\d+) municipal buildings and plants") == counts["municipal_buildings"]
    assert number(r"([\d,]+) streetlights on") == counts["lamp"]
    assert number(r"on (\d+) cabinets") == counts["streetlight_cabinet"]
    assert number(r"(\d+) air-quality stations") == counts["aq_station"]
    assert number(r"(\d+) fleet vehicles") == counts["vehicles"]
    assert number(r"(\d+) standby generators") == counts["generators"]
    assert number(r"API on port (\d+)") == Settings().api_port
    assert number(r"one short line every (\d+) seconds") == PLAIN_EVERY_S
    assert number(r"Ctrl-C stops everything within (\d+) seconds") == STOP_WITHIN_S
    assert cli.DEMO_FORCE_AFTER_S < STOP_WITHIN_S  # an orderly stop that takes longer is forced
    assert number(r"past (\d+) MiB") == LOG_LIMIT_BYTES / 2**20
