"""`lccm devices dates` and `lccm devices site-dates`: show or edit when a device or site is in service (issue 15).

Commands on the ``devices`` group (lccm/cli_devices.py), kept here so the registry import stays as it was. Dates
are Bangkok days in CE, ``YYYY-MM-DD``: commissioned = first day in service, decommissioned = first day out of
service; an option left out keeps the stored value, ``-`` clears it (store/assets.py).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from typing import Annotated

import typer

from lccm.cli_audit import record_cli
from lccm.cli_devices import DatabaseUrl, _connect, _schema_required, _settings, devices_app
from lccm.imports.registry import check_common_era
from lccm.store import assets, audit

CLEAR = "-"
_DATE_HELP = "YYYY-MM-DD (Bangkok day, CE); '-' clears it; left out: unchanged"


def _parse(option: str, value: str | None, current: date | None) -> date | None:
    if value is None:
        return current
    if value == CLEAR:
        return None
    try:
        return check_common_era(date.fromisoformat(value))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from exc


def _show(d: assets.ServiceDates) -> None:
    def text(v: date | None) -> str:
        return v.isoformat() if v else "-"

    line = f"{d.code}: commissioned {text(d.commissioned_on)}, decommissioned {text(d.decommissioned_on)}"
    typer.echo(line + (f", replaces {d.replaces}" if d.replaces else ""))


@devices_app.command("dates")
def device_dates(
    device_id: Annotated[str, typer.Argument(help="the device_id")],
    commissioned_on: Annotated[str | None, typer.Option("--commissioned-on", help=_DATE_HELP)] = None,
    decommissioned_on: Annotated[str | None, typer.Option("--decommissioned-on", help=_DATE_HELP)] = None,
    replaces: Annotated[str | None, typer.Option("--replaces", help="device_id it replaced; '-' clears")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Show or set a device's service dates and the device it replaced."""
    with _connect(_settings(database_url)) as conn, _schema_required():
        try:
            now = assets.get_dates(conn, "device", device_id)
            if commissioned_on is None and decommissioned_on is None and replaces is None:
                _show(now)
                return
            audit.begin(conn)
            done = assets.set_device_dates(
                conn, device_id, _parse("--commissioned-on", commissioned_on, now.commissioned_on),
                _parse("--decommissioned-on", decommissioned_on, now.decommissioned_on),
                now.replaces if replaces is None else None if replaces == CLEAR else replaces,
            )  # fmt: skip
            record_cli(
                conn, "devices dates", f"device:{device_id}/service", None, before=asdict(now), after=asdict(done)
            )
            conn.commit()
        except (assets.AssetNotFound, assets.AssetDatesInvalid) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2 if isinstance(exc, assets.AssetNotFound) else 1) from exc
    _show(done)


@devices_app.command("site-dates")
def site_dates(
    site_code: Annotated[str, typer.Argument(help="the site_code")],
    commissioned_on: Annotated[str | None, typer.Option("--commissioned-on", help=_DATE_HELP)] = None,
    decommissioned_on: Annotated[str | None, typer.Option("--decommissioned-on", help=_DATE_HELP)] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Show or set a site's service dates (its floor area counts only in between)."""
    with _connect(_settings(database_url)) as conn, _schema_required():
        try:
            now = assets.get_dates(conn, "site", site_code)
            if commissioned_on is None and decommissioned_on is None:
                _show(now)
                return
            audit.begin(conn)
            done = assets.set_site_dates(
                conn, site_code, _parse("--commissioned-on", commissioned_on, now.commissioned_on),
                _parse("--decommissioned-on", decommissioned_on, now.decommissioned_on),
            )  # fmt: skip
            record_cli(
                conn, "devices site-dates", f"site:{site_code}/service", None, before=asdict(now), after=asdict(done)
            )
            conn.commit()
        except (assets.AssetNotFound, assets.AssetDatesInvalid) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2 if isinstance(exc, assets.AssetNotFound) else 1) from exc
    _show(done)
