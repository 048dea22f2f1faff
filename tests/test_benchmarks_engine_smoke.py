"""The engine benchmark runs end to end at a small size, prints its JSON summary last, and every implementation
it ran agrees with the engine."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "engine.py"
KEYS = (
    "readings_per_s",
    "speedup_vs_pandas",
    "speedup_vs_polars",
    "speedup_vs_duckdb",
    "x_single_pass",
    "x_scatter_bound",
    "jit_compile_s",
    "warm_start_s",
)

pytestmark = pytest.mark.slow


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[dict[str, Any], str]:
    cmd = [sys.executable, str(BENCH), *args]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    lines = proc.stdout.strip().splitlines()
    result: dict[str, Any] = json.loads(lines[-1])
    return result, "\n".join(lines[:-1])


def test_a_small_run_reports_every_figure_and_all_implementations_agree(tmp_path: Path) -> None:
    result, report = _run(tmp_path, "--readings", "200000", "--devices", "2000", "--cold-runs", "1", "--warm-runs", "1")
    for key in KEYS:
        assert key in result, key
    assert result["readings"] == 200_000
    assert result["agreed"] is True
    expected = ["ours", "pandas"] + [p for p in ("polars", "duckdb") if importlib.util.find_spec(p) is not None]
    assert result["implementations_checked"] == expected
    for name in expected[1:]:
        peer = result["detail"]["peers"][name]
        assert peer["agreed"] is True
        assert peer["bucket_total_max_rel_diff"] <= 1e-9
        assert result[f"speedup_vs_{name}"] > 0
    for key in ("readings_per_s", "x_single_pass", "x_scatter_bound", "jit_compile_s", "warm_start_s"):
        assert result[key] > 0, key
    scatter = result["detail"]["scatter_bound"]
    assert scatter["cell_max_rel_diff"] <= 1e-9  # checked against ours before it was timed
    assert result["x_scatter_bound"] == pytest.approx(result["detail"]["ours"]["best_s"] / scatter["best_s"])
    data = result["detail"]["data"]
    assert data["rollovers"] > 0  # the rollover rule is exercised, and every implementation handled it alike
    assert "readings/s" in report


def test_peers_that_cannot_be_imported_are_skipped_with_a_note(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    for name in ("polars", "duckdb"):
        (shadow / name).mkdir(parents=True)
        (shadow / name / "__init__.py").write_text(f"raise ImportError('{name} hidden by the test')\n")
    env = dict(os.environ, PYTHONPATH=str(shadow))
    result, report = _run(
        tmp_path,
        *("--readings", "20000", "--devices", "200", "--no-profile", "--repeat", "1", "--peer-repeat", "1"),
        *("--cold-runs", "1", "--warm-runs", "1"),
        env=env,
    )
    assert result["implementations_checked"] == ["ours", "pandas"]
    assert result["agreed"] is True
    assert result["speedup_vs_pandas"] > 0
    assert result["speedup_vs_polars"] is None
    assert result["speedup_vs_duckdb"] is None
    assert "vs polars skipped" in report
    assert "note: polars skipped: cannot import polars" in report
    assert "note: duckdb skipped: cannot import duckdb" in report
