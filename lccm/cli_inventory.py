"""`lccm inventory ...` and `lccm activity ...`: the CFO base-year import, inventories, device mappings, activity data.

Mounted by the main CLI as ``app.add_typer(inventory_app, name="inventory")`` and ``add_typer(activity_app,
name="activity")``. Exit codes: 0 done (also when nothing changed), 1 invalid input (every error printed, nothing
written), 2 unknown organisation or year, or no database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import psycopg
import typer

from lccm.cli_audit import record_cli
from lccm.cli_devices import DatabaseUrl, _connect, _schema_required, _settings
from lccm.imports.rows import RowsInvalid, describe
from lccm.store import audit
from lccm.store import inventory as inv
from lccm.store.inventory_activity import import_activity_file
from lccm.store.inventory_mapping import auto_map, list_mappings, mapping_problems

inventory_app = typer.Typer(help="Organisation inventories (TGO CFO): base-year import, items, mappings.",
                            no_args_is_help=True)  # fmt: skip
activity_app = typer.Typer(help="Activity data no sensor measures: LPG, refrigerants, waste, water, paper.",
                           no_args_is_help=True)  # fmt: skip


@activity_app.callback()
def _activity() -> None:
    """Activity data no sensor measures: LPG, refrigerants, waste, water, paper."""
    # A callback keeps `activity` a group with an `import` sub-command even while it has one command.


OrgOption = Annotated[str, typer.Option("--org", help="organisation code, e.g. lampang")]
YearOption = Annotated[int, typer.Option("--year", help="CE year; a fiscal year is named by the year it ends in")]
FiscalOption = Annotated[bool, typer.Option("--fiscal/--calendar", help="Thai fiscal year (Oct-Sep) or calendar")]


def _kind(fiscal: bool) -> inv.YearKind:
    return "fiscal" if fiscal else "calendar"


def _print_errors(path: Path | str, invalid: RowsInvalid) -> None:
    listed = f" (the first {len(invalid.errors)} listed)" if len(invalid.errors) < invalid.total else ""
    typer.echo(f"{path}: {invalid.total} error(s){listed}; nothing was written.", err=True)
    for e in invalid.errors:
        value = f" (value {e.value!r})" if e.value else ""
        typer.echo(f"  {describe(e)}{value}", err=True)


@contextmanager
def _domain_errors(path: Path | str) -> Iterator[None]:
    try:
        yield
    except RowsInvalid as exc:
        _print_errors(path, exc)
        raise typer.Exit(1) from exc
    except inv.InventoryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@inventory_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV or XLSX")],
    org: OrgOption,
    year: YearOption,
    fiscal: FiscalOption = False,
    base_year: Annotated[
        bool | None,
        typer.Option("--base-year/--not-base-year", help="default: base year only if the organisation has none"),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Import a base-year CFO (docs/inventory-template.md). All rows or none; the same content again is a no-op."""
    kind = _kind(fiscal)
    settings = _settings(database_url)
    with _connect(settings) as conn, _schema_required(), _domain_errors(file):
        audit.begin(conn)  # the import and its audit entry commit together
        report = inv.import_inventory_file(conn, file.read_bytes(), file_name=file.name, organisation=org,
                                           year_ce=year, kind=kind, base_year=base_year,
                                           limits=settings.input_limits())  # fmt: skip
        record_cli(conn, "inventory import", f"organisation:{org}/inventory/{kind}/{year}", org,
                   after={"file": file.name, "report": report})  # fmt: skip
    label = inv.year_label(kind, year)
    if report.status == "unchanged":
        typer.echo(f"{org} {label}: unchanged ({report.rows} row(s) equal what is stored)")
    else:
        typer.echo(f"{org} {label}: imported {report.rows} row(s), {report.quantities} monthly quantities")
        typer.echo(f"  items inserted {report.items_inserted}, updated {report.items_updated}, "
                   f"unchanged {report.items_unchanged}, deleted {report.items_deleted}")  # fmt: skip
    if report.base_year_changed:
        typer.echo(f"  base year is now {label}" if report.is_base_year else "  no longer the base year")
    if report.devices_unmapped:
        typer.echo(f"  unmapped (their item left or became manual): {', '.join(report.devices_unmapped)}")


@inventory_app.command("list")
def list_command(
    org: Annotated[str | None, typer.Option("--org", help="one organisation's inventory")] = None,
    year: Annotated[int | None, typer.Option("--year", help="CE year; default: the base year")] = None,
    fiscal: Annotated[bool | None, typer.Option("--fiscal/--calendar", help="kind of year")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List organisations and their reporting years; with --org, one inventory's items and totals."""
    with _connect(_settings(database_url)) as conn, _schema_required(), _domain_errors("inventory"):
        if org is None:
            for o in inv.list_organisations(conn):
                years = ", ".join(y.label + (" [base]" if y.is_base_year else "") for y in inv.list_years(conn, o.id))
                typer.echo(f"{o.province_en:<14} {o.code:<16} {o.name_en} / {o.name_th or '-'}: {years or 'no years'}")
            return
        view = inv.get_inventory(conn, org, year, None if fiscal is None else _kind(fiscal))
    _print_inventory(view)


def _print_inventory(view: inv.InventoryView) -> None:
    base = " [base year]" if view.year.is_base_year else ""
    typer.echo(f"{view.organisation} {view.year.label}{base}, GWP {'/'.join(view.gwp_sets) or '-'}")
    typer.echo(f"{'item_code':<20} {'S':>1} {'category':<22} {'data':<7} {'quantity':>14} {'unit':<5} {'tCO2e':>11}")
    for i in view.items:
        typer.echo(f"{i.item_code:<20} {i.scope:>1} {i.category:<22} {i.collection:<7} {i.quantity:>14,.1f} "
                   f"{i.unit:<5} {i.kgco2e / 1000:>11,.2f}")  # fmt: skip
    scopes = " ".join(f"scope {s}: {v / 1000:,.2f} t;" for s, v in view.kgco2e_by_scope().items())
    removals, net = view.removals_kgco2e / 1000, view.net_kgco2e / 1000
    typer.echo(f"{scopes} removals {removals:,.2f} t; net {net:,.2f} tCO2e")


@inventory_app.command("map")
def map_command(
    org: OrgOption,
    year: YearOption,
    fiscal: FiscalOption = False,
    auto: Annotated[bool, typer.Option("--auto", help="map unmapped devices to the one item of their class")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Show a year's device -> item mapping and its problems; --auto first maps devices by source class."""
    kind = _kind(fiscal)
    with _connect(_settings(database_url)) as conn, _schema_required(), _domain_errors("mapping"):
        if auto:
            audit.begin(conn)
            report = auto_map(conn, org, year, kind)
            record_cli(conn, "inventory map --auto", f"organisation:{org}/mappings/{kind}/{year}", org,
                       after={"report": report})  # fmt: skip
            typer.echo(f"{report.year}: mapped {len(report.mapped)} device(s)")
            for device, items in report.ambiguous.items():
                typer.echo(f"  {device}: several items of its class ({', '.join(items)}); map it by hand")
            if report.unmatched:
                typer.echo(f"  no metered item of their class: {', '.join(report.unmatched)}")
        _, mappings = list_mappings(conn, org, year, kind)
        problems = mapping_problems(conn, org, year, kind)
    for m in mappings:
        typer.echo(f"{m.device_id:<20} -> {m.item_code}")
    typer.echo(f"{len(mappings)} device(s) mapped")
    for p in problems:
        typer.echo(f"{p.severity}: {p.problem}: {p.detail}", err=p.severity == "error")


@activity_app.command("import")
def activity_import_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="activity CSV")],
    org: Annotated[str | None, typer.Option("--org", help="organisation code; default: the only one")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Record monthly activity data (columns item_code, month, quantity, unit, note; Thai headers accepted)."""
    settings = _settings(database_url)
    with _connect(settings) as conn, _schema_required(), _domain_errors(file):
        code = org or _only_organisation(conn)
        audit.begin(conn)
        report = import_activity_file(conn, file.read_bytes(), organisation=code, file_name=file.name,
                                      limits=settings.input_limits())  # fmt: skip
        record_cli(conn, "activity import", f"organisation:{code}/activity", code,
                   after={"file": file.name, "report": report})  # fmt: skip
    typer.echo(f"{code}: {report.entries} entr{'y' if report.entries == 1 else 'ies'}: inserted {report.inserted}, "
               f"updated {report.updated}, unchanged {report.unchanged}")  # fmt: skip
    for label in report.years_created:
        typer.echo(f"  carried the inventory forward into {label}")


def _only_organisation(conn: psycopg.Connection) -> str:
    orgs = inv.list_organisations(conn)
    if len(orgs) != 1:
        codes = ", ".join(o.code for o in orgs)
        typer.echo(f"error: {len(orgs)} organisations ({codes}); choose one with --org", err=True)
        raise typer.Exit(2)
    return orgs[0].code
