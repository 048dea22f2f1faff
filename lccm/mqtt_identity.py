"""Who may do what on the broker: the product's reserved MQTT identities, and one credential per device.

The one place of the identity model; see docs/security.md#mqtt-identity. Two brokers keep it, each behind the same
small interface (``IdentityBackend``, opened by ``open_identities`` from the configuration LCCM_BROKER_ADMIN
chooses): mosquitto's dynamic-security plugin (ingest/broker_admin.py speaks its control API; roles and clients are
written here) and EMQX's built-in database (ingest/emqx_admin.py speaks its REST API; the rules are the fixed
deploy/emqx/acl.conf, written once with client-id placeholders, so only credentials are written). In short:

- A **device** is a broker client whose user name *and* fixed client id are its device id, with a role of its own
  (``device:<id>``) that may publish only ``<root>/+/<id>/#`` and subscribe only to ``<root>/+/<id>/cmd/#``. The
  dynamic-security plugin of mosquitto 2.0 has no ``%u`` in its ACLs, so the id is written into the role. With the
  client id bound to the user name no device can connect as another client id, so it cannot take another device's
  session, nor a service's.
- **Services** have user names under the reserved prefix ``lccm`` (imports/registry.py refuses device ids there):
  ``lccm-admin`` (manages the broker), ``lccm-ingest`` (the ingest workers; reads the tree, publishes alerts),
  ``lccm-alerts-<name>`` (reads alerts only). The ingest's workers share the ``lccm-ingest`` user and each picks
  its own client id (``lccm-ingest-1``, ``lccm-ingest-2``, ...; the alert publisher adds ``-alerts``): every client id
  under the prefix is unreachable to devices and alert readers, whose client ids are fixed to their user names.
- On **EMQX** authentication is keyed by client id (deploy/emqx/emqx.conf: ``user_id_type = clientid``): a
  credential opens exactly one client id, so each ingest worker's client id (``lccm-ingest-<n>``) and its alert
  publisher's (``lccm-ingest-<n>-alerts``) get an entry of their own, all with the ingest's password; a device's and
  an alert reader's entry is its client id, as on mosquitto.
"""

from __future__ import annotations

import csv
import os
import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher

from lccm.imports.registry import RESERVED_IDENTITY_PREFIX, is_reserved_identity
from lccm.ingest.broker_admin import BrokerAdmin, BrokerAdminConfig, DynsecResult
from lccm.ingest.emqx_admin import EmqxAdmin, EmqxAdminConfig

ADMIN_USER = f"{RESERVED_IDENTITY_PREFIX}-admin"
INGEST_USER = f"{RESERVED_IDENTITY_PREFIX}-ingest"
ALERT_READER_PREFIX = f"{RESERVED_IDENTITY_PREFIX}-alerts-"
INGEST_ROLE = f"{RESERVED_IDENTITY_PREFIX}-ingest"
ALERT_READER_ROLE = f"{RESERVED_IDENTITY_PREFIX}-alert-reader"
DEVICE_ROLE_PREFIX = "device:"
# The ingest workers' client ids, as deploy/emqx/acl.conf's rules match them (tests/test_compose.py checks the two
# agree); the alert publisher of worker <id> connects as <id>-alerts (lccm/alerts.py).
INGEST_CLIENT_ID = re.compile(rf"{RESERVED_IDENTITY_PREFIX}-ingest-[0-9]+")
ALERT_PUBLISHER_SUFFIX = "-alerts"
# deploy/emqx/acl.conf is a fixed file: its rules name this topic root (tests/test_compose.py reads them).
EMQX_ACL_TOPIC_ROOT = "lccm/v1"
SECRET_BYTES = 24  # 32 URL-safe characters: what installers type into a device's configuration page
_EXISTS = "already exists"


class IdentityError(RuntimeError):
    """A credential could not be created, or the broker did not take it."""


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "allow": True, "priority": 0}


def ingest_acls(topic_root: str, share_group: str) -> list[dict[str, Any]]:
    """The ingest reads every topic under the root (shared subscription for MQTT 5 -- the plugin checks the
    ``$share/<group>/`` filter as written -- or plain for 3.1.1) and publishes alert changes."""
    subscribe = [f"{topic_root}/#"] + ([f"$share/{share_group}/{topic_root}/#"] if share_group else [])
    return [
        *(_acl("subscribePattern", t) for t in subscribe),
        _acl("publishClientReceive", f"{topic_root}/#"),
        _acl("publishClientSend", f"{topic_root}/+/alerts/#"),
    ]


def alert_reader_acls(topic_root: str) -> list[dict[str, Any]]:
    return [
        _acl("subscribePattern", f"{topic_root}/+/alerts/#"),
        _acl("publishClientReceive", f"{topic_root}/+/alerts/#"),
    ]


def device_acls(topic_root: str, device_id: str) -> list[dict[str, Any]]:
    """Publish under its own id only (any city level: the ingest checks the city against the registry); receive its
    own commands only."""
    return [
        _acl("publishClientSend", f"{topic_root}/+/{device_id}/#"),
        _acl("subscribePattern", f"{topic_root}/+/{device_id}/cmd/#"),
        _acl("publishClientReceive", f"{topic_root}/+/{device_id}/cmd/#"),
    ]


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


# argon2id with a light cost: the secrets are 192 random bits, so no cost factor makes guessing them from a leaked
# hash any harder than it already is, while argon2-cffi's defaults (64 MiB, 3 passes: ~60 ms here, over 0.5 s on a
# busy machine) would make a city's first import of 2,000 devices take minutes. The parameters are in each hash,
# so PasswordHasher().verify checks any of them.
_HASHER = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)


def hash_secret(secret: str) -> str:
    """What PostgreSQL keeps of a device's secret (argon2id, PHC string)."""
    return _HASHER.hash(secret)


# --- provisioning -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IngestIdentity:
    """The ingest's identity on the broker: the user its workers share (under the reserved prefix) and its password,
    the workers' client ids (EMQX needs an entry each; mosquitto lets the user pick any), and what they read: the
    topic root and the shared subscription's group ('' for none)."""

    topic_root: str
    share_group: str
    user: str
    password: str
    client_ids: tuple[str, ...] = ()


class IdentityBackend(ABC):
    """What lccm asks of a broker's identity store. The public methods check each request against the model, once
    for every broker, and hand it to the backend's ``_put_*``, which creates or replaces (idempotent: safe to
    re-run)."""

    def put_services(self, ingest: IngestIdentity) -> None:
        """The service roles, and the ingest's identity (at every deployment)."""
        if not is_reserved_identity(ingest.user):
            raise IdentityError(f"the ingest's user name {ingest.user!r} must start with {RESERVED_IDENTITY_PREFIX!r}-")
        if not ingest.password:
            raise IdentityError("the ingest has no password (LCCM_MQTT_PASSWORD)")
        self.check_topic_root(ingest.topic_root)
        self._put_services(replace(ingest, client_ids=tuple(dict.fromkeys(ingest.client_ids))))

    def put_alert_reader(self, username: str, secret: str, topic_root: str) -> None:
        """A reader of the alert topic with this secret (see :func:`add_alert_reader`)."""
        self.check_topic_root(topic_root)
        self._put_alert_reader(username, secret, topic_root)

    def put_devices(self, topic_root: str, secrets_by_device: Mapping[str, str]) -> None:
        """Each device's credential (user name = fixed client id = device id) with the given secret."""
        for device_id in secrets_by_device:
            if is_reserved_identity(device_id):  # refused at import; checked again where the credential is made
                raise IdentityError(f"{device_id!r} is a reserved identity, not a device")
        if secrets_by_device:
            self.check_topic_root(topic_root)
            self._put_devices(topic_root, secrets_by_device)

    @abstractmethod
    def check_topic_root(self, topic_root: str) -> None:
        """Refuse (IdentityError) a topic root the broker's rules cannot grant."""

    @abstractmethod
    def _put_services(self, ingest: IngestIdentity) -> None: ...

    @abstractmethod
    def _put_alert_reader(self, username: str, secret: str, topic_root: str) -> None: ...

    @abstractmethod
    def _put_devices(self, topic_root: str, secrets_by_device: Mapping[str, str]) -> None: ...


AdminConfig = BrokerAdminConfig | EmqxAdminConfig


@contextmanager
def open_identities(cfg: AdminConfig) -> Iterator[IdentityBackend]:
    """The broker's identity store for the duration of the block (an admin connection or REST session)."""
    if isinstance(cfg, EmqxAdminConfig):
        with EmqxAdmin(cfg) as emqx:
            yield EmqxIdentities(emqx)
    else:
        with BrokerAdmin(cfg) as admin:
            yield MosquittoIdentities(admin)


def alert_reader_username(name: str) -> str:
    return name if name.startswith(ALERT_READER_PREFIX) else ALERT_READER_PREFIX + name


def add_alert_reader(ids: IdentityBackend, name: str, topic_root: str) -> tuple[str, str]:
    """A reader of the alert topic (a control room, the city's own systems): (user name, new secret)."""
    username = alert_reader_username(name)
    secret = new_secret()
    ids.put_alert_reader(username, secret, topic_root)
    return username, secret


# --- mosquitto: dynamic-security roles and clients -----------------------------------------------------------------


def _role_commands(rolename: str, acls: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """Create the role, or -- when it exists -- make sure it has these ACLs (addRoleACL of an existing ACL fails
    harmlessly with "already exists")."""
    return [
        {"command": "createRole", "rolename": rolename, "textname": text, "acls": acls},
        *({"command": "addRoleACL", "rolename": rolename, **acl} for acl in acls),
    ]


def _client_fields(username: str, password: str, rolename: str, fixed_client_id: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {"username": username, "password": password, "roles": [{"rolename": rolename}]}
    if fixed_client_id:
        fields["clientid"] = username
    return fields


def _check(results: Sequence[DynsecResult], tolerated: Iterable[str] = ()) -> None:
    allowed = tuple(tolerated)
    failures = [f"{r.command}: {r.error}" for r in results if r.error and not any(t in r.error for t in allowed)]
    if failures:
        raise IdentityError("the broker refused: " + "; ".join(failures[:5]))


class MosquittoIdentities(IdentityBackend):
    """The model as dynamic-security roles (one per device: the plugin has no %u in its ACLs) and clients."""

    def __init__(self, admin: BrokerAdmin) -> None:
        self._admin = admin

    def upsert_clients(self, clients: Sequence[dict[str, Any]]) -> None:
        """createClient each; for those that exist, modifyClient to the same password, client id and roles."""
        results = self._admin.execute([{"command": "createClient", **c} for c in clients])
        _check(results, tolerated=[_EXISTS])
        existing = [c for c, r in zip(clients, results, strict=True) if r.error and _EXISTS in r.error]
        if existing:
            _check(self._admin.execute([{"command": "modifyClient", **c} for c in existing]))

    def check_topic_root(self, topic_root: str) -> None:
        """Any: the roles are written for the topic root asked for."""

    def _put_services(self, ingest: IngestIdentity) -> None:
        acls = ingest_acls(ingest.topic_root, ingest.share_group)
        commands = _role_commands(INGEST_ROLE, acls, "lccm ingest workers")
        commands += _role_commands(
            ALERT_READER_ROLE, alert_reader_acls(ingest.topic_root), "readers of the alert topic"
        )
        _check(self._admin.execute(commands), tolerated=[_EXISTS])
        self.upsert_clients([_client_fields(ingest.user, ingest.password, INGEST_ROLE, fixed_client_id=False)])

    def _put_alert_reader(self, username: str, secret: str, topic_root: str) -> None:
        roles = _role_commands(ALERT_READER_ROLE, alert_reader_acls(topic_root), "alert readers")
        _check(self._admin.execute(roles), [_EXISTS])
        self.upsert_clients([_client_fields(username, secret, ALERT_READER_ROLE, fixed_client_id=True)])

    def _put_devices(self, topic_root: str, secrets_by_device: Mapping[str, str]) -> None:
        # createRole only: a device's ACLs follow from its id alone, so an existing role is already right. (Each
        # command makes the plugin rewrite its JSON file, so fewer commands matter for a city's first import.)
        roles = [
            {"command": "createRole", "rolename": DEVICE_ROLE_PREFIX + d, "acls": device_acls(topic_root, d)}
            for d in secrets_by_device
        ]
        _check(self._admin.execute(roles), tolerated=[_EXISTS])
        self.upsert_clients(
            [_client_fields(d, s, DEVICE_ROLE_PREFIX + d, fixed_client_id=True) for d, s in secrets_by_device.items()]
        )


# --- EMQX: entries of the built-in database, keyed by client id ------------------------------------------------------


class EmqxIdentities(IdentityBackend):
    """The model as entries of EMQX's built-in database (user id = client id). The rules are deploy/emqx/acl.conf,
    fixed and written with ${clientid}: nothing per device, so only what that file matches can be set up here."""

    def __init__(self, admin: EmqxAdmin) -> None:
        self._admin = admin

    def check_topic_root(self, topic_root: str) -> None:
        if topic_root != EMQX_ACL_TOPIC_ROOT:
            raise IdentityError(
                f"deploy/emqx/acl.conf grants topics under {EMQX_ACL_TOPIC_ROOT!r} only, not LCCM_MQTT_TOPIC_ROOT "
                f"{topic_root!r}: change the file's rules first"
            )

    def _put_services(self, ingest: IngestIdentity) -> None:
        if not ingest.client_ids:
            raise IdentityError(
                "EMQX authenticates by client id: name every ingest worker's client id (LCCM_MQTT_CLIENT_ID, "
                "or `lccm broker setup --ingest-client-id ID` once per worker)"
            )
        wrong = [c for c in ingest.client_ids if not INGEST_CLIENT_ID.fullmatch(c)]
        if wrong:
            raise IdentityError(
                f"ingest client ids {wrong} are not {INGEST_CLIENT_ID.pattern!r}: deploy/emqx/acl.conf grants the "
                "ingest's topics to those client ids only"
            )
        # One entry per worker and one per its alert publisher, all with the ingest's password: the workers share
        # one secret (LCCM_MQTT_PASSWORD), as they share the lccm-ingest user on mosquitto.
        entries = {c + suffix: ingest.password for c in ingest.client_ids for suffix in ("", ALERT_PUBLISHER_SUFFIX)}
        self._admin.import_users(entries)

    def _put_alert_reader(self, username: str, secret: str, topic_root: str) -> None:
        self._admin.import_users({username: secret})
        self._admin.kick_clients([username])  # whoever holds the old secret is cut off now, as on mosquitto

    def _put_devices(self, topic_root: str, secrets_by_device: Mapping[str, str]) -> None:
        self._admin.import_users(secrets_by_device)
        # A rotated device's open connection ends now, as mosquitto's modifyClient does; new devices are not
        # connected, so for them this is a no-op. Never done for the ingest's entries: a re-run of `broker setup`
        # must not end the workers' sessions (EMQX destroys a kicked client's session and its queue: v5.8.6
        # emqx_channel.erl, process_kick/1).
        self._admin.kick_clients(list(secrets_by_device))


def admin_config(
    host: str, port: int, username: str, password: str, tls_ca_file: Path | None = None
) -> BrokerAdminConfig:
    if not password:
        raise IdentityError(
            "no broker admin password: set LCCM_MQTT_ADMIN_PASSWORD (the dynamic-security admin, "
            "deploy/mosquitto/entrypoint.sh creates it at the broker's first start)"
        )
    return BrokerAdminConfig(host, port, username, password, tls_ca_file=tls_ca_file)


def emqx_admin_config(api_url: str, api_key: str, api_secret: str) -> EmqxAdminConfig:
    missing = [n for n, v in (("URL", api_url), ("KEY", api_key), ("SECRET", api_secret)) if not v]
    if missing:
        names = ", ".join(f"LCCM_EMQX_API_{n}" for n in missing)
        raise IdentityError(
            f"LCCM_BROKER_ADMIN=emqx needs {names} (EMQX's REST API, e.g. http://emqx:18083, and an API key from "
            "its api_key.bootstrap_file: docs/scaling.md#identities-on-emqx)"
        )
    if not api_url.startswith(("http://", "https://")):
        raise IdentityError(f"LCCM_EMQX_API_URL {api_url!r} is not an http:// or https:// URL")
    return EmqxAdminConfig(api_url, api_key, api_secret)


# --- the file handed to installers -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedCredential:
    device_id: str
    secret: str


CREDENTIAL_COLUMNS = ("device_id", "mqtt_username", "mqtt_client_id", "mqtt_password", "issued_at")


def default_credentials_path(data_dir: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return data_dir / "credentials" / f"device-credentials-{stamp}.csv"


def write_credentials_file(path: Path, issued: Sequence[IssuedCredential]) -> None:
    """A new file readable by its owner only (0600 from creation: never a moment readable by others); an existing
    file is never overwritten (a previous batch of secrets might not have been handed out yet)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(CREDENTIAL_COLUMNS)
        for c in issued:
            writer.writerow([c.device_id, c.device_id, c.device_id, c.secret, now])
