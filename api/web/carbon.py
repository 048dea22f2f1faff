"""The carbon staff's pages (issue 13, item 3): the base-year comparison (/app/carbon) and targets and KPIs
(/app/targets), with a CSV of every table and a form that sets a target.

The figures come from the functions of the JSON API (api/routes/baseline.py), in the caller's organisation
(``principal.scope.organisation_code``; every account and key belongs to one organisation, so there is nothing to
choose): the comparison of a reporting year is ``GET /organisations/{code}/comparison?period=fytd|ytd&date=D&by=B``
with D the year's last day or today, whichever comes first; the targets page shows ``GET .../targets``,
``.../targets/status?year=Y`` and ``.../kpis?year=Y``. Setting a target replaces one target of the list (by its
name) and stores the whole list through ``reports.targets.set_targets``, as ``PUT .../targets`` does, with the same
validation and an audit entry of the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from lccm.api.audit import Audit
from lccm.api.deps import Conn
from lccm.api.principal import CurrentPrincipal, Principal, Role
from lccm.api.web import charts
from lccm.api.web.i18n import Lang, day_text, texts, when
from lccm.api.web.render import Form, csv_response, lang, render
from lccm.engine import calendar as cal
from lccm.engine import inventory as einv
from lccm.engine.timebase import buddhist_era
from lccm.imports.inventory import CATEGORIES, CATEGORY_BY_CODE
from lccm.imports.rows import RowError, RowsInvalid
from lccm.reports import baseline, kpi, targets
from lccm.reports.baseline import By
from lccm.reports.periods import RequestInvalid, bangkok_today, make_period
from lccm.store import inventory as inv
from lccm.store.baseline import KPIS

router = APIRouter(include_in_schema=False)

GROUPINGS: tuple[tuple[By, str], ...] = (
    ("scope", "carbon_by_scope"),
    ("cfo_category", "carbon_by_category"),
    ("gpc_ref", "carbon_by_gpc"),
    ("item", "carbon_by_item"),  # which inventory item (meter or hand-entered line) lacks data
)
COMPARISON_CSV = (
    "group", "baseline_kgco2e", "actual_kgco2e", "actual_base_factors_kgco2e", "delta_kgco2e", "delta_pct",
    "delta_base_factors_pct", "covered_time_delta_pct", "coverage_share", "coverage_sufficient", "coverage_reason",
    "readings_present", "readings_expected", "item_months_present", "item_months_expected",
)  # fmt: skip
TARGETS_CSV = (
    "target_key", "category", "kpi", "base_year", "target_year", "reduction_pct", "year", "base_value_kgco2e",
    "trajectory", "value", "value_kind", "margin", "margin_pct", "on_track", "coverage_share", "reason",
)  # fmt: skip
KPIS_CSV = (
    "kpi", "unit", "value", "value_kind", "measured_to_date", "numerator", "numerator_unit", "denominator",
    "denominator_unit", "devices", "coverage_share", "reason", "period_start", "period_end", "as_of",
)  # fmt: skip


# ------------------------------------------------------------------------------------------------- reporting years
@dataclass(frozen=True, slots=True)
class Years:
    """The organisation's base year and the reporting years a page can show (after the base year, up to now)."""

    organisation: inv.Organisation
    base_year: int | None
    kind: cal.YearKind
    current: int

    @property
    def compared(self) -> list[int]:
        """The years the comparison can show: after the base year, newest first."""
        return [] if self.base_year is None else list(range(self.current, self.base_year, -1))

    @property
    def reported(self) -> list[int]:
        """The years of targets and KPIs: the base year on, newest first."""
        return [] if self.base_year is None else list(range(self.current, self.base_year - 1, -1))


def years_of(conn: psycopg.Connection, code: str) -> Years:
    org = inv.require_organisation(conn, code)
    base = inv.find_year(conn, org.id, None, None)
    kind: cal.YearKind = base.kind if base is not None else "calendar"
    return Years(org, None if base is None else base.year_ce, kind, cal.year_of(bangkok_today(), kind))


def year_text(year: int, kind: cal.YearKind, chosen: Lang) -> str:
    """A reporting year in both eras: "ปีงบประมาณ 2569 (FY 2026)", "FY 2026 (BE 2569)", "พ.ศ. 2569 (ค.ศ. 2026)"."""
    be = buddhist_era(year)
    if kind == "fiscal":
        return f"ปีงบประมาณ {be} (FY {year})" if chosen == "th" else f"FY {year} (BE {be})"
    return f"พ.ศ. {be} (ค.ศ. {year})" if chosen == "th" else f"{year} (BE {be})"


def comparison_date(year: int, kind: cal.YearKind) -> date:
    """The ``date`` of the year-to-date comparison of ``year``: its last day, or today while it runs."""
    last = (cal.year_period(year, kind).end - timedelta(days=1)).date()
    return min(last, bangkok_today())


def _chosen_year(raw: str | None, allowed: list[int]) -> int | None:
    """The year asked for when the page can show it; the newest when none is asked; None for any other."""
    if raw is None or raw == "":
        return allowed[0] if allowed else None
    try:
        year = int(raw)
    except ValueError:
        return None
    return year if year in allowed else None


# ---------------------------------------------------------------------------------------------------- comparison
@dataclass(frozen=True, slots=True)
class ComparisonLine:
    """One line of a comparison table: the API's row, with its label for people."""

    group: str
    label: str
    row: dict[str, Any]

    def csv(self) -> tuple[Any, ...]:
        r, cov = self.row, self.row["coverage"]
        return (
            self.group, r["baseline_kgco2e"], r["actual_kgco2e"], r["actual_base_factors_kgco2e"], r["delta_kgco2e"],
            r["delta_pct"], r["delta_base_factors_pct"], r["covered_time"]["delta_pct"], cov["share"],
            cov["sufficient"], cov["reason"], cov["readings_present"], cov["readings_expected"],
            cov["item_months_present"], cov["item_months_expected"],
        )  # fmt: skip


def group_label(by: By, group: str, t: dict[str, str], chosen: Lang) -> str:
    if group == "total":
        return t["carbon_total"]
    if by == "scope":
        return t["carbon_scope_n"].format(n=group)
    if by == "item":
        return group
    if by == "cfo_category":
        category = CATEGORY_BY_CODE.get(group)
        return group if category is None else (category.name_th if chosen == "th" else category.name_en)
    if group == "(none)":
        return t["carbon_gpc_none"]
    sector = t.get(f"carbon_gpc_{group.split('.')[0]}")
    return group if sector is None else f"{group} {sector}"


def comparison_of(conn: psycopg.Connection, request: Request, code: str, year: int, kind: cal.YearKind,
                  by: By) -> dict[str, Any]:  # fmt: skip
    """``GET /organisations/{code}/comparison?period=fytd|ytd&date=<comparison_date>&by=<by>``."""
    period = make_period("fytd" if kind == "fiscal" else "ytd", comparison_date(year, kind), None, None)
    min_coverage = float(request.app.state.comparison_min_coverage)
    return baseline.comparison(conn, code, period, by, min_coverage=min_coverage)


def comparisons_of(conn: psycopg.Connection, request: Request, code: str, year: int, kind: cal.YearKind,
                   bys: list[By]) -> dict[By, dict[str, Any]]:  # fmt: skip
    """``comparison_of`` by each grouping, the series read once (``baseline.comparisons``)."""
    period = make_period("fytd" if kind == "fiscal" else "ytd", comparison_date(year, kind), None, None)
    min_coverage = float(request.app.state.comparison_min_coverage)
    return baseline.comparisons(conn, code, period, bys, min_coverage=min_coverage)


def comparison_lines(doc: dict[str, Any], by: By, chosen: Lang) -> list[ComparisonLine]:
    t = texts(chosen)
    lines = [ComparisonLine(r["group"], group_label(by, r["group"], t, chosen), r) for r in doc["rows"]]
    return [*lines, ComparisonLine("total", t["carbon_total"], doc["total"])]


def cut_verdict(total: dict[str, Any]) -> str:
    """Whether the year meets the cut of at least 5 % below the base year: 'met', 'not_met', or 'unknown' when the
    coverage withholds the change."""
    if total["delta_pct"] is None:
        return "unknown"
    return "met" if total["delta_pct"] <= -einv.DEFAULT_REDUCTION_PCT else "not_met"


def _no_base(request: Request, template: str, years: Years, user: str, **extra: Any) -> HTMLResponse:
    return render(request, template, years=years, year=None, choices=[], user=user, no_base=True, **extra)


@router.get("/app/carbon")
def carbon_page(request: Request, conn: Conn, principal: CurrentPrincipal) -> HTMLResponse:
    chosen = lang(request)
    code = principal.scope.organisation_code
    years = years_of(conn, code)
    user = principal.display_name
    if years.base_year is None:
        return _no_base(request, "carbon.html", years, user)
    choices = years.compared
    year = _chosen_year(request.query_params.get("year"), choices)
    if year is None:
        status = 422 if request.query_params.get("year") else 200
        return render(request, "carbon.html", status_code=status, years=years, year=None, choices=choices,
                      user=user, no_base=False, year_text=lambda y: year_text(y, years.kind, chosen))  # fmt: skip
    docs = comparisons_of(conn, request, code, year, years.kind, [by for by, _ in GROUPINGS])
    tables = [(by, title, comparison_lines(docs[by], by, chosen)) for by, title in GROUPINGS]
    doc = docs[GROUPINGS[-1][0]]
    t = texts(chosen)
    scope_lines = tables[0][2][:-1]
    chart = charts.categories(
        t["carbon_chart_title"], "kgCO2e", [line.label for line in scope_lines],
        [(year_text(years.base_year, years.kind, chosen), [line.row["baseline_kgco2e"] for line in scope_lines]),
         (year_text(year, years.kind, chosen), [line.row["actual_kgco2e"] for line in scope_lines])],
    )  # fmt: skip
    total = doc["total"]
    return render(
        request, "carbon.html", years=years, year=year, choices=choices, user=user, no_base=False, doc=doc,
        tables=tables, total=total, verdict=cut_verdict(total), cut_pct=einv.DEFAULT_REDUCTION_PCT, chart=chart,
        year_text=lambda y: year_text(y, years.kind, chosen), period_days=_period_days(doc, chosen),
        when_iso=_when_iso(chosen), running=year == years.current,
    )  # fmt: skip


def _period_days(doc: dict[str, Any], chosen: Lang) -> tuple[str, str]:
    """The first and last day of a document's period (its end is the Bangkok midnight after its last day)."""
    first = date.fromisoformat(doc["period"]["start"][:10])
    last = date.fromisoformat(doc["period"]["end"][:10]) - timedelta(days=1)
    return day_text(first, chosen), day_text(last, chosen)


def _when_iso(chosen: Lang) -> Any:
    return lambda text: when(datetime.fromisoformat(text), chosen)


@router.get("/app/carbon.csv")
def carbon_csv(request: Request, conn: Conn, principal: CurrentPrincipal) -> Response:
    code = principal.scope.organisation_code
    years = years_of(conn, code)
    by_name = request.query_params.get("by", "scope")
    by = next((b for b, _ in GROUPINGS if b == by_name), None)
    year = _chosen_year(request.query_params.get("year"), years.compared)
    if by is None or year is None:
        message = "no such table: by is scope, cfo_category, gpc_ref or item, and year one after the base year"
        raise RequestInvalid("year" if by else "by", message)
    doc = comparison_of(conn, request, code, year, years.kind, by)
    lines = comparison_lines(doc, by, lang(request))
    return csv_response(f"comparison-{code}-{year}-{by}.csv", COMPARISON_CSV, (line.csv() for line in lines))


# ------------------------------------------------------------------------------------------------ targets and KPIs
@dataclass(frozen=True, slots=True)
class TargetView:
    """A target of the chosen year (the API's status row) and its trajectory chart."""

    status: dict[str, Any]
    chart: dict[str, Any]

    def csv(self) -> tuple[Any, ...]:
        s = self.status
        share = None if s["coverage"] is None else s["coverage"]["share"]
        return (
            s["target_key"], s["category"], s["kpi"], s["base_year"], s["target_year"], s["reduction_pct"], s["year"],
            s["base_value_kgco2e"], s["trajectory"], s["value"], s["value_kind"], s["margin"], s["margin_pct"],
            s["on_track"], share, s["reason"],
        )  # fmt: skip


def min_coverage_of(request: Request) -> float:
    return float(request.app.state.comparison_min_coverage)


def status_by_year(conn: psycopg.Connection, request: Request, code: str, years: list[int]) -> dict[int, list[Any]]:
    """``GET .../targets/status?year=Y`` for each year; a year the API refuses (a KPI target whose own base year
    is later) is left out, its points being gaps."""
    found: dict[int, list[Any]] = {}
    for y in years:
        try:
            found[y] = targets.target_status(conn, code, y, min_coverage=min_coverage_of(request))
        except ValueError:  # RequestInvalid, or a year before a KPI target's base year
            continue
    return found


def trajectory_chart(status: dict[str, Any], history: dict[int, list[Any]], kind: cal.YearKind, current: int,
                     chosen: Lang) -> dict[str, Any]:  # fmt: skip
    """The planned path from the base year to the target year (flat after it) against each year's value: the
    actual or projected value where the coverage allows one (else a gap), and the value over the covered time."""
    t = texts(chosen)
    key, base_year = status["target_key"], status["base_year"]
    base_value = status["base_value_kgco2e"] if status["kpi"] is None else status["kpi_values"][base_year]
    plan = einv.Target(base_year, status["target_year"], base_value, status["reduction_pct"])
    labels = list(range(base_year, max(status["target_year"], current) + 1))
    actual: list[float | None] = []
    covered: list[float | None] = []
    for y in labels:
        row = next((r for r in history.get(y, []) if r["target_key"] == key), None)
        actual.append(base_value if y == base_year else None if row is None else row["value"])
        covered.append(base_value if y == base_year else None if row is None else row["covered_time"]["value"])
    unit = "kgCO2e" if status["kpi"] is None else t[f"kpi_{status['kpi']}"]
    return charts.categories(
        t["targets_chart_title"].format(key=key), unit, [year_text(y, kind, chosen) for y in labels],
        [(t["targets_series_planned"], [float(plan.trajectory(y)) for y in labels]),
         (t["targets_series_actual"], actual), (t["targets_series_covered"], covered)],
        kind="line",
    )  # fmt: skip


def _targets_context(conn: psycopg.Connection, request: Request, code: str, years: Years, year: int,
                     chosen: Lang) -> dict[str, Any]:  # fmt: skip
    listed = targets.list_targets(conn, code)
    history = status_by_year(conn, request, code, years.compared) if listed else {}
    current = history.get(year) or (
        targets.target_status(conn, code, year, min_coverage=min_coverage_of(request)) if listed else []
    )
    views = [TargetView(s, trajectory_chart(s, history, years.kind, years.current, chosen)) for s in current]
    kpis = kpi.kpis(conn, code, year, None, None, min_coverage=min_coverage_of(request))
    return {"targets": views, "kpis": kpis, "kpi_days": _period_days(kpis, chosen)}


def kpis_rows(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
    p = doc["period"]
    return [
        (k["kpi"], k["unit"], k["value"], k["value_kind"], k["measured_to_date"], k["numerator"]["value"],
         k["numerator"]["unit"], k["denominator"]["value"], k["denominator"]["unit"], len(k["devices"]),
         k["coverage"]["share"], k["reason"], p["start"], p["end"], doc["as_of"])
        for k in doc["kpis"]
    ]  # fmt: skip


def _targets_page(request: Request, conn: psycopg.Connection, principal: Principal, status_code: int = 200,
                  **form: Any) -> HTMLResponse:  # fmt: skip
    chosen = lang(request)
    code = principal.scope.organisation_code
    years = years_of(conn, code)
    user = principal.display_name
    can_edit = principal.has(Role.CARBON_OFFICER)
    common = {"can_edit": can_edit, "categories": CATEGORIES, "kpi_names": KPIS, "form": form.get("form", {}),
              "errors": form.get("errors", []), "saved": request.query_params.get("saved") == "1"}  # fmt: skip
    if years.base_year is None:
        return _no_base(request, "targets.html", years, user, **common)
    choices = years.reported
    year = _chosen_year(request.query_params.get("year"), choices)
    if year is None:
        return render(request, "targets.html", status_code=422, years=years, year=None, choices=choices, user=user,
                      no_base=False, year_text=lambda y: year_text(y, years.kind, chosen), **common)  # fmt: skip
    context = _targets_context(conn, request, code, years, year, chosen)
    return render(
        request, "targets.html", status_code=status_code, years=years, year=year, choices=choices, user=user,
        no_base=False, year_text=lambda y: year_text(y, years.kind, chosen), when_iso=_when_iso(chosen),
        **context, **common,
    )  # fmt: skip


@router.get("/app/targets")
def targets_page(request: Request, conn: Conn, principal: CurrentPrincipal) -> HTMLResponse:
    return _targets_page(request, conn, principal)


@router.get("/app/targets.csv")
def targets_csv(request: Request, conn: Conn, principal: CurrentPrincipal) -> Response:
    code, year = _csv_year(conn, request, principal)
    listed = targets.list_targets(conn, code)
    rows = targets.target_status(conn, code, year, min_coverage=min_coverage_of(request)) if listed else []
    views = [TargetView(s, {}) for s in rows]
    return csv_response(f"targets-{code}-{year}.csv", TARGETS_CSV, (v.csv() for v in views))


@router.get("/app/kpis.csv")
def kpis_csv(request: Request, conn: Conn, principal: CurrentPrincipal) -> Response:
    code, year = _csv_year(conn, request, principal)
    doc = kpi.kpis(conn, code, year, None, None, min_coverage=min_coverage_of(request))
    return csv_response(f"kpis-{code}-{year}.csv", KPIS_CSV, kpis_rows(doc))


def _csv_year(conn: psycopg.Connection, request: Request, principal: Principal) -> tuple[str, int]:
    code = principal.scope.organisation_code
    years = years_of(conn, code)
    year = _chosen_year(request.query_params.get("year"), years.reported)
    if year is None:
        raise RequestInvalid("year", "a reporting year from the base year to the current one")
    return code, year


# ------------------------------------------------------------------------------------------------ setting a target
def target_from_form(form: dict[str, str], base_year: int, existing: dict[str, Any] | None) -> targets.TargetIn:
    """The form's target as the API's request body would give it (``TargetIn``: the same validation). A KPI
    target keeps the values already reported for other years; the form sets its base year's value."""
    kpi_name = form.get("kpi") or None
    body: dict[str, Any] = {
        "target_key": form.get("target_key", "").strip(),
        "category": (form.get("category") or None) if kpi_name is None else None,
        "kpi": kpi_name,
        "target_year": form.get("target_year", ""),
        "reduction_pct": form.get("reduction_pct") or einv.DEFAULT_REDUCTION_PCT,
    }
    if kpi_name is not None:
        kpi_base = form.get("kpi_base_year") or str(base_year)
        values = {str(y): v for y, v in (existing or {}).get("kpi_values", {}).items()}
        if form.get("kpi_base_value"):
            values[kpi_base] = form["kpi_base_value"]
        body |= {"base_year": kpi_base, "kpi_values": values}
    return targets.TargetIn.model_validate(body)


def _validation_errors(exc: ValidationError) -> list[RowError]:
    return [RowError(1, ".".join(str(p) for p in e["loc"]), str(e.get("input", "")), e["msg"]) for e in exc.errors()]


@router.post("/app/targets")
def set_target(request: Request, conn: Conn, principal: CurrentPrincipal, audit: Audit, form: Form) -> Response:
    """Add a target, or replace the one of the same name, and store the list as ``PUT .../targets`` does
    (all or nothing, audited). Refused: the form again with each problem (422)."""
    code = principal.scope.organisation_code
    years = years_of(conn, code)
    before = targets.list_targets(conn, code)
    by_key = {t["target_key"]: t for t in before}
    try:
        new = target_from_form(form, years.base_year or years.current, by_key.get(form.get("target_key", "").strip()))
        kept = [targets.TargetIn.model_validate(t) for t in before if t["target_key"] != new.target_key]
        after = targets.set_targets(conn, code, [*kept, new])
    except ValidationError as exc:
        return _targets_page(request, conn, principal, 422, form=form, errors=_validation_errors(exc))
    except RowsInvalid as exc:
        return _targets_page(request, conn, principal, 422, form=form, errors=exc.errors)
    audit.record(f"organisation:{code}/targets", before={"targets": before}, after={"targets": after})
    return _saved(request)


def _saved(request: Request) -> Response:
    """htmx loads the targets page again (the new list, its charts and status), saying the change was saved."""
    year = request.query_params.get("year", "")
    response = Response(status_code=204)
    response.headers["HX-Redirect"] = f"/app/targets?saved=1{'&year=' + year if year.isdigit() else ''}"
    return response


@router.post("/app/targets/delete")
def delete_target(request: Request, conn: Conn, principal: CurrentPrincipal, audit: Audit, form: Form) -> Response:
    """Remove one target by its name and store the rest as ``PUT .../targets`` does (audited)."""
    code = principal.scope.organisation_code
    before = targets.list_targets(conn, code)
    key = form.get("target_key", "")
    if key not in {t["target_key"] for t in before}:
        return _targets_page(request, conn, principal, 422, errors=[RowError(1, "target_key", key, "no such target")])
    kept = [targets.TargetIn.model_validate(t) for t in before if t["target_key"] != key]
    after = targets.set_targets(conn, code, kept)
    audit.record(f"organisation:{code}/targets", before={"targets": before}, after={"targets": after})
    return _saved(request)
