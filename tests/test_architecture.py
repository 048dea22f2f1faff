"""The dependency rules of design.md, checked on the source: stages import only what the design allows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = {"ingest", "stream", "engine", "store", "api", "dashboards", "simulators", "notify", "lccm"}
ALLOWED = {
    "ingest": {"stream", "notify"},  # the MQTT alert publisher implements notify's interface
    "stream": {"engine", "store"},
    "engine": set(),
    "store": set(),
    "api": {"store", "engine"},
    "dashboards": {"store"},
    "simulators": set(),
    "notify": set(),
    "lccm": PROJECT,
}
PAHO_ALLOWED = {"ingest", "simulators"}


def _imports(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_stage_imports_only_what_the_design_allows(package: str) -> None:
    imported = _imports(package)
    wrong = {m: files for m, files in imported.items() if m in PROJECT - {package} - ALLOWED[package]}
    assert not wrong, f"{package}/ imports {wrong}"
    if package not in PAHO_ALLOWED:
        assert "paho" not in imported, f"{package}/ imports paho-mqtt: {imported.get('paho')}"


def test_engine_does_no_io() -> None:
    io_modules = {"psycopg", "psycopg_pool", "paho", "socket", "httpx", "requests", "fastapi", "sqlite3"}
    assert not io_modules & set(_imports("engine"))
