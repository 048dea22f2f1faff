"""Settings that hold secrets never show them: not in repr() or str(), not in a JSON dump, not in the logs of a
command that fails to reach the services they are for."""

from __future__ import annotations

import subprocess
import sys

from pydantic import SecretStr

from lccm.settings import Settings

SECRETS = {
    "mqtt_password": "mqtt-s3cret-1",
    "notify_smtp_password": "smtp-s3cret-2",
    "notify_line_token": "line-s3cret-3",
    "metrics_token": "metrics-s3cret-4",
    "oidc_client_secret": "oidc-s3cret-5",
    "mqtt_admin_password": "mqtt-admin-s3cret-7",
    "emqx_api_key": "emqx-key-s3cret-8",
    "emqx_api_secret": "emqx-s3cret-9",
}
DB_PASSWORD = "db-s3cret-6"
DB_URL = f"postgresql://lccm:{DB_PASSWORD}@127.0.0.1:1/lccm"  # port 1: refused at once


def test_every_secret_setting_is_a_secret_str() -> None:
    settings = Settings.model_validate({"database_url": DB_URL, **{k: SecretStr(v) for k, v in SECRETS.items()}})
    for name, value in SECRETS.items():
        field = getattr(settings, name)
        assert isinstance(field, SecretStr) and field.get_secret_value() == value
    for text in (repr(settings), str(settings)):
        assert "mqtt_password=SecretStr('**********')" in text
        for value in [*SECRETS.values(), DB_PASSWORD]:
            assert value not in text
    dumped = settings.model_dump_json()  # a dump carries the database URL (it is configuration), not the secrets
    assert not [value for value in SECRETS.values() if value in dumped]


def test_a_failing_command_does_not_log_the_secrets() -> None:
    env = {f"LCCM_{k.upper()}": v for k, v in SECRETS.items()}
    env |= {"LCCM_DATABASE_URL": DB_URL, "LCCM_LOG_LEVEL": "DEBUG", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "lccm", "-v", "migrate"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "127.0.0.1" in output  # it did say what it could not reach
    for value in [*SECRETS.values(), DB_PASSWORD]:
        assert value not in output


def test_the_metrics_token_guards_metrics() -> None:
    from lccm.api.app import create_app
    from tests._auth import TestClient

    guarded = Settings(database_url="postgresql://nobody@127.0.0.1:1/none", metrics_token=SecretStr("scrape-me"))
    with TestClient(create_app(guarded)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        answer = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert answer.status_code == 200 and "lccm_api_requests" in answer.text
    with TestClient(create_app(Settings(database_url="postgresql://nobody@127.0.0.1:1/none"))) as client:
        assert client.get("/metrics").status_code == 200  # no token: open to whoever reaches the API
