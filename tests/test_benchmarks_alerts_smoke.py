"""The alert latency benchmark runs end to end at a tiny size and ends with its JSON summary line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "alerts.py"
ADMIN_URL = os.environ.get("LCCM_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="the benchmark needs the mosquitto broker")
def test_a_tiny_run_times_every_metric_alert_and_prints_the_summary_last(tmp_path: Path) -> None:
    cmd = [
        sys.executable, str(BENCH), "--admin-url", ADMIN_URL, "--city", "aq", "--hours", "4", "--speed", "3600",
        "--prefill-hours", "1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # 4 h of 9 Jan 2026 at the six stations: the night's inversion takes raw PM2.5 across the benchmark's tiers.
    assert result["alerts"] > 0 and result["latency_alerts"] > 0
    assert result["detail"]["unmatched"] == 0  # every timed alert was traced to the message that triggered it
    assert 0 < result["latency_p50_s"] <= result["latency_p99_s"] <= result["latency_max_s"] < 60
    # six stations, a reading time every 5 minutes for 4 hours, 8 metrics each (AQ-04 batches 3 per message)
    assert result["detail"]["readings"] == 6 * 4 * 12 * 8
    # Notifications as `lccm ingest` sends them: every on-time timed alert reached the MQTT alert topic's subscriber
    # and the webhook receiver (signature checked there), after it was published and no sooner than it was raised.
    delivery = result["detail"]["delivery"]
    on_time = result["latency_alerts"] - delivery["late_not_paged"]
    assert on_time > 0
    for channel in ("mqtt", "webhook"):
        assert delivery[channel]["alerts"] == on_time and delivery[channel]["missing"] == 0, delivery[channel]
        p50, p99 = result[f"delivery_{channel}_p50_s"], result[f"delivery_{channel}_p99_s"]
        assert result["latency_p50_s"] < p50 <= p99 <= delivery[channel]["max_s"] < 60
        assert delivery["deliveries_by_channel"][channel]["ok"] >= on_time
    assert delivery["webhook"]["bad_signatures"] == 0
    # two addresses (the MQTT-all recipient, the webhook) per change handed on in the window, all delivered
    assert result["deliveries_failed"] == 0
    assert result["deliveries_ok"] == 2 * delivery["window_changes_notified"]
