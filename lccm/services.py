"""Embedded services for a machine with nothing configured: a private PostgreSQL and an MQTT broker.

Neither needs root or Docker. PostgreSQL comes from the ``pgserver`` wheel (a real server in a pip package, data in
``<data_dir>/pg``). The broker is a ``mosquitto`` child process when the binary is installed, with a configuration
that never drops queued messages (docs/reference.md#platform-measurements), else the pure-Python ``amqtt``
broker (MQTT 3.1.1, fine for a demo city's few thousand messages per second).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s:.0f} s")


def mosquitto_conf(port: int, persistence_dir: Path | None) -> str:
    """A Mosquitto configuration that keeps every queued message for slow or absent subscribers."""
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        # The stock limit (1000 queued per client) silently drops QoS 1 messages for a slow subscriber.
        "max_queued_messages 0",
        "max_queued_bytes 0",
        # Ingest acks only after the database commit; the stock 20 in flight would throttle it to a crawl.
        # MQTT 5 clients still bound it with their receive maximum.
        "max_inflight_messages 0",
        "persistent_client_expiration 14d",
    ]
    if persistence_dir is not None:
        lines += ["persistence true", f"persistence_location {persistence_dir}/", "autosave_interval 30"]
    else:
        lines.append("persistence false")
    return "\n".join(lines) + "\n"


# Fixed file names under data_dir (one demo per data folder), so that nothing piles up there from run to run.
BROKER_PID = "broker.pid"
LOG_LIMIT_BYTES = 1 << 20  # a server log past this size is moved to <name>.1 when the server next starts


@dataclass
class Broker:
    host: str
    port: int
    kind: str  # mosquitto, amqtt, external
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    pid_path: Path | None = None

    @property
    def protocol(self) -> str:
        return "3.1.1" if self.kind == "amqtt" else "auto"

    def stop(self, timeout_s: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after timeout_s (a broker that is still busy by then has nothing left to save)."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.pid_path is not None:
            self.pid_path.unlink(missing_ok=True)


def start_broker(data_dir: Path, port: int | None = None, prefer: str = "mosquitto", persist: bool = True) -> Broker:
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    _kill_recorded(data_dir / BROKER_PID, data_dir)  # a broker left behind by a run that was killed outright
    _forget_per_port_files(data_dir)
    port = port or free_port()
    if prefer == "mosquitto" and shutil.which("mosquitto"):
        return _start_mosquitto(data_dir, port, persist)
    return _start_amqtt(data_dir, port)


def _start_mosquitto(data_dir: Path, port: int, persist: bool) -> Broker:
    exe = shutil.which("mosquitto")
    assert exe is not None
    persistence_dir = data_dir / "mosquitto" if persist else None
    if persistence_dir is not None:
        persistence_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(persistence_dir, user=_mosquitto_user())
    conf = data_dir / "mosquitto.conf"
    conf.write_text(mosquitto_conf(port, persistence_dir))
    return _spawn_broker("mosquitto", [exe, "-c", str(conf)], data_dir, port)


def _mosquitto_user() -> str:
    # Run as root, mosquitto drops privileges to the "mosquitto" user, which must own its persistence folder.
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        pwd.getpwnam("mosquitto")
        return "mosquitto"
    except KeyError:
        return "root"


def _start_amqtt(data_dir: Path, port: int) -> Broker:
    conf = data_dir / "amqtt.yaml"
    conf.write_text(
        "listeners:\n  default:\n    type: tcp\n"
        f"    bind: 127.0.0.1:{port}\n"
        "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
    )
    exe = Path(sys.executable).with_name("amqtt")
    return _spawn_broker("amqtt", [str(exe), "-c", str(conf)], data_dir, port)


def _spawn_broker(kind: str, argv: list[str], data_dir: Path, port: int) -> Broker:
    log_path = bounded_log(data_dir / f"{kind}.log")
    with log_path.open("ab") as out:
        # A session of its own: the terminal's Ctrl-C (SIGINT to the whole foreground process group) reaches only
        # lccm, which stops the broker itself once the simulator and ingest are done with it.
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    pid_path = data_dir / BROKER_PID
    pid_path.write_text(f"{proc.pid}\n")
    broker = Broker("127.0.0.1", port, kind, proc, log_path, pid_path)
    _await_start(broker)
    return broker


def _await_start(broker: Broker) -> None:
    try:
        wait_for_port(broker.host, broker.port)
    except TimeoutError:
        broker.stop()
        tail = broker.log_path.read_text(errors="replace")[-2000:] if broker.log_path else ""
        raise RuntimeError(f"{broker.kind} did not start on port {broker.port}:\n{tail}") from None


def bounded_log(path: Path, limit_bytes: int = LOG_LIMIT_BYTES) -> Path:
    """Move a log that outgrew limit_bytes to <name>.1, replacing the older one: at most two logs per server."""
    if path.exists() and path.stat().st_size > limit_bytes:
        path.replace(path.with_name(path.name + ".1"))
    return path


def _forget_per_port_files(data_dir: Path) -> None:
    # Releases before the fixed names wrote mosquitto-<port>.conf/.log (amqtt-<port>.yaml/.log) on every run.
    for old in data_dir.iterdir():
        if re.fullmatch(r"(mosquitto|amqtt)-\d+\.(conf|log|yaml)", old.name):
            old.unlink(missing_ok=True)


def _kill_recorded(pid_path: Path, data_dir: Path, sig: int = signal.SIGKILL) -> int | None:
    """Signal the process recorded in pid_path if it is still one of ours (alive, command line naming data_dir);
    its pid, or None."""
    pid = _read_pid(pid_path)
    if pid is None or not _mentions(pid, data_dir):
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    return pid


def _await_gone(pids: dict[int, Path], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(_mentions(pid, folder) for pid, folder in pids.items()) and time.monotonic() < deadline:
        time.sleep(0.02)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _mentions(pid: int, folder: Path) -> bool:
    """Whether process pid runs with folder in its command line (Linux /proc; elsewhere unknown, hence no)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(folder.resolve()).encode() in argv


def kill_embedded(data_dir: Path, *, database: bool, broker: bool) -> None:
    """The forced stop (a second Ctrl-C): kill the demo's own servers at once. They are found through their pid
    files, so this works at any point of start-up or shutdown and needs no lock: it is called from a signal
    handler. PostgreSQL gets SIGQUIT, its immediate shutdown (the next start recovers from the WAL); the broker
    SIGKILL. Returns once both are gone (or after 2 s)."""
    data_dir = data_dir.resolve()
    killed: dict[int, Path] = {}
    if broker and (pid := _kill_recorded(data_dir / BROKER_PID, data_dir)) is not None:
        killed[pid] = data_dir
    pg_dir = data_dir / "pg"
    if database and (pid := _kill_recorded(pg_dir / "postmaster.pid", pg_dir, signal.SIGQUIT)) is not None:
        killed[pid] = pg_dir
    _await_gone(killed, timeout_s=2.0)  # a zombie (our own broker child) has an empty command line: gone


@dataclass
class Database:
    url: str
    kind: str  # embedded, external
    server: Any = field(default=None, repr=False)

    def stop(self) -> None:
        """Stop the embedded server (pg_ctl stop, fast mode: sessions are ended, the server shuts down cleanly)."""
        if self.server is not None:
            self.server.cleanup()
            self.server = None


def start_database(data_dir: Path) -> Database:
    """A private PostgreSQL under data_dir, created on first use; its URL names database ``lccm``."""
    import psycopg

    pg_dir = (data_dir / "pg").resolve()
    pg_dir.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(pg_dir)
    bounded_log(pg_dir / "log")  # pgserver's server log (pg_ctl -l), appended to on every start
    with warnings.catch_warnings():
        # platformdirs warns (at import, too) when XDG_RUNTIME_DIR is unset, as in CI and containers; pgserver then
        # keeps its lock file under /tmp, which is fine.
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(pg_dir, cleanup_mode="stop")
    admin_url = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'lccm'").fetchone() is None:
            conn.execute("CREATE DATABASE lccm")
    return Database(url=server.get_uri("lccm"), kind="embedded", server=server)


def _forget_dead_handles(pg_dir: Path) -> None:
    """pgserver (0.1.4) stops its server when the last process holding it lets go, and counts holders by pid in
    <pgdata>/.handle_pids.json. A run that was killed outright never removed its pid, so without this every later
    run would leave the server running at exit."""
    handles = pg_dir / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
