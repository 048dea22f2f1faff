"""`lccm broker ...`: the product's own identities on the broker (mosquitto's dynamic-security plugin, or EMQX's
built-in database: LCCM_BROKER_ADMIN).

Mounted by the main CLI as ``app.add_typer(broker_app, name="broker")``. Devices get theirs from
``lccm devices import`` (lccm/cli_devices.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lccm.cli_devices import CredentialsOut, broker_admin_settings, refuse_existing
from lccm.ingest.broker_admin import BrokerAdminError
from lccm.mqtt_identity import (
    ALERT_PUBLISHER_SUFFIX,
    ALERT_READER_PREFIX,
    ALERT_READER_ROLE,
    INGEST_ROLE,
    IdentityError,
    IngestIdentity,
    IssuedCredential,
    add_alert_reader,
    alert_reader_username,
    open_identities,
    write_credentials_file,
)
from lccm.settings import Settings

broker_app = typer.Typer(help="MQTT broker identities: service roles, the ingest, alert readers.", no_args_is_help=True)


@broker_app.command("setup")
def setup_command(
    ingest_client_ids: Annotated[
        list[str] | None,
        typer.Option(
            "--ingest-client-id",
            help="an ingest worker's client id (repeatable); default LCCM_MQTT_CLIENT_ID. EMQX authenticates by "
            "client id, so each worker needs its own entry there; mosquitto lets the ingest user use any",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Create (or repair) the service roles and the ingest's identity: LCCM_MQTT_USERNAME with LCCM_MQTT_PASSWORD
    (on EMQX: each worker's client id and its -alerts publisher with LCCM_MQTT_PASSWORD). Idempotent; run at every
    deployment (compose's broker-setup one-shot does) and once per extra ingest user."""
    settings = Settings()
    admin = broker_admin_settings(settings)
    client_ids = ingest_client_ids or [settings.mqtt_client_id]
    try:
        with open_identities(admin) as broker:
            broker.put_services(
                IngestIdentity(
                    settings.mqtt_topic_root,
                    settings.mqtt_share_group,
                    settings.mqtt_username,
                    settings.mqtt_password.get_secret_value(),
                    tuple(client_ids),
                )
            )
    except (BrokerAdminError, IdentityError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if settings.broker_admin == "emqx":
        entries = ", ".join(c + s for c in dict.fromkeys(client_ids) for s in ("", ALERT_PUBLISHER_SUFFIX))
        typer.echo(
            f"EMQX {settings.emqx_api_url}: client ids {entries} have LCCM_MQTT_PASSWORD "
            "(their rules: deploy/emqx/acl.conf)"
        )
        return
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
        with open_identities(admin) as broker:
            username, secret = add_alert_reader(broker, name, settings.mqtt_topic_root)
    except (BrokerAdminError, IdentityError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    write_credentials_file(out, [IssuedCredential(username, secret)])
    typer.echo(f"alert reader {username} (client id {username}): secret written to {out} (mode 0600)")
