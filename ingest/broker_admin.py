"""Mosquitto's dynamic-security plugin, through its control API: the one module that manages broker identities.

The plugin (loaded by deploy/mosquitto/mosquitto.conf) keeps clients (user name, salted password hash, an optional
fixed client id), roles (lists of ACLs) and groups in a JSON file it rewrites itself; it is changed at run time by
publishing ``{"commands": [...]}`` to ``$CONTROL/dynamic-security/v1`` as a client allowed to (the broker admin) and
reading the answers on ``$CONTROL/dynamic-security/v1/response``. A change applies to the next CONNECT at once: no
restart, no reload, no file to copy between containers. Passwords travel to the broker in the command and are
hashed there (PBKDF2-SHA512), so the broker connection must be trusted: the compose network, loopback, or TLS.

Errors the plugin answers with are returned per command (``DynsecResult.error``), not raised: "already exists" is an
expected answer for idempotent set-ups. Transport problems (no connection, refused, no answer) raise
``BrokerAdminError``.
"""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
# Commands per control message: the plugin answers them in one message; a few hundred keep it well under the
# broker's max_packet_size (1 MiB) with 64-character ids and 32-character passwords.
BATCH = 200


class BrokerAdminError(RuntimeError):
    """The broker's dynamic-security control API could not be used."""


@dataclass(frozen=True, slots=True)
class BrokerAdminConfig:
    host: str
    port: int
    username: str
    password: str
    client_id: str = ""  # default: <username>-<random>, so two admin runs never take each other's session
    tls_ca_file: Path | None = None  # set to speak TLS (e.g. to 8883), verifying the broker against this CA
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class DynsecResult:
    command: str
    error: str | None
    data: dict[str, Any]


class BrokerAdmin:
    """A short-lived admin connection: ``with BrokerAdmin(cfg) as admin: admin.execute([...])``."""

    def __init__(self, cfg: BrokerAdminConfig) -> None:
        self._cfg = cfg
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._connack: str | None = None
        self._answers: list[dict[str, Any]] = []
        self._answered = threading.Condition()

    def __enter__(self) -> BrokerAdmin:
        self.connect()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def connect(self) -> None:
        cfg = self._cfg
        client_id = cfg.client_id or f"{cfg.username}-{uuid.uuid4().hex[:8]}"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls_ca_file is not None:
            client.tls_set(ca_certs=str(cfg.tls_ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        try:
            client.connect(cfg.host, cfg.port, keepalive=30)
        except (OSError, ssl.SSLError) as e:
            raise BrokerAdminError(f"cannot reach the broker at {cfg.host}:{cfg.port}: {e}") from e
        client.loop_start()
        self._client = client
        if not self._connected.wait(cfg.timeout_s) or self._connack != "Success":
            self.close()
            answer = self._connack or "no CONNACK"
            raise BrokerAdminError(f"the broker at {cfg.host}:{cfg.port} refused the admin {cfg.username!r}: {answer}")
        if not self._subscribed.wait(cfg.timeout_s):
            self.close()
            raise BrokerAdminError(
                f"the broker at {cfg.host}:{cfg.port} refused {cfg.username!r} the control API's responses "
                "(is the dynamic-security plugin loaded, and is this its admin?)"
            )

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def execute(self, commands: Sequence[dict[str, Any]]) -> list[DynsecResult]:
        """Send the commands (in batches); one result per command, in order."""
        results: list[DynsecResult] = []
        for start in range(0, len(commands), BATCH):
            results += self._execute_batch(commands[start : start + BATCH])
        return results

    def _execute_batch(self, commands: Sequence[dict[str, Any]]) -> list[DynsecResult]:
        client = self._client
        if client is None:
            raise BrokerAdminError("not connected")
        # The plugin echoes "correlationData" in each response: it ties answers to this batch.
        tag = uuid.uuid4().hex
        tagged = [{**c, "correlationData": f"{tag}:{i}"} for i, c in enumerate(commands)]
        with self._answered:
            self._answers.clear()
        info = client.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1)
        info.wait_for_publish(self._cfg.timeout_s)
        if not info.is_published():
            raise BrokerAdminError("the broker did not acknowledge the control message")
        found: dict[int, dict[str, Any]] = {}
        with self._answered:
            done = self._answered.wait_for(lambda: self._collect(tag, found) >= len(commands), self._cfg.timeout_s)
        if not done:
            raise BrokerAdminError(
                f"no answer from the dynamic-security plugin within {self._cfg.timeout_s:.0f} s "
                f"({len(found)} of {len(commands)} commands answered): is it loaded on this broker?"
            )
        return [
            DynsecResult(str(found[i].get("command")), found[i].get("error"), found[i].get("data") or {})
            for i in range(len(commands))
        ]

    def _collect(self, tag: str, found: dict[int, dict[str, Any]]) -> int:
        for response in self._answers:
            marker = str(response.get("correlationData", ""))
            if marker.startswith(tag + ":"):
                found[int(marker.split(":", 1)[1])] = response
        self._answers.clear()
        return len(found)

    # -- callbacks (paho's network thread) -------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        self._connack = str(rc)
        self._connected.set()
        if not rc.is_failure:
            client.subscribe(RESPONSE_TOPIC, qos=1)

    def _on_subscribe(self, _c: mqtt.Client, _u: object, _mid: int, rcs: list[ReasonCode], _p: object) -> None:
        if not any(rc.is_failure for rc in rcs):
            self._subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            responses = json.loads(msg.payload).get("responses", [])
        except (ValueError, AttributeError):
            return
        with self._answered:
            self._answers.extend(r for r in responses if isinstance(r, dict))
            self._answered.notify_all()
