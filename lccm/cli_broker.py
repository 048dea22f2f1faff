"""`lccm broker ...`: the product's own identities on the broker (mosquitto's dynamic-security plugin).

Mounted by the main CLI as ``app.add_typer(broker_app, name="broker")``. Devices get theirs from
``lccm devices import`` (lccm/cli_devices.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lccm.cli_devices import CredentialsOut, broker_admin_settings, refuse_existing
from lccm.ingest.broker_admin import BrokerAdmin, BrokerAdminError
from lccm.mqtt_identity import (
    ALERT_READER_PREFIX,
    ALERT_READER_ROLE,
    INGEST_ROLE,
    IdentityError,
    IssuedCredential,
    add_alert_reader,
    alert_reader_username,
    setup_services,
    write_credentials_file,
)
from lccm.settings import Settings

broker_app = typer.Typer(help="MQTT broker identities: service roles, the ingest, alert readers.", no_args_is_help=True)


@broker_app.command("setup")
def setup_command() -> None:
    """Create (or repair) the service roles and the ingest's client: LCCM_MQTT_USERNAME with LCCM_MQTT_PASSWORD.
    Idempotent; run at every deployment (compose's broker-setup one-shot does) and once per extra ingest user."""
    settings = Settings()
    admin = broker_admin_settings(settings)
    try:
        with BrokerAdmin(admin) as broker:
            setup_services(
                broker,
                settings.mqtt_topic_root,
                settings.mqtt_share_group,
                settings.mqtt_username,
                settings.mqtt_password.get_secret_value(),
            )
    except (BrokerAdminError, IdentityError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        f"broker {settings.mqtt_host}:{settings.mqtt_port}: roles {INGEST_ROLE}, {ALERT_READER_ROLE} ready; "
        f"client {settings.mqtt_username} (role {INGEST_ROLE}) has LCCM_MQTT_PASSWORD"
    )


@broker_app.command("add-reader")
def add_reader_command(
    name: Annotated[str, typer.Argument(help=f"reader name; the user name is {ALERT_READER_PREFIX}<name>")],
    credentials_out: CredentialsOut = None,
) -> None:
    """A client that may read the alert topic and nothing else (a control room, the city's own systems). Its secret
    is written once to a new 0600 file (which must not exist yet); re-running replaces the secret."""
    settings = Settings()
    admin = broker_admin_settings(settings)
    out = credentials_out or Path(settings.data_dir) / "credentials" / f"{alert_reader_username(name)}.csv"
    refuse_existing(out)
    try:
        with BrokerAdmin(admin) as broker:
            username, secret = add_alert_reader(broker, name, settings.mqtt_topic_root)
    except (BrokerAdminError, IdentityError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    write_credentials_file(out, [IssuedCredential(username, secret)])
    typer.echo(f"alert reader {username} (client id {username}): secret written to {out} (mode 0600)")
