"""Daily mean temperatures as a municipality hands them in for building M&V: a CSV ``date,mean_temp_c``. Pure.

ISO dates, °C; every problem is reported with its line, nothing is guessed. ``store.baseline.import_temperatures``
writes the days.
"""

from __future__ import annotations

import csv
import io
from datetime import date

from lccm.imports.limits import DEFAULT_LIMITS, InputLimits
from lccm.imports.rows import NUL_MESSAGE, RowError, RowsInvalid, first_nul_line


class TemperatureInvalid(RowsInvalid):
    """The temperature file failed validation; nothing was written."""

    def __init__(self, errors: list[RowError], *, max_listed: int | None = None) -> None:
        super().__init__(f"{len(errors)} problem(s) in the temperature file", errors, max_listed=max_listed)


def parse_temperature_csv(data: bytes, limits: InputLimits = DEFAULT_LIMITS) -> list[tuple[date, float]]:
    """``date,mean_temp_c`` rows (ISO dates, °C); every problem is reported with its line, nothing is guessed."""
    errors: list[RowError] = []
    out: list[tuple[date, float]] = []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TemperatureInvalid([RowError(0, "", "", f"not UTF-8: {exc}")]) from None
    if (line := first_nul_line(text)) is not None:
        raise TemperatureInvalid([RowError(line, "", "", NUL_MESSAGE)])
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    if header[:2] != ["date", "mean_temp_c"]:
        raise TemperatureInvalid([RowError(1, "", ",".join(header), "header must be date,mean_temp_c")])
    seen: set[date] = set()
    for line, row in enumerate(reader, start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) < 2:
            errors.append(RowError(line, "", ",".join(row), "need date and mean_temp_c"))
            continue
        try:
            day = date.fromisoformat(row[0].strip())
        except ValueError:
            errors.append(RowError(line, "date", row[0], "not an ISO date (YYYY-MM-DD)"))
            continue
        try:
            mean = float(row[1])
        except ValueError:
            errors.append(RowError(line, "mean_temp_c", row[1], "not a number"))
            continue
        if not -60.0 < mean < 60.0:
            errors.append(RowError(line, "mean_temp_c", row[1], "outside -60..60 °C"))
        elif day in seen:
            errors.append(RowError(line, "date", row[0], "date given twice"))
        else:
            seen.add(day)
            out.append((day, mean))
    if errors:
        raise TemperatureInvalid(errors, max_listed=limits.max_errors_listed)
    return out
