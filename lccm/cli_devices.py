"""`lccm devices ...`: import the device registry from CSV, list what is registered.

Mounted by the main CLI as ``app.add_typer(devices_app, name="devices")``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import psycopg
import typer

from lccm.imports.registry import RegistryInvalid, parse_registry_csv
from lccm.imports.rows import RowsInvalid
from lccm.settings import Settings
from lccm.store import queries
from lccm.store.devices import ImportReport, import_registry

devices_app = typer.Typer(help="The device registry: sites and devices.", no_args_is_help=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="PostgreSQL URL; default: LCCM_DATABASE_URL", show_default=False),
]


def _settings(database_url: str | None) -> Settings:
    return Settings() if database_url is None else Settings(database_url=database_url)


@contextmanager
def _connect(settings: Settings) -> Iterator[psycopg.Connection]:
    """The configured database (LCCM_DATABASE_URL or --database-url), migrated."""
    from lccm.runtime import database

    try:
        with database(settings) as url, psycopg.connect(url) as conn:
            yield conn
    except psycopg.OperationalError as exc:
        typer.echo(f"error: cannot connect to the database: {exc}", err=True)
        raise typer.Exit(2) from exc


@contextmanager
def _schema_required() -> Iterator[None]:
    try:
        yield
    except psycopg.errors.UndefinedTable as exc:
        typer.echo("error: the database has no lccm schema yet; run the migrations first.", err=True)
        raise typer.Exit(2) from exc


def _print_errors(path: Path, invalid: RowsInvalid) -> None:
    listed = f" (the first {len(invalid.errors)} listed)" if len(invalid.errors) < invalid.total else ""
    typer.echo(f"{path}: {invalid.total} error(s){listed}; nothing was imported.", err=True)
    for e in invalid.errors:
        where = f"row {e.row}" + (f", column {e.column!r}" if e.column else "")
        value = f" (value {e.value!r})" if e.value else ""
        typer.echo(f"  {where}{value}: {e.message}", err=True)


def _print_report(rows: int, report: ImportReport) -> None:
    typer.echo(f"imported {rows} row(s)")
    for name, c in (("sites", report.sites), ("devices", report.devices)):
        typer.echo(f"  {name:<8} inserted {c.inserted}, updated {c.updated}, unchanged {c.unchanged}")


@devices_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="registry CSV")],
    database_url: DatabaseUrl = None,
) -> None:
    """Import sites and devices from a CSV (English or Thai headers). All rows or none; safe to re-run."""
    settings = _settings(database_url)
    try:
        rows = parse_registry_csv(file.read_bytes(), settings.input_limits())
    except RegistryInvalid as exc:
        _print_errors(file, exc)
        raise typer.Exit(1) from exc
    with _connect(settings) as conn, _schema_required():
        report = import_registry(conn, rows)
    _print_report(len(rows), report)


@devices_app.command("list")
def list_command(
    site_code: Annotated[str | None, typer.Option("--site-code", help="only this site's devices")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="only devices of this kind")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List registered devices."""
    with _connect(_settings(database_url)) as conn, _schema_required():
        # The command line holds the database's own credentials: every organisation's devices.
        devices = queries.list_devices(conn, scope=None, site_code=site_code, kind=kind)
    if not devices:
        typer.echo("no devices registered" + (" for that filter" if site_code or kind else ""))
        return
    typer.echo(f"{'device_id':<24} {'site_code':<16} {'kind':<20} {'cadence_s':>9}  name")
    for d in devices:
        typer.echo(f"{d.device_id:<24} {d.site_code:<16} {d.kind:<20} {d.cadence_s:>9}  {d.name}")
    typer.echo(f"{len(devices)} device(s)")
