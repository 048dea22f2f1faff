"""Bounds on the files people hand in, checked before a file costs more than its size suggests. Pure.

An XLSX workbook is a ZIP archive of XML: a 100 KB upload can unpack to gigabytes (a "zip bomb"), and a worksheet
whose cells (or whose ``<dimension>``) reach far to the right or down makes a reader walk every empty cell of the
grid. ``check_workbook`` reads only the archive's directory and streams each worksheet's XML once, counting, before
openpyxl loads anything:

- the sizes the archive declares for its members must add up to at most ``max_unpacked_bytes`` (Python's zipfile
  never returns more than a member's declared size: a member that inflates beyond it fails its CRC check);
- the grid a row reader walks, rows x columns of every worksheet (openpyxl pads each row to the sheet's widest
  column and fills missing rows in between), must hold at most ``max_cells``.

``lccm.settings.Settings`` carries the configured values (``import_max_*``); the defaults are here so that the
importers and the settings share them.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO
from xml.etree import ElementTree

# Sheet XML in an XLSX: xl/worksheets/sheet1.xml ... (the workbook's relationships name them; every writer in use
# puts them here, and a worksheet elsewhere is still counted against the unpacked size).
_WORKSHEET = re.compile(r"^xl/worksheets/[^/]+\.xml$", re.IGNORECASE)
_CELL_REF = re.compile(r"^\$?([A-Za-z]{1,3})\$?([0-9]{1,7})$")


@dataclass(frozen=True, slots=True)
class InputLimits:
    max_unpacked_bytes: int = 64 * 1024 * 1024
    # A municipality's CFO is tens to a few hundred rows of ~30 columns; 200,000 cells is ~6,600 such rows.
    max_cells: int = 200_000
    max_errors_listed: int = 100


DEFAULT_LIMITS = InputLimits()


class TooLarge(ValueError):
    """The file exceeds a limit; the message says which, with the figures."""


def check_workbook(data: bytes, limits: InputLimits) -> None:
    """Raise ``TooLarge`` if reading the XLSX ``data`` would exceed ``limits``; ``zipfile.BadZipFile`` (or
    ``ElementTree.ParseError``) for an archive or a worksheet that is not readable at all."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()
        unpacked = sum(m.file_size for m in members)
        if unpacked > limits.max_unpacked_bytes:
            raise TooLarge(
                f"the workbook unpacks to {unpacked:,} bytes, more than the limit of {limits.max_unpacked_bytes:,} "
                "(setting import_max_unpacked_bytes)"
            )
        cells = 0
        for member in members:
            if _WORKSHEET.match(member.filename):
                with archive.open(member) as stream:
                    cells += _grid_cells(stream, limits.max_cells - cells)
                if cells > limits.max_cells:
                    raise TooLarge(too_many_cells(cells, limits.max_cells))


def too_many_cells(cells: int, limit: int) -> str:
    return (
        f"the file spans at least {cells:,} cells (rows x columns, empty ones included), more than the limit "
        f"of {limit:,} (setting import_max_cells); delete unused rows and columns, or split the file"
    )


def _grid_cells(stream: IO[bytes], budget: int) -> int:
    """Rows x columns a row reader walks in one worksheet; stops counting once past ``budget``."""
    rows = columns = row = column = 0
    for tag, element in _starts(stream):
        if tag == "dimension":
            last = (element.get("ref") or "").rsplit(":", 1)[-1]
            found = _CELL_REF.match(last)
            if found is not None:
                columns = max(columns, _column_number(found.group(1)))
        elif tag == "row":
            ref = element.get("r")
            row = int(ref) if ref is not None and ref.isdigit() else row + 1
            rows, column = max(rows, row), 0
        elif tag == "c":
            found = _CELL_REF.match(element.get("r") or "")
            column = _column_number(found.group(1)) if found else column + 1  # no reference: the next column
            columns = max(columns, column)
            if found is not None:
                rows = max(rows, int(found.group(2)))
        if rows * columns > budget:
            break
    return rows * columns


def _starts(stream: IO[bytes]) -> Iterator[tuple[str, ElementTree.Element]]:
    """(local tag, element) at each start tag, without keeping the parsed rows in memory."""
    parent: ElementTree.Element | None = None
    for event, element in ElementTree.iterparse(stream, events=("start", "end")):
        tag = element.tag.rsplit("}", 1)[-1]
        if event == "start":
            if tag == "sheetData":
                parent = element
            yield tag, element
        elif tag == "row" and parent is not None:
            parent.clear()  # the rows read so far: only their counts matter


def _column_number(letters: str) -> int:
    number = 0
    for letter in letters.upper():
        number = number * 26 + ord(letter) - ord("A") + 1
    return number
