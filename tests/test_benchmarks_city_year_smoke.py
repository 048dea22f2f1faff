"""The city-year benchmark runs end to end at a tiny size: every page, API and dashboard query is timed and the
JSON summary, with the table sizes, is its last line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "city_year.py"
ADMIN_URL = os.environ.get("LCCM_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.mark.slow
def test_a_tiny_city_year_times_every_query_and_prints_the_summary_last(tmp_path: Path) -> None:
    cmd = [
        sys.executable, str(BENCH), "--admin-url", ADMIN_URL, "--meters", "6", "--sites", "3", "--stations", "1",
        "--days", "9", "--repeat", "2",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    queries = result["queries"]
    # 6 meters x 9 days x 96 quarter-hours, and the power rollups of the meters and the PM2.5 of the station
    assert result["detail"]["rows_written"]["energy_15min"] == 6 * 9 * 96
    assert result["detail"]["rows_written"]["samples_15min"] == 7 * 9 * 96
    assert queries["energy FY by site, 1 day"]["rows"] == 3 * 9  # three sites x nine days
    assert queries["energy FY by site, 1 month"]["rows"] == 3  # October only
    assert queries["live power and today's energy, one site"]["rows"] == 2
    # "now" is the end of the ninth day: today's rollups and the energy dashboard's week read what was built
    assert queries["rollups power by site, today 15 min"]["rows"] == 3 * 96
    assert queries["dashboard energy: Daily energy per site (Bangkok days)"]["rows"] == 3 * 7
    assert any(name.startswith("dashboard energy:") for name in queries)
    assert any(name.startswith("dashboard air-quality:") for name in queries)
    for name, q in queries.items():
        assert 0 < q["p50_ms"] <= q["p99_ms"], name
        assert name in "\n".join(lines[:-1])  # the printed table
    assert result["goal_p99_ms"] == 200
    assert result["goal_met"] == (result["slowest_p99_ms"] < 200)
    assert result["sizes_mb"]["energy_buckets"] > 0 and result["sizes_mb"]["sample_buckets"] > 0
