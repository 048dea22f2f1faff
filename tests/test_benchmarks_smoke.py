"""The ingest benchmark runs end to end at a tiny size (the product as deployed, the stream alone, the Node-RED peer
when `make bench-peers` has installed it, the limits), prints its JSON summary last, and loses nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "ingest.py"
ADMIN_URL = os.environ.get("LCCM_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
KEYS = (
    "batched_readings_per_s",
    "single_msgs_per_s",
    "transport_limit_msgs_per_s",
    "copy_limit_rows_per_s",
    "lost",
)


def _run(tmp_path: Path, *args: str) -> dict[str, Any]:
    cmd = [sys.executable, str(BENCH), "--devices", "20", "--admin-url", ADMIN_URL, *args]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("mosquitto") is None, reason="the benchmark needs the mosquitto broker"),
]


def test_a_tiny_default_run_reports_every_figure_and_loses_nothing(tmp_path: Path) -> None:
    result = _run(tmp_path, "--messages", "2000", "--batched-messages", "100")
    for key in KEYS:
        assert key in result, key
    assert result["lost"] == 0
    assert result["extra"] == 0
    assert result["duplicates_published"] > 0
    assert result["duplicates_removed"] == result["duplicates_published"]
    for key in KEYS[:-1]:
        assert result[key] > 0, key
    single = result["detail"]["single"]["ingest"]
    assert single["wiring"] == "deployed"
    assert single["readings_stored"] == single["readings_expected"] == 2000
    assert single["dead_letters"] == 0
    assert single["derived_complete"] is True
    assert 0 < single["derived_readings_per_s"] <= single["readings_per_s"]
    stream = result["detail"]["batched"]["stream"]
    assert stream["wiring"] == "stream"
    assert stream["readings_stored"] == stream["readings_expected"] == 100 * 100
    assert stream["lost"] == stream["extra"] == 0
    for workload in ("single", "batched"):
        peer = result["detail"][workload]["nodered"]
        assert "skipped" in peer or peer["readings_stored"] == peer["readings_expected"] - peer["lost"] > 0


def test_raw_publishers_two_ingest_processes_and_a_time_limit_lose_nothing(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        *("--messages", "100000", "--seconds", "1", "--workloads", "single", "--phases", "ingest"),
        *("--publisher", "raw", "--ingest-processes", "2"),
    )
    ingest = result["detail"]["single"]["ingest"]
    assert result["lost"] == 0
    assert result["extra"] == 0
    assert 0 < ingest["readings_stored"] == ingest["readings_expected"] < 100_000  # stopped by --seconds
    assert result["duplicates_removed"] == result["duplicates_published"]


def test_the_deployed_phase_split_into_stream_and_derived_processes(tmp_path: Path) -> None:
    """--derived-processes: the stream process(es) of role stream, the derived work in a process of its own
    (docs/partitions.md#roles); everything stored once and the derived data caught up."""
    result = _run(
        tmp_path,
        "--batched-messages",
        "100",
        "--workloads",
        "batched",
        "--phases",
        "ingest",
        "--derived-processes",
        "1",
    )
    ingest = result["detail"]["batched"]["ingest"]
    assert ingest["roles"] == ["stream", "derived"]
    assert ingest["readings_stored"] == ingest["readings_expected"] == 100 * 100
    assert ingest["lost"] == ingest["extra"] == 0
    assert ingest["derived_complete"] is True


def test_the_scale_benchmark_runs_one_and_two_processes_and_a_split(tmp_path: Path) -> None:
    """benchmarks/scale.py at a tiny size: real `lccm ingest` processes, ratios on its last line, nothing lost."""
    cmd = [
        sys.executable, str(BENCH.with_name("scale.py")), "--devices", "20", "--batched-messages", "100",
        "--configs", "1,2,1s1d", "--admin-url", ADMIN_URL,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["lost"] == result["extra"] == 0
    assert set(result["readings_per_s"]) == {"1", "2", "1s1d"} and all(result["readings_per_s"].values())
    assert result["ratio_2_vs_1"] > 0 and result["copy_rows_per_s"] > 0
    assert [r["roles"] for r in result["detail"]] == [["all"], ["all", "all"], ["stream", "derived"]]
    assert all(r["exit_codes"] == [0] * r["processes"] for r in result["detail"])
