"""CSV, JSON and printable HTML of the reports of :mod:`reports.annual`. No I/O but reading the templates.

* JSON: ``dataclasses.asdict`` of the report, keys in field order (stable), numbers as full floats, UTF-8.
* CSV: a **wide** table, UTF-8 with a byte-order mark (so Excel reads the Thai text), one row per item with the 12
  month columns in the year's order (``kgco2e_YYYY-MM``), then one row per category, scope and summary total
  (``row_type`` says which). Numbers are Python's shortest round-trip ``repr`` of the same floats as the JSON, blank
  where a month has no value. The GPC CSV has one row per sub-sector, then the unmapped items and the totals.
* HTML: one self-contained page (inline CSS, A4 print rules), Thai and English headings, tCO2e with thousands
  separators and 2 decimals (the same floats, rounded for reading; a value that rounds to zero prints 0.00, never
  -0.00), from the Jinja2 templates in templates/ (package data, autoescape on; every value passes through
  ``html.escape``).

* XLSX (what TGO's verifiers open): the CSV's lines on one sheet, cell for cell, figures as numbers at full
  precision, and an "about" sheet naming the organisation and the year (BE and CE); written by openpyxl.

CSV, XLSX and JSON are written by the ``csv``, ``openpyxl`` and ``json`` modules, not templates: quoting a CSV cell,
typing a spreadsheet cell or a JSON string is theirs to get right. The CSV and the XLSX share one table of lines
(``cfo_table``, ``gpc_table``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from html import escape
from importlib import resources
from typing import Any

from jinja2 import Environment, FunctionLoader, StrictUndefined
from markupsafe import Markup
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font

from lccm.reports.annual import SCOPES, CfoItem, CfoReport, GpcReport, ReportYear, Totals, month_label_th

CSV_BOM = "\ufeff"


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _t(value: float | None) -> str:
    """tCO2e for people: thousands separators, 2 decimals; a small removal that rounds to zero reads 0.00."""
    return "" if value is None else f"{_unsigned_zero(value, 2):,.2f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{_unsigned_zero(value * 100, 1):.1f} %"


def _unsigned_zero(value: float, digits: int) -> float:
    """The value rounded as it will print, with -0.0 made 0.0 (``round`` keeps the sign of zero; adding 0.0 drops
    it), so a figure that rounds to nothing never reads as a negative one."""
    return round(value, digits) + 0.0


# --------------------------------------------------------------------------------------------------------- JSON


def to_json(report: CfoReport | GpcReport) -> bytes:
    # int dict keys (scopes) become strings in JSON, as json.dumps does; key order is the dataclass field order.
    return json.dumps(asdict(report), ensure_ascii=False, indent=2).encode("utf-8") + b"\n"


# ---------------------------------------------------------------------------------------------------------- CSV


Cell = str | int | float | None  # a figure is a float (written as its shortest round-trip repr), None a blank


@dataclass(frozen=True, slots=True)
class Table:
    """A report's lines as the CSV and the XLSX write them: one header, then rows of cells."""

    header: list[str]
    rows: list[list[Cell]]


def _f(value: float | None) -> float | None:
    return None if value is None else float(value)


def _csv_cell(value: Cell) -> Cell:
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else value


def _csv(table: Table) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(table.header)
    writer.writerows([_csv_cell(v) for v in row] for row in table.rows)
    return (CSV_BOM + out.getvalue()).encode("utf-8")


CFO_CSV_FIXED = (
    "row_type", "organisation", "year_kind", "year_ce", "scope", "category", "item_code", "activity_en", "activity_th",
    "collection", "unit", "quantity", "ef_kgco2e_per_unit", "ef_unit", "ef_source", "gwp_set", "gpc_ref",
    "months_reported", "months_metered", "completeness", "share", "factor_period",
)  # fmt: skip


def cfo_csv_header(year: ReportYear) -> list[str]:
    return [*CFO_CSV_FIXED, *(f"kgco2e_{m}" for m in year.months), "kgco2e", "tco2e"]


def cfo_csv(report: CfoReport) -> bytes:
    return _csv(cfo_table(report))


def cfo_table(report: CfoReport) -> Table:
    """The CFO report's lines: one per item (and per factor period of an item whose factor changed), then the
    category, scope and summary totals."""
    org, year = report.organisation.code, report.year
    lead = (org, year.kind, year.year_ce)

    def item_row(scope: int, category: str, i: CfoItem) -> list[Any]:
        return ["item", *lead, scope, category, i.item_code, i.activity_en or "", i.activity_th or "", i.collection,
                i.unit, _f(i.quantity), _f(i.ef_kgco2e_per_unit), i.ef_unit, i.ef_source, i.gwp_set,
                i.gpc_ref or "", i.months_reported, i.months_metered, _f(i.completeness), "", "",
                *(_f(k) for k in i.monthly_kgco2e), _f(i.kgco2e), _f(i.tco2e)]  # fmt: skip

    def period_rows(scope: int, category: str, i: CfoItem) -> list[list[Any]]:
        """An item with several factors in the year: one row per factor period, after the item's row."""
        if len(i.factor_periods) < 2:
            return []
        return [["factor_period", *lead, scope, category, i.item_code, "", "", i.collection, i.unit,
                 _f(p.quantity), _f(p.ef_kgco2e_per_unit), p.ef_unit, p.ef_source, i.gwp_set, i.gpc_ref or "",
                 p.months_reported, "", "", "", f"{p.first_month}..{p.last_month}",
                 *(_f(k) for k in p.monthly_kgco2e), _f(p.kgco2e), _f(p.tco2e)]
                for p in i.factor_periods]  # fmt: skip

    def total_row(kind: str, scope: int | str, category: str, t: Totals, share: float | None = None) -> list[Any]:
        blanks = [""] * (len(CFO_CSV_FIXED) - 8)
        return [kind, *lead, scope, category, *blanks, _f(share), "", *(_f(k) for k in t.monthly_kgco2e),
                _f(t.kgco2e), _f(t.tco2e)]  # fmt: skip

    rows: list[list[Any]] = []
    for s in report.scopes:
        for c in s.categories:
            for i in c.items:
                rows += [item_row(s.scope, c.code, i), *period_rows(s.scope, c.code, i)]
            rows.append(total_row("category_total", s.scope, c.code, c.totals))
        rows.append(total_row("scope_total", s.scope, "", s.totals))
    for i in report.removals:
        rows += [item_row(1, "removal", i), *period_rows(1, "removal", i)]
    rows.append(total_row("removals_total", "", "removal", report.removals_totals))
    rows.append(total_row("gross_total", "", "", report.gross))
    rows.append(total_row("net_total", "", "", report.net))
    rows.append(total_row("metered_total", "", "", report.metered, report.metered_share))
    rows.append(total_row("manual_total", "", "", report.manual, report.manual_share))
    return Table(cfo_csv_header(year), rows)


GPC_CSV_HEADER = ("row_type", "organisation", "year_kind", "year_ce", "gpc_ref", "sector", "sector_name",
                  "subsector_name", "in_basic", "scope1_tco2e", "scope2_tco2e", "scope3_tco2e", "tco2e",
                  "basic_tco2e", "item_codes", "item_refs", "note")  # fmt: skip


def gpc_csv(report: GpcReport) -> bytes:
    return _csv(gpc_table(report))


def gpc_table(report: GpcReport) -> Table:
    """The GPC table's lines: one per sub-sector (and factor period), the unmapped items, then the totals."""
    lead = (report.organisation.code, report.year.kind, report.year.year_ce)
    rows: list[list[Any]] = []
    for r in report.rows:
        rows.append(["subsector", *lead, r.gpc_ref, r.sector, r.sector_name, r.subsector_name, str(r.in_basic).lower(),
                     *(_f(r.scope_tco2e[s]) for s in SCOPES), _f(r.tco2e), _f(r.basic_tco2e),
                     " ".join(r.item_codes), " ".join(r.item_refs), ""])  # fmt: skip
        for f in r.factor_lines:
            scopes = [_f(f.tco2e) if s == f.scope else "" for s in SCOPES]
            note = (f"{f.first_month}..{f.last_month}: {_num(f.quantity)} {f.unit} x {_num(f.ef_kgco2e_per_unit)}"
                    f" kgCO2e/{f.unit} ({f.ef_source})")  # fmt: skip
            rows.append(["factor_period", *lead, r.gpc_ref, r.sector, r.sector_name, r.subsector_name,
                         str(r.in_basic).lower(), *scopes, _f(f.tco2e), "", f.item_code, f.item_ref,
                         note])  # fmt: skip
    for u in report.unmapped:
        rows.append(["unmapped", *lead, *([""] * 8), _f(u.tco2e), "", u.item_code, "", u.reason])

    def total(kind: str, tco2e: float) -> list[Any]:
        return [kind, *lead, *([""] * 8), _f(tco2e), "", "", "", ""]

    rows.append(total("basic_total", report.basic_tco2e))
    rows.append(total("basic_plus_total", report.basic_plus_tco2e))
    rows.append(total("mapped_total", report.total_tco2e))
    rows.append(total("unmapped_total", report.unmapped_tco2e))
    return Table(list(GPC_CSV_HEADER), rows)


# --------------------------------------------------------------------------------------------------------- HTML


def _t_of_kg(value_kg: float | None) -> str:
    return _t(None if value_kg is None else value_kg / 1000.0)


def _qty(value: float) -> str:
    return f"{_unsigned_zero(value, 3):,.3f}"


def _ef(value: float | None) -> str:
    return "" if value is None else f"{value:,.4f}"


def _data_label(item: CfoItem, months: int) -> str:
    """Where an item's month values came from, in the words of the report's footer (from meters / entered): a
    metered item says how many of its months the meters gave, so "metered" never stands beside a 0 % metered
    total."""
    if item.collection != "metered":
        return "บันทึก / entered"
    return f"มิเตอร์ {item.months_metered}/{months} เดือน / meters: {item.months_metered} of {months} months"


def _item_refs(codes: Sequence[str], refs: Sequence[str]) -> str:
    return " ".join(f"{c} ({r})" for c, r in zip(codes, refs, strict=True))


def _joined(values: Iterable[object], separator: str) -> str:
    """The non-blank values joined, as plain text (escaped on output, unlike Jinja2's ``join``, which escapes the
    parts its own way)."""
    return separator.join(str(v) for v in values if v)


def _escape(value: object) -> Markup:
    """Every ``{{ value }}`` of the templates goes through here before Jinja2's autoescape: ``html.escape`` (which
    also escapes quotes, as &quot; and &#x27;), None as blank. Marked safe so autoescape leaves it as it is; markup
    the templates build themselves (macros) passes unchanged. The bytes are those the reports had before they were
    templated (tests/test_reports_pinned.py)."""
    if isinstance(value, Markup):
        return value
    return Markup(escape("" if value is None else str(value)))


def _template(name: str) -> str:
    return resources.files("lccm.reports").joinpath("templates", name).read_text(encoding="utf-8")


_HTML = Environment(
    loader=FunctionLoader(_template),
    autoescape=True,
    finalize=_escape,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=StrictUndefined,
)
_HTML.filters.update(t=_t, pct=_pct, th_month=month_label_th, t_of_kg=_t_of_kg, ef=_ef, qty=_qty, joined=_joined,
                     data_label=_data_label, item_refs=_item_refs)  # fmt: skip


def cfo_html(report: CfoReport) -> bytes:
    """Month and total cells are tCO2e (kgCO2e / 1000) to 2 decimals (templates/cfo.html.j2)."""
    share = report.months_reported / report.months_expected if report.months_expected else None
    return _HTML.get_template("cfo.html.j2").render(r=report, completeness=share, **_heading(report)).encode()


def gpc_html(report: GpcReport) -> bytes:
    """Cells are tCO2e to 2 decimals (templates/gpc.html.j2)."""
    return _HTML.get_template("gpc.html.j2").render(r=report, scopes=SCOPES, **_heading(report)).encode()


def _heading(report: CfoReport | GpcReport) -> dict[str, str]:
    org = report.organisation
    return {
        "names": " / ".join(n for n in (org.name_th, org.name_en) if n),
        "province": " / ".join(p for p in (org.province_th, org.province_en) if p),
    }


# --------------------------------------------------------------------------------------------------------- XLSX


def _xlsx_text(value: str) -> str:
    """Text as a cell can hold it: the control characters XML 1.0 forbids (and the importers let through) are
    dropped, or openpyxl refuses the whole workbook."""
    return ILLEGAL_CHARACTERS_RE.sub("", value)


def _xlsx(table: Table, sheet: str, about: Sequence[tuple[str, str]]) -> bytes:
    """The lines of the CSV on the first sheet, cell for cell: figures as numbers at full precision (no rounding,
    Excel's General format), blanks as empty cells, text as text; the header row frozen. A second sheet says what
    the report is. Text that starts with "=" stays text: a name from an imported file is never run as a formula."""
    book = Workbook()
    lines = book.active
    assert lines is not None
    lines.title = sheet
    lines.append(table.header)
    for cell in lines[1]:
        cell.font = Font(bold=True)
    for row in table.rows:
        lines.append([_xlsx_text(v) if isinstance(v, str) else v for v in row])
    for row_cells in lines.iter_rows(min_row=2):
        for cell in row_cells:
            if cell.data_type == "f":  # openpyxl takes any "=..." string for a formula
                cell.data_type = "s"
    lines.freeze_panes = "A2"
    info = book.create_sheet("about")
    for key, value in about:
        info.append([key, _xlsx_text(value)])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _about(report: CfoReport | GpcReport) -> list[tuple[str, str]]:
    org, year = report.organisation, report.year
    kind = "CFO (TGO Carbon Footprint for Organization)" if isinstance(report, CfoReport) else "GPC BASIC table"
    return [
        ("report", kind),
        ("organisation", org.code),
        ("name", _heading(report)["names"]),
        ("province", _heading(report)["province"]),
        ("year", year.label),
        ("year_kind", year.kind),
        ("year_ce", str(year.year_ce)),
        ("year_be", str(year.year_be)),
        ("base_year", str(year.is_base_year).lower()),
        ("units", "kgCO2e and tCO2e as stored (not rounded); the same lines as the CSV"),
    ]


def cfo_xlsx(report: CfoReport) -> bytes:
    return _xlsx(cfo_table(report), "CFO", _about(report))


def gpc_xlsx(report: GpcReport) -> bytes:
    return _xlsx(gpc_table(report), "GPC", _about(report))


# ------------------------------------------------------------------------------------------------------ dispatch

FORMATS = ("csv", "json", "html", "xlsx")
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json", "html": "text/html; charset=utf-8",
                 "xlsx": XLSX_TYPE}  # fmt: skip


def render(report: CfoReport | GpcReport, fmt: str) -> bytes:
    """The report in ``fmt`` (csv, json, html or xlsx)."""
    if fmt == "json":
        return to_json(report)
    if fmt not in ("csv", "html", "xlsx"):
        raise ValueError(f"unknown report format {fmt!r}; one of {', '.join(FORMATS)}")
    if isinstance(report, CfoReport):
        return {"csv": cfo_csv, "html": cfo_html, "xlsx": cfo_xlsx}[fmt](report)
    return {"csv": gpc_csv, "html": gpc_html, "xlsx": gpc_xlsx}[fmt](report)


def file_name(report: CfoReport | GpcReport, fmt: str) -> str:
    """e.g. ``cfo-lampang-fiscal-2025.csv``."""
    kind = "cfo" if isinstance(report, CfoReport) else "gpc"
    return f"{kind}-{report.organisation.code}-{report.year.kind}-{report.year.year_ce}.{fmt}"
