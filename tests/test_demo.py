"""`lccm demo` as a person at a terminal runs it: Ctrl-C, a second Ctrl-C, runs one after the other, the README.

A terminal's Ctrl-C sends SIGINT to every process of its foreground process group; the demo is started in a session
of its own and signalled with os.killpg, exactly so.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from lccm import cli, demo
from lccm.api.principal import Role
from lccm.demo_progress import PLAIN_EVERY_S, DemoStatus, Rates, duration, plain_line, render_panel, summary_table
from lccm.services import LOG_LIMIT_BYTES, _forget_dead_handles, _forget_per_port_files, bounded_log
from lccm.settings import Settings
from lccm.simulators.city import load_city
from lccm.stream.loop import StreamStats

README = Path(__file__).resolve().parent.parent / "README.md"
STOP_WITHIN_S = 10  # issue 10: Ctrl-C stops everything within 10 s


@pytest.fixture
def data() -> Iterator[Path]:
    """A data folder outside pytest's basetemp: run as root, PostgreSQL runs as the `pgserver` user and must be able
    to reach its folder, but every pytest session that starts meanwhile resets /tmp/pytest-of-<user> to mode 0700."""
    folder = Path(tempfile.mkdtemp(prefix="lccm-demo-test-"))
    yield folder / "data"
    shutil.rmtree(folder, ignore_errors=True)


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


def _demo_login_works(api_line: str, logins_line: str) -> None:
    """The viewer's login as printed logs in to the running demo's API, and the session reads."""
    url = re.search(r"(http://\S+)", api_line)
    viewer = re.search(r"demo-viewer / (\S+?)(,|$)", logins_line.strip())
    assert url is not None and viewer is not None, logins_line
    with httpx.Client(base_url=url.group(1)) as client:
        answer = client.post("/auth/login", json={"username": "demo-viewer", "password": viewer.group(1)})
        assert answer.status_code == 200, answer.text
        assert client.get("/auth/me").json()["roles"] == ["viewer"]
        assert client.get("/sites").status_code == 200
        assert client.get("/").status_code == 200  # the web overview, with the same session


@pytest.mark.slow
def test_ctrl_c_stops_everything_and_prints_the_summary(data: Path) -> None:
    proc = _start(data, "--json")
    assert proc.stderr is not None and proc.stdout is not None
    seen: list[str] = []
    try:
        api = _lines_until(proc.stderr, r"API: ", seen)
        logins = _lines_until(proc.stderr, r"log in at ", seen)
        _demo_login_works(api, logins)
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
    assert [login["role"] for login in summary["logins"]] == [r.value for r in Role]  # one demo user per role
    # Human-readable progress without a terminal: short plain lines, no Python dict.
    assert "http://127.0.0.1:" in api
    assert "{" not in progress and len(progress) < 200 and "readings" in progress and "behind wall clock" in progress
    assert "stopping" in err
    # The broker and PostgreSQL were stopped, not left behind, and removed their pid files.
    assert _servers_of(data) == []
    assert not (data / "broker.pid").exists() and not (data / "pg" / "postmaster.pid").exists()


@pytest.mark.slow
def test_a_second_ctrl_c_forces_the_stop_and_kills_the_servers(data: Path) -> None:
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
def test_runs_leave_the_same_files_in_the_data_folder(data: Path) -> None:

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


# What the demo shows ------------------------------------------------------------------------------------------------


def _status(stop: threading.Event | None = None) -> DemoStatus:
    stats = StreamStats(messages=12_345, readings_stored=67_890, duplicates_dropped=40, duplicates_in_db=2)
    stats.dead_letters.update({"unknown_device": 7, "bad_json": 2, "out_of_range": 3, "naive_time": 1})
    stats.devices_seen.update(range(2107))
    return DemoStatus(
        city="Lampang City Municipality",
        api_url="http://127.0.0.1:8000",
        broker="127.0.0.1:1883 (mosquitto)",
        database="embedded",
        speed=600.0,
        stats=stats,
        stop=stop or threading.Event(),
        metrics_url="http://127.0.0.1:9108",
        started=100.0,
        sim={"published": 12_400, "acked": 12_390, "sim_now_s": 1_000_000.0 - 3 * 3600 - 5 * 60},
    )


def test_the_panel_shows_the_counters_the_addresses_and_the_lag() -> None:
    status = _status()
    # 30 s after the start, with the simulated clock 3 h 05 min behind the wall clock.
    figures = Rates().figures(status, now=130.0, wall=1_000_000.0)
    assert (figures.messages_per_s, figures.readings_per_s) == (12_345 / 30, 67_890 / 30)
    assert figures.backlog == 12_390 - 12_345 and figures.dead_total == 13 and figures.duplicates == 42
    console = Console(record=True, width=120, file=io.StringIO())
    console.print(render_panel(status, figures))
    text = console.export_text()
    for shown in ("http://127.0.0.1:8000", "http://127.0.0.1:8000/docs", "12,400 published", "12,345 committed",
                  "67,890 stored", "2,263/s", "42 duplicates", "2,107 devices", "dead letters  13",
                  "unknown_device 7, out_of_range 3, bad_json 2, +1 more", "replay 3 h 05 min behind wall clock",
                  "catching up at 600x", "ingest backlog 45 messages", "Ctrl-C stops",
                  "http://127.0.0.1:9108/metrics"):  # fmt: skip
        assert shown in text, f"{shown!r} not in\n{text}"
    status.stop.set()
    console.print(render_panel(status, figures))
    assert "Ctrl-C again forces the stop" in console.export_text()


def test_the_plain_line_is_short_and_readable() -> None:
    status = _status()
    line = plain_line(status, Rates().figures(status, now=130.0, wall=1_000_000.0 - 3 * 3600 - 5 * 60 + 30))
    assert line == (
        "[   30 s] messages 12,345 · readings 67,890 new, 42 duplicates · dead letters 13 · backlog 45"
        " · replay 30 s behind wall clock (live)"
    )


def test_the_summary_table_shows_the_json_summary_figures() -> None:
    summary = {
        "devices_registered": 2107, "devices_seen": 2107, "readings_stored": 150_000,
        "readings_stored_this_run": 102_076, "readings_per_s": 3458.2, "messages": 16_119, "duplicates_removed": 259,
        "dead_letters": {"unknown_device": 25, "bad_json": 1}, "energy_kwh": 2893.6, "fuel_l": 40.4,
        "kgco2e": 1485.2, "elapsed_s": 30.4, "broker": "mosquitto", "database": "embedded", "ended_by": "signal",
        "simulator": {"published": 16_119, "acked": 16_119, "not_acked": 0, "dropped_on_purpose": 28,
                      "readings_acked": 102_335, "faults": {"clock_skew": 382, "drop": 28}},
        "inventory": {"base_year": 2025, "import": "applied", "items": 11, "mapped_year": 2026, "devices_mapped": 101},
        "alerts": {"by_rule": {"lamp_offline": {"open": 2}}, "changes_paged": 2, "changes_handed_on": 2,
                   "changes_late": 0, "deliveries_ok": 2, "deliveries_failed": 0, "notifications": 2},
        "logins": [{"username": "demo-admin", "password": "pw-4xY", "role": "admin"}],
    }  # fmt: skip
    console = Console(record=True, width=120, file=io.StringIO())
    console.print(summary_table(summary))
    text = console.export_text()
    for shown in ("ended by Ctrl-C", "102,076", "3,458.2", "2,107 / 2,107", "unknown_device", "2,893.6 kWh",
                  "1,485.2 kgCO2e", "16,119", "clock_skew 382, drop 28", "applied", "lamp_offline 2", "demo-admin",
                  "pw-4xY"):  # fmt: skip
        assert shown in text, f"{shown!r} not in\n{text}"


def test_a_narrow_summary_folds_a_login_and_never_cuts_it() -> None:
    """A password shown in part is no use: at 80 columns (a pipe's default) the cells fold, nothing is elided."""
    password = "Vv7zwn85HtBgZbs0"
    summary = {
        "devices_registered": 2107, "devices_seen": 2107, "readings_stored": 1, "readings_stored_this_run": 1,
        "readings_per_s": 1.0, "messages": 1, "duplicates_removed": 0, "dead_letters": {}, "energy_kwh": 1.0,
        "fuel_l": 0.0, "kgco2e": 1.0, "elapsed_s": 1.0, "broker": "mosquitto", "database": "embedded",
        "ended_by": "signal",
        "logins": [{"username": "demo-environment-officer", "password": password, "role": "environment_officer"}],
    }  # fmt: skip
    console = Console(record=True, width=80, file=io.StringIO())
    console.print(summary_table(summary))
    text = console.export_text()
    assert "…" not in text
    cells = "".join(line.split("│")[2].strip() for line in text.splitlines() if line.count("│") == 4)
    assert password in cells, text


def test_durations_read_as_a_person_says_them() -> None:
    assert [duration(s) for s in (0, 12.4, 59.6, 250, 3600, 3 * 3600 + 5 * 60 + 59)] == [
        "0 s", "12 s", "1 min 00 s", "4 min 10 s", "1 h 00 min", "3 h 05 min",
    ]  # fmt: skip


def test_one_demo_per_data_folder(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with demo._only_run(tmp_path), pytest.raises(demo.DataDirBusy, match="another lccm demo is running"):
        demo.run_demo(settings, demo.DemoOptions(duration_s=1), threading.Event(), print)
    assert sorted(p.name for p in tmp_path.iterdir()) == [demo.LOCK_FILE], "nothing was started"


# The data folder ----------------------------------------------------------------------------------------------------


def test_a_log_past_its_limit_is_moved_aside_once(tmp_path: Path) -> None:
    log = tmp_path / "mosquitto.log"
    log.write_bytes(b"x" * 100)
    assert bounded_log(log, limit_bytes=100) == log and log.read_bytes() == b"x" * 100  # at the limit: kept
    log.write_bytes(b"y" * 101)
    (tmp_path / "mosquitto.log.1").write_bytes(b"older")
    bounded_log(log, limit_bytes=100)
    assert not log.exists() and (tmp_path / "mosquitto.log.1").read_bytes() == b"y" * 101
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mosquitto.log.1"]


def test_pgserver_handles_of_dead_processes_are_forgotten(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    handles = tmp_path / ".handle_pids.json"
    handles.write_text(json.dumps([dead.pid, os.getpid()]))
    _forget_dead_handles(tmp_path)
    assert json.loads(handles.read_text()) == [os.getpid()]  # pgserver will stop the server when this one exits


def test_per_port_files_of_earlier_releases_are_cleared(tmp_path: Path) -> None:
    names = ["mosquitto-41234.conf", "mosquitto-41234.log", "amqtt-5001.yaml", "amqtt-5001.log", "mosquitto.conf",
             "mosquitto.log", "demo-devices.csv", "mosquitto-notes.txt"]  # fmt: skip
    for name in names:
        (tmp_path / name).write_text("")
    _forget_per_port_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[4:])
