"""Code cites public sources, and the facts it relies on are written up in the repository (docs/reference.md).

- No citation points to a document that is not in the repository: no bracketed section tags of a private source
  list (an opening bracket, a capital S and a digit), no pointer to the team's private reference notes.
- Every ``docs/reference.md#<section>`` pointer names a section the document has.
- Every ``LCCM_*`` setting the document names is a real setting.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lccm.settings import Settings
from tests._reference import REFERENCE, ROOT, anchors, pointers

SKIP_DIRS = {".venv", ".git", "build", "dist", "node_modules", "__pycache__", ".lccm", ".hypothesis", ".pytest_cache",
             ".mypy_cache", ".ruff_cache"}  # fmt: skip
ZIP_SUFFIXES = {".xlsx", ".docx", ".zip"}  # text inside (shared strings of a workbook) is checked too

# A bracket, S and a digit: the section tags of a source list kept outside the repository. Written so that this
# file does not match itself.
PRIVATE_TAG = re.compile(r"\[" + "S" + r"\d")
# The team's private notes (outside the repository); docs/reference.md replaces them.
PRIVATE_DOC = re.compile(r"\b(?:" + "domain" + "|" + "platform" + r")\.md\b|/work/" + "shared")

# Files being rewritten on other branches when this rule came in; each still carries such a citation. The lead
# replaces those citations when merging (the edits are listed in the merge note) and empties this set; the second
# test below fails as soon as an entry no longer needs to be here.
PENDING: frozenset[str] = frozenset()


def repository_files() -> Iterator[Path]:
    for folder, dirs, files in os.walk(ROOT):  # symlinked folders (lccm/<stage>) are not followed: no duplicates
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        if "VENDORED.json" in files:
            continue  # third-party files taken byte for byte from npm (deploy/vendor_npm.py): not our citations
        for name in files:
            yield Path(folder) / name


def texts(path: Path) -> Iterator[str]:
    """The file's text, or the text of each member of a zip container (an XLSX workbook)."""
    if path.suffix in ZIP_SUFFIXES:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                yield archive.read(member).decode("utf-8", errors="replace")
    else:
        yield path.read_bytes().decode("utf-8", errors="replace")


def private_citations() -> dict[str, list[str]]:
    """Relative path -> the private citations found in it."""
    found: dict[str, list[str]] = {}
    for path in repository_files():
        for text in texts(path):
            for pattern in (PRIVATE_TAG, PRIVATE_DOC):
                for m in pattern.finditer(text):
                    line = text[: m.start()].count("\n") + 1
                    found.setdefault(path.relative_to(ROOT).as_posix(), []).append(f"line {line}: {m.group(0)}")
    return found


def test_nothing_cites_a_document_outside_the_repository() -> None:
    found = {p: hits for p, hits in private_citations().items() if p not in PENDING}
    assert not found, f"cite the public source and docs/reference.md#<section> instead: {found}"


def test_pending_files_still_need_their_exemption() -> None:
    found = private_citations()
    stale = sorted(p for p in PENDING if p not in found)
    assert not stale, f"no private citation left in {stale}: remove them from PENDING"


@pytest.mark.parametrize(
    ("text", "private"),
    [
        ("threshold 37.5 " + "[" + "S4.10]", True),
        ("see " + "[" + "S2.2, S2.3] TGO", True),
        ("reference/" + "domain" + ".md section 4", True),
        ("see " + "platform" + ".md", True),
        ("TGO CFO emission factors, April 2022; docs/reference.md#fuel-factors", False),
        ("scope 2 (docs/reference.md#scopes-and-cfo-categories), S2-ELEC-BLDG, [SO2]", False),
    ],
)
def test_the_private_citation_patterns(text: str, private: bool) -> None:
    assert bool(PRIVATE_TAG.search(text) or PRIVATE_DOC.search(text)) is private


def test_private_citations_inside_a_workbook_are_found(tmp_path: Path) -> None:
    book = tmp_path / "example.xlsx"
    with zipfile.ZipFile(book, "w", zipfile.ZIP_DEFLATED) as archive:  # compressed: invisible to a plain grep
        archive.writestr("xl/sharedStrings.xml", "<si><t>" + "[" + "S2.2] TGO</t></si>")
    assert any(PRIVATE_TAG.search(t) for t in texts(book))


def test_every_pointer_to_the_reference_names_one_of_its_sections() -> None:
    assert {"city-time-zone", "thai-aqi", "grid-electricity-factors", "values-that-are-settings"} <= anchors()
    wrong = {}
    for path in repository_files():
        for text in texts(path):
            missing = sorted(set(pointers(text)) - anchors())
            if missing:
                wrong[path.relative_to(ROOT).as_posix()] = missing
    assert not wrong, f"docs/reference.md has no such section: {wrong}"


def test_internal_links_of_the_reference_resolve() -> None:
    links = re.findall(r"\]\(#([^)]+)\)", REFERENCE.read_text(encoding="utf-8"))
    assert links and not sorted(set(links) - anchors())


def test_the_settings_the_reference_names_exist() -> None:
    named = set(re.findall(r"LCCM_([A-Z0-9_]+)", REFERENCE.read_text(encoding="utf-8")))
    assert named, "the reference names the settings that hold unconfirmed values"
    fields = {f.upper() for f in Settings.model_fields}
    assert not named - fields - {"TZ"}, f"not a setting: {sorted(named - fields)}"
    assert "TZ" not in fields  # removed: nothing read it, and the calendar rules are Thai (#city-time-zone)
