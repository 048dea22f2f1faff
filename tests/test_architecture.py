"""The dependency rules of the layout (README.md, "Layout"), checked on the source: stages import only what the design
allows, and only under the one import root ``lccm``."""

from __future__ import annotations

import ast
import os
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
# Leaf modules every stage but simulators/ may import (house rule: one concept, one place): the one definition of
# the city's time zone and calendar, and the words every stage uses about an alert (kinds of change, severities,
# states). Leaves - numpy and the standard library, no I/O - so importing one brings nothing else of the project;
# simulators/ imports nothing of the project and keeps its own copy of the calendar (simulators/timebase.py).
SHARED_LEAVES = {
    "lccm.engine.timebase": ROOT / "engine" / "timebase.py",
    "lccm.engine.alert_kinds": ROOT / "engine" / "alert_kinds.py",
}


def _modules(folder: Path) -> list[tuple[Path, str]]:
    """(file, imported module) for every absolute import in the folder's Python files."""
    return [found for path in folder.rglob("*.py") for found in _modules_of(path)]


def _modules_of(path: Path) -> list[tuple[Path, str]]:
    """(file, imported module) for every absolute import in one Python file."""
    found = []
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
    """Top-level names and project stages a stage's files import: ``lccm.engine.x`` counts as ``engine``, except the
    shared leaves :data:`SHARED_LEAVES`, which count as themselves (allowed to every stage but simulators/)."""
    out: dict[str, set[str]] = {}
    for path, module in _modules(ROOT / package):
        if module in SHARED_LEAVES and package != "simulators":
            continue
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


@pytest.mark.parametrize("leaf", sorted(SHARED_LEAVES))
def test_the_shared_modules_are_leaves(leaf: str) -> None:
    # What makes them safe for every stage to import: nothing of the project, no I/O, numpy and the standard library.
    imported = {m.split(".")[0] for _, m in _modules_of(SHARED_LEAVES[leaf])}
    assert imported <= {"__future__", "datetime", "enum", "typing", "numpy"}, imported
    package = ast.parse((ROOT / "engine" / "__init__.py").read_text(encoding="utf-8"))
    assert all(isinstance(n, ast.Expr) for n in package.body), "engine/__init__.py: a docstring only (no side effects)"


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


# --------------------------------------------------------------------------------------- one city time zone
# The city's time zone is defined once, in engine/timebase.py (BANGKOK, CITY_TZ_NAME; docs/reference.md#city-time-zone).
# simulators/ keeps its own copy (it imports nothing of the project); tests keep theirs as independent expectations;
# a migration may write the zone's name in a view, next to a comment naming CITY_TZ_NAME.
CITY_ZONE = "Asia/" + "Bangkok"  # split, so this line is not a definition itself
TZ_ALLOWED_PREFIXES = ("engine/timebase.py", "simulators/", "tests/")
# Files being rewritten on other branches when this rule came in, each with its own zone; the lead replaces those
# definitions with lccm.engine.timebase when merging and empties this set (the stale check below keeps it honest).
TZ_PENDING: frozenset[str] = frozenset()
_ZONE_FACTORIES = {"ZoneInfo", "timezone", "gettz", "FixedOffset"}
_TIMEBASE_ZONE_NAMES = {"BANGKOK", "CITY_TZ_NAME"}  # passing these on (e.g. Grafana's .timezone(...)) defines nothing


def _docstring_ids(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, kinds)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def python_zone_definitions(source: str) -> list[str]:
    """Where Python code defines a time zone: the zone's name or offset as a value (not in a docstring), a quoted
    SQL literal of it, or a time-zone object built from an offset or a name."""
    tree = ast.parse(source)
    docstrings = _docstring_ids(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value
            if text.strip() in {CITY_ZONE, "+07:00", "+0700", "+07", "ICT"} or f"'{CITY_ZONE}'" in text:
                found.append(f"line {node.lineno}: {text!r}")
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            args = [*node.args, *(kw.value for kw in node.keywords)]
            passed_on = all(isinstance(a, ast.Name) and a.id in _TIMEBASE_ZONE_NAMES for a in args)
            if name in _ZONE_FACTORIES and args and not passed_on:
                found.append(f"line {node.lineno}: {name}(...)")
            elif name == "timedelta" and any(
                kw.arg == "hours" and isinstance(kw.value, ast.Constant) and kw.value.value == 7 for kw in node.keywords
            ):
                found.append(f"line {node.lineno}: timedelta(hours=7)")
    return found


def sql_zone_definitions(relative: str, source: str) -> list[str]:
    """Where a SQL file writes the zone outside a comment; allowed in a migration that names CITY_TZ_NAME."""
    if relative.startswith("store/migrations/") and "CITY_TZ_NAME" in source:
        return []
    lines = enumerate(source.splitlines(), 1)
    return [f"line {n}: {line.strip()}" for n, line in lines if CITY_ZONE in line.split("--", 1)[0]]


def _zone_definitions() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in {"build", "dist", "__pycache__"}]
        for name in files:
            path = Path(folder) / name
            relative = path.relative_to(ROOT).as_posix()
            if name.endswith(".py"):
                hits = python_zone_definitions(path.read_text(encoding="utf-8"))
            elif name.endswith(".sql"):
                hits = sql_zone_definitions(relative, path.read_text(encoding="utf-8"))
            else:
                continue
            if hits:
                found[relative] = hits
    return found


def test_the_city_time_zone_is_defined_once() -> None:
    found = _zone_definitions()
    wrong = {p: h for p, h in found.items() if not p.startswith(TZ_ALLOWED_PREFIXES) and p not in TZ_PENDING}
    assert not wrong, f"import BANGKOK / CITY_TZ_NAME from lccm.engine.timebase instead: {wrong}"
    assert "engine/timebase.py" in found  # the one definition, seen by the same scanner
    stale = sorted(p for p in TZ_PENDING if p not in found)
    assert not stale, f"no zone of its own left in {stale}: remove them from TZ_PENDING"


@pytest.mark.parametrize(
    ("source", "defines"),
    [
        ('BKK = "Asia/' + 'Bangkok"', True),
        ("BANGKOK = timezone(timedelta(hours=7))", True),
        ("Z = ZoneInfo(name)", True),
        ("conn.execute(\"SET LOCAL TimeZone = 'Asia/" + "Bangkok'\")", True),
        ('"""Days are cut in Asia/' + 'Bangkok time."""', False),  # a docstring names it, defines nothing
        ("from lccm.engine.timebase import BANGKOK, CITY_TZ_NAME\nx = CITY_TZ_NAME", False),
        ('help_text = "e.g. 2026-11-22T14:05:00+07:00"', False),  # an example of a time, not a zone
        ("now = datetime.now(UTC)", False),
        ("board = dashboard.timezone(CITY_TZ_NAME)", False),
    ],
)
def test_the_zone_scanner(source: str, defines: bool) -> None:
    assert bool(python_zone_definitions(source)) is defines


def test_the_zone_scanner_reads_sql() -> None:
    view = "SELECT (ts AT TIME ZONE 'Asia/" + "Bangkok')::date -- the city's zone\n"
    assert sql_zone_definitions("store/queries.sql", view)
    assert sql_zone_definitions("store/migrations/010_x.sql", view)  # a migration must name the constant
    assert not sql_zone_definitions("store/migrations/010_x.sql", "-- = CITY_TZ_NAME\n" + view)
    assert not sql_zone_definitions("store/migrations/010_x.sql", "-- months are Asia/" + "Bangkok months\n")
