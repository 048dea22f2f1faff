"""The annual reports of an organisation-year: the TGO CFO report and the GPC table, as CSV, JSON, HTML or XLSX.

The bytes are those of ``lccm report`` (``reports.annual`` + ``reports.render``). An unknown organisation or year
is a 404 naming what exists (api/errors.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Query
from fastapi.responses import Response

from lccm.api.deps import Conn
from lccm.api.routes.inventory import KindQuery, YearQuery
from lccm.reports.annual import CfoReport, GpcReport, build_cfo_report, build_gpc_report
from lccm.reports.render import CONTENT_TYPES, XLSX_TYPE, file_name, render
from lccm.store import inventory as inv

router = APIRouter(tags=["reports"])

FormatQuery = Annotated[
    Literal["csv", "json", "html", "xlsx"],
    Query(description="csv (wide, one row per item), json, html, xlsx (the CSV's lines as a workbook)"),
]
Builder = Callable[[psycopg.Connection, str, int | None, inv.YearKind | None], CfoReport | GpcReport]
_TEXT = {"schema": {"type": "string"}}
_BINARY = {"schema": {"type": "string", "format": "binary"}}


def _responses(report: type[CfoReport | GpcReport]) -> dict[int | str, dict[str, Any]]:
    """The three media types of ``format``; the JSON one is the report dataclass itself (reports/render.py's
    ``to_json`` is its ``asdict``), so its schema follows the report as it changes."""
    return {
        200: {
            "description": "the report in the format asked for",
            "model": report,
            "content": {"text/csv": _TEXT, "text/html": _TEXT, XLSX_TYPE: _BINARY},
        },
        404: {"description": "unknown organisation or reporting year"},
    }


def _respond(builder: Builder, conn: psycopg.Connection, code: str, year: int | None, kind: inv.YearKind | None,
             fmt: str) -> Response:  # fmt: skip
    report = builder(conn, code, year, kind)
    headers = {}
    if fmt in ("csv", "xlsx"):  # a download; JSON and HTML open in the browser
        headers["content-disposition"] = f'attachment; filename="{file_name(report, fmt)}"'
    return Response(render(report, fmt), media_type=CONTENT_TYPES[fmt], headers=headers)


@router.get("/organisations/{code}/reports/cfo", response_class=Response, responses=_responses(CfoReport))
def cfo_report(code: str, conn: Conn, year: YearQuery = None, kind: KindQuery = None,
               format: FormatQuery = "json") -> Response:  # fmt: skip
    """The CFO report: scopes 1-3 by TGO category, monthly kgCO2e/tCO2e, factors and sources, completeness,
    removals and net, metered versus manual share."""
    return _respond(build_cfo_report, conn, code, year, kind, format)


@router.get("/organisations/{code}/reports/gpc", response_class=Response, responses=_responses(GpcReport))
def gpc_report(code: str, conn: Conn, year: YearQuery = None, kind: KindQuery = None,
               format: FormatQuery = "json") -> Response:  # fmt: skip
    """The GPC table by sector, sub-sector and scope, with the BASIC and BASIC+ totals and the items without a usable
    GPC reference number (with the reason)."""
    return _respond(build_gpc_report, conn, code, year, kind, format)
