"""`lccm compare`, `lccm projection`, `lccm kpis` and `lccm targets list|set|status`: an organisation's emissions
against its base year, the year-end projection, the KPIs measured from its meters, and its reduction targets.

The same functions as the API answer (reports/baseline.py, kpi.py, targets.py): ``--json`` prints the document the
API returns, otherwise a table. Mounted by the main CLI as ``app.add_typer(baseline_app)`` (its commands sit at the
top level). Exit codes: 0 done, 1 refused input (every problem printed, nothing written), 2 an unknown organisation,
no base year, a question asked wrongly (a custom period without --to, a year not started), or no database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from lccm.cli_audit import record_cli
from lccm.cli_devices import DatabaseUrl, _connect, _schema_required, _settings
from lccm.imports.rows import RowsInvalid, describe
from lccm.reports import baseline, kpi, targets
from lccm.reports.baseline import By
from lccm.reports.periods import PeriodName, RequestInvalid, YearKind, make_period
from lccm.store import audit
from lccm.store.baseline import BaselineError
from lccm.store.inventory import InventoryError

baseline_app = typer.Typer(no_args_is_help=True)
targets_app = typer.Typer(help="Reduction targets: list, set from a file, status in a year.", no_args_is_help=True)
baseline_app.add_typer(targets_app, name="targets")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"not a date: {text!r}; write YYYY-MM-DD") from None


OrgOption = Annotated[str, typer.Option("--org", help="organisation code, e.g. lampang")]
DateOption = Annotated[
    date | None,
    typer.Option("--date", parser=_date, metavar="YYYY-MM-DD", help="data up to this day (included); default today"),
]
ByOption = Annotated[By, typer.Option("--by", help="group rows by scope, cfo_category, gpc_ref, site or item")]
KindOption = Annotated[YearKind | None, typer.Option("--kind", help="calendar or fiscal year; default the base year's")]
JsonOption = Annotated[bool, typer.Option("--json", help="print the API's JSON document instead of a table")]


@contextmanager
def _answers() -> Iterator[None]:
    """The domain errors of reports/ and the store as one line (or one line a row) and an exit code."""
    try:
        yield
    except RowsInvalid as exc:
        typer.echo(f"error: {exc}", err=True)  # e.g. "targets refused; nothing was written"
        for e in exc.errors:
            typer.echo(f"  {describe(e)}" + (f" (value {e.value!r})" if e.value else ""), err=True)
        raise typer.Exit(1) from exc
    except RequestInvalid as exc:
        typer.echo(f"error: --{exc.parameter}: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    except (InventoryError, BaselineError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@contextmanager
def _session(database_url: str | None) -> Iterator[psycopg.Connection]:
    """The configured database (committed at the end unless an error stops the command), its schema required, and
    the domain errors mapped."""
    with _connect(_settings(database_url)) as conn, _schema_required(), _answers():
        yield conn


def _min_coverage(database_url: str | None) -> float:
    """The coverage threshold of the figures (Settings.comparison_min_coverage, LCCM_COMPARISON_MIN_COVERAGE)."""
    return _settings(database_url).comparison_min_coverage


def _print_json(doc: object) -> None:
    typer.echo(json.dumps(doc, ensure_ascii=False, indent=2))


# ------------------------------------------------------------------------------------------------------- numbers
# "+ 0.0" turns a negative zero (0 / a negative baseline) into 0: "-0.0" would read as a tiny cut.
def _shown(value: float, digits: int) -> float:
    # Rounded first, then + 0.0: -0.04 shown to one digit is 0.0, never "-0.0".
    return round(value, digits) + 0.0


def _kg(value: float | None) -> str:
    return "-" if value is None else f"{_shown(value, 1):,.1f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{_shown(value, 1):+.1f} %"


def _num(value: float | None, digits: int = 2, unit: str = "") -> str:
    return "-" if value is None else f"{_shown(value, digits):,.{digits}f}" + (f" {unit}" if unit else "")


def _missing(doc: dict[str, Any], console: Console) -> None:
    if doc.get("missing_reporting_years"):
        years = ", ".join(str(y) for y in doc["missing_reporting_years"])
        console.print(f"[yellow]no {doc.get('year_kind', '')} reporting year {years}: its actuals count as 0[/]")


def _share(coverage: dict[str, Any] | None) -> str:
    """A coverage object as a cell: its share, marked where it withholds the headline."""
    if coverage is None or coverage["share"] is None:
        return "-"
    return f"{100 * coverage['share']:.2f} %" + ("" if coverage["sufficient"] else " (low)")


def _coverage_note(coverage: dict[str, Any], console: Console, withheld: str) -> None:
    """What the total's figures rest on, in one or two lines; and, below the threshold, what is withheld."""
    parts = []
    if coverage["readings_expected"] > 0:
        parts.append(f"readings {coverage['readings_present']:,.0f} of {coverage['readings_expected']:,.0f} expected")
    if coverage["item_months_expected"] > 0:
        parts.append(f"{coverage['item_months_present']} of {coverage['item_months_expected']} item-months entered")
    basis = "of the base year's emissions in the period" if coverage["basis"] == "baseline" else "of the time"
    text = f"coverage {_share(coverage).removesuffix(' (low)')} {basis}" + (f" ({', '.join(parts)})" if parts else "")
    if coverage["sufficient"]:
        console.print(text)
    else:
        console.print(f"[yellow]{text}: {coverage['reason']}; {withheld}[/]")


def _partial(period: dict[str, Any], console: Console) -> None:
    if period["partial"]:
        console.print(f"the period runs past today: compared up to {period['end'][:10]} (exclusive) with the base "
                      "year's same days")  # fmt: skip


# ------------------------------------------------------------------------------------------------------- compare
@baseline_app.command("compare")
def compare_command(
    org: OrgOption,
    period: Annotated[
        PeriodName, typer.Option("--period", help="day, week, month, fytd, ytd or custom (--from, --to)")
    ] = "fytd",
    on: Annotated[
        date | None,
        typer.Option("--date", parser=_date, metavar="YYYY-MM-DD", help="a day in the period; default today"),
    ] = None,
    start: Annotated[
        date | None, typer.Option("--from", parser=_date, metavar="YYYY-MM-DD", help="custom: first day")
    ] = None,
    end: Annotated[
        date | None, typer.Option("--to", parser=_date, metavar="YYYY-MM-DD", help="custom: day after the last")
    ] = None,
    by: ByOption = "scope",
    as_json: JsonOption = False,
    database_url: DatabaseUrl = None,
) -> None:
    """A period's emissions against the base year's matching slice, at the factors in force and like for like."""
    min_coverage = _min_coverage(database_url)
    with _session(database_url) as conn:
        doc = baseline.comparison(conn, org, make_period(period, on, start, end), by, min_coverage=min_coverage)
    if as_json:
        _print_json(doc)
        return
    p = doc["period"]
    days = f"{p['days']:g} day" + ("" if p["days"] == 1 else "s")
    title = f"{org}: {p['label']} ({p['kind']}, {days}) against base year {doc['base_year']} by {by}"
    table = Table(
        title=title,
        caption="kgCO2e; Δ = actual - baseline; at base factors = actual at the base year's factors; Δ % covered = "
        "actual against the baseline of the covered time only (like for like)",
    )
    for column in ("group", "baseline", "actual", "Δ", "Δ %", "at base factors", "Δ % base factors", "coverage",
                   "Δ % covered", "no data"):  # fmt: skip
        table.add_column(column, overflow="fold", justify="left" if column in ("group", "no data") else "right")
    for row in doc["rows"]:
        table.add_row(*_comparison_cells(row), ", ".join(row["items_without_data"]))
    table.add_section()
    table.add_row(*_comparison_cells(doc["total"]), ", ".join(doc["items_without_data"]), style="bold")
    console = Console()
    console.print(table)
    _partial(p, console)
    _coverage_note(doc["total"]["coverage"], console, "Δ withheld; Δ % covered compares like for like")
    _missing(doc, console)


def _withheld(row: dict[str, Any], text: str) -> str:
    return text if row["coverage"]["sufficient"] else "withheld"


def _comparison_cells(row: dict[str, Any]) -> list[str]:
    return [str(row["group"]), _kg(row["baseline_kgco2e"]), _kg(row["actual_kgco2e"]),
            _withheld(row, _kg(row["delta_kgco2e"])), _withheld(row, _pct(row["delta_pct"])),
            _kg(row["actual_base_factors_kgco2e"]), _withheld(row, _pct(row["delta_base_factors_pct"])),
            _share(row["coverage"]), _pct(row["covered_time"]["delta_pct"])]  # fmt: skip


# ---------------------------------------------------------------------------------------------------- projection
@baseline_app.command("projection")
def projection_command(
    org: OrgOption,
    on: DateOption = None,
    kind: KindOption = None,
    by: ByOption = "scope",
    as_json: JsonOption = False,
    database_url: DatabaseUrl = None,
) -> None:
    """The year-end projection: actual to date x (base year full / base year to date), per group."""
    min_coverage = _min_coverage(database_url)
    with _session(database_url) as conn:
        doc = baseline.projection(conn, org, on, kind, by, min_coverage=min_coverage)
    if as_json:
        _print_json(doc)
        return
    ytd = doc["ytd"]
    table = Table(title=f"{org}: {doc['year_kind']} {doc['year']} projected from {ytd['label']}, by {by}",
                  caption="kgCO2e; ratio = actual / baseline over the covered time; projected = the sum of the items' "
                          "projections (each: its ratio x its base-year full year)")  # fmt: skip
    for column in ("group", "actual to date", "baseline to date", "baseline rest", "ratio", "projected", "coverage",
                   "projected (covered time)"):  # fmt: skip
        table.add_column(column, overflow="fold", justify="left" if column == "group" else "right")
    for r in [*doc["rows"], doc["total"]]:
        if r is doc["total"]:
            table.add_section()
        table.add_row(str(r["group"]), _kg(r["actual_ytd_kgco2e"]), _kg(r["baseline_ytd_kgco2e"]),
                      _kg(r["baseline_rest_kgco2e"]), _num(r["ratio"], 3),
                      _withheld(r, _kg(r["projected_kgco2e"])), _share(r["coverage"]),
                      _kg(r["covered_time"]["projected_kgco2e"]),
                      style="bold" if r is doc["total"] else None)  # fmt: skip
    console = Console()
    console.print(table)
    _partial(ytd, console)
    _coverage_note(doc["total"]["coverage"], console, "projection withheld; the covered-time column still gives it")
    _missing(doc, console)


# ----------------------------------------------------------------------------------------------------------- KPIs
@baseline_app.command("kpis")
def kpis_command(
    org: OrgOption,
    year: Annotated[
        int | None, typer.Option("--year", min=1990, max=2200, help="CE year; default the one containing --date")
    ] = None,
    on: DateOption = None,
    kind: KindOption = None,
    as_json: JsonOption = False,
    database_url: DatabaseUrl = None,
) -> None:
    """kWh per lamp, kWh per m², litres per 100 km measured from the mapped meters in a year to date."""
    min_coverage = _min_coverage(database_url)
    with _session(database_url) as conn:
        doc = kpi.kpis(conn, org, year, on, kind, min_coverage=min_coverage)
    if as_json:
        _print_json(doc)
        return
    days = f"{doc['elapsed_days']:g} of {doc['year_days']:g} days"
    table = Table(
        title=f"{org}: KPIs of {doc['period']['label']} ({days})",
        caption="value = the full year over the covered time (kWh KPIs: measured to date x year days / covered days); "
        "withheld below the coverage threshold (covered-time column)",
    )
    for column in ("kpi", "value", "to date", "numerator", "denominator", "coverage", "meters",
                   "value (covered time)", "note"):  # fmt: skip
        table.add_column(column, overflow="fold", justify="left" if column in ("kpi", "note") else "right")
    for k in doc["kpis"]:
        num, den = k["numerator"], k["denominator"]
        table.add_row(k["kpi"], _num(k["value"], 2, k["unit"]), _num(k["measured_to_date"]),
                      _num(num["value"], 1, num["unit"]), _num(den["value"], 1, den["unit"]), _share(k["coverage"]),
                      str(len(k["devices"])), _num(k["covered_time"]["value"], 2, k["unit"]),
                      k["reason"] or "")  # fmt: skip
    console = Console()
    console.print(table)
    _missing(doc, console)


# -------------------------------------------------------------------------------------------------------- targets
def _targets_table(org: str, rows: Sequence[dict[str, Any]]) -> None:
    table = Table(title=f"{org}: targets")
    for column in ("target", "of", "base year", "target year", "reduction", "KPI values"):
        table.add_column(
            column, overflow="fold", justify="right" if column in ("base year", "target year", "reduction") else "left"
        )
    for t in rows:
        values = ", ".join(f"{y}: {v:g}" for y, v in sorted(t["kpi_values"].items()))
        table.add_row(t["target_key"], t["kpi"] or t["category"] or "all emissions",
                      f"{t['base_year']} ({t['year_kind']})", str(t["target_year"]), f"{t['reduction_pct']:g} %",
                      values)  # fmt: skip
    Console().print(table)


@targets_app.command("list")
def targets_list_command(org: OrgOption, as_json: JsonOption = False, database_url: DatabaseUrl = None) -> None:
    """The organisation's targets."""
    with _session(database_url) as conn:
        rows = targets.list_targets(conn, org)
    if as_json:
        _print_json(rows)
    else:
        _targets_table(org, rows)


@targets_app.command("set")
def targets_set_command(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help='JSON: {"targets": [...]} or [...]')
    ],
    org: OrgOption,
    as_json: JsonOption = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Replace the organisation's targets with those of a JSON file (the API's PUT body): all or nothing.

    Each target: target_key, target_year, and optionally category (CFO category; none = all emissions), kpi
    (kwh_per_lamp, kwh_per_m2, l_per_100km, with kpi_values {"year": value} including the base year), base_year,
    reduction_pct (default 5)."""
    try:
        doc = json.loads(file.read_bytes())
        wanted = targets.TargetsIn.model_validate(doc if isinstance(doc, dict) else {"targets": doc}).targets
    except (ValueError, ValidationError) as exc:
        typer.echo(f"error: {file}: {exc}", err=True)
        raise typer.Exit(1) from exc
    with _session(database_url) as conn:
        audit.begin(conn)  # the targets and their audit entry commit together
        before = targets.list_targets(conn, org)
        rows = targets.set_targets(conn, org, wanted)
        record_cli(conn, "targets set", f"organisation:{org}/targets", org, before={"targets": before},
                   after={"targets": rows})  # fmt: skip
    if as_json:
        _print_json(rows)
    else:
        _targets_table(org, rows)


@targets_app.command("status")
def targets_status_command(
    org: OrgOption,
    year: Annotated[int, typer.Option("--year", min=1990, max=2200, help="reporting year (CE; fiscal: its end)")],
    on: DateOption = None,
    as_json: JsonOption = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Whether each target is on track in a year: trajectory, the year's value (actual, projected or measured),
    margin."""
    min_coverage = _min_coverage(database_url)
    with _session(database_url) as conn:
        rows = targets.target_status(conn, org, year, on, min_coverage=min_coverage)
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"{org}: targets in {year}",
                  caption="emissions in kgCO2e; margin = trajectory - value; no verdict below the coverage threshold "
                          "(the covered-time value is shown beside it)")  # fmt: skip
    for column in ("target", "of", "trajectory", "value", "kind", "margin", "margin %", "on track", "coverage",
                   "value (covered time)"):  # fmt: skip
        table.add_column(
            column, overflow="fold", justify="left" if column in ("target", "of", "kind", "on track") else "right"
        )
    for t in rows:
        verdict = {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[t["on_track"]]
        digits = 1 if t["kpi"] is None else 2
        table.add_row(t["target_key"], t["kpi"] or t["category"] or "all emissions", _num(t["trajectory"], digits),
                      _num(t["value"], digits), t["value_kind"] or "-", _num(t["margin"], digits),
                      _pct(t["margin_pct"]), verdict, _share(t["coverage"]),
                      _num(t["covered_time"]["value"], digits))  # fmt: skip
    console = Console()
    console.print(table)
    for t in rows:
        if t["value"] is None and t["reason"]:
            console.print(f"[yellow]{t['target_key']}: no verdict: {t['reason']}[/]")
