"""pyproject.toml's dependencies agree with the code and with constraints.txt.

The runtime dependencies are exactly the distributions whose modules the product (everything under ``lccm/``, the
stage folders through their links) imports: a missing one breaks the deployed wheel, an unused one is weight in every
image. Packages of an extra (``demo``, ``grafana``) are imported only inside functions of the modules listed here,
after the command checked for them (``lccm.extras``). constraints.txt pins every distribution the project and its
extras pull in, at the versions pyproject.toml pins.
"""

from __future__ import annotations

import ast
import functools
import os
import re
import sys
import tomllib
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from lccm.extras import MissingExtra, require_extra

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
CONSTRAINTS = ROOT / "constraints.txt"
FIRST_PARTY = {"lccm", "__future__"}

# import name -> (extra, modules allowed to import it, lazily). Nothing else in lccm/ may import an extra's package.
EXTRA_IMPORTS = {
    "pgserver": ("demo", {"lccm/services.py"}),  # the demo's embedded PostgreSQL
    "grafana_client": ("grafana", {"lccm/dashboards/__init__.py"}),  # `lccm dashboards push`
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _python_files(folder: Path) -> Iterator[Path]:
    # os.walk, not rglob: the stage folders are linked into lccm/ and must be followed.
    for root, _dirs, files in os.walk(folder, followlinks=True):
        yield from (Path(root) / f for f in sorted(files) if f.endswith(".py"))


def _third_party_imports(folder: Path) -> list[tuple[str, str, bool]]:
    """(top-level module, file relative to the repo as reached through lccm/, inside a function?) per import."""
    found = []
    for path in _python_files(folder):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        in_function = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for top in {n.split(".")[0] for n in names}:
                if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                    found.append((top, str(path.relative_to(ROOT)), id(node) in in_function))
    return found


@functools.cache
def _packages_distributions() -> Mapping[str, list[str]]:
    return metadata.packages_distributions()


def _distribution_of(module: str) -> str:
    dists = _packages_distributions().get(module)
    assert dists, f"lccm/ imports {module!r}, which no installed distribution provides: declare it in pyproject.toml"
    return _norm(dists[0])


def _names(requirements: list[str]) -> set[str]:
    return {_norm(Requirement(r).name) for r in requirements}


def test_runtime_dependencies_are_exactly_what_the_product_imports() -> None:
    runtime = _names(PYPROJECT["project"]["dependencies"])
    imported: dict[str, set[str]] = {}
    for module, path, _lazy in _third_party_imports(ROOT / "lccm"):
        if module not in EXTRA_IMPORTS:
            imported.setdefault(_distribution_of(module), set()).add(path)
    missing = {dist: sorted(paths) for dist, paths in imported.items() if dist not in runtime}
    assert not missing, f"imported by the product but not runtime dependencies in pyproject.toml: {missing}"
    unused = sorted(runtime - set(imported))
    assert not unused, f"runtime dependencies that nothing under lccm/ imports (an extra, or remove): {unused}"


def test_packages_of_extras_are_imported_only_lazily_where_the_command_checks_for_them() -> None:
    extras = {name: _names(reqs) for name, reqs in PYPROJECT["project"]["optional-dependencies"].items()}
    runtime = _names(PYPROJECT["project"]["dependencies"])
    for module, (extra, _allowed) in EXTRA_IMPORTS.items():
        dist = _distribution_of(module)
        assert dist in extras[extra] and dist not in runtime, f"{module}: {dist} belongs to the {extra!r} extra only"
    seen = set()
    for module, path, lazy in _third_party_imports(ROOT / "lccm"):
        if module in EXTRA_IMPORTS:
            extra, allowed = EXTRA_IMPORTS[module]
            assert path in allowed, f"{path} imports {module} (extra {extra!r}); only {sorted(allowed)} may"
            assert lazy, f"{path} imports {module} at module level: an install without [{extra}] could not start"
            seen.add(module)
    assert seen == set(EXTRA_IMPORTS), f"listed here but imported nowhere: {sorted(set(EXTRA_IMPORTS) - seen)}"


def _constraints() -> dict[str, str]:
    pins = {}
    for raw in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: {raw!r} is not an exact pin"
            pins[_norm(name)] = version
    return pins


def _requested() -> list[Requirement]:
    project = PYPROJECT["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra if _norm(Requirement(r).name) != _norm(project["name"])]
    return reqs


def test_pyproject_pins_agree_with_the_constraints() -> None:
    pins = _constraints()
    for req in _requested():
        (spec,) = req.specifier  # exactly one specifier: ==
        assert spec.operator == "==", f"pyproject.toml: pin {req} with =="
        assert pins.get(_norm(req.name)) == spec.version, (
            f"pyproject.toml pins {req}, constraints.txt has {pins.get(_norm(req.name))}: run `make constraints`"
        )


def test_constraints_cover_every_distribution_the_project_pulls_in() -> None:
    """Walks the installed requirement graph from pyproject.toml (every extra): each distribution reached is pinned.
    Distributions not installed here (the bench extra's) are checked by name only."""
    pins = _constraints()
    todo = [(req, frozenset(req.extras)) for req in _requested()]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, extras = todo.pop()
        name = _norm(req.name)
        assert name in pins, f"{name} (required as {req}) is not in constraints.txt: run `make constraints`"
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            sub = Requirement(text)
            active = sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras | {""})
            if active:
                todo.append((sub, frozenset(sub.extras)))


def test_a_missing_extra_stops_with_one_line_naming_it() -> None:
    """What `lccm` prints (lccm.cli.run, exit 2) when an extra's package is absent; deploy/check_wheel.py runs the
    real commands in an install without extras."""
    with pytest.raises(MissingExtra) as caught:
        require_extra("demo", "lccm_no_such_module", "the embedded PostgreSQL of `lccm demo`", "or set X")
    assert str(caught.value) == (
        "the embedded PostgreSQL of `lccm demo` needs the 'demo' extra: pip install 'lccm[demo]' (or set X)"
    )
    require_extra("demo", "pgserver", "the demo")  # installed here: no error
