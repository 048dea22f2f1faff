"""MQTT identity bound to the credential, on a real mosquitto started from the SHIPPED production configuration
(tests/_prod_broker.py: ports, paths, plugin path and a throwaway TLS certificate are the only changes).

Every attack of issue 12 point 5 is replayed with a real device credential issued by ``lccm devices import``:
telemetry and a retained status as another device, a forged alert, taking over the ingest's session (its queued
messages must survive), anonymous access; and the legitimate paths still work (a device over TLS, the ingest, an
alert reader; a device imported while the broker runs publishes within seconds).
"""

from __future__ import annotations

import csv
import os
import shlex
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from argon2 import PasswordHasher
from typer.testing import CliRunner

from deploy.compose import interpolate, load
from lccm.cli import app
from lccm.imports.registry import RegistryInvalid, is_reserved_identity, parse_registry_csv
from lccm.ingest.broker_admin import BrokerAdminConfig
from lccm.mqtt_identity import IngestIdentity, add_alert_reader, open_identities
from tests._db import fresh_database
from tests._prod_broker import ADMIN_USER, Client, ProdBroker, accepted_ok, prod_broker

ROOT_TOPIC = "lccm/v1"
CITY = "lampang"
INGEST_USER, INGEST_PASSWORD, INGEST_CLIENT = "lccm-ingest", "ingest-secret-for-tests", "lccm-ingest-1"
HEADER = "site_code,site_name,site_kind,city,device_id,device_kind,device_name,cadence_s\n"


def registry(*device_ids: str) -> str:
    return HEADER + "".join(f"HALL,Town hall,building,Lampang,{d},electricity_meter,{d},60\n" for d in device_ids)


@pytest.fixture(scope="module")
def broker() -> Iterator[ProdBroker]:
    with prod_broker() as b:
        yield b


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


def env_for(broker: ProdBroker, db_url: str, data_dir: Path) -> dict[str, str]:
    return {
        "LCCM_DATABASE_URL": db_url,
        "LCCM_MQTT_HOST": "127.0.0.1",
        "LCCM_MQTT_PORT": str(broker.port),
        "LCCM_MQTT_USERNAME": INGEST_USER,
        "LCCM_MQTT_PASSWORD": INGEST_PASSWORD,
        "LCCM_MQTT_ADMIN_USERNAME": ADMIN_USER,
        "LCCM_MQTT_ADMIN_PASSWORD": broker.admin_password,
        "LCCM_DATA_DIR": str(data_dir),
    }


def lccm(env: dict[str, str], *argv: str) -> Any:
    result = CliRunner().invoke(app, list(argv), env=env)
    assert result.exit_code == 0, result.output
    return result


def read_credentials(path: Path) -> dict[str, str]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:  # user name = client id = device id
        assert row["mqtt_username"] == row["mqtt_client_id"] == row["device_id"]
    return {row["device_id"]: row["mqtt_password"] for row in rows}


@pytest.fixture(scope="module")
def devices(broker: ProdBroker, db_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """`lccm broker setup`, then `lccm devices import` of devices A and B: their secrets, from the 0600 file."""
    folder = tmp_path_factory.mktemp("identity")
    env = env_for(broker, db_url, folder)
    lccm(env, "broker", "setup")
    out = folder / "first.csv"
    result = lccm(
        env, "devices", "import", str(_csv(folder, registry("DEV-A", "DEV-B"))), "--credentials-out", str(out)
    )
    assert "credentials: 2 issued (2 new, 0 rotated)" in result.output
    issued = read_credentials(out)
    assert set(issued) == {"DEV-A", "DEV-B"}
    for secret in issued.values():
        assert secret not in result.output  # shown once: in the file only
    return issued


def _csv(folder: Path, text: str) -> Path:
    path = folder / f"registry-{time.monotonic_ns()}.csv"
    path.write_text(text, encoding="utf-8")
    return path


def device(broker: ProdBroker, devices: dict[str, str], user: str, client_id: str | None = None) -> Client:
    return Client(broker.tls_port, user, devices[user], client_id or user, ca_file=broker.ca_file)


def ingest(broker: ProdBroker, client_id: str = INGEST_CLIENT, clean_start: bool = True) -> Client:
    return Client(broker.port, INGEST_USER, INGEST_PASSWORD, client_id, clean_start=clean_start, session_expiry_s=3600)


# --- issuing ------------------------------------------------------------------------------------------------------


def test_import_writes_each_secret_once_to_a_0600_file_and_stores_only_a_hash(
    broker: ProdBroker, db_url: str, devices: dict[str, str], tmp_path: Path
) -> None:
    with psycopg.connect(db_url) as conn:
        stored: dict[str, str] = dict(
            conn.execute(
                "SELECT d.device_id, c.secret_hash FROM device_credentials c JOIN devices d ON d.id = c.device_id"
            ).fetchall()
        )
    assert set(stored) == {"DEV-A", "DEV-B"}
    for device_id, secret_hash in stored.items():
        assert secret_hash.startswith("$argon2id$") and devices[device_id] not in secret_hash
        assert PasswordHasher().verify(secret_hash, devices[device_id])
    # A re-import issues nothing new and writes no file.
    env = env_for(broker, db_url, tmp_path)
    out = tmp_path / "again.csv"
    result = lccm(
        env, "devices", "import", str(_csv(tmp_path, registry("DEV-A", "DEV-B"))), "--credentials-out", str(out)
    )
    assert "credentials: none to issue" in result.output and not out.exists()


def test_the_credentials_file_is_readable_by_its_owner_only(
    broker: ProdBroker, db_url: str, devices: dict[str, str], tmp_path: Path
) -> None:
    env = env_for(broker, db_url, tmp_path)
    result = lccm(env, "devices", "import", str(_csv(tmp_path, registry("DEV-MODE"))))
    (path,) = (tmp_path / "credentials").glob("device-credentials-*.csv")
    assert str(path) in result.output
    assert path.stat().st_mode & 0o777 == 0o600
    assert set(read_credentials(path)) == {"DEV-MODE"}


def test_a_device_imported_while_the_broker_runs_publishes_within_seconds(
    broker: ProdBroker, db_url: str, devices: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = env_for(broker, db_url, tmp_path)
    out = tmp_path / "new.csv"
    started = time.monotonic()
    lccm(env, "devices", "import", str(_csv(tmp_path, registry("DEV-NEW"))), "--credentials-out", str(out))
    secret = read_credentials(out)["DEV-NEW"]
    first = None
    while first is None and time.monotonic() - started < 30:
        c = Client(broker.tls_port, "DEV-NEW", secret, "DEV-NEW", ca_file=broker.ca_file)
        if c.accepted and accepted_ok(c.publish(f"{ROOT_TOPIC}/{CITY}/DEV-NEW/up", b'{"seq": 1}')):
            first = time.monotonic() - started
        c.close()
    assert first is not None, broker.tail()
    with capsys.disabled():
        print(f"\n[import -> first accepted publish: {first:.2f} s, no broker restart]")


def test_rotation_disconnects_the_device_and_retires_the_old_secret(
    broker: ProdBroker, db_url: str, devices: dict[str, str], tmp_path: Path
) -> None:
    env = env_for(broker, db_url, tmp_path)
    lccm(env, "devices", "import", str(_csv(tmp_path, registry("DEV-ROT"))), "--credentials-out", str(tmp_path / "1"))
    old = read_credentials(tmp_path / "1")["DEV-ROT"]
    connected = Client(broker.tls_port, "DEV-ROT", old, "DEV-ROT", ca_file=broker.ca_file)
    assert connected.accepted
    result = lccm(env, "devices", "rotate", "DEV-ROT", "--credentials-out", str(tmp_path / "2"))
    assert "1 issued (0 new, 1 rotated)" in result.output
    new = read_credentials(tmp_path / "2")["DEV-ROT"]
    assert new != old
    deadline = time.monotonic() + 5
    while connected.client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not connected.client.is_connected(), "the broker kept the old credential's connection"
    connected.close()
    refused = Client(broker.tls_port, "DEV-ROT", old, "DEV-ROT", ca_file=broker.ca_file)
    assert refused.connack == "Not authorized"
    refused.close()
    works = Client(broker.tls_port, "DEV-ROT", new, "DEV-ROT", ca_file=broker.ca_file)
    assert works.accepted
    works.close()
    unknown = CliRunner().invoke(app, ["devices", "rotate", "NOPE"], env=env)
    assert unknown.exit_code == 1 and "not registered: NOPE" in unknown.output


def test_devices_registered_without_credentials_get_them_from_issue(
    broker: ProdBroker, db_url: str, devices: dict[str, str], tmp_path: Path
) -> None:
    env = env_for(broker, db_url, tmp_path)
    result = lccm(env, "devices", "import", str(_csv(tmp_path, registry("DEV-LATE"))), "--no-credentials")
    assert "credentials: not issued (--no-credentials)" in result.output
    out = tmp_path / "issued.csv"
    result = lccm(env, "devices", "issue", "--credentials-out", str(out))
    assert "1 issued (1 new, 0 rotated)" in result.output  # DEV-LATE only: every other device has one
    secret = read_credentials(out)["DEV-LATE"]
    late = Client(broker.tls_port, "DEV-LATE", secret, "DEV-LATE", ca_file=broker.ca_file)
    assert late.accepted and accepted_ok(late.publish(f"{ROOT_TOPIC}/{CITY}/DEV-LATE/up", b"{}"))
    late.close()


def test_import_without_the_broker_admin_refuses_before_writing_anything(db_url: str, tmp_path: Path) -> None:
    env = {"LCCM_DATABASE_URL": db_url, "LCCM_DATA_DIR": str(tmp_path), "LCCM_MQTT_ADMIN_PASSWORD": ""}
    result = CliRunner().invoke(app, ["devices", "import", str(_csv(tmp_path, registry("DEV-NOADMIN")))], env=env)
    assert result.exit_code == 2 and "LCCM_MQTT_ADMIN_PASSWORD" in result.output
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT 1 FROM devices WHERE device_id = 'DEV-NOADMIN'").fetchone() is None


# --- reserved identities ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device_id", ["lccm-ingest-1", "lccm-admin", "LCCM-alerts-x", "lccm_ingest", "lccm", "alerts"])
def test_the_registry_refuses_reserved_identities_as_device_ids(device_id: str) -> None:
    assert is_reserved_identity(device_id)
    with pytest.raises(RegistryInvalid) as refused:
        parse_registry_csv(registry("OK-1", device_id))
    ((row, column, message),) = [(e.row, e.column, e.message) for e in refused.value.errors]
    assert (row, column) == (3, "device_id") and "reserved" in message


def test_ids_that_merely_start_with_the_letters_are_devices() -> None:
    assert not is_reserved_identity("lccmeter-01") and not is_reserved_identity("LC-CM-1")
    assert [r.device_id for r in parse_registry_csv(registry("lccmeter-01"))] == ["lccmeter-01"]


# --- the attacks, replayed ------------------------------------------------------------------------------------------


def test_a_device_cannot_publish_telemetry_or_a_retained_status_as_another(
    broker: ProdBroker, devices: dict[str, str]
) -> None:
    watcher = ingest(broker, "lccm-ingest-watch-1")
    assert watcher.subscribe(f"{ROOT_TOPIC}/#") == ["Granted QoS 1"]
    # With A's password and B's client id: refused at CONNECT (the client id is bound to the user name).
    as_b = device(broker, devices, "DEV-A", client_id="DEV-B")
    assert as_b.connack == "Not authorized"
    as_b.close()
    # With A's own client id, on B's topics: refused per message.
    a = device(broker, devices, "DEV-A")
    assert a.accepted
    assert a.publish(f"{ROOT_TOPIC}/{CITY}/DEV-B/up", b'{"seq": 1, "values": {"energy_kwh": 1}}') == "Not authorized"
    assert a.publish(f"{ROOT_TOPIC}/{CITY}/DEV-B/status", b"offline", retain=True) == "Not authorized"
    assert accepted_ok(a.publish(f"{ROOT_TOPIC}/{CITY}/DEV-A/up", b'{"seq": 1}'))  # its own: accepted
    a.close()
    got = watcher.wait_for(1)
    time.sleep(0.3)  # anything refused but delivered regardless would have arrived with the accepted one
    assert [m.topic for m in watcher.messages] == [f"{ROOT_TOPIC}/{CITY}/DEV-A/up"], got
    watcher.close()
    # No retained "offline" for B: a new subscriber gets nothing.
    late = ingest(broker, "lccm-ingest-watch-2")
    late.subscribe(f"{ROOT_TOPIC}/{CITY}/DEV-B/status")
    time.sleep(0.3)
    assert late.messages == []
    late.close()


def test_a_device_cannot_forge_an_alert(broker: ProdBroker, devices: dict[str, str], tmp_path: Path) -> None:
    with open_identities(BrokerAdminConfig("127.0.0.1", broker.port, ADMIN_USER, broker.admin_password)) as admin:
        reader_user, reader_secret = add_alert_reader(admin, "control-room", ROOT_TOPIC)
    reader = Client(broker.tls_port, reader_user, reader_secret, reader_user, ca_file=broker.ca_file)
    assert reader.subscribe(f"{ROOT_TOPIC}/+/alerts/#") == ["Granted QoS 1"]
    # Client id "alerts" with A's password: refused at CONNECT.
    named_alerts = device(broker, devices, "DEV-A", client_id="alerts")
    assert named_alerts.connack == "Not authorized"
    named_alerts.close()
    a = device(broker, devices, "DEV-A")
    forged = b'{"severity": "critical", "kind": "pm25_high", "message": "evacuate"}'
    assert a.publish(f"{ROOT_TOPIC}/{CITY}/alerts/critical", forged) == "Not authorized"
    a.close()
    # The real publisher (the ingest identity) still reaches the reader.
    publisher = ingest(broker, "lccm-ingest-1-alerts")
    assert accepted_ok(publisher.publish(f"{ROOT_TOPIC}/{CITY}/alerts/warning", b'{"real": true}'))
    publisher.close()
    assert [m.payload for m in reader.wait_for(1)] == [b'{"real": true}']
    # The reader reads alerts only: no device data, no publishing.
    assert reader.subscribe(f"{ROOT_TOPIC}/#") == ["Not authorized"]
    assert reader.publish(f"{ROOT_TOPIC}/{CITY}/alerts/critical", forged) == "Not authorized"
    reader.close()


def test_no_credential_but_the_ingest_s_can_take_its_session_and_its_queue_survives(
    broker: ProdBroker, devices: dict[str, str]
) -> None:
    # The single ingest's plain subscription (no share group: the default, docs/durability.md).
    plain = f"{ROOT_TOPIC}/{CITY}/DEV-B/#"
    # The ingest's persistent session (clean start off, 1 h expiry), subscribed, then away.
    first = ingest(broker, clean_start=True)
    assert first.subscribe(plain) == ["Granted QoS 1"]
    first.close()
    queued = 500
    b = device(broker, devices, "DEV-B")
    for seq in range(queued):
        assert accepted_ok(b.publish(f"{ROOT_TOPIC}/{CITY}/DEV-B/up", f'{{"seq": {seq}}}'))
    b.close()
    # The takeover attempts: a device's credential with the ingest's client id, with or without a clean start.
    for clean_start in (False, True):
        thief = Client(
            broker.tls_port, "DEV-A", devices["DEV-A"], INGEST_CLIENT, ca_file=broker.ca_file, clean_start=clean_start
        )
        assert thief.connack == "Not authorized"
        assert thief.messages == []
        thief.close()
    # The ingest comes back: every queued reading is there.
    back = ingest(broker, clean_start=False)
    received = back.wait_for(queued)
    back.close()
    assert sorted(int(m.payload.decode().split(": ")[1].rstrip("}")) for m in received) == list(range(queued))


def test_a_device_cannot_use_the_broker_s_control_api(broker: ProdBroker, devices: dict[str, str]) -> None:
    """A device credential cannot make itself an admin or read the plugin's answers."""
    a = device(broker, devices, "DEV-A")
    grab = b'{"commands": [{"command": "addClientRole", "username": "DEV-A", "rolename": "lccm-ingest"}]}'
    assert a.publish("$CONTROL/dynamic-security/v1", grab) == "Not authorized"
    assert a.subscribe("$CONTROL/dynamic-security/v1/response") == ["Not authorized"]
    assert a.subscribe("$SYS/#") == ["Not authorized"]
    assert a.subscribe(f"{ROOT_TOPIC}/#") == ["Not authorized"]  # nor other devices' data
    a.close()


def test_anonymous_clients_are_refused_on_every_listener(broker: ProdBroker) -> None:
    for port, ca in ((broker.port, None), (broker.tls_port, broker.ca_file)):
        anonymous = Client(port, None, None, "health", ca_file=ca)
        assert anonymous.connack == "Not authorized", port
        anonymous.close()


def test_the_tls_listener_proves_its_certificate_and_refuses_plain_mqtt(
    broker: ProdBroker, devices: dict[str, str]
) -> None:
    a = device(broker, devices, "DEV-A")  # verified against the throwaway CA, host name 127.0.0.1
    assert a.accepted and isinstance(a.client.socket(), ssl.SSLSocket)
    a.close()
    try:
        plain = Client(broker.tls_port, "DEV-A", devices["DEV-A"], "DEV-A", wait_s=2)
    except OSError:
        return  # the TLS listener dropped the plain connection at once
    assert not plain.accepted, plain.connack
    plain.close()


def test_compose_s_healthcheck_passes_on_this_broker_and_reads_no_device_data(
    broker: ProdBroker, devices: dict[str, str]
) -> None:
    svc = load()["services"]["mosquitto"]
    test = [interpolate(str(t)) for t in svc["healthcheck"]["test"]]
    assert test[0] == "CMD-SHELL"
    command = test[1].replace("-p 1883", f"-p {broker.port}")
    env = {"PATH": os.environ["PATH"], "MQTT_ADMIN_USERNAME": ADMIN_USER, "MQTT_ADMIN_PASSWORD": broker.admin_password}
    done = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, (shlex.quote(command), done.stdout, done.stderr)
    # Without the admin's password the same check fails: it is not an anonymous door.
    env["MQTT_ADMIN_PASSWORD"] = "wrong"
    assert subprocess.run(["sh", "-c", command], env=env, capture_output=True, timeout=20).returncode != 0


def test_the_admin_commands_can_speak_tls(broker: ProdBroker, db_url: str, tmp_path: Path) -> None:
    """LCCM_MQTT_ADMIN_TLS_CA_FILE: the control messages (which carry passwords) over the TLS listener."""
    env = env_for(broker, db_url, tmp_path) | {
        "LCCM_MQTT_PORT": str(broker.tls_port),
        "LCCM_MQTT_ADMIN_TLS_CA_FILE": str(broker.ca_file),
    }
    out = tmp_path / "tls.csv"
    lccm(env, "devices", "import", str(_csv(tmp_path, registry("DEV-TLSADMIN"))), "--credentials-out", str(out))
    secret = read_credentials(out)["DEV-TLSADMIN"]
    c = Client(broker.tls_port, "DEV-TLSADMIN", secret, "DEV-TLSADMIN", ca_file=broker.ca_file)
    assert c.accepted
    c.close()


def test_broker_setup_is_idempotent(broker: ProdBroker, devices: dict[str, str]) -> None:
    with open_identities(BrokerAdminConfig("127.0.0.1", broker.port, ADMIN_USER, broker.admin_password)) as admin:
        admin.put_services(IngestIdentity(ROOT_TOPIC, "lccm-ingest", INGEST_USER, INGEST_PASSWORD))
        admin.put_services(IngestIdentity(ROOT_TOPIC, "lccm-ingest", INGEST_USER, INGEST_PASSWORD))
    again = ingest(broker, "lccm-ingest-setup-check")
    assert again.accepted and again.subscribe(f"$share/lccm-ingest/{ROOT_TOPIC}/#") == ["Granted QoS 1"]
    again.close()


def test_the_demo_broker_config_keeps_anonymous_publishing_and_the_same_admin_commands() -> None:
    with prod_broker("mosquitto-dev.conf") as dev:
        simulator = Client(dev.port, None, None, "lccm-simulator-1")
        assert simulator.accepted and accepted_ok(simulator.publish(f"{ROOT_TOPIC}/{CITY}/ANY-1/up", b"{}"))
        simulator.close()
        with open_identities(BrokerAdminConfig("127.0.0.1", dev.port, ADMIN_USER, dev.admin_password)) as admin:
            admin.put_services(IngestIdentity(ROOT_TOPIC, "lccm-ingest", INGEST_USER, INGEST_PASSWORD))


def test_the_shipped_names_are_the_reserved_ones() -> None:
    """Settings, compose and the code name the same service identities, all under the reserved prefix."""
    from deploy.compose import environment
    from lccm.mqtt_identity import ADMIN_USER, INGEST_USER
    from lccm.settings import Settings

    services = load()["services"]
    assert Settings.model_fields["mqtt_admin_username"].default == ADMIN_USER
    assert environment(services["mosquitto"])["MQTT_ADMIN_USERNAME"] == ADMIN_USER
    assert environment(services["ingest"])["LCCM_MQTT_USERNAME"] == INGEST_USER
    assert all(is_reserved_identity(name) for name in (ADMIN_USER, INGEST_USER, "lccm-alerts-control-room"))
