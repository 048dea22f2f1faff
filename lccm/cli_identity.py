"""`lccm users ...`, `lccm apikeys ...`, `lccm organisations put` and `lccm audit`: local accounts, API keys, the
organisations they belong to, and the audit log.

Every change is written to the audit log in its own transaction, as the command (``lccm users add``) by the
operating-system user who ran it (``cli:<user>``): whoever can run `lccm` against the database is trusted as its
operator. Exit codes: 0 done, 1 invalid input, 2 unknown organisation, user, key or site, or no database.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import psycopg
import typer
from fastapi.encoders import jsonable_encoder

from lccm.api.auth import accounts
from lccm.api.principal import Role
from lccm.cli_audit import cli_actor, record_cli
from lccm.cli_devices import DatabaseUrl, _connect, _schema_required, _settings
from lccm.store import audit, identity
from lccm.store import inventory as inv

users_app = typer.Typer(help="Local accounts (for deployments without an identity provider, and the demo).",
                        no_args_is_help=True)  # fmt: skip
apikeys_app = typer.Typer(help="API keys for machine clients: shown once, stored as hashes.", no_args_is_help=True)
organisations_app = typer.Typer(help="Organisations (municipalities) of this deployment.", no_args_is_help=True)

OrgOption = Annotated[str, typer.Option("--org", help="organisation code (e.g. lampang)")]
RoleOption = Annotated[list[Role], typer.Option("--role", help="a role; repeat for several")]
SiteOption = Annotated[
    list[str] | None, typer.Option("--site", help="limit to this site code; repeat for several (default: every site)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="one JSON object per line")]


def _change(conn: psycopg.Connection, command: str, organisation: str | None = None) -> accounts.Change:
    return accounts.Change(cli_actor(conn, organisation), f"lccm {command}")


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except accounts.AccountInvalid as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except (inv.UnknownOrganisation, identity.UnknownUser, identity.UnknownApiKey, identity.UnknownSite) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except identity.UserExists as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def _password(stdin: bool) -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


# --- users ---------------------------------------------------------------------------------------------------------


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="login name: a-z 0-9 _ . @ -")],
    org: OrgOption,
    role: RoleOption,
    site: SiteOption = None,
    display_name: Annotated[str | None, typer.Option("--display-name", help="name shown and audited")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Add a local account (the password is prompted for, or read from stdin)."""
    password = _password(password_stdin)
    with _connect(_settings(database_url)) as conn, _schema_required(), _errors():
        row = accounts.add_user(conn, _change(conn, "users add", org), username=username, display_name=display_name,
                                password=password, organisation=org, roles=role, sites=site)  # fmt: skip
    typer.echo(f"added {row.username} ({', '.join(row.roles)}) to {row.organisation_code}")


@users_app.command("list")
def users_list(
    org: Annotated[str | None, typer.Option("--org", help="only this organisation")] = None,
    as_json: JsonOption = False,
    database_url: DatabaseUrl = None,
) -> None:
    """The local accounts (never their passwords)."""
    with _connect(_settings(database_url)) as conn, _schema_required(), _errors():
        org_id = inv.require_organisation(conn, org).id if org else None
        rows = identity.list_users(conn, org_id)
    for u in rows:
        doc = {**u.summary(), "locked_until": u.locked_until, "created_at": u.created_at}
        if as_json:
            typer.echo(json.dumps(jsonable_encoder(doc)))
        else:
            sites = ",".join(u.site_codes) if u.site_codes else "all sites"
            state = " DISABLED" if u.disabled else ""
            typer.echo(f"{u.organisation_code}\t{u.username}\t{u.display_name}\t{','.join(u.roles)}\t{sites}{state}")


def _update(username: str, command: str, database_url: str | None, **changes: Any) -> identity.UserRow:
    with _connect(_settings(database_url)) as conn, _schema_required(), _errors():
        user = identity.require_user(conn, username)
        return accounts.update_user(
            conn, _change(conn, command, user.organisation_code), username, organisation_id=None, **changes
        )


@users_app.command("disable")
def users_disable(username: str, database_url: DatabaseUrl = None) -> None:
    """Disable an account and end its sessions."""
    _update(username, "users disable", database_url, disabled=True)
    typer.echo(f"{username}: disabled")


@users_app.command("enable")
def users_enable(username: str, database_url: DatabaseUrl = None) -> None:
    """Enable a disabled account."""
    _update(username, "users enable", database_url, disabled=False)
    typer.echo(f"{username}: enabled")


@users_app.command("passwd")
def users_passwd(
    username: str,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Set a new password (ends the user's sessions and any login lock)."""
    _update(username, "users passwd", database_url, password=_password(password_stdin))
    typer.echo(f"{username}: password changed")


@users_app.command("roles")
def users_roles(
    username: str,
    role: RoleOption,
    site: SiteOption = None,
    all_sites: Annotated[bool, typer.Option("--all-sites", help="lift a site limit")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Replace a user's roles (and, with --site or --all-sites, the sites they are limited to)."""
    extra: dict[str, Any] = {"sites": None} if all_sites else ({"sites": site} if site else {})
    row = _update(username, "users roles", database_url, roles=role, **extra)
    typer.echo(f"{username}: {', '.join(row.roles)}; {', '.join(row.site_codes) if row.site_codes else 'all sites'}")


# --- API keys ------------------------------------------------------------------------------------------------------


@apikeys_app.command("create")
def apikeys_create(
    org: OrgOption,
    role: RoleOption,
    name: Annotated[str, typer.Option("--name", help="what uses the key (e.g. 'SCADA bridge')")],
    site: SiteOption = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a key and print it, this once (send it as Authorization: Bearer <key> or X-API-Key)."""
    with _connect(_settings(database_url)) as conn, _schema_required(), _errors():
        key, row = accounts.create_api_key(conn, _change(conn, "apikeys create", org), name=name, organisation=org,
                                           roles=role, sites=site)  # fmt: skip
    typer.echo(f"created API key {row.key_id} ({', '.join(row.roles)}) for {row.organisation_code}; it is shown "
               "only now:", err=True)  # fmt: skip
    typer.echo(key)


@apikeys_app.command("list")
def apikeys_list(
    org: Annotated[str | None, typer.Option("--org", help="only this organisation")] = None,
    as_json: JsonOption = False,
    database_url: DatabaseUrl = None,
) -> None:
    """The keys (never the keys themselves): id, name, roles, last use, revoked."""
    with _connect(_settings(database_url)) as conn, _schema_required(), _errors():
        org_id = inv.require_organisation(conn, org).id if org else None
        rows = identity.list_api_keys(conn, org_id)
    for k in rows:
        doc = {**k.summary(), "created_by": k.created_by, "created_at": k.created_at, "last_used_at": k.last_used_at,
               "revoked_at": k.revoked_at}  # fmt: skip
        if as_json:
            typer.echo(json.dumps(jsonable_encoder(doc)))
        else:
            used = k.last_used_at.isoformat() if k.last_used_at else "never used"
            state = f"\trevoked {k.revoked_at.isoformat()}" if k.revoked_at else ""
            typer.echo(f"{k.organisation_code}\t{k.key_id}\t{k.name}\t{','.join(k.roles)}\t{used}{state}")


@apikeys_app.command("revoke")
def apikeys_revoke(key_id: Annotated[str, typer.Argument(help="the key id (lccm_<key id>_...)")],
                   database_url: DatabaseUrl = None) -> None:  # fmt: skip
    """Revoke a key: refused from its next request on."""
    with _connect(_settings(database_url)) as conn, _schema_required(), _errors():
        key = identity.require_api_key(conn, key_id)
        accounts.revoke_api_key(conn, _change(conn, "apikeys revoke", key.organisation_code), key_id, None)
    typer.echo(f"{key_id}: revoked")


# --- organisations -------------------------------------------------------------------------------------------------


@organisations_app.command("put")
def organisations_put(
    code: str,
    name_en: Annotated[str, typer.Option("--name-en")],
    province_en: Annotated[str, typer.Option("--province-en")],
    municipality_type: Annotated[str, typer.Option("--type", help="city, town, subdistrict, sao, pao or special")],
    name_th: Annotated[str | None, typer.Option("--name-th")] = None,
    province_th: Annotated[str | None, typer.Option("--province-th")] = None,
    city_key: Annotated[str | None, typer.Option("--city-key", help="registry 'city' whose sites it owns")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create or update an organisation (the API lets an admin update only their own)."""
    if not inv.ORG_CODE_PATTERN.match(code):
        typer.echo("error: a code is letters, digits, '_', '.' and '-', starting with a letter or digit", err=True)
        raise typer.Exit(1)
    org = inv.OrganisationIn(code, name_en, province_en, municipality_type, name_th, province_th, city_key)  # type: ignore[arg-type]
    with _connect(_settings(database_url)) as conn, _schema_required():
        audit.begin(conn)
        before = inv.get_organisation(conn, code)
        try:
            created = inv.put_organisation(conn, org)
        except psycopg.errors.CheckViolation as exc:
            typer.echo(f"error: {exc.diag.message_primary}", err=True)
            raise typer.Exit(1) from exc
        record_cli(conn, "organisations put", f"organisation:{code}", code, before=_org(before),
                   after=_org(inv.get_organisation(conn, code)))  # fmt: skip
    typer.echo(f"{code}: {'created' if created else 'updated'}")


def _org(org: inv.Organisation | None) -> dict[str, Any] | None:
    from dataclasses import asdict

    return None if org is None else asdict(org)


# --- audit ---------------------------------------------------------------------------------------------------------


def audit_command(
    since: Annotated[str | None, typer.Option("--since", help="from this time, ISO 8601 with offset")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="subject (user:somchai) or display name")] = None,
    org: Annotated[str | None, typer.Option("--org", help="only this organisation")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="at most this many, newest first")] = 100,
    as_json: JsonOption = False,
    database_url: DatabaseUrl = None,
) -> None:
    """The audit log: who changed what, when, from where (newest first)."""
    start = None
    if since is not None:
        start = datetime.fromisoformat(since)
        if start.tzinfo is None:
            raise typer.BadParameter(f"{since!r} has no UTC offset (e.g. 2026-03-01T00:00:00+07:00)")
    with _connect(_settings(database_url)) as conn, _schema_required(), _errors():
        org_id = inv.require_organisation(conn, org).id if org else None
        rows = audit.entries(conn, organisation_id=org_id, since=start, actor=actor, limit=limit)
    for e in rows:
        if as_json:
            typer.echo(json.dumps(jsonable_encoder(e), ensure_ascii=False))
        else:
            typer.echo(f"{e.at.isoformat()}\t{e.organisation_code or '-'}\t{e.actor_subject}\t{e.action}\t{e.target}")
