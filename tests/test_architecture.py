"""The dependency rules of design.md, checked on the source: stages import only what the design allows, and only
under the one import root ``lccm``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAGES = {"ingest", "stream", "engine", "store", "api", "dashboards", "simulators", "notify", "imports", "reports"}
ALLOWED = {
    "ingest": {"stream", "notify"},  # the MQTT alert publisher implements notify's interface
    "stream": {"engine", "store"},
    "engine": set(),
    # The store writes the records imports/ reads from people's files (and reports their rows' errors with its
    # RowError): it names those types, nothing else of the project.
    "store": {"imports"},
    "imports": set(),  # pure: bytes in, records out
    "reports": {"store", "engine", "imports"},
    "api": {"store", "engine", "reports", "imports"},
    "dashboards": {"store"},
    "simulators": set(),
    "notify": set(),
}
PAHO_ALLOWED = {"ingest", "simulators"}


def _modules(folder: Path) -> list[tuple[Path, str]]:
    """(file, imported module) for every absolute import in the folder's Python files."""
    found = []
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found += [(path, a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((path, node.module))
                if node.module == "lccm":  # from lccm import engine
                    found += [(path, f"lccm.{a.name}") for a in node.names]
    return found


def _stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "lccm" and len(parts) > 1 and parts[1] in STAGES else None


def _imports(package: str) -> dict[str, set[str]]:
    """Top-level names and project stages a stage's files import: ``lccm.engine.x`` counts as ``engine``."""
    out: dict[str, set[str]] = {}
    for path, module in _modules(ROOT / package):
        name = _stage_of(module) or module.split(".")[0]
        out.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return out


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_stage_imports_only_what_the_design_allows(package: str) -> None:
    imported = _imports(package)
    wrong = {m: files for m, files in imported.items() if m in STAGES - {package} - ALLOWED[package]}
    assert not wrong, f"{package}/ imports {wrong}"
    assert "lccm" not in imported, f"{package}/ imports the composition root: {imported.get('lccm')}"
    if package not in PAHO_ALLOWED:
        assert "paho" not in imported, f"{package}/ imports paho-mqtt: {imported.get('paho')}"


IO_MODULES = {"psycopg", "psycopg_pool", "paho", "socket", "httpx", "requests", "fastapi", "sqlite3"}


def test_engine_does_no_io() -> None:
    assert not IO_MODULES & set(_imports("engine"))


def test_imports_read_bytes_and_do_no_io() -> None:
    assert not IO_MODULES & set(_imports("imports"))


def test_reports_know_no_http() -> None:
    # reports/ answers the API and the CLI alike: status codes and request objects stay in api/.
    assert not {"fastapi", "starlette", "typer"} & set(_imports("reports"))


@pytest.mark.parametrize("folder", sorted(STAGES | {"lccm", "tests", "benchmarks", "docs"}))
def test_nothing_imports_a_stage_outside_the_import_root(folder: str) -> None:
    bare = [f"{p.relative_to(ROOT)}: {m}" for p, m in _modules(ROOT / folder) if m.split(".")[0] in STAGES]
    assert not bare, f"import these as lccm.<stage>: {bare}"


def test_every_stage_is_linked_under_the_import_root() -> None:
    # The wheel gets lccm/<stage> by following these links (pyproject.toml); a missing one would ship without it.
    for stage in STAGES:
        link = ROOT / "lccm" / stage
        assert link.is_symlink() and link.resolve() == (ROOT / stage).resolve(), f"lccm/{stage} -> ../{stage}"
