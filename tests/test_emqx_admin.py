"""lccm provisions EMQX's built-in identity database (LCCM_BROKER_ADMIN=emqx): `lccm broker setup`,
`lccm broker add-reader`, `lccm devices import|rotate|issue`, and the REST client under them (ingest/emqx_admin.py).

NOT AGAINST EMQX: no EMQX runs here. The server is tests/_emqx_api.py, a small HTTP server implementing the REST
contract of EMQX v5.8.6 as its source states it (status codes, JSON bodies, basic auth by API key), and checking a
password as EMQX does at CONNECT (salted sha256, deploy/emqx/emqx.conf). The credential a device is handed is checked
against what the server stored, and against the argon2id hash lccm keeps in PostgreSQL.
"""

from __future__ import annotations

import csv
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from argon2 import PasswordHasher
from typer.testing import CliRunner

from lccm.cli import app
from lccm.ingest.broker_admin import BrokerAdminError
from lccm.ingest.emqx_admin import IMPORT_BATCH, EmqxAdmin, EmqxAdminConfig, EmqxUserExists, EmqxUserMissing
from lccm.mqtt_identity import IdentityError, IngestIdentity, open_identities
from tests._db import fresh_database
from tests._emqx_api import AUTHN_ID, FakeEmqx, fake_emqx

HEADER = "site_code,site_name,site_kind,city,device_id,device_kind,device_name,cadence_s\n"
INGEST_PASSWORD = "ingest-secret-for-tests"


def registry(tmp_path: Path, *device_ids: str) -> Path:
    path = tmp_path / "registry.csv"
    rows = "".join(f"HALL,Town hall,building,Lampang,{d},electricity_meter,{d},60\n" for d in device_ids)
    path.write_text(HEADER + rows, encoding="utf-8")
    return path


@pytest.fixture
def emqx() -> Iterator[FakeEmqx]:
    with fake_emqx() as fake:
        yield fake


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


def env_for(fake: FakeEmqx, data_dir: Path, db_url: str = "", **extra: str) -> dict[str, str]:
    return {
        "LCCM_DATABASE_URL": db_url,
        "LCCM_BROKER_ADMIN": "emqx",
        "LCCM_EMQX_API_URL": fake.url,
        "LCCM_EMQX_API_KEY": fake.api_key,
        "LCCM_EMQX_API_SECRET": fake.api_secret,
        "LCCM_MQTT_USERNAME": "lccm-ingest",
        "LCCM_MQTT_PASSWORD": INGEST_PASSWORD,
        "LCCM_MQTT_ADMIN_PASSWORD": "",  # not needed on EMQX
        "LCCM_DATA_DIR": str(data_dir),
        **extra,
    }


def run(env: dict[str, str], *argv: str, code: int = 0) -> Any:
    result = CliRunner().invoke(app, list(argv), env=env)
    assert result.exit_code == code, result.output
    return result


def read_credentials(path: Path) -> dict[str, str]:
    with path.open(encoding="utf-8", newline="") as f:
        return {row["mqtt_client_id"]: row["mqtt_password"] for row in csv.DictReader(f)}


def stored_hash(db_url: str, device_id: str) -> str | None:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT c.secret_hash FROM device_credentials c JOIN devices d ON d.id = c.device_id "
            "WHERE d.device_id = %s",
            (device_id,),
        ).fetchone()
    return None if row is None else str(row[0])


# --- lccm broker ---------------------------------------------------------------------------------------------------


def test_broker_setup_gives_every_worker_and_its_alert_publisher_an_entry_and_is_idempotent(
    emqx: FakeEmqx, tmp_path: Path
) -> None:
    env = env_for(emqx, tmp_path)
    argv = ["broker", "setup", "--ingest-client-id", "lccm-ingest-1", "--ingest-client-id", "lccm-ingest-2"]
    first = run(env, *argv)
    expected = {"lccm-ingest-1", "lccm-ingest-1-alerts", "lccm-ingest-2", "lccm-ingest-2-alerts"}
    assert set(emqx.users) == expected, first.output
    assert all(emqx.verify(c, INGEST_PASSWORD) for c in expected)
    assert not emqx.verify("lccm-ingest-1", "another password")
    assert "lccm-ingest-2-alerts" in first.output
    emqx.connected = set(expected)  # the workers run
    run(env, *argv)  # again: the same entries, the same password, and the running workers keep their sessions
    assert set(emqx.users) == expected and all(emqx.verify(c, INGEST_PASSWORD) for c in expected)
    assert emqx.kicked == []
    # Without the option: the worker this environment runs (LCCM_MQTT_CLIENT_ID).
    run({**env, "LCCM_MQTT_CLIENT_ID": "lccm-ingest-7"}, "broker", "setup")
    assert {"lccm-ingest-7", "lccm-ingest-7-alerts"} <= set(emqx.users)


def test_broker_setup_refuses_what_the_emqx_acl_would_not_grant(emqx: FakeEmqx, tmp_path: Path) -> None:
    env = env_for(emqx, tmp_path)
    bad_id = run(env, "broker", "setup", "--ingest-client-id", "worker-1", code=1)
    assert "'worker-1'" in bad_id.output and "deploy/emqx/acl.conf" in bad_id.output
    other_root = run({**env, "LCCM_MQTT_TOPIC_ROOT": "city/v2"}, "broker", "setup", code=1)
    assert "'city/v2'" in other_root.output and "acl.conf" in other_root.output
    assert emqx.users == {}


def test_add_reader_creates_its_client_id_entry(emqx: FakeEmqx, tmp_path: Path) -> None:
    env = env_for(emqx, tmp_path)
    out = tmp_path / "reader.csv"
    run(env, "broker", "add-reader", "control-room", "--credentials-out", str(out))
    (secret,) = read_credentials(out).values()
    assert set(emqx.users) == {"lccm-alerts-control-room"}
    assert emqx.verify("lccm-alerts-control-room", secret)
    # Again: a new secret; whoever is connected with the old one is cut off.
    emqx.connected = {"lccm-alerts-control-room"}
    again = tmp_path / "reader-again.csv"
    run(env, "broker", "add-reader", "control-room", "--credentials-out", str(again))
    (new,) = read_credentials(again).values()
    assert emqx.verify("lccm-alerts-control-room", new) and not emqx.verify("lccm-alerts-control-room", secret)
    assert emqx.kicked == ["lccm-alerts-control-room"]


# --- lccm devices --------------------------------------------------------------------------------------------------


def test_import_issue_and_rotate_reach_emqx(emqx: FakeEmqx, db_url: str, tmp_path: Path) -> None:
    env = env_for(emqx, tmp_path, db_url)
    reg = registry(tmp_path, "EMQ-A", "EMQ-B")
    first = tmp_path / "first.csv"
    run(env, "devices", "import", str(reg), "--credentials-out", str(first))
    issued = read_credentials(first)
    assert set(issued) == {"EMQ-A", "EMQ-B"} and set(emqx.users) == {"EMQ-A", "EMQ-B"}
    for device, secret in issued.items():
        assert emqx.verify(device, secret), device  # EMQX lets the device in with what its installer got
        hashed = stored_hash(db_url, device)
        assert hashed is not None and PasswordHasher().verify(hashed, secret)

    # Import twice: nothing new to issue, EMQX untouched, no file written.
    requests_before = len(emqx.requests)
    again = tmp_path / "again.csv"
    result = run(env, "devices", "import", str(reg), "--credentials-out", str(again))
    assert "none to issue" in result.output and not again.exists()
    assert len(emqx.requests) == requests_before
    assert all(emqx.verify(d, s) for d, s in issued.items())

    # Rotate: the old secret stops working, the device's open connection ends, the new secret works, PostgreSQL
    # holds the new one's hash; the other device stays connected.
    emqx.connected = {"EMQ-A", "EMQ-B"}
    rotated = tmp_path / "rotated.csv"
    run(env, "devices", "rotate", "EMQ-A", "--credentials-out", str(rotated))
    assert emqx.kicked == ["EMQ-A"] and emqx.connected == {"EMQ-B"}
    new = read_credentials(rotated)["EMQ-A"]
    assert new != issued["EMQ-A"]
    assert emqx.verify("EMQ-A", new) and not emqx.verify("EMQ-A", issued["EMQ-A"])
    assert emqx.verify("EMQ-B", issued["EMQ-B"])
    hashed = stored_hash(db_url, "EMQ-A")
    assert hashed is not None and PasswordHasher().verify(hashed, new)

    # A device registered without a credential (as POST /devices/import does) gets one from `devices issue`.
    run(env, "devices", "import", str(registry(tmp_path, "EMQ-C")), "--no-credentials")
    issued_c = tmp_path / "c.csv"
    run(env, "devices", "issue", "--credentials-out", str(issued_c))
    assert emqx.verify("EMQ-C", read_credentials(issued_c)["EMQ-C"])


def test_a_refused_issue_stores_nothing_and_can_be_re_run(emqx: FakeEmqx, db_url: str, tmp_path: Path) -> None:
    reg = registry(tmp_path, "EMQ-WRONGKEY")
    out = tmp_path / "creds.csv"
    wrong = env_for(emqx, tmp_path, db_url, LCCM_EMQX_API_SECRET="not-the-secret")
    result = run(wrong, "devices", "import", str(reg), "--credentials-out", str(out), code=1)
    assert "HTTP 401 BAD_API_KEY_OR_SECRET: Check api_key/api_secret" in result.output, result.output
    assert "LCCM_EMQX_API_SECRET" in result.output
    assert not out.exists() and stored_hash(db_url, "EMQ-WRONGKEY") is None and emqx.users == {}
    run(env_for(emqx, tmp_path, db_url), "devices", "import", str(reg), "--credentials-out", str(out))
    assert emqx.verify("EMQ-WRONGKEY", read_credentials(out)["EMQ-WRONGKEY"])


# --- failures, named ------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_emqx_is_named(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    env = {**env_for(FakeEmqx("k", "s", url=url), tmp_path)}
    result = run(env, "broker", "setup", code=1)
    assert f"cannot reach EMQX's REST API at {url}" in result.output


def test_missing_settings_are_named(tmp_path: Path) -> None:
    env = env_for(FakeEmqx("", "", url=""), tmp_path)
    result = run(env, "broker", "setup", code=2)
    for name in ("LCCM_EMQX_API_URL", "LCCM_EMQX_API_KEY", "LCCM_EMQX_API_SECRET"):
        assert name in result.output


def test_an_authenticator_keyed_by_user_name_is_refused(tmp_path: Path) -> None:
    with fake_emqx(user_id_type="username") as fake:
        result = run(env_for(fake, tmp_path), "broker", "setup", code=1)
        assert "authenticates by username, not by client id" in result.output
        assert fake.users == {}


def test_a_missing_authenticator_is_named(tmp_path: Path) -> None:
    with fake_emqx(has_authenticator=False) as fake:
        result = run(env_for(fake, tmp_path), "broker", "setup", code=1)
        assert "HTTP 404 NOT_FOUND" in result.output and f"Authenticator '{AUTHN_ID}' does not exist" in result.output


def test_the_client_names_an_existing_user_on_create_and_a_missing_one_on_change_or_delete(emqx: FakeEmqx) -> None:
    with EmqxAdmin(EmqxAdminConfig(emqx.url, emqx.api_key, emqx.api_secret)) as admin:
        admin.create_user("DEV-1", "pw-1")
        assert admin.get_user("DEV-1") == {"user_id": "DEV-1", "is_superuser": False}
        with pytest.raises(EmqxUserExists, match="creating user 'DEV-1': HTTP 409 ALREADY_EXISTS: User already exists"):
            admin.create_user("DEV-1", "pw-2")
        assert emqx.verify("DEV-1", "pw-1")
        admin.update_user("DEV-1", "pw-2")
        assert emqx.verify("DEV-1", "pw-2") and not emqx.verify("DEV-1", "pw-1")
        admin.delete_user("DEV-1")
        assert admin.get_user("DEV-1") is None
        with pytest.raises(EmqxUserMissing, match="deleting user 'DEV-1': HTTP 404 NOT_FOUND: User not found"):
            admin.delete_user("DEV-1")
        with pytest.raises(EmqxUserMissing, match="changing user 'DEV-1': HTTP 404"):
            admin.update_user("DEV-1", "pw-3")


def test_a_large_import_goes_in_batches_and_replaces_existing_entries(emqx: FakeEmqx) -> None:
    n = 2 * IMPORT_BATCH + 500
    passwords = {f"DEV-{i:05d}": f"pw-{i}" for i in range(n)}
    cfg = EmqxAdminConfig(emqx.url, emqx.api_key, emqx.api_secret)
    with EmqxAdmin(cfg) as admin:
        admin.create_user("DEV-00007", "old")
        counts = admin.import_users(passwords)
    assert (counts.total, counts.success, counts.override, counts.failed) == (n, n - 1, 1, 0)
    imports = [p for m, p in emqx.requests if p.endswith("/import_users")]
    assert len(imports) == 3
    assert len(emqx.users) == n and emqx.verify("DEV-00007", "pw-7") and emqx.verify(f"DEV-{n - 1:05d}", f"pw-{n - 1}")

    with open_identities(cfg) as ids:  # the same through the identity model, twice: idempotent
        ids.put_services(IngestIdentity("lccm/v1", "", "lccm-ingest", "pw", ("lccm-ingest-1",)))
        ids.put_services(IngestIdentity("lccm/v1", "", "lccm-ingest", "pw", ("lccm-ingest-1",)))
        with pytest.raises(IdentityError, match="reserved identity"):
            ids.put_devices("lccm/v1", {"lccm-ingest-1": "stolen"})
    assert emqx.verify("lccm-ingest-1", "pw") and emqx.verify("lccm-ingest-1-alerts", "pw")


def test_an_answer_that_is_not_emqx_is_an_error_not_a_success(emqx: FakeEmqx) -> None:
    """A URL pointing at something else (here: the API root, which the stand-in answers 404 like EMQX's router)."""
    cfg = EmqxAdminConfig(emqx.url + "/not-emqx", emqx.api_key, emqx.api_secret)
    with pytest.raises(BrokerAdminError, match="HTTP 404"):
        EmqxAdmin(cfg).connect()
