"""The carbon staff's imports page (/app/imports): the templates to download, the base-year inventory and activity
uploads, each file's per-row errors shown on the page, and the organisation's import history.

The uploads call the API's importers (``store.inventory.import_inventory_file``, ``store.inventory_activity.
import_activity_file``, as POST /organisations/{code}/inventory/import and /activity/import do) for the caller's own
organisation, with the same semantics: all rows or none, a rejected file kept in the import log with its errors and
nothing else stored; a stored one audited in the same transaction. The forms are htmx posts (``hx-encoding=
multipart/form-data``), so the session's CSRF token goes in the header the guard reads; the answer is a fragment (the
outcome, and the history swapped in out of band). A rejected file is a normal answer here (200): the page shows its
rows, where the API answers 422. "Check only" is the page's dry run of an inventory file (``store.inventory.
check_inventory_file``: the importer's validation; nothing stored, nothing logged); activity data have none (their
checks against the stored items happen inside the import's transaction).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from lccm.api.audit import Audit
from lccm.api.deps import Conn, Limits
from lccm.api.errors import NotFound
from lccm.api.policy import CARBON
from lccm.api.principal import CurrentPrincipal, Principal
from lccm.api.upload import FormPart, form_parts
from lccm.api.web.render import csv_response, render
from lccm.imports.inventory import InventoryInvalid, detect_format
from lccm.store import inventory as inv
from lccm.store.inventory_activity import import_activity_file

router = APIRouter(include_in_schema=False)

# The product's templates (lccm/data/templates), each with its label's message key.
TEMPLATES: dict[str, str] = {
    "cfo-base-year-template.xlsx": "imports_template_inventory_en",
    "cfo-base-year-template.csv": "imports_template_inventory_en",
    "cfo-base-year-template-th.xlsx": "imports_template_inventory_th",
    "cfo-base-year-template-th.csv": "imports_template_inventory_th",
    "activity-template.csv": "imports_template_activity_en",
    "activity-template-th.csv": "imports_template_activity_th",
}
TEMPLATE_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
YEARS_BACK, YEARS_AHEAD = 12, 1  # the years the inventory form offers, around this one
HISTORY_LIMIT = 100
HISTORY_CSV_COLUMNS = ("id", "imported_at", "kind", "year_kind", "year_ce", "file_name", "file_format", "status",
                       "rows", "errors_total", "sha256")  # fmt: skip


class TemplateNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"no template {name!r}; one of {', '.join(TEMPLATES)}")


def year_text(t: dict[str, str], kind: str | None, year_ce: int | None) -> str:
    """A reporting year as the municipality names it: BE first in Thai, both eras in English."""
    if year_ce is None:
        return "–"
    key = "year_fiscal" if kind == "fiscal" else "year_calendar"
    return t[key].format(ce=year_ce, be=inv.be(year_ce))


def can_import(principal: Principal) -> bool:
    return CARBON.allows(principal.roles)


@dataclass(frozen=True, slots=True)
class HistoryRow:
    id: int
    imported_at: datetime
    kind: str
    year_kind: str | None
    year_ce: int | None
    file_name: str
    file_format: str
    status: str
    rows: int
    errors_total: int
    sha256: str


def _history_row(log: inv.ImportLog) -> HistoryRow:
    errors_total = int(log.summary.get("errors_total", len(log.errors)))
    return HistoryRow(log.id, log.imported_at, log.kind, log.year_kind, log.year_ce, log.file_name, log.file_format,
                      log.status, log.rows, errors_total, log.sha256)  # fmt: skip


def history(conn: Conn, principal: Principal) -> list[HistoryRow]:
    """The organisation's imports, newest first (the API's GET /organisations/{code}/imports)."""
    org = inv.require_organisation(conn, principal.scope.organisation_code)
    return [_history_row(log) for log in inv.list_imports(conn, org.id, HISTORY_LIMIT)]


def _years() -> list[tuple[int, int]]:
    """(CE, BE) of the years the inventory form offers, newest first."""
    this_year = datetime.now(UTC).year
    return [(y, inv.be(y)) for y in range(this_year + YEARS_AHEAD, this_year - YEARS_BACK, -1)]


def _page_context(request: Request, conn: Conn, principal: Principal) -> dict[str, Any]:
    return {
        "user": principal.display_name, "rows": history(conn, principal), "can_import": can_import(principal),
        "templates": TEMPLATES, "years": _years(), "year_text": year_text,
    }  # fmt: skip


@router.get("/app/imports")
def imports_page(request: Request, conn: Conn, principal: CurrentPrincipal) -> HTMLResponse:
    return render(request, "imports.html", **_page_context(request, conn, principal))


@router.get("/app/imports.csv")
def imports_csv(conn: Conn, principal: CurrentPrincipal) -> Response:
    rows = history(conn, principal)
    return csv_response(
        "imports.csv", HISTORY_CSV_COLUMNS,
        ((r.id, r.imported_at.isoformat(), r.kind, r.year_kind, r.year_ce, r.file_name, r.file_format, r.status,
          r.rows, r.errors_total, r.sha256) for r in rows),
    )  # fmt: skip


@router.get("/app/imports/templates/{name}")
def template_file(name: str) -> Response:
    if name not in TEMPLATES:
        raise TemplateNotFound(name)
    data = resources.files("lccm").joinpath("data", "templates", name).read_bytes()
    headers = {"content-disposition": f'attachment; filename="{name}"'}
    return Response(data, media_type=TEMPLATE_TYPES[name.rpartition(".")[2]], headers=headers)


async def _multipart(request: Request) -> dict[str, FormPart]:
    """The upload form's fields; the body's size was bounded before it was read (api/limits.py)."""
    return form_parts(request.headers.get("content-type", ""), await request.body())


Upload = Annotated[dict[str, FormPart], Depends(_multipart)]


def _file_name(part: FormPart, default: str) -> str:
    name = (part.file_name or "").replace("\\", "/").rpartition("/")[2].strip()
    return (name or default)[:255]


def _outcome(request: Request, conn: Conn, principal: Principal, **context: Any) -> HTMLResponse:
    """The fragment answering an upload: what became of the file, and the history (swapped in out of band)."""
    defaults: dict[str, Any] = {"report": None, "errors": [], "errors_total": 0, "problem": None, "what": "",
                                "preview": None, "checked": False}  # fmt: skip
    return render(
        request, "imports_result.html", rows=history(conn, principal), year_text=year_text, **{**defaults, **context}
    )


def _rejected(request: Request, conn: Conn, principal: Principal, exc: InventoryInvalid, what: str,
              checked: bool = False) -> HTMLResponse:  # fmt: skip
    listed = exc.errors[: request.app.state.input_limits.max_errors_listed]
    return _outcome(request, conn, principal, errors=listed, errors_total=exc.total, what=what, checked=checked)


@router.post("/app/imports/inventory")
def upload_inventory(
    request: Request, conn: Conn, limits: Limits, principal: CurrentPrincipal, audit: Audit, form: Upload
) -> HTMLResponse:
    """The page's POST /organisations/{code}/inventory/import."""
    code = principal.scope.organisation_code
    part, year, kind = form.get("file"), form.get("year"), form.get("kind")
    if part is None or not part.data:
        return _outcome(request, conn, principal, problem="imports_no_file", what="inventory")
    year_ce = int(year.text) if year is not None and year.text.strip().isdigit() else None
    kind_name = kind.text if kind is not None else ""
    if year_ce is None or not 1990 <= year_ce <= 2200 or kind_name not in ("calendar", "fiscal"):
        return _outcome(request, conn, principal, problem="imports_bad_form", what="inventory")
    year_kind: inv.YearKind = "fiscal" if kind_name == "fiscal" else "calendar"
    base_year = True if "base_year" in form else None  # unticked: the API's default (only if there is none)
    name = _file_name(part, f"upload.{detect_format(part.data)}")
    try:
        report = inv.import_inventory_file(
            conn, part.data, file_name=name, organisation=code, year_ce=year_ce, kind=year_kind, base_year=base_year,
            limits=limits,
        )  # fmt: skip
    except InventoryInvalid as exc:
        return _rejected(request, conn, principal, exc, "inventory")
    audit.record(f"organisation:{code}/inventory/{year_kind}/{year_ce}", after={"file": name, "report": report})
    return _outcome(request, conn, principal, report=asdict(report), what="inventory")


@router.post("/app/imports/inventory/check")
def check_inventory(request: Request, conn: Conn, limits: Limits, principal: CurrentPrincipal,
                    form: Upload) -> HTMLResponse:  # fmt: skip
    """A dry run of the inventory upload: the importer's validation, and what the file would store; nothing is
    stored or logged (the API has no dry run: this is the page's own)."""
    part = form.get("file")
    if part is None or not part.data:
        return _outcome(request, conn, principal, problem="imports_no_file", what="inventory")
    try:
        parsed = inv.check_inventory_file(conn, part.data, organisation=principal.scope.organisation_code,
                                          limits=limits)  # fmt: skip
    except InventoryInvalid as exc:
        return _rejected(request, conn, principal, exc, "inventory", checked=True)
    return _outcome(request, conn, principal, preview=parsed.rows, what="inventory")


@router.post("/app/imports/activity")
def upload_activity(
    request: Request, conn: Conn, limits: Limits, principal: CurrentPrincipal, audit: Audit, form: Upload
) -> HTMLResponse:
    """The page's POST /organisations/{code}/activity/import."""
    code = principal.scope.organisation_code
    part = form.get("file")
    if part is None or not part.data:
        return _outcome(request, conn, principal, problem="imports_no_file", what="activity")
    name = _file_name(part, "upload.csv")
    try:
        report = import_activity_file(conn, part.data, organisation=code, file_name=name, limits=limits)
    except InventoryInvalid as exc:
        return _rejected(request, conn, principal, exc, "activity")
    audit.record(f"organisation:{code}/activity", after={"file": name, "report": report})
    return _outcome(request, conn, principal, report=asdict(report), what="activity")
