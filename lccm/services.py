"""Embedded services for a machine with nothing configured: a private PostgreSQL and an MQTT broker.

Neither needs root or Docker. PostgreSQL comes from the ``pgserver`` wheel (a real server in a pip package, data in
``<data_dir>/pg``). The broker is a ``mosquitto`` child process when the binary is installed, with a configuration
that never drops queued messages (docs/reference.md#platform-measurements), else the pure-Python ``amqtt``
broker (MQTT 3.1.1, fine for a demo city's few thousand messages per second).
"""

from __future__ import annotations

import logging
import os
import pwd
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


@dataclass
class Broker:
    host: str
    port: int
    kind: str  # mosquitto, amqtt, external
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def protocol(self) -> str:
        return "3.1.1" if self.kind == "amqtt" else "auto"

    def stop(self) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_broker(data_dir: Path, port: int | None = None, prefer: str = "mosquitto", persist: bool = True) -> Broker:
    data_dir.mkdir(parents=True, exist_ok=True)
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
    conf = data_dir / f"mosquitto-{port}.conf"
    conf.write_text(mosquitto_conf(port, persistence_dir))
    log_path = data_dir / f"mosquitto-{port}.log"
    with log_path.open("ab") as out:
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    broker = Broker("127.0.0.1", port, "mosquitto", proc, log_path)
    _await_start(broker)
    return broker


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
    conf = data_dir / f"amqtt-{port}.yaml"
    conf.write_text(
        "listeners:\n  default:\n    type: tcp\n"
        f"    bind: 127.0.0.1:{port}\n"
        "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
    )
    exe = Path(sys.executable).with_name("amqtt")
    log_path = data_dir / f"amqtt-{port}.log"
    with log_path.open("ab") as out:
        proc = subprocess.Popen([str(exe), "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    broker = Broker("127.0.0.1", port, "amqtt", proc, log_path)
    _await_start(broker)
    return broker


def _await_start(broker: Broker) -> None:
    try:
        wait_for_port(broker.host, broker.port)
    except TimeoutError:
        broker.stop()
        tail = broker.log_path.read_text(errors="replace")[-2000:] if broker.log_path else ""
        raise RuntimeError(f"{broker.kind} did not start on port {broker.port}:\n{tail}") from None


@dataclass
class Database:
    url: str
    kind: str  # embedded, external
    server: Any = field(default=None, repr=False)

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()
            self.server = None


def start_database(data_dir: Path) -> Database:
    """A private PostgreSQL under data_dir, created on first use; its URL names database ``lccm``."""
    import psycopg

    pg_dir = (data_dir / "pg").resolve()
    pg_dir.mkdir(parents=True, exist_ok=True)
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
