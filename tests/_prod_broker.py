"""A private mosquitto started from the SHIPPED production configuration (deploy/mosquitto/), for identity tests.

The shipped files are copied and changed only where this machine differs from the container: listener ports (free
loopback ports), paths under /mosquitto/ (a temporary folder), the plugin's path (Debian's package puts it under
/usr/lib/<arch>/) and a throwaway CA and server certificate (openssl) for the TLS listener. It starts through the
shipped deploy/mosquitto/entrypoint.sh, which creates the dynamic-security file with the admin, as in compose.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from deploy.mosquitto_local import PLUGIN_IN_IMAGE, broker_user, local_plugin, make_certs
from lccm.services import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "deploy" / "mosquitto"
LOCAL = "127.0.0.1"
ADMIN_USER = "lccm-admin"


@dataclass
class ProdBroker:
    folder: Path
    ports: dict[str, int]  # container port ("1883", "8883") -> local port
    admin_password: str
    ca_file: Path
    conf: Path
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.folder / "mosquitto.log"

    @property
    def port(self) -> int:
        return self.ports["1883"]

    @property
    def tls_port(self) -> int:
        return self.ports["8883"]

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def localise_conf(text: str, folder: Path, ports: dict[str, int]) -> str:
    """The shipped configuration with this machine's ports, paths and plugin."""
    lines = []
    for line in text.splitlines():
        words = line.split()
        if words and words[0] == "listener":
            ports.setdefault(words[1], free_port())
            line = f"listener {ports[words[1]]} {LOCAL}"
        elif len(words) == 2 and words[1] == PLUGIN_IN_IMAGE:
            line = f"{words[0]} {local_plugin()}"
        elif len(words) == 2 and words[1].startswith("/mosquitto/"):
            line = f"{words[0]} {folder}/{words[1].removeprefix('/mosquitto/')}"
        lines.append(line)
    return "\n".join(lines) + "\n"


@contextmanager
def prod_broker(conf_name: str = "mosquitto.conf") -> Iterator[ProdBroker]:
    # Not under pytest's tmp_path: mosquitto drops to its own user, which cannot enter root's 0700 folders.
    folder = Path(tempfile.mkdtemp(prefix="lccm-broker-"))
    try:
        (folder / "data").mkdir()
        ca = make_certs(folder / "certs")
        (folder / "config").mkdir()
        ports: dict[str, int] = {}
        conf = folder / "config" / conf_name
        conf.write_text(localise_conf((SHIPPED / conf_name).read_text(encoding="utf-8"), folder, ports))
        owner = broker_user()
        if owner is not None:
            folder.chmod(0o755)
            for path in [folder, *folder.rglob("*")]:
                shutil.chown(path, user=owner, group=owner)
        broker = ProdBroker(folder, ports, secrets.token_urlsafe(16), ca, conf)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MQTT_ADMIN_PASSWORD": broker.admin_password}
        with broker.log.open("ab") as out:
            broker.process = subprocess.Popen(
                ["sh", str(SHIPPED / "entrypoint.sh"), str(conf)], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            for port in ports.values():
                wait_for_port(LOCAL, port)
        except TimeoutError:
            broker.stop()
            raise RuntimeError(f"mosquitto did not start:\n{broker.tail()}") from None
        yield broker
        broker.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- an MQTT 5 client for the tests ---------------------------------------------------------------------------------


class Client:
    """paho, MQTT 5: connect and report the CONNACK; publish QoS 1 and report the PUBACK; collect messages."""

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None,
        client_id: str,
        *,
        ca_file: Path | None = None,
        clean_start: bool = True,
        session_expiry_s: int = 0,
        wait_s: float = 10,
    ) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca_file is not None:
            self.client.tls_set(ca_certs=str(ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.connack: str | None = None
        self.messages: list[mqtt.MQTTMessage] = []
        self.suback: list[str] = []
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._lock = threading.Lock()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry_s
        self.client.connect(LOCAL, port, keepalive=30, clean_start=clean_start, properties=props)
        self.client.loop_start()
        self._connected.wait(wait_s)

    @property
    def accepted(self) -> bool:
        return self.connack == "Success"

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        self.connack = str(rc)
        self._connected.set()
        if rc.is_failure:
            self.client.disconnect()  # no reconnect loop against a refusal

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(msg)

    def _on_subscribe(self, _c: mqtt.Client, _u: object, _mid: int, rcs: list[ReasonCode], _p: object) -> None:
        self.suback = [str(rc) for rc in rcs]
        self._subscribed.set()

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> str:
        """The PUBACK's reason code ("Success", "No matching subscribers", "Not authorized", ...)."""
        reason: list[str] = []
        acked = threading.Event()

        def on_publish(_c: mqtt.Client, _u: object, _mid: int, rc: ReasonCode, _p: object) -> None:
            reason.append(str(rc))
            acked.set()

        self.client.on_publish = on_publish
        self.client.publish(topic, payload, qos=1, retain=retain)
        if not acked.wait(10):
            return "no PUBACK"
        return reason[0]

    def subscribe(self, topic: str) -> list[str]:
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        self._subscribed.wait(10)
        return self.suback

    def wait_for(self, count: int, timeout_s: float = 10) -> list[mqtt.MQTTMessage]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.02)
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def accepted_ok(reason: str) -> bool:
    """A PUBACK that accepted the message (with or without a subscriber at the time)."""
    return reason in ("Success", "No matching subscribers")
