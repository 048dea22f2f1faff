"""`lccm devices ...`: import the device registry from CSV (issuing each new device its MQTT credential), rotate
credentials, list what is registered.

Mounted by the main CLI as ``app.add_typer(devices_app, name="devices")``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import psycopg
import typer

from lccm.cli_audit import record_cli
from lccm.imports.registry import RegistryInvalid, parse_registry_csv
from lccm.imports.rows import RowsInvalid
from lccm.ingest.broker_admin import BrokerAdminError
from lccm.mqtt_identity import (
    AdminConfig,
    IdentityError,
    IssuedCredential,
    admin_config,
    default_credentials_path,
    emqx_admin_config,
    hash_secret,
    new_secret,
    open_identities,
    write_credentials_file,
)
from lccm.settings import Settings
from lccm.store import audit, queries
from lccm.store.devices import (
    ImportReport,
    devices_without_credential,
    import_registry,
    store_credential_hashes,
    unknown_devices,
)

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


CredentialsOut = Annotated[
    Path | None,
    typer.Option(
        "--credentials-out",
        help="new file (mode 0600) for the issued secrets; default: LCCM_DATA_DIR/credentials/device-credentials-"
        "<UTC time>.csv",
        show_default=False,
        dir_okay=False,
    ),
]


def broker_admin_settings(settings: Settings, hint: str = "") -> AdminConfig:
    """Where identities are written: LCCM_BROKER_ADMIN chooses mosquitto's control API or EMQX's REST API."""
    try:
        if settings.broker_admin == "emqx":
            return emqx_admin_config(
                settings.emqx_api_url,
                settings.emqx_api_key.get_secret_value(),
                settings.emqx_api_secret.get_secret_value(),
            )
        return admin_config(
            settings.mqtt_host,
            settings.mqtt_port,
            settings.mqtt_admin_username,
            settings.mqtt_admin_password.get_secret_value(),
            settings.mqtt_admin_tls_ca_file,
        )
    except IdentityError as exc:
        typer.echo(f"error: {exc}{hint}", err=True)
        raise typer.Exit(2) from exc


def issue_credentials(
    conn: psycopg.Connection, settings: Settings, admin: AdminConfig, device_ids: list[str], out: Path
) -> None:
    """A fresh secret per device: written to ``out`` (0600) first, then given to the broker, then its hash stored.
    If the broker refuses, the file is removed and nothing is stored: the next import issues them again."""
    device_ids = list(dict.fromkeys(device_ids))
    new = devices_without_credential(conn, device_ids)
    if not device_ids:
        typer.echo("credentials: none to issue (every device has one; --rotate DEVICE to replace one)")
        return
    issued = [IssuedCredential(d, new_secret()) for d in device_ids]
    try:
        write_credentials_file(out, issued)
    except FileExistsError as exc:  # never overwrite secrets that may not have been handed out yet
        typer.echo(f"error: {out} exists; choose another --credentials-out (nothing was issued).", err=True)
        raise typer.Exit(2) from exc
    try:
        with open_identities(admin) as broker:
            broker.put_devices(settings.mqtt_topic_root, {c.device_id: c.secret for c in issued})
    except (BrokerAdminError, IdentityError) as exc:
        out.unlink(missing_ok=True)
        typer.echo(f"error: credentials not issued ({exc}); re-run to issue them.", err=True)
        raise typer.Exit(1) from exc
    rotated = len(device_ids) - len(new)
    audit.begin(conn)
    store_credential_hashes(conn, {c.device_id: hash_secret(c.secret) for c in issued})
    # Which devices got a credential, never the secret (only its hash is stored).
    record_cli(conn, "devices credentials", "devices", None,
               after={"new": sorted(new), "rotated": sorted(set(device_ids) - set(new))})  # fmt: skip
    conn.commit()
    typer.echo(
        f"credentials: {len(device_ids)} issued ({len(device_ids) - rotated} new, {rotated} rotated), the broker "
        f"accepts them now; secrets written to {out} (mode 0600) and shown nowhere else: hand each installer "
        "their device's line, then delete the file"
    )


def refuse_existing(path: Path | None) -> None:
    if path is not None and path.exists():
        typer.echo(f"error: {path} exists; choose another --credentials-out (nothing was done).", err=True)
        raise typer.Exit(2)


def _require_registered(conn: psycopg.Connection, device_ids: list[str]) -> None:
    unknown = unknown_devices(conn, device_ids)
    if unknown:
        typer.echo(f"error: not registered: {', '.join(unknown)}; nothing was rotated.", err=True)
        raise typer.Exit(1)


@devices_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="registry CSV")],
    rotate: Annotated[
        list[str] | None, typer.Option("--rotate", help="also replace this device's credential (repeatable)")
    ] = None,
    credentials_out: CredentialsOut = None,
    no_credentials: Annotated[
        bool,
        typer.Option("--no-credentials", help="register only; issue no broker credentials (an anonymous demo broker)"),
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Import sites and devices from a CSV (English or Thai headers). All rows or none; safe to re-run.

    Each device without a credential gets one: a user name and client id equal to its device id and a new secret,
    which the broker accepts at once (LCCM_BROKER_ADMIN: mosquitto's dynamic-security plugin with
    LCCM_MQTT_ADMIN_PASSWORD, or EMQX's REST API with LCCM_EMQX_API_*); the secrets are written
    once to a 0600 file and only their hashes are stored."""
    settings = _settings(database_url)
    hint = "; or pass --no-credentials to register devices without issuing any"
    admin = None if no_credentials else broker_admin_settings(settings, hint)
    refuse_existing(credentials_out)
    try:
        rows = parse_registry_csv(file.read_bytes(), settings.input_limits())
    except RegistryInvalid as exc:
        _print_errors(file, exc)
        raise typer.Exit(1) from exc
    with _connect(settings) as conn, _schema_required():
        if rotate:
            in_file = {r.device_id for r in rows}
            _require_registered(conn, [d for d in rotate if d not in in_file])
        audit.begin(conn)  # the import and its audit entry commit together, before any credential is issued
        try:
            report = import_registry(conn, rows)
        except RegistryInvalid as exc:  # a replaced device in neither the file nor the registry
            _print_errors(file, exc)
            raise typer.Exit(1) from exc
        summary = {"file": file.name, "sha256": hashlib.sha256(file.read_bytes()).hexdigest(), "rows": len(rows)}
        record_cli(conn, "devices import", "devices", None,
                   after={**summary, "sites": asdict(report.sites), "devices": asdict(report.devices)})  # fmt: skip
        conn.commit()
        _print_report(len(rows), report)
        if admin is None:
            typer.echo("credentials: not issued (--no-credentials)")
            return
        new = devices_without_credential(conn, [r.device_id for r in rows])
        out = credentials_out or default_credentials_path(settings.data_dir)
        issue_credentials(conn, settings, admin, [*new, *(rotate or [])], out)


@devices_app.command("rotate")
def rotate_command(
    device_ids: Annotated[list[str], typer.Argument(help="registered device ids")],
    credentials_out: CredentialsOut = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Replace devices' MQTT credentials: the old secret stops working at the device's next connection."""
    settings = _settings(database_url)
    admin = broker_admin_settings(settings)
    refuse_existing(credentials_out)
    with _connect(settings) as conn, _schema_required():
        _require_registered(conn, device_ids)
        out = credentials_out or default_credentials_path(settings.data_dir)
        issue_credentials(conn, settings, admin, device_ids, out)


@devices_app.command("issue")
def issue_command(credentials_out: CredentialsOut = None, database_url: DatabaseUrl = None) -> None:
    """Issue a credential to every registered device that has none (e.g. registered through the API's
    POST /devices/import, which does not reach the broker)."""
    settings = _settings(database_url)
    admin = broker_admin_settings(settings)
    refuse_existing(credentials_out)
    with _connect(settings) as conn, _schema_required():
        registered = [d.device_id for d in queries.list_devices(conn, scope=None)]  # the whole deployment
        missing = devices_without_credential(conn, registered)
        out = credentials_out or default_credentials_path(settings.data_dir)
        issue_credentials(conn, settings, admin, missing, out)


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
