"""The command line as a user runs it: the demo on embedded services, and the container health check."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from lccm.cli import HEARTBEAT_FILE, app
from lccm.services import Broker

REASONS = {
    "bad_topic", "oversized_payload", "too_many_readings", "bad_json", "bad_payload", "bad_senml", "unknown_field",
    "unknown_device", "device_mismatch", "unknown_metric", "unknown_unit", "bad_time", "naive_time", "future_time",
    "non_finite_value", "out_of_range", "bad_status",
}  # fmt: skip


@pytest.mark.slow
def test_demo_runs_on_embedded_services_serves_the_api_and_prints_one_json_summary(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LCCM_")}
    env["LCCM_DATA_DIR"] = str(tmp_path / "data")
    env["LCCM_API_PORT"] = "0"  # any free port; the demo prints the one it took
    proc = subprocess.Popen(
        [sys.executable, "-m", "lccm", "demo", "--duration", "20", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    api_url, password = None, None
    for line in proc.stderr:
        if line.startswith("API: "):
            api_url = line.split()[1]
        if line.startswith("log in"):  # the demo's accounts, printed with their passwords of this run
            found = re.search(r"demo-viewer / (\S+?)(,|$)", line.strip())
            password = found.group(1) if found else None
            break
    assert api_url, f"the demo did not print the API address; exit {proc.wait(60)}: {proc.stderr.read()[-3000:]}"
    assert password, "the demo did not print the viewer's login"
    time.sleep(5)
    health = httpx.get(f"{api_url}/health", timeout=10)
    with httpx.Client(base_url=api_url, timeout=10) as viewer:
        assert viewer.post("/auth/login", json={"username": "demo-viewer", "password": password}).status_code == 200
        latest = viewer.get("/devices/LPG-TH-01-M1/latest")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text
    assert latest.status_code == 200, latest.text
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["database"] == "embedded" and summary["broker"] in {"mosquitto", "amqtt"}
    assert summary["devices_seen"] == summary["devices_registered"] > 2000
    assert summary["readings_stored"] > 10_000 and summary["readings_per_s"] > 0
    assert summary["simulator"]["not_acked"] == 0
    assert set(summary["dead_letters"]) <= REASONS and summary["dead_letters"].get("unknown_device", 0) > 0
    # The example base year (11 items) is imported, and every meter of the city maps to its metered item.
    assert summary["inventory"]["import"] == "applied" and summary["inventory"]["items"] == 11
    assert summary["inventory"]["devices_mapped"] == 101
    # Alerts run as in `lccm ingest`: every paged change was handed on and reached the MQTT alert topic once.
    alerts = summary["alerts"]
    assert alerts["changes_handed_on"] == alerts["changes_paged"] == alerts["deliveries_ok"]
    assert alerts["deliveries_failed"] == 0


def test_healthcheck_requires_database_broker_and_for_ingest_a_fresh_heartbeat(
    fresh_db: str, broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LCCM_DATABASE_URL", fresh_db)
    monkeypatch.setenv("LCCM_MQTT_HOST", broker.host)
    monkeypatch.setenv("LCCM_MQTT_PORT", str(broker.port))
    monkeypatch.setenv("LCCM_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    assert runner.invoke(app, ["healthcheck"]).exit_code == 0
    no_beat = runner.invoke(app, ["healthcheck", "--ingest"])
    assert no_beat.exit_code == 1 and "heartbeat" in no_beat.output
    beat = tmp_path / HEARTBEAT_FILE
    beat.write_text("{}")
    assert runner.invoke(app, ["healthcheck", "--ingest"]).exit_code == 0
    os.utime(beat, (time.time() - 120, time.time() - 120))
    assert runner.invoke(app, ["healthcheck", "--ingest"]).exit_code == 1
    monkeypatch.setenv("LCCM_MQTT_PORT", "1")  # nothing listens there
    assert runner.invoke(app, ["healthcheck"]).exit_code == 1


@pytest.mark.parametrize(
    ("argv", "env", "missing"),
    [
        (["migrate"], {}, "LCCM_DATABASE_URL"),
        (["api"], {}, "LCCM_DATABASE_URL"),
        (["ingest"], {}, "LCCM_DATABASE_URL"),
        (["ingest"], {"LCCM_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"}, "LCCM_MQTT_HOST"),
        (["devices", "list"], {}, "LCCM_DATABASE_URL"),
        (["recompute", "--from", "2026-01-01T00:00+07:00", "--to", "2026-01-02T00:00+07:00"], {}, "LCCM_DATABASE_URL"),
    ],
)
def test_a_missing_server_setting_stops_at_once_naming_it(
    argv: list[str], env: dict[str, str], missing: str, tmp_path: Path
) -> None:
    # Only `lccm demo` starts embedded servers: a production process with an empty setting must not quietly keep
    # its data in a private database under ./.lccm.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LCCM_")}
    clean |= {"LCCM_DATA_DIR": str(tmp_path / "data"), **env}
    done = subprocess.run([sys.executable, "-m", "lccm", *argv], env=clean, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], "one line, no traceback"
    assert missing in done.stderr and done.stdout == ""
    assert not (tmp_path / "data").exists(), "nothing was started under the data directory"
