"""CSV, JSON and printable HTML of the reports of :mod:`store.reports`. No I/O: strings in, bytes out.

* JSON: ``dataclasses.asdict`` of the report, keys in field order (stable), numbers as full floats, UTF-8.
* CSV: a **wide** table, UTF-8 with a byte-order mark (so Excel reads the Thai text), one row per item with the 12
  month columns in the year's order (``kgco2e_YYYY-MM``), then one row per category, scope and summary total
  (``row_type`` says which). Numbers are Python's shortest round-trip ``repr`` of the same floats as the JSON, blank
  where a month has no value. The GPC CSV has one row per sub-sector, then the unmapped items and the totals.
* HTML: one self-contained page (inline CSS, A4 print rules), Thai and English headings, tCO2e with thousands
  separators and 2 decimals (the same floats, rounded for reading); every string passes through ``html.escape``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from html import escape
from typing import Any

from lccm.store.reports import (
    SCOPES,
    CfoItem,
    CfoReport,
    GpcReport,
    ReportOrganisation,
    ReportYear,
    Totals,
    month_label_th,
)

CSV_BOM = "\ufeff"


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _t(value: float | None) -> str:
    """tCO2e for people: thousands separators, 2 decimals."""
    return "" if value is None else f"{value:,.2f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


# --------------------------------------------------------------------------------------------------------- JSON


def to_json(report: CfoReport | GpcReport) -> bytes:
    # int dict keys (scopes) become strings in JSON, as json.dumps does; key order is the dataclass field order.
    return json.dumps(asdict(report), ensure_ascii=False, indent=2).encode("utf-8") + b"\n"


# ---------------------------------------------------------------------------------------------------------- CSV


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return (CSV_BOM + out.getvalue()).encode("utf-8")


CFO_CSV_FIXED = (
    "row_type", "organisation", "year_kind", "year_ce", "scope", "category", "item_code", "activity_en", "activity_th",
    "collection", "unit", "quantity", "ef_kgco2e_per_unit", "ef_unit", "ef_source", "gwp_set", "gpc_ref",
    "months_reported", "completeness", "share",
)  # fmt: skip


def cfo_csv_header(year: ReportYear) -> list[str]:
    return [*CFO_CSV_FIXED, *(f"kgco2e_{m}" for m in year.months), "kgco2e", "tco2e"]


def cfo_csv(report: CfoReport) -> bytes:
    org, year = report.organisation.code, report.year
    lead = (org, year.kind, year.year_ce)

    def item_row(scope: int, category: str, i: CfoItem) -> list[Any]:
        return ["item", *lead, scope, category, i.item_code, i.activity_en or "", i.activity_th or "", i.collection,
                i.unit, _num(i.quantity), _num(i.ef_kgco2e_per_unit), i.ef_unit, i.ef_source, i.gwp_set,
                i.gpc_ref or "", i.months_reported, _num(i.completeness), "",
                *(_num(k) for k in i.monthly_kgco2e), _num(i.kgco2e), _num(i.tco2e)]  # fmt: skip

    def total_row(kind: str, scope: int | str, category: str, t: Totals, share: float | None = None) -> list[Any]:
        blanks = [""] * (len(CFO_CSV_FIXED) - 7)
        return [kind, *lead, scope, category, *blanks, _num(share), *(_num(k) for k in t.monthly_kgco2e),
                _num(t.kgco2e), _num(t.tco2e)]  # fmt: skip

    rows: list[list[Any]] = []
    for s in report.scopes:
        for c in s.categories:
            rows += [item_row(s.scope, c.code, i) for i in c.items]
            rows.append(total_row("category_total", s.scope, c.code, c.totals))
        rows.append(total_row("scope_total", s.scope, "", s.totals))
    rows += [item_row(1, "removal", i) for i in report.removals]
    rows.append(total_row("removals_total", "", "removal", report.removals_totals))
    rows.append(total_row("gross_total", "", "", report.gross))
    rows.append(total_row("net_total", "", "", report.net))
    rows.append(total_row("metered_total", "", "", report.metered, report.metered_share))
    rows.append(total_row("manual_total", "", "", report.manual, report.manual_share))
    return _csv(cfo_csv_header(year), rows)


GPC_CSV_HEADER = ("row_type", "organisation", "year_kind", "year_ce", "gpc_ref", "sector", "sector_name",
                  "subsector_name", "in_basic", "scope1_tco2e", "scope2_tco2e", "scope3_tco2e", "tco2e",
                  "item_codes")  # fmt: skip


def gpc_csv(report: GpcReport) -> bytes:
    lead = (report.organisation.code, report.year.kind, report.year.year_ce)
    rows: list[list[Any]] = []
    for r in report.rows:
        rows.append(["subsector", *lead, r.gpc_ref, r.sector, r.sector_name, r.subsector_name, str(r.in_basic).lower(),
                     *(_num(r.scope_tco2e[s]) for s in SCOPES), _num(r.tco2e), " ".join(r.item_codes)])  # fmt: skip
    for u in report.unmapped:
        rows.append(["unmapped", *lead, "", "", "", "", "", *([""] * 3), _num(u.tco2e), u.item_code])
    blank = ["", "", "", "", "", "", "", ""]
    rows.append(["basic_total", *lead, *blank[:5], *blank[:3], _num(report.basic_tco2e), ""])
    rows.append(["mapped_total", *lead, *blank[:5], *blank[:3], _num(report.total_tco2e), ""])
    rows.append(["unmapped_total", *lead, *blank[:5], *blank[:3], _num(report.unmapped_tco2e), ""])
    return _csv(GPC_CSV_HEADER, rows)


# --------------------------------------------------------------------------------------------------------- HTML

_CSS = """
@page { size: A4 landscape; margin: 12mm; }
body { font-family: "Sarabun", "TH Sarabun New", "Noto Sans Thai", Tahoma, sans-serif; font-size: 10pt; color: #111; }
h1 { font-size: 15pt; margin: 0 0 4pt; } h2 { font-size: 12pt; margin: 12pt 0 4pt; }
table { border-collapse: collapse; width: 100%; margin-bottom: 8pt; }
th, td { border: 1px solid #999; padding: 2pt 4pt; vertical-align: top; }
th { background: #eee; } td.n { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: bold; background: #f6f6f6; } .meta { color: #444; }
@media print { h2 { page-break-after: avoid; } tr { page-break-inside: avoid; } }
"""


def _e(value: object) -> str:
    return escape("" if value is None else str(value))


def _page(title: str, body: list[str]) -> bytes:
    head = f'<!DOCTYPE html>\n<html lang="th">\n<head>\n<meta charset="utf-8">\n<title>{_e(title)}</title>\n'
    return (head + f"<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n").encode()


def _heading(kind_th: str, kind_en: str, org: ReportOrganisation, year: ReportYear) -> list[str]:
    names = " / ".join(_e(n) for n in (org.name_th, org.name_en) if n)
    province = " / ".join(_e(p) for p in (org.province_th, org.province_en) if p)
    base = " · ปีฐาน / base year" if year.is_base_year else ""
    return [f"<h1>{_e(kind_th)}<br>{_e(kind_en)}</h1>",
            f'<p class="meta">{names} · จังหวัด / province {province} · {_e(year.label)}{_e(base)}</p>']  # fmt: skip


def _cells(values: Iterable[float | None]) -> str:
    return "".join(f'<td class="n">{_t(None if v is None else v / 1000.0)}</td>' for v in values)


def cfo_html(report: CfoReport) -> bytes:
    """Month and total cells are tCO2e (kgCO2e / 1000) to 2 decimals."""
    year = report.year
    months = "".join(f"<th>{_e(month_label_th(m))}<br>{_e(m)}</th>" for m in year.months)
    head = (f"<tr><th>รหัส<br>Item</th><th>กิจกรรม<br>Activity</th><th>ข้อมูล<br>Data</th>"
            f"<th>ค่า EF<br>Factor</th><th>แหล่งอ้างอิง<br>Source</th><th>GWP</th><th>ความครบถ้วน<br>Completeness</th>"
            f"{months}<th>รวม tCO2e<br>Total tCO2e</th></tr>")  # fmt: skip
    width = 7 + 12 + 1
    body = _heading("รายงานคาร์บอนฟุตพริ้นท์ขององค์กร (CFO)", "Carbon Footprint for Organization report",
                    report.organisation, year)  # fmt: skip
    body.append(f"<p>หน่วย: ตันคาร์บอนไดออกไซด์เทียบเท่า / unit: tCO2e · GWP {_e(', '.join(report.gwp_sets))}</p>")
    body.append(f"<table>\n<thead>{head}</thead>\n<tbody>")
    for s in report.scopes:
        body.append(f'<tr><th colspan="{width}">{_e(s.name_th)} / {_e(s.name_en)}</th></tr>')
        for c in s.categories:
            body.append(f'<tr><th colspan="{width}">{_e(c.name_th)} / {_e(c.name_en)}</th></tr>')
            body += [_item_tr(i) for i in c.items]
            body.append(_total_tr(f"รวม {c.name_th} / {c.name_en}", c.totals, f"category-{s.scope}-{c.code}"))
        body.append(_total_tr(f"รวมขอบเขตที่ {s.scope} / Scope {s.scope} total", s.totals, f"scope-{s.scope}"))
    if report.removals:
        body.append(f'<tr><th colspan="{width}">การดูดกลับ / Removals</th></tr>')
        body += [_item_tr(i) for i in report.removals]
    body.append(_total_tr("การดูดกลับ / Removals", report.removals_totals, "removals"))
    body.append(_total_tr("รวมขอบเขต 1-3 / Gross (scopes 1-3)", report.gross, "gross"))
    body.append(_total_tr("สุทธิ / Net", report.net, "net"))
    body.append(_total_tr(f"จากมิเตอร์ / Metered ({_pct(report.metered_share)})", report.metered, "metered"))
    body.append(_total_tr(f"บันทึกเอง / Manual ({_pct(report.manual_share)})", report.manual, "manual"))
    body.append("</tbody>\n</table>")
    share = report.months_reported / report.months_expected if report.months_expected else None
    body.append(f"<p>ความครบถ้วนของข้อมูล / data completeness: {report.months_reported} / "
                f"{report.months_expected} item-months ({_pct(share)})</p>")  # fmt: skip
    return _page(f"CFO {report.organisation.code} {year.label}", body)


def _item_tr(i: CfoItem) -> str:
    activity = " / ".join(_e(a) for a in (i.activity_th, i.activity_en) if a)
    collection = "มิเตอร์ / metered" if i.collection == "metered" else "บันทึกเอง / manual"
    factor = f"{i.ef_kgco2e_per_unit:,.4f} {_e(i.ef_unit)}"
    return (f'<tr data-row="item-{_e(i.item_code)}"><td>{_e(i.item_code)}</td><td>{activity}</td>'
            f"<td>{collection}</td><td class=\"n\">{factor}</td><td>{_e(i.ef_source)}</td><td>{_e(i.gwp_set)}</td>"
            f'<td class="n">{_pct(i.completeness) if i.collection == "metered" else f"{i.months_reported}/12"}</td>'
            f'{_cells(i.monthly_kgco2e)}<td class="n">{_t(i.tco2e)}</td></tr>')  # fmt: skip


def _total_tr(label: str, t: Totals, key: str) -> str:
    return (f'<tr class="total" data-row="{_e(key)}"><td colspan="7">{_e(label)}</td>{_cells(t.monthly_kgco2e)}'
            f'<td class="n">{_t(t.tco2e)}</td></tr>')  # fmt: skip


def gpc_html(report: GpcReport) -> bytes:
    body = _heading("บัญชีก๊าซเรือนกระจกระดับเมือง GPC (BASIC)", "GPC inventory table (BASIC)", report.organisation,
                    report.year)  # fmt: skip
    body.append("<p>หน่วย / unit: tCO2e · BASIC = I, II ขอบเขต 1-2; III ขอบเขต 1, 3</p>")
    body.append("<table>\n<thead><tr><th>GPC</th><th>ภาคส่วน / Sector</th><th>สาขาย่อย / Sub-sector</th>"
                "<th>ขอบเขต 1<br>Scope 1</th><th>ขอบเขต 2<br>Scope 2</th><th>ขอบเขต 3<br>Scope 3</th>"
                "<th>รวม<br>Total</th><th>รายการ<br>Items</th></tr></thead>\n<tbody>")  # fmt: skip
    for r in report.rows:
        cells = "".join(f'<td class="n">{_t(r.scope_tco2e[s])}</td>' for s in SCOPES)
        body.append(f'<tr data-row="gpc-{_e(r.gpc_ref)}"><td>{_e(r.gpc_ref)}</td><td>{_e(r.sector)} '
                    f"{_e(r.sector_name)}</td><td>{_e(r.subsector_name)}</td>{cells}"
                    f'<td class="n">{_t(r.tco2e)}</td><td>{_e(" ".join(r.item_codes))}</td></tr>')  # fmt: skip
    for key, label, value in (("basic", "รวม BASIC / BASIC total", report.basic_tco2e),
                              ("mapped", "รวมทุกสาขา / All mapped sub-sectors", report.total_tco2e)):  # fmt: skip
        body.append(f'<tr class="total" data-row="{key}"><td colspan="6">{_e(label)}</td>'
                    f'<td class="n">{_t(value)}</td><td></td></tr>')  # fmt: skip
    body.append("</tbody>\n</table>")
    body.append("<h2>รายการที่ยังไม่ระบุรหัส GPC / Items without a GPC reference</h2>")
    if report.unmapped:
        body.append("<table><thead><tr><th>Item</th><th>Scope</th><th>Category</th><th>tCO2e</th></tr></thead><tbody>")
        for u in report.unmapped:
            body.append(f'<tr data-row="unmapped-{_e(u.item_code)}"><td>{_e(u.item_code)}</td><td>{u.scope}</td>'
                        f'<td>{_e(u.category)}</td><td class="n">{_t(u.tco2e)}</td></tr>')  # fmt: skip
        body.append("</tbody></table>")
    else:
        body.append("<p>ไม่มี / none</p>")
    return _page(f"GPC {report.organisation.code} {report.year.label}", body)


# ------------------------------------------------------------------------------------------------------ dispatch

FORMATS = ("csv", "json", "html")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json", "html": "text/html; charset=utf-8"}


def render(report: CfoReport | GpcReport, fmt: str) -> bytes:
    """The report in ``fmt`` (csv, json or html)."""
    if fmt == "json":
        return to_json(report)
    if fmt not in ("csv", "html"):
        raise ValueError(f"unknown report format {fmt!r}; one of {', '.join(FORMATS)}")
    if isinstance(report, CfoReport):
        return cfo_csv(report) if fmt == "csv" else cfo_html(report)
    return gpc_csv(report) if fmt == "csv" else gpc_html(report)


def file_name(report: CfoReport | GpcReport, fmt: str) -> str:
    """e.g. ``cfo-lampang-fiscal-2025.csv``."""
    kind = "cfo" if isinstance(report, CfoReport) else "gpc"
    return f"{kind}-{report.organisation.code}-{report.year.kind}-{report.year.year_ce}.{fmt}"
