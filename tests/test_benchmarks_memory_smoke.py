"""The memory benchmark runs end to end at a tiny size, prints its JSON summary last, and loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "memory.py"
ADMIN_URL = os.environ.get("LCCM_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.mark.slow
def test_a_tiny_run_reports_peak_rss_and_each_structure_and_loses_nothing(tmp_path: Path) -> None:
    cmd = [
        *(sys.executable, str(BENCH), "--devices", "300", "--sites", "7", "--aq-share", "0.1"),
        *("--hours", "2", "--inbox-mb", "1", "--index-check", "--admin-url", ADMIN_URL),
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["lost"] == 0 and result["readings"] == 300 * 8 * 2
    assert 0 < result["rss_after_setup_mb"] <= result["peak_rss_mb"]
    assert len(result["rss_mb_per_hour"]) == 2
    held = result["structures"]
    assert 0 < held["inbox"]["peak_bytes"] <= held["inbox"]["budget_bytes"] == 2**20
    assert 0 < held["dedup_cache"]["bytes"] <= held["dedup_cache"]["budget_bytes"]
    alerts = held["alert_state"]
    assert alerts["devices"] == 300 and alerts["devices_with_history"] <= 30  # only the AQ stations keep spans
    # After the updaters drained, the index check runs the index rules on the AQI hours: they only let spans go.
    checked = result["index_check"]
    assert alerts["spans_kept"] == checked["spans_kept_after"] <= checked["spans_kept_before"]
