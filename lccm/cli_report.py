"""`lccm report cfo|gpc`: the annual CFO report and the GPC table as CSV, JSON, HTML or XLSX.

Mounted by the main CLI as ``app.add_typer(report_app, name="report")``. The bytes are those of the API
(``reports.annual`` + ``reports.render``). Exit codes: 0 written, 2 unknown organisation or year, or no database.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import psycopg
import typer

from lccm.cli_devices import DatabaseUrl, _connect, _schema_required, _settings
from lccm.cli_inventory import _domain_errors
from lccm.reports.annual import CfoReport, GpcReport, build_cfo_report, build_gpc_report
from lccm.reports.render import render
from lccm.store import inventory as inv

report_app = typer.Typer(help="Annual reports: the TGO CFO report and the GPC table.", no_args_is_help=True)


class Format(StrEnum):
    csv = "csv"
    json = "json"
    html = "html"
    xlsx = "xlsx"


OrgOption = Annotated[str, typer.Option("--org", help="organisation code, e.g. lampang")]
YearOption = Annotated[
    int | None,
    typer.Option("--year", help="CE year (a fiscal year is named by the year it ends in); default: base year"),
]
FiscalOption = Annotated[
    bool | None, typer.Option("--fiscal/--calendar", help="kind of year; default: whichever exists")
]
FormatOption = Annotated[Format, typer.Option("--format", help="csv, json, html or xlsx")]
OutOption = Annotated[Path | None, typer.Option("--out", help="write to this file; default: standard output")]

Builder = Callable[[psycopg.Connection, str, int | None, inv.YearKind | None], CfoReport | GpcReport]


def _run(builder: Builder, org: str, year: int | None, fiscal: bool | None, fmt: Format, out: Path | None,
         database_url: str | None) -> None:  # fmt: skip
    kind: inv.YearKind | None = None if fiscal is None else ("fiscal" if fiscal else "calendar")
    with _connect(_settings(database_url)) as conn, _schema_required(), _domain_errors("report"):
        data = render(builder(conn, org, year, kind), fmt.value)
    if out is None:  # a workbook goes to standard output as its bytes
        typer.echo(data if fmt is Format.xlsx else data.decode("utf-8"), nl=False)
    else:
        out.write_bytes(data)
        typer.echo(f"wrote {out} ({len(data):,} bytes)", err=True)


@report_app.command("cfo")
def cfo_command(org: OrgOption, year: YearOption = None, fiscal: FiscalOption = None,
                fmt: FormatOption = Format.csv, out: OutOption = None,
                database_url: DatabaseUrl = None) -> None:  # fmt: skip
    """The CFO report: scopes 1-3 by TGO category, monthly tCO2e, factors and sources, completeness."""
    _run(build_cfo_report, org, year, fiscal, fmt, out, database_url)


@report_app.command("gpc")
def gpc_command(org: OrgOption, year: YearOption = None, fiscal: FiscalOption = None,
                fmt: FormatOption = Format.csv, out: OutOption = None,
                database_url: DatabaseUrl = None) -> None:  # fmt: skip
    """The GPC table: sector, sub-sector, scope 1/2/3, BASIC and BASIC+ totals; items without a usable gpc_ref
    listed with the reason."""
    _run(build_gpc_report, org, year, fiscal, fmt, out, database_url)
