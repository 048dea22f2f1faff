"""The web pages benchmark runs end to end at a tiny size: every page route answered, its JSON summary printed last.
No timing is asserted (the machines are shared): only that each figure is there and makes sense."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "web.py"
ADMIN_URL = os.environ.get("LCCM_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.mark.slow
def test_a_tiny_run_requests_every_page_route_and_prints_the_summary_last(tmp_path: Path) -> None:
    cmd = [sys.executable, str(BENCH), "--admin-url", ADMIN_URL, "--days", "0.05", "--requests", "3", "--warmup", "1"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    detail = result["detail"]
    assert detail["data"]["readings"] > 0 and detail["data"]["energy_buckets"] > 0
    assert detail["not_200"] == [] and detail["uncovered"] == []  # every page route and download answered 200
    assert result["goals_met"]["every_route_200"] and result["goals_met"]["every_route_covered"]
    routes = detail["routes"]
    for page in ("/", "/app/aq", "/app/carbon", "/overview.csv", "/web/assets/web.css"):
        assert page in routes, page
    assert any(u.startswith("/app/sites/") for u in routes) and any(u.endswith(".csv") for u in routes)
    for figures in routes.values():
        assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert result["p99_max_ms"] == routes[result["slowest_route"]]["p99_ms"]
    assert result["overview_ms"] == routes["/"]["p50_ms"] and result["map_ms"] == routes["/app/aq"]["p50_ms"]
    assert "skipped" in detail["browser"] or set(detail["browser"]) == {"/", "/app/aq"}
