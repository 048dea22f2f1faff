"""The carbon staff's reports page (/app/reports): the CFO report or the GPC table of a chosen reporting year.

The figures come from the functions behind GET /organisations/{code}/reports/cfo|gpc (``reports.annual``), for the
caller's own organisation. The page shows a summary table (its CSV: /app/reports/summary.csv) and the product's own
printable report (reports/templates, rendered by ``reports.render``) in a frame; the downloads (XLSX, CSV, HTML,
JSON) are the API's report routes, which a session may call (GET, same roles). PDF: print the HTML to PDF (its
style sheet is laid out for A4 landscape); no PDF library that renders Thai reliably comes without system packages
(WeasyPrint needs Pango, wkhtmltopdf is a binary, ReportLab/fpdf2 would need the report laid out again by hand).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from lccm.api.deps import Conn
from lccm.api.principal import CurrentPrincipal, Principal
from lccm.api.web.i18n import Lang, texts
from lccm.api.web.imports import year_text
from lccm.api.web.render import csv_response, lang, render
from lccm.reports.annual import SCOPES, CfoReport, GpcReport, GpcRow, build_cfo_report, build_gpc_report
from lccm.reports.render import file_name
from lccm.store import inventory as inv

router = APIRouter(include_in_schema=False)

ReportKind = Literal["cfo", "gpc"]
ReportQuery = Annotated[ReportKind, Query(description="cfo or gpc")]
YearChoice = Annotated[str | None, Query(max_length=20, description="kind-CE year, e.g. fiscal-2025")]
DOWNLOADS = ("xlsx", "csv", "html", "json")
CSV_COLUMNS = ("row_type", "scope", "code", "label", "kgco2e", "tco2e", "share")
GPC_CSV_COLUMNS = ("row_type", "gpc_ref", "sector", "subsector_name", "scope1_tco2e", "scope2_tco2e", "scope3_tco2e",
                   "tco2e", "basic_tco2e")  # fmt: skip


@dataclass(frozen=True, slots=True)
class SummaryLine:
    """One line of the CFO summary: a category, a scope's total or one of the report's totals."""

    row_type: str
    scope: int | None
    code: str
    label: str
    kgco2e: float
    tco2e: float
    share: float | None = None


@dataclass(frozen=True, slots=True)
class GpcLine:
    row_type: str  # subsector, or one of the totals
    gpc_ref: str
    sector: str
    subsector_name: str
    scope_tco2e: tuple[float | None, float | None, float | None]
    tco2e: float
    basic_tco2e: float | None


@dataclass(frozen=True, slots=True)
class YearOption:
    value: str  # kind-CE, e.g. fiscal-2025
    kind: inv.YearKind
    year_ce: int
    is_base_year: bool


def _words(t: dict[str, str], th: str | None, en: str, chosen: Lang) -> str:
    return (th or en) if chosen == "th" else en


def cfo_lines(report: CfoReport, t: dict[str, str], chosen: Lang) -> list[SummaryLine]:
    """The report's categories and totals, in its own order (reports/render.py cfo_table's total rows)."""
    lines: list[SummaryLine] = []
    for s in report.scopes:
        for c in s.categories:
            label = f"{t['reports_scope'].format(scope=s.scope)} · {_words(t, c.name_th, c.name_en, chosen)}"
            lines.append(SummaryLine("category_total", s.scope, c.code, label, c.totals.kgco2e, c.totals.tco2e))
        label = t["reports_scope_total"].format(scope=s.scope)
        lines.append(SummaryLine("scope_total", s.scope, "", label, s.totals.kgco2e, s.totals.tco2e))
    for row_type, key, totals, share in (
        ("removals_total", "reports_removals", report.removals_totals, None),
        ("gross_total", "reports_gross", report.gross, None),
        ("net_total", "reports_net", report.net, None),
        ("metered_total", "reports_metered", report.metered, report.metered_share),
        ("manual_total", "reports_manual", report.manual, report.manual_share),
    ):
        lines.append(SummaryLine(row_type, None, "", t[key], totals.kgco2e, totals.tco2e, share))
    return lines


def _gpc_line(r: GpcRow) -> GpcLine:
    scopes = (r.scope_tco2e[1], r.scope_tco2e[2], r.scope_tco2e[3])
    return GpcLine("subsector", r.gpc_ref, f"{r.sector} {r.sector_name}", r.subsector_name, scopes, r.tco2e,
                   r.basic_tco2e)  # fmt: skip


def gpc_lines(report: GpcReport, t: dict[str, str]) -> list[GpcLine]:
    """Every sub-sector of the table, then its totals (reports/render.py gpc_table's subsector and total rows)."""
    lines = [_gpc_line(r) for r in report.rows]
    none3: tuple[None, None, None] = (None, None, None)
    for row_type, key, value in (
        ("basic_total", "reports_basic_total", report.basic_tco2e),
        ("basic_plus_total", "reports_basic_plus_total", report.basic_plus_tco2e),
        ("mapped_total", "reports_mapped_total", report.total_tco2e),
        ("unmapped_total", "reports_unmapped_total", report.unmapped_tco2e),
    ):
        lines.append(GpcLine(row_type, "", t[key], "", none3, value, None))
    return lines


def year_options(conn: Conn, principal: Principal) -> list[YearOption]:
    org = inv.require_organisation(conn, principal.scope.organisation_code)
    return [
        YearOption(f"{y.kind}-{y.year_ce}", y.kind, y.year_ce, y.is_base_year)
        for y in sorted(inv.list_years(conn, org.id), key=lambda y: (-y.year_ce, y.kind))
    ]


def _chosen_year(options: list[YearOption], year: str | None) -> YearOption | None:
    """The year asked for; without one, the base year (the API's default), else the newest."""
    if year is not None:
        return next((o for o in options if o.value == year), None)
    return next((o for o in options if o.is_base_year), options[0] if options else None)


def _build(conn: Conn, principal: Principal, report: ReportKind, year: YearOption) -> CfoReport | GpcReport:
    builder = build_cfo_report if report == "cfo" else build_gpc_report
    return builder(conn, principal.scope.organisation_code, year.year_ce, year.kind)


def _api_url(code: str, report: ReportKind, year: YearOption, fmt: str) -> str:
    query = urlencode({"year": year.year_ce, "kind": year.kind, "format": fmt})
    return f"/organisations/{code}/reports/{report}?{query}"


@router.get("/app/reports")
def reports_page(request: Request, conn: Conn, principal: CurrentPrincipal, report: ReportQuery = "cfo",
                 year: YearChoice = None) -> HTMLResponse:  # fmt: skip
    chosen_lang = lang(request)
    t = texts(chosen_lang)
    options = year_options(conn, principal)
    chosen = _chosen_year(options, year)
    context: dict[str, Any] = {"user": principal.display_name, "options": options, "chosen": chosen, "report": report,
               "year_text": year_text, "scopes": SCOPES}  # fmt: skip
    if chosen is None:  # no inventory yet, or a year the organisation does not have
        status = 404 if options else 200
        return render(request, "reports.html", status_code=status, built=None, **context)
    built = _build(conn, principal, report, chosen)
    code = principal.scope.organisation_code
    downloads = {fmt: _api_url(code, report, chosen, fmt) for fmt in DOWNLOADS}
    names = {fmt: file_name(built, fmt) for fmt in DOWNLOADS}
    lines = cfo_lines(built, t, chosen_lang) if isinstance(built, CfoReport) else gpc_lines(built, t)
    return render(request, "reports.html", built=built, lines=lines, downloads=downloads, names=names, **context)


@router.get("/app/reports/summary.csv")
def summary_csv(request: Request, conn: Conn, principal: CurrentPrincipal, report: ReportQuery = "cfo",
                year: YearChoice = None) -> Response:  # fmt: skip
    chosen_lang = lang(request)
    chosen = _chosen_year(year_options(conn, principal), year)
    if chosen is None:
        raise inv.UnknownReportingYear(principal.scope.organisation_code, None, None)
    built = _build(conn, principal, report, chosen)
    name = f"{report}-summary-{principal.scope.organisation_code}-{chosen.kind}-{chosen.year_ce}.csv"
    if isinstance(built, CfoReport):
        cfo = cfo_lines(built, texts(chosen_lang), chosen_lang)
        return csv_response(name, CSV_COLUMNS, ((x.row_type, x.scope, x.code, x.label, x.kgco2e, x.tco2e, x.share)
                                                for x in cfo))  # fmt: skip
    gpc = gpc_lines(built, texts(chosen_lang))
    return csv_response(name, GPC_CSV_COLUMNS, ((x.row_type, x.gpc_ref, x.sector, x.subsector_name, *x.scope_tco2e,
                                                 x.tco2e, x.basic_tco2e) for x in gpc))  # fmt: skip
