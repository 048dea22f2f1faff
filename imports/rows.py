"""Per-row errors of an input a person handed in, and the exception that carries all of them.

Every reader reads the whole input and reports every problem it finds (row as numbered in the file or sheet, the
header row being 1; or the 1-based position in a JSON list), so a person can fix a spreadsheet in one pass. Nothing
of an invalid input is written. api/errors.py turns ``RowsInvalid`` and its subclasses into a 422 listing the rows;
the CLI prints them one a line.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RowError:
    row: int  # line number in the file where the record starts (the header is row 1), or position in a list
    column: str  # the header as written in the file, or "" for a whole-row problem
    value: str
    message: str


class RowsInvalid(Exception):
    """An input failed validation; nothing was written. ``errors`` lists the problems found, the first
    ``max_listed`` of them where a reader was given that bound (``InputLimits.max_errors_listed``: a file of
    100,000 bad cells must not become a response of 100,000 errors); ``total`` counts them all."""

    def __init__(self, message: str, errors: Sequence[RowError], *, max_listed: int | None = None) -> None:
        super().__init__(message)
        self.total = len(errors)
        self.errors = list(errors[:max_listed] if max_listed is not None else errors)


def describe(error: RowError) -> str:
    """'row 7, column 'Mar': not a number: '1,2x''."""
    where = f"row {error.row}" + (f", column {error.column!r}" if error.column else "")
    return f"{where}: {error.message}"


def normalise_header(name: str) -> str:
    """Fold a header so 'Site Code', 'site_code ' and 'SITE-CODE' match; NFC so Thai marks compare equal."""
    folded = unicodedata.normalize("NFC", name).replace("\ufeff", "").strip().casefold()
    return re.sub(r"[\s_\-]+", "_", folded).strip("_")


NUL_MESSAGE = "contains a NUL character (U+0000), which no field can hold; save the file again as text (CSV UTF-8)"


def first_nul_line(text: str) -> int | None:
    """The line (1-based) of the first NUL character of ``text``, if any. A CSV can carry one (Python's csv module
    reads it into the cell), but no column can store it (PostgreSQL text), so a reader refuses the file."""
    at = text.find("\x00")
    return None if at < 0 else text.count("\n", 0, at) + 1
