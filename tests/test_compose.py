"""The deployment files agree with the code: docker-compose.yml, Dockerfile, Mosquitto and Grafana configuration.

No Docker engine is needed: the files are parsed and checked against the typer CLI (``lccm.cli.app``), the Settings
object (every field is ``LCCM_<FIELD>``) and each other -- a command or option that the CLI does not have, an
environment variable that no setting reads, or a broker configuration with Mosquitto's message-dropping defaults
fails here instead of on a production machine.

The scale-out stack (docker-compose.scale.yml, deploy/emqx/: never run here, docs/scaling.md) gets the same checks
plus the EMQX cluster's: its configuration and ACL are read by tests/_emqx_conf.py and compared with the compose file,
the ingest's settings and the identities lccm gives on mosquitto. Where `docker compose` or Debian's `docker-compose`
is installed, both files also go through `config` (the Compose schema).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer.main
import yaml

from deploy.compose import INTERPOLATION, command_argv, environment, interpolate, lccm_services, load
from lccm.settings import Settings
from tests._emqx_conf import AclRule, acl_allows, get, parse_acl, parse_hocon

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
MOSQUITTO_DIR = ROOT / "deploy" / "mosquitto"
MOSQUITTO_CONFS = ("mosquitto.conf", "mosquitto-dev.conf")
GRAFANA_PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
PROMETHEUS_CONF = ROOT / "deploy" / "prometheus" / "prometheus.yml"

# Services every deployment has; the demo profile adds the simulator and the one-shots that register its devices.
CORE_SERVICES = {
    "mosquitto",
    "timescaledb",
    "grafana",
    "prometheus",
    "migrate",
    "broker-setup",
    "ingest",
    "api",
    "keycloak",
}
KEYCLOAK_REALM = ROOT / "deploy" / "keycloak" / "lampang-realm.json"
DEMO_PROFILE = "demo"
# The operator's one-shots, run with `docker compose run --rm <service>` (devices: import and issue credentials).
TOOLS_PROFILE = "tools"
# Variables that third-party images read, allowed on those services only.
GRAFANA_DATASOURCE_VARS = {"LCCM_GRAFANA_DB_USER", "LCCM_GRAFANA_DB_PASSWORD"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def ours(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Services that run the project's image (built from the Dockerfile, ENTRYPOINT ["lccm"])."""
    found = lccm_services({"services": services})
    assert found, "no service builds the lccm image"
    images = {svc.get("image") for svc in found.values()}
    assert len(images) == 1, f"the lccm services should share one image tag, got {images}"
    return found


@pytest.fixture(scope="module")
def cli() -> Any:
    """The click command behind ``lccm`` (typer >= 0.2x ships its own click, so typed loosely)."""
    from lccm.cli import app

    command = typer.main.get_command(app)
    assert hasattr(command, "commands"), "lccm.cli.app must be a typer app with sub-commands"
    return command


@pytest.fixture(scope="module")
def mosquitto_confs() -> dict[str, list[tuple[str, list[str]]]]:
    return {name: _parse_mosquitto_conf(MOSQUITTO_DIR / name) for name in MOSQUITTO_CONFS}


# --- the CLI ------------------------------------------------------------------------------------------------


def _check_argv(root: Any, argv: list[str], scratch_file: Path) -> None:
    """Resolve ``lccm <argv>`` to a command and let it parse the rest exactly as it would at run time.

    Parsing checks every option name, value type, flag and argument count without invoking the command.
    Container paths (absolute) are replaced by a local scratch file, since they do not exist on this machine.
    """
    command, path, args = root, ["lccm"], list(argv)
    while hasattr(command, "commands"):  # a group: the next word is a sub-command
        assert args and not args[0].startswith("-"), f"`{' '.join(path)}` needs a sub-command, got {args}"
        name = args.pop(0)
        sub = command.commands.get(name)
        assert sub is not None, f"`{' '.join(path)}` has no command {name!r}; it has {sorted(command.commands)}"
        command, path = sub, [*path, name]
    local = [str(scratch_file) if a.startswith("/") else a for a in args]
    try:
        command.make_context(" ".join(path), local)
    except Exception as e:  # a usage error: unknown option, bad value, missing or extra argument
        pytest.fail(f"`{' '.join([*path, *args])}` is refused by the CLI: {e}")


@pytest.fixture
def scratch_file(tmp_path: Path) -> Path:
    path = tmp_path / "container-path"
    path.write_text("", encoding="utf-8")
    return path


def test_every_lccm_service_runs_a_real_cli_command(
    ours: dict[str, dict[str, Any]], cli: Any, scratch_file: Path
) -> None:
    for name, svc in ours.items():
        assert "command" in svc, f"{name}: no command (the image's default is --help)"
        _check_argv(cli, command_argv(svc["command"]), scratch_file)


def test_healthchecks_that_call_lccm_use_real_commands(
    services: dict[str, dict[str, Any]], ours: dict[str, dict[str, Any]], cli: Any, scratch_file: Path
) -> None:
    for name, svc in services.items():
        test = (svc.get("healthcheck") or {}).get("test")
        if isinstance(test, list) and test and test[0] == "CMD" and len(test) > 1 and test[1] == "lccm":
            assert name in ours, f"{name}: runs lccm in a container that is not the lccm image"
            _check_argv(cli, [str(t) for t in test[2:]], scratch_file)


def test_the_image_runs_lccm_as_an_unprivileged_user() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts.get("lccm") == "lccm.cli:run"

    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    froms = [ln.split()[1] for ln in lines if ln.upper().startswith("FROM ")]
    args = dict(ln[4:].strip().split("=", 1) for ln in lines if ln.upper().startswith("ARG ") and "=" in ln)
    bases = {args.get(f.strip("${}"), f) for f in froms}
    assert bases and all(b.startswith("python:3.11-slim") for b in bases), bases
    users = [ln.split()[1] for ln in lines if ln.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the runtime stage must not run as root"
    assert 'ENTRYPOINT ["lccm"]' in lines


def test_the_build_context_holds_every_package() -> None:
    """.dockerignore is a whitelist: a package that pyproject.toml installs must be in the build context, and so
    must every stage folder that lccm/ links to (the wheel follows the links)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    packages |= {p.resolve().name for p in (ROOT / "lccm").iterdir() if p.is_symlink()}
    lines = {ln.strip() for ln in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()}
    assert "*" in lines, ".dockerignore should exclude everything by default"
    missing = sorted(p for p in packages if f"!{p}/" not in lines and f"!{p}" not in lines)
    assert not missing, f".dockerignore leaves these packages out of the image: {missing}"
    assert "!pyproject.toml" in lines
    # The image installs the versions CI tested: constraints.txt is in the context and pip uses it.
    assert "!constraints.txt" in lines
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"pip install -c constraints\.txt \.", dockerfile), "the image must install with constraints.txt"


# --- settings and secrets -----------------------------------------------------------------------------------


def _settings_env_names() -> dict[str, str]:
    prefix = str(Settings.model_config.get("env_prefix", "")).upper()
    return {f"{prefix}{field.upper()}": field for field in Settings.model_fields}


def test_lccm_variables_are_settings_fields(ours: dict[str, dict[str, Any]]) -> None:
    known = _settings_env_names()
    for name, svc in ours.items():
        env = environment(svc)
        unknown = sorted(k for k in env if k.startswith("LCCM_") and k not in known)
        assert not unknown, f"{name}: not Settings fields (nothing would read them): {unknown}"
        others = sorted(k for k in env if not k.startswith("LCCM_"))
        assert not others, f"{name}: the lccm image reads LCCM_* settings only, got {others}"
        # The values must validate as the fields' types (model_validate: the values alone, not this process's env).
        Settings.model_validate({known[k]: interpolate(v) for k, v in env.items()})


def test_an_empty_compose_value_means_the_settings_default(ours: dict[str, dict[str, Any]]) -> None:
    """``${VAR:-}`` hands the container an empty string when the operator sets nothing: that must mean the setting's
    default (no file, no host), not the empty path "." (which made the deployed ingest fail at start-up)."""
    known = _settings_env_names()
    for name, svc in ours.items():
        for key, raw in environment(svc).items():
            if key in known and interpolate(raw) == "":
                field = known[key]
                value = getattr(Settings.model_validate({field: ""}), field)
                default = Settings.model_fields[field].default
                assert value == default, f"{name}: {key} left empty gives {value!r}, not the default {default!r}"


def test_third_party_services_get_no_lccm_settings(
    services: dict[str, dict[str, Any]], ours: dict[str, dict[str, Any]]
) -> None:
    for name, svc in services.items():
        if name in ours:
            continue
        lccm_vars = {k for k in environment(svc) if k.startswith("LCCM_")}
        allowed = GRAFANA_DATASOURCE_VARS if name == "grafana" else set()
        assert lccm_vars <= allowed, f"{name}: unexpected {sorted(lccm_vars - allowed)}"


def test_lccm_services_use_the_compose_database_and_broker(
    services: dict[str, dict[str, Any]], ours: dict[str, dict[str, Any]]
) -> None:
    """Empty LCCM_DATABASE_URL / LCCM_MQTT_HOST would start an embedded server inside the container instead."""
    db_env = environment(services["timescaledb"])
    for name, svc in ours.items():
        env = environment(svc)
        url = urlsplit(interpolate(env.get("LCCM_DATABASE_URL", "")))
        assert url.scheme in ("postgresql", "postgres"), f"{name}: LCCM_DATABASE_URL must point at the database"
        assert url.hostname == "timescaledb" and (url.port or 5432) == 5432, f"{name}: {url.hostname}:{url.port}"
        assert url.path.lstrip("/") == db_env["POSTGRES_DB"]
        assert url.username == db_env["POSTGRES_USER"]
        assert env.get("LCCM_MQTT_HOST") == "mosquitto", f"{name}: LCCM_MQTT_HOST must be the mosquitto service"
        assert int(env.get("LCCM_MQTT_PORT", Settings.model_fields["mqtt_port"].default)) == 1883


def test_each_lccm_service_has_its_own_mqtt_client_id(ours: dict[str, dict[str, Any]]) -> None:
    """Two clients with one id take the broker session from each other in turn (and the ingest's queue with it)."""
    default = Settings.model_fields["mqtt_client_id"].default
    ids = {name: environment(svc).get("LCCM_MQTT_CLIENT_ID", default) for name, svc in ours.items()}
    duplicates = {i for i in ids.values() if list(ids.values()).count(i) > 1}
    assert not duplicates, f"shared MQTT client ids: { {n: i for n, i in ids.items() if i in duplicates} }"


def test_secrets_come_from_the_environment_not_the_file(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    required = re.compile(r"^\$\{[A-Z0-9_]+:\?[^}]+\}$")
    optional = re.compile(r"^\$\{(?P<var>[A-Z0-9_]+):-\}$")  # a channel left off when its secret is not set
    optional_secrets = {"LCCM_NOTIFY_SMTP_PASSWORD", "LCCM_NOTIFY_LINE_TOKEN"}
    for name, svc in services.items():
        for key, value in environment(svc).items():
            if key in optional_secrets:
                m = optional.match(value)
                assert m and m.group("var") == key, f"{name}: {key} must be ${{{key}:-}}, not a value in the file"
            elif "PASSWORD" in key or "TOKEN" in key:
                assert required.match(value), f"{name}: {key} must be ${{VAR:?message}}, not a value in the file"
            if key == "LCCM_DATABASE_URL":
                # Not urlsplit: the "?" of ${VAR:?message} would start the query string.
                m = re.match(r"^[a-z]+://[^:/@]+:(?P<password>.*)@[^@]+$", value)
                password = m.group("password") if m else ""
                assert required.match(password), f"{name}: the password in {key} must be ${{VAR:?message}}"

    # Every variable the file uses is documented in deploy/.env.example.
    text = COMPOSE.read_text(encoding="utf-8")
    used = {m.group("name") for m in INTERPOLATION.finditer(text) if m.group("name")}
    example = (ROOT / "deploy" / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    assert used <= documented, f"not in deploy/.env.example: {sorted(used - documented)}"


# --- services, health and order -----------------------------------------------------------------------------


def _one_shot(svc: dict[str, Any]) -> bool:
    return str(svc.get("restart", "no")) in ("no", "False", "false")


def test_services_and_profiles(services: dict[str, dict[str, Any]]) -> None:
    missing = CORE_SERVICES - set(services)
    assert not missing, f"missing services: {sorted(missing)}"
    for name in CORE_SERVICES:
        assert not services[name].get("profiles"), f"{name} must start without a profile"
    assert services["simulator"].get("profiles") == [DEMO_PROFILE], "the simulator runs in the demo profile only"
    for name, svc in services.items():
        if name not in CORE_SERVICES:
            assert svc.get("profiles") in ([DEMO_PROFILE], [TOOLS_PROFILE]), f"{name}: extra services need a profile"


def test_every_long_running_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    assert _one_shot(services["migrate"]), "migrate is a one-shot (restart: 'no')"
    for name, svc in services.items():
        if name == "simulator" or _one_shot(svc):
            continue
        check = svc.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name}: no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck test {check['test']!r}"


def test_start_order_waits_for_health_and_migrations(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: use depends_on with conditions"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            condition = spec.get("condition")
            if condition == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep} to be healthy; it has no check"
            if condition == "service_completed_successfully":
                assert _one_shot(services[dep]), f"{name} waits for {dep} to exit, but {dep} restarts"

    def waits_for(name: str, dep: str) -> str | None:
        return (services[name].get("depends_on") or {}).get(dep, {}).get("condition")

    assert waits_for("migrate", "timescaledb") == "service_healthy"
    for name in ("ingest", "api"):
        assert waits_for(name, "migrate") == "service_completed_successfully", name
    assert waits_for("ingest", "mosquitto") == "service_healthy"
    # The ingest's broker identity exists before it connects.
    assert waits_for("broker-setup", "mosquitto") == "service_healthy"
    assert waits_for("ingest", "broker-setup") == "service_completed_successfully"
    assert waits_for("devices", "broker-setup") == "service_completed_successfully"
    assert waits_for("grafana", "timescaledb") == "service_healthy"
    assert waits_for("simulator", "mosquitto") == "service_healthy"


def test_api_port_matches_its_healthcheck_and_published_port(services: dict[str, dict[str, Any]]) -> None:
    api = services["api"]
    argv = command_argv(api["command"])
    port = int(argv[argv.index("--port") + 1])
    assert any(str(p).split(":")[-1] == str(port) for p in api.get("ports", [])), api.get("ports")
    health = " ".join(str(t) for t in api["healthcheck"]["test"])
    assert re.search(rf"http://(localhost|127\.0\.0\.1):{port}/health/ready\b", health), health


def _host_address(mapping: str) -> str:
    """The host address of a published port ("${VAR:-default}" interpolated with its default)."""
    parts = interpolate(mapping).split(":")
    return parts[0] if len(parts) == 3 else "0.0.0.0"


def test_only_the_device_port_is_published_beyond_loopback(services: dict[str, dict[str, Any]]) -> None:
    """Devices reach MQTT over TLS (8883); the API, Grafana and Prometheus are on the host's loopback unless an
    operator says otherwise; plain MQTT, PostgreSQL and the ingest's metrics are not published at all."""
    published = {
        (name, str(m).split(":")[-1]): _host_address(str(m)) for name, svc in services.items() for m in _published(svc)
    }
    exposed = {key for key, address in published.items() if address != "127.0.0.1"}
    assert exposed == {("mosquitto", "8883")}, published
    assert ("mosquitto", "1883") not in published
    for name in ("api", "grafana"):
        (mapping,) = _published(services[name])
        assert re.fullmatch(r"\$\{LCCM_[A-Z]+_BIND:-127\.0\.0\.1\}:\d+:\d+", mapping), mapping


# --- Prometheus ---------------------------------------------------------------------------------------------


def _published(svc: dict[str, Any]) -> list[str]:
    return [str(p) for p in svc.get("ports", [])]


def _flag(argv: list[str], name: str) -> str | None:
    values = [a.split("=", 1)[1] for a in argv if a.startswith(f"{name}=")]
    return values[-1] if values else None


def _scrape_targets() -> dict[str, list[tuple[str, int, str]]]:
    """job -> [(host, port, metrics path)] of deploy/prometheus/prometheus.yml."""
    conf = yaml.safe_load(PROMETHEUS_CONF.read_text(encoding="utf-8"))
    jobs: dict[str, list[tuple[str, int, str]]] = {}
    for job in conf["scrape_configs"]:
        path = job.get("metrics_path", "/metrics")
        for static in job["static_configs"]:
            for target in static["targets"]:
                host, _, port = str(target).rpartition(":")
                jobs.setdefault(job["job_name"], []).append((host, int(port), path))
    return jobs


def test_prometheus_scrapes_the_api_and_the_ingest_where_they_listen(services: dict[str, dict[str, Any]]) -> None:
    jobs = _scrape_targets()
    targets = {host: (port, path) for entries in jobs.values() for host, port, path in entries}
    assert set(targets) == {"api", "ingest"}, jobs
    assert all(host in services for host in targets)

    api_argv = command_argv(services["api"]["command"])
    assert targets["api"] == (int(api_argv[api_argv.index("--port") + 1]), "/metrics")

    # The ingest's monitoring server: the Settings fields LCCM_METRICS_HOST/PORT, listening beyond loopback.
    env = environment(services["ingest"])
    fields = Settings.model_fields
    host = env.get("LCCM_METRICS_HOST", fields["metrics_host"].default)
    port = int(env.get("LCCM_METRICS_PORT", fields["metrics_port"].default))
    assert host == "0.0.0.0", "a loopback-only monitoring server cannot be scraped from the prometheus container"
    assert port and targets["ingest"] == (port, "/metrics")
    assert not _published(services["ingest"]), "the ingest's monitoring server stays on the compose network"


def test_prometheus_runs_the_committed_config_and_is_not_exposed(services: dict[str, dict[str, Any]]) -> None:
    prom = services["prometheus"]
    image, _, tag = str(prom["image"]).rpartition(":")
    assert image.endswith("prometheus") and re.fullmatch(r"v\d+\.\d+\.\d+", tag), f"pin the image: {prom['image']}"
    argv = command_argv(prom["command"])
    config = _flag(argv, "--config.file")
    assert config and f"./deploy/prometheus/prometheus.yml:{config}:ro" in [str(v) for v in prom["volumes"]]
    storage = _flag(argv, "--storage.tsdb.path")
    assert storage and any(str(v).endswith(f":{storage}") and not str(v).startswith(".") for v in prom["volumes"])
    # No authentication of its own: published on the host's loopback only, if at all.
    for mapping in _published(prom):
        assert mapping.startswith("127.0.0.1:"), f"prometheus is published beyond loopback: {mapping}"


def test_grafana_reads_prometheus_as_the_operations_datasource(services: dict[str, dict[str, Any]]) -> None:
    from lccm.dashboards._common import PROM_DATASOURCE_TYPE, PROM_DATASOURCE_UID

    data = yaml.safe_load((GRAFANA_PROVISIONING / "datasources" / "prometheus.yaml").read_text(encoding="utf-8"))
    (source,) = data["datasources"]
    assert (source["uid"], source["type"]) == (PROM_DATASOURCE_UID, PROM_DATASOURCE_TYPE)
    url = urlsplit(source["url"])
    listen = _flag(command_argv(services["prometheus"]["command"]), "--web.listen-address") or ":9090"
    assert url.hostname == "prometheus" and url.port == int(listen.rpartition(":")[2])
    conf = yaml.safe_load(PROMETHEUS_CONF.read_text(encoding="utf-8"))
    assert source["jsonData"]["timeInterval"] == conf["global"]["scrape_interval"]


# --- Mosquitto ----------------------------------------------------------------------------------------------


def _parse_mosquitto_conf(path: Path) -> list[tuple[str, list[str]]]:
    entries = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, *args = line.split()
            entries.append((key, args))
    return entries


def _global(entries: list[tuple[str, list[str]]], key: str) -> str | None:
    """The value of a broker-wide option (Mosquitto takes the last one)."""
    values = [args[0] for k, args in entries if k == key and args]
    return values[-1] if values else None


def _listeners(entries: list[tuple[str, list[str]]]) -> dict[tuple[str, ...], dict[str, str]]:
    """Per-listener options: what follows each `listener` line up to the next."""
    found: dict[tuple[str, ...], dict[str, str]] = {}
    current: dict[str, str] | None = None
    for key, args in entries:
        if key == "listener":
            current = found.setdefault(tuple(args), {})
        elif current is not None:
            current[key] = " ".join(args)
    return found


QUEUE_KEYS = (
    "max_queued_messages",
    "max_queued_bytes",
    "max_inflight_messages",
    "persistence",
    "persistence_location",
    "persistent_client_expiration",
    "autosave_interval",
    "queue_qos0_messages",
)


@pytest.mark.parametrize("conf", MOSQUITTO_CONFS)
def test_mosquitto_never_drops_queued_messages(
    conf: str, mosquitto_confs: dict[str, list[tuple[str, list[str]]]]
) -> None:
    entries = mosquitto_confs[conf]
    queued = _global(entries, "max_queued_messages")
    assert queued is not None, "max_queued_messages must be set: the default 1000 drops QoS 1 messages"
    assert int(queued) == 0 or int(queued) >= 1_000_000, f"max_queued_messages {queued} is not generous"
    if int(queued):
        assert _global(entries, "max_queued_bytes") is not None, "a bounded queue needs max_queued_bytes too"

    inflight = _global(entries, "max_inflight_messages")
    assert inflight is not None, (
        "max_inflight_messages must be set: the default 20 throttles an ack-after-commit ingest"
    )
    # 0 would be unlimited: an MQTT 3.1.1 paho subscriber stalls past 65,535 outstanding QoS 1 messages.
    assert 1_000 <= int(inflight) <= 65_535, f"max_inflight_messages {inflight}"

    assert _global(entries, "persistence") == "true", "persistent sessions need persistence"
    assert _global(entries, "persistence_location"), "persistence_location must be on the data volume"
    assert _global(entries, "persistent_client_expiration"), "persistent sessions must expire some day"


def test_mosquitto_dev_config_keeps_the_production_queue_settings(
    mosquitto_confs: dict[str, list[tuple[str, list[str]]]],
) -> None:
    prod, dev = (mosquitto_confs[c] for c in MOSQUITTO_CONFS)
    for key in QUEUE_KEYS:
        assert _global(prod, key) == _global(dev, key), f"{key} differs between {MOSQUITTO_CONFS}"


def test_mosquitto_production_config_authenticates(mosquitto_confs: dict[str, list[tuple[str, list[str]]]]) -> None:
    """No anonymous access; identities in one dynamic-security plugin shared by every listener; TLS on 8883."""
    entries = mosquitto_confs["mosquitto.conf"]
    assert _global(entries, "per_listener_settings") == "false", "one plugin instance for every listener"
    assert _global(entries, "allow_anonymous") == "false"
    assert _global(entries, "plugin") == "/usr/lib/mosquitto_dynamic_security.so"  # the eclipse-mosquitto image
    assert str(_global(entries, "plugin_opt_config_file")).startswith("/mosquitto/data/"), "the plugin rewrites it"
    listeners = _listeners(entries)
    assert set(listeners) == {("1883",), ("8883",)}, listeners
    tls = listeners[("8883",)]
    assert tls.get("certfile", "").startswith("/mosquitto/certs/") and tls.get("keyfile", "").startswith(
        "/mosquitto/certs/"
    )
    # Nothing of the old, client-id-keyed ACL or password file is left to be used by mistake.
    for opts in listeners.values():
        assert not {"allow_anonymous", "acl_file", "password_file"} & set(opts), opts
    assert not (MOSQUITTO_DIR / "acl").exists()


def test_compose_mounts_the_broker_certificates(services: dict[str, dict[str, Any]]) -> None:
    mounts = [interpolate(str(v)) for v in services["mosquitto"]["volumes"]]
    assert "./deploy/mosquitto/certs:/mosquitto/certs:ro" in mounts, mounts
    assert (MOSQUITTO_DIR / "certs" / "README.md").exists()
    ignored = (MOSQUITTO_DIR / ".gitignore").read_text(encoding="utf-8")
    assert "certs/*" in ignored, "keys must never be committed"


def test_compose_runs_the_broker_config_files(
    services: dict[str, dict[str, Any]], mosquitto_confs: dict[str, list[tuple[str, list[str]]]]
) -> None:
    broker = services["mosquitto"]
    assert any(str(v).startswith("./deploy/mosquitto:/mosquitto/config") for v in broker.get("volumes", []))
    argv = [interpolate(a) for a in command_argv(broker["command"])]
    assert argv[:2] == ["sh", "/mosquitto/config/entrypoint.sh"] and (MOSQUITTO_DIR / "entrypoint.sh").exists()
    assert argv[2] == "/mosquitto/config/mosquitto.conf", "the default must be the production configuration"
    assert "${MOSQUITTO_CONF:-mosquitto.conf}" in " ".join(command_argv(broker["command"]))
    # The entrypoint's admin is the lccm commands' admin.
    env = environment(broker)
    assert env["MQTT_ADMIN_USERNAME"] == Settings.model_fields["mqtt_admin_username"].default
    for name in ("broker-setup", "devices"):
        lccm_env = environment(services[name])
        assert lccm_env["LCCM_MQTT_ADMIN_PASSWORD"] == env["MQTT_ADMIN_PASSWORD"], name
        assert lccm_env["LCCM_MQTT_ADMIN_USERNAME"] == env["MQTT_ADMIN_USERNAME"], name
    # Only the commands that manage identities get the admin's password.
    for name, svc in services.items():
        if name not in ("mosquitto", "broker-setup", "devices"):
            assert "LCCM_MQTT_ADMIN_PASSWORD" not in environment(svc), f"{name} must not hold the broker admin"

    # The healthcheck reaches 1883 on the container's loopback, which both configurations open.
    test = [interpolate(str(t)) for t in broker["healthcheck"]["test"]]
    assert "-p 1883" in test[-1] and "-h 127.0.0.1" in test[-1]
    for name, entries in mosquitto_confs.items():
        assert ("1883",) in _listeners(entries), f"{name}: no listener on 1883"
        assert _global(entries, "plugin_opt_config_file"), f"{name}: the admin commands need the plugin"


# --- Grafana ------------------------------------------------------------------------------------------------


def _grafana_env_refs(node: Any) -> set[str]:
    """Environment variables ($VAR or ${VAR}) that Grafana expands in a provisioning file's values."""
    if isinstance(node, dict):
        return set().union(*(_grafana_env_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_grafana_env_refs(v) for v in node))
    if isinstance(node, str):
        return set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", node))
    return set()


def test_grafana_datasource_points_at_the_timescaledb_service(services: dict[str, dict[str, Any]]) -> None:
    path = GRAFANA_PROVISIONING / "datasources" / "lccm.yaml"
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    (source,) = [d for d in data["datasources"] if d.get("uid") == "lccm-pg"]
    assert source["type"] == "grafana-postgresql-datasource"
    host, _, port = source["url"].partition(":")
    assert host == "timescaledb" and host in services and port == "5432"
    assert source["jsonData"]["database"] == environment(services["timescaledb"])["POSTGRES_DB"]
    assert source["jsonData"]["timescaledb"] is True
    assert "password" in source.get("secureJsonData", {})

    grafana = services["grafana"]
    refs = _grafana_env_refs(data)
    assert refs, "the datasource credentials must come from the environment"
    assert refs <= set(environment(grafana)), f"not set on grafana: {sorted(refs - set(environment(grafana)))}"
    mounts = [str(v) for v in grafana.get("volumes", [])]
    assert any(m.startswith("./deploy/grafana/provisioning") and ":/etc/grafana/provisioning" in m for m in mounts), (
        mounts
    )


def test_grafana_dashboard_provider_reads_the_mounted_dashboards(services: dict[str, dict[str, Any]]) -> None:
    data = yaml.safe_load((GRAFANA_PROVISIONING / "dashboards" / "lccm.yaml").read_text(encoding="utf-8"))
    paths = {p["options"]["path"] for p in data["providers"]}
    mounts = [str(v).split(":") for v in services["grafana"].get("volumes", [])]
    targets = {m[1] for m in mounts if len(m) >= 2 and m[0] == "./deploy/grafana/dashboards"}
    assert paths <= targets, f"provider paths {paths} are not the ./deploy/grafana/dashboards mount {targets}"


@pytest.mark.parametrize(
    "load",
    [
        lambda: yaml.safe_load((GRAFANA_PROVISIONING / "datasources" / "lccm.yaml").read_text(encoding="utf-8")),
        lambda: yaml.safe_load((GRAFANA_PROVISIONING / "dashboards" / "lccm.yaml").read_text(encoding="utf-8")),
    ],
    ids=["datasources", "dashboards"],
)
def test_grafana_provisioning_files_are_version_1(load: Callable[[], dict[str, Any]]) -> None:
    assert load()["apiVersion"] == 1


# --- the identity provider ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def realm() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(KEYCLOAK_REALM.read_text(encoding="utf-8"))
    return doc


def test_keycloak_is_pinned_and_imports_the_realm(services: dict[str, dict[str, Any]]) -> None:
    kc = services["keycloak"]
    image, _, tag = kc["image"].rpartition(":")
    assert image == "quay.io/keycloak/keycloak" and re.fullmatch(r"\d+\.\d+\.\d+", tag), kc["image"]
    assert "--import-realm" in kc["command"]
    assert "./deploy/keycloak:/opt/keycloak/data/import:ro" in kc["volumes"]
    initdb = services["timescaledb"]["volumes"]
    assert any("20-keycloak.sh:/docker-entrypoint-initdb.d/" in v for v in initdb)


def test_the_realm_roles_are_the_apis_roles(realm: dict[str, Any]) -> None:
    from lccm.api.principal import Role

    assert {r["name"] for r in realm["roles"]["realm"]} == {r.value for r in Role}


def test_the_api_accepts_the_tokens_the_realm_issues(
    services: dict[str, dict[str, Any]], realm: dict[str, Any]
) -> None:
    """The realm's web client puts the API's audience and the organisation claim into its tokens, and the API is
    configured with that issuer, audience and claim (Settings' default claim names: roles, organisation, sites)."""
    env = {k: interpolate(v, {}) for k, v in environment(services["api"]).items()}
    settings = Settings(database_url="unused")
    assert env["LCCM_OIDC_ISSUER"].endswith(f"/realms/{realm['realm']}")
    kc_host = interpolate(environment(services["keycloak"])["KC_HOSTNAME"], {})
    assert env["LCCM_OIDC_ISSUER"] == f"{kc_host}/realms/{realm['realm']}"
    assert urlsplit(env["LCCM_OIDC_JWKS_URL"]).hostname == "keycloak"
    web = next(c for c in realm["clients"] if c["clientId"] == "lccm-web")
    mappers = {m["protocolMapper"]: m["config"] for m in web["protocolMappers"]}
    assert mappers["oidc-audience-mapper"]["included.client.audience"] == env["LCCM_OIDC_AUDIENCE"]
    assert mappers["oidc-hardcoded-claim-mapper"]["claim.name"] == settings.oidc_org_claim
    assert mappers["oidc-hardcoded-claim-mapper"]["claim.value"] == realm["realm"]
    assert mappers["oidc-usermodel-attribute-mapper"]["claim.name"] == settings.oidc_sites_claim
    assert settings.oidc_roles_claim == "realm_access.roles" and "roles" in web["defaultClientScopes"]
    assert web["publicClient"] and web["attributes"]["pkce.code.challenge.method"] == "S256"
    assert not web.get("directAccessGrantsEnabled") and not web.get("implicitFlowEnabled")


# --- the scale-out stack: docker-compose.scale.yml (not run here: docs/scaling.md) ---------------------------------

SCALE_COMPOSE = ROOT / "docker-compose.scale.yml"
EMQX_CONF = ROOT / "deploy" / "emqx" / "emqx.conf"
EMQX_ACL = ROOT / "deploy" / "emqx" / "acl.conf"
PROMETHEUS_SCALE_CONF = ROOT / "deploy" / "prometheus" / "prometheus-scale.yml"
EMQX_IMAGE = "emqx/emqx"
# From 5.9.0 the emqx/emqx image's default licence allows one node only (docs/scaling.md#the-broker-emqx).
EMQX_LAST_OPEN_CLUSTER_LINE = (5, 8)
# Keys whose values are secrets wherever they appear in a compose file.
SECRET_KEY = re.compile(r"PASSWORD|TOKEN|COOKIE|SECRET")


@pytest.fixture(scope="module")
def scale_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = load(SCALE_COMPOSE)["services"]
    return services


@pytest.fixture(scope="module")
def scale_ours(scale_services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return lccm_services({"services": scale_services})


@pytest.fixture(scope="module")
def emqx_nodes(scale_services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in scale_services.items() if str(s.get("image", "")).startswith(f"{EMQX_IMAGE}:")}


def _ingest_role(env: dict[str, str]) -> str:
    return interpolate(env.get("LCCM_INGEST_ROLE", "")) or str(Settings.model_fields["ingest_role"].default)


@pytest.fixture(scope="module")
def workers(scale_ours: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The ingest workers that read MQTT: lccm services running `lccm ingest` with the stream, with their
    environment."""
    ingest = {n: environment(s) for n, s in scale_ours.items() if command_argv(s["command"]) == ["ingest"]}
    return {n: env for n, env in ingest.items() if _ingest_role(env) != "derived"}


@pytest.fixture(scope="module")
def derivers(scale_ours: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The derived-data workers: `lccm ingest` with LCCM_INGEST_ROLE=derived."""
    ingest = {n: environment(s) for n, s in scale_ours.items() if command_argv(s["command"]) == ["ingest"]}
    return {n: env for n, env in ingest.items() if _ingest_role(env) == "derived"}


def test_scale_splits_the_stream_from_the_derived_work(
    scale_services: dict[str, dict[str, Any]],
    scale_ours: dict[str, dict[str, Any]],
    workers: dict[str, dict[str, str]],
    derivers: dict[str, dict[str, str]],
) -> None:
    """Stream workers and derived workers in processes (and cores) of their own (docs/partitions.md#roles): several
    of each, every stream worker of role stream (none also deriving, so the leases are the derived workers' alone),
    the derived workers with their own data volume, waiting for their broker entries (they publish alerts only)."""
    from lccm.runtime import ALERTS_ROLE, runs

    assert len(workers) >= 2 and len(derivers) >= 2, (sorted(workers), sorted(derivers))
    assert {_ingest_role(env) for env in workers.values()} == {"stream"}
    assert runs("derived", ALERTS_ROLE) and not runs("stream", ALERTS_ROLE), "the evaluator claims in leased partitions"
    volumes = [str(v) for n in [*workers, *derivers] for v in scale_ours[n]["volumes"] if ":/var/lib/lccm" in str(v)]
    assert len(set(volumes)) == len(workers) + len(derivers), volumes
    for name in derivers:
        waits = set(scale_services[name].get("depends_on", {}))
        assert waits == {"timescaledb", "migrate", "broker-setup"}, (name, waits)


@pytest.fixture(scope="module")
def emqx_conf() -> dict[str, Any]:
    return parse_hocon(EMQX_CONF.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def acl() -> list[AclRule]:
    return parse_acl(EMQX_ACL.read_text(encoding="utf-8"))


def _pinned(image: str) -> bool:
    """A fixed release tag: x.y.z (optionally v-prefixed, optionally a -variant such as -pg16), never latest."""
    _, _, tag = image.rpartition(":")
    return bool(re.fullmatch(r"v?\d+\.\d+\.\d+(-[a-z0-9.]+)?", tag))


def test_scale_every_third_party_image_is_pinned_and_matches_the_main_stack(
    scale_services: dict[str, dict[str, Any]], services: dict[str, dict[str, Any]], ours: dict[str, dict[str, Any]]
) -> None:
    main_images = {str(s["image"]).rpartition(":")[0]: str(s["image"]) for s in services.values()}
    for name, svc in scale_services.items():
        image = str(svc.get("image", ""))
        assert image, f"{name}: no image"
        if "build" in svc:  # the project's image: the same tag and build as docker-compose.yml's lccm services
            assert {image} == {str(s["image"]) for s in ours.values()}, name
            assert svc["build"] == next(iter(ours.values()))["build"], name
            continue
        assert _pinned(image), f"{name}: pin the image to a release tag, not {image!r}"
        repo = image.rpartition(":")[0]
        if repo in main_images:  # one version of TimescaleDB, Grafana, Prometheus for both stacks
            assert image == main_images[repo], f"{name}: {image} here, {main_images[repo]} in docker-compose.yml"


def test_scale_emqx_is_an_open_release_that_may_cluster(emqx_nodes: dict[str, dict[str, Any]]) -> None:
    assert len(emqx_nodes) >= 2, "a cluster needs at least two EMQX nodes"
    tags = {str(s["image"]).rpartition(":")[2] for s in emqx_nodes.values()}
    assert len(tags) == 1, f"every node runs the same release: {tags}"
    major, minor, _ = (int(p) for p in next(iter(tags)).split("."))
    assert (major, minor) <= EMQX_LAST_OPEN_CLUSTER_LINE, f"EMQX {tags}: clustering needs a licence key from 5.9"


def test_scale_lccm_services_run_real_commands_with_real_settings(
    scale_services: dict[str, dict[str, Any]], scale_ours: dict[str, dict[str, Any]], cli: Any, scratch_file: Path
) -> None:
    known = _settings_env_names()
    assert {"migrate", "api"} <= set(scale_ours), sorted(scale_ours)
    for name, svc in scale_ours.items():
        _check_argv(cli, command_argv(svc["command"]), scratch_file)
        env = environment(svc)
        unknown = sorted(k for k in env if k not in known)
        assert not unknown, f"{name}: not Settings fields (the lccm image reads LCCM_* settings only): {unknown}"
        Settings.model_validate({known[k]: interpolate(v) for k, v in env.items()})
        for key, raw in env.items():  # ${VAR:-} left empty must mean the setting's default
            if interpolate(raw) == "":
                field = known[key]
                assert getattr(Settings.model_validate({field: ""}), field) == Settings.model_fields[field].default
    for name, svc in scale_services.items():
        test = (svc.get("healthcheck") or {}).get("test")
        if isinstance(test, list) and test[:2] == ["CMD", "lccm"]:
            assert name in scale_ours, name
            _check_argv(cli, [str(t) for t in test[2:]], scratch_file)
        if name not in scale_ours:
            lccm_vars = {k for k in environment(svc) if k.startswith("LCCM_")}
            assert lccm_vars <= (GRAFANA_DATASOURCE_VARS if name == "grafana" else set()), name


def test_scale_ingest_workers_share_one_group_with_their_own_client_ids(
    scale_ours: dict[str, dict[str, Any]], workers: dict[str, dict[str, str]]
) -> None:
    from lccm.ingest.mqtt import subscriptions

    assert len(workers) >= 2, f"the scale-out stack runs several ingest workers, got {sorted(workers)}"
    groups = {n: interpolate(env.get("LCCM_MQTT_SHARE_GROUP", "")) for n, env in workers.items()}
    assert len(set(groups.values())) == 1 and all(groups.values()), f"one non-empty share group for all: {groups}"
    group = next(iter(groups.values()))
    assert re.fullmatch(r"[A-Za-z0-9_-]+", group), f"a share group name has no / + #: {group!r}"
    filters = {tuple(subscriptions(Settings.model_fields["mqtt_topic_root"].default, group, True)[0])}
    assert filters == {(f"$share/{group}/lccm/v1/#",)}, filters

    default_id = Settings.model_fields["mqtt_client_id"].default
    ids = [environment(s).get("LCCM_MQTT_CLIENT_ID", default_id) for s in scale_ours.values()]
    assert len(ids) == len(set(ids)), f"every lccm process needs its own MQTT client id: {ids}"
    for name, svc in scale_ours.items():
        # Replicas share one environment, hence one client id: the broker would hand one session back and forth.
        assert "replicas" not in (svc.get("deploy") or {}) and "scale" not in svc, f"{name}: use one service each"
    for name in workers:
        data = [str(v) for v in scale_ours[name].get("volumes", []) if str(v).endswith(":/var/lib/lccm")]
        assert len(data) == 1 and not data[0].startswith("."), f"{name}: a named data volume of its own: {data}"
    data_volumes = [str(v) for n in workers for v in scale_ours[n]["volumes"] if str(v).endswith(":/var/lib/lccm")]
    assert len(set(data_volumes)) == len(workers), f"the heartbeat file is per process: {data_volumes}"


def test_scale_broker_is_a_static_emqx_cluster_dispatching_by_client_id(
    emqx_nodes: dict[str, dict[str, Any]], scale_ours: dict[str, dict[str, Any]], emqx_conf: dict[str, Any]
) -> None:
    assert get(emqx_conf, "mqtt.shared_subscription_strategy") == "hash_clientid"
    assert get(emqx_conf, "cluster.discovery_strategy") == "static"
    seeds = set(get(emqx_conf, "cluster.static.seeds"))
    names = {}
    for name, svc in emqx_nodes.items():
        node = environment(svc)["EMQX_NODE__NAME"]
        aliases = svc["networks"]["default"]["aliases"]
        assert node.partition("@")[2] in aliases, f"{name}: node name {node} must be a fixed alias of the service"
        names[name] = node
    assert set(names.values()) == seeds, f"the static seeds {sorted(seeds)} are not the nodes {names}"

    # The lccm services reach the broker through an alias every node carries, on the port the cluster listens on.
    hosts = {environment(s)["LCCM_MQTT_HOST"] for s in scale_ours.values()}
    assert len(hosts) == 1, hosts
    (host,) = hosts
    assert all(host in s["networks"]["default"]["aliases"] for s in emqx_nodes.values()), host
    ports = {int(environment(s)["LCCM_MQTT_PORT"]) for s in scale_ours.values()}
    assert ports == {int(str(get(emqx_conf, "listeners.tcp.default.bind")).rpartition(":")[2])}


def test_scale_emqx_queues_never_throttle_or_drop_the_ingest(
    emqx_conf: dict[str, Any], workers: dict[str, dict[str, str]]
) -> None:
    """EMQX's stock limits are mosquitto's trap again: a 1,000-message session queue that drops the oldest, and an
    in-flight window of 32 that throttles an ingest acknowledging after its commit."""
    assert int(get(emqx_conf, "mqtt.max_mqueue_len")) >= 1_000_000, "the stock max_mqueue_len 1000 drops messages"
    receive_maximum = Settings.model_fields["mqtt_receive_maximum"].default
    for name, env in workers.items():
        wanted = int(env.get("LCCM_MQTT_RECEIVE_MAXIMUM", receive_maximum))
        assert int(get(emqx_conf, "mqtt.max_inflight")) >= wanted, f"{name}: the window is min(max_inflight, {wanted})"
    assert get(emqx_conf, "mqtt.mqueue_store_qos0") == "false", "devices publish QoS 1 (docs/contract.md)"


def test_scale_emqx_nodes_mount_what_the_configuration_reads(
    emqx_nodes: dict[str, dict[str, Any]], emqx_conf: dict[str, Any]
) -> None:
    (source,) = get(emqx_conf, "authorization.sources")
    assert source["type"] == "file" and get(emqx_conf, "authorization.no_match") == "deny"
    certs = {get(emqx_conf, f"listeners.ssl.default.ssl_options.{k}") for k in ("certfile", "keyfile")}
    data_volumes = []
    for name, svc in emqx_nodes.items():
        mounts = {interpolate(str(v)).split(":")[1]: interpolate(str(v)).split(":")[0] for v in svc["volumes"]}
        assert mounts.get("/opt/emqx/etc/emqx.conf") == "./deploy/emqx/emqx.conf", name
        assert mounts.get(source["path"]) == "./deploy/emqx/acl.conf", name
        assert all(mounts.get(str(Path(c).parent)) == "./deploy/mosquitto/certs" for c in certs), (name, mounts)
        assert all(str(v).endswith(":ro") for v in svc["volumes"] if str(v).startswith(("./", "${"))), name
        data_volumes += [src for dst, src in mounts.items() if dst == "/opt/emqx/data"]
        assert svc.get("ulimits", {}).get("nofile"), f"{name}: a broker of thousands of devices needs file handles"
    assert len(set(data_volumes)) == len(emqx_nodes), f"each node keeps its own data volume: {data_volumes}"


def test_scale_emqx_acl_gives_each_identity_what_mosquitto_gives_it(
    acl: list[AclRule], workers: dict[str, dict[str, str]]
) -> None:
    """deploy/emqx/acl.conf read with EMQX's first-match semantics against the rules lccm writes for mosquitto
    (lccm/mqtt_identity.py): the same topics for the ingest workers, their alert publishers, alert readers and
    devices, and nothing more (the spoofing cases of docs/security.md#mqtt-identity)."""
    from lccm.mqtt_identity import alert_reader_acls, device_acls, ingest_acls

    root = Settings.model_fields["mqtt_topic_root"].default
    assert acl[-1] == AclRule("deny", "all", "", ()), "the last rule denies everything else"
    group = interpolate(next(iter(workers.values()))["LCCM_MQTT_SHARE_GROUP"])
    ingest_topics = [a["topic"] for a in ingest_acls(root, group) if a["acltype"] == "subscribePattern"]
    alert_topic = next(a["topic"] for a in ingest_acls(root, group) if a["acltype"] == "publishClientSend")
    for env in workers.values():
        client = env["LCCM_MQTT_CLIENT_ID"]
        for topic in ingest_topics:  # EMQX checks a shared filter's real topic
            real = topic.removeprefix(f"$share/{group}/")
            assert acl_allows(acl, client, "subscribe", real), (client, real)
        assert acl_allows(acl, f"{client}-alerts", "publish", alert_topic.replace("+", "lampang"))
        assert not acl_allows(acl, f"{client}-alerts", "publish", f"{root}/lampang/LPG-TH-01-M1/up")

    reader = "lccm-alerts-control-room"
    (reader_topic,) = {a["topic"] for a in alert_reader_acls(root)}
    assert acl_allows(acl, reader, "subscribe", reader_topic)
    assert not acl_allows(acl, reader, "subscribe", f"{root}/#")
    assert not acl_allows(acl, reader, "publish", f"{root}/lampang/alerts/critical")

    device, other = "LPG-TH-01-M1", "LPG-TH-02-M1"
    for rule in device_acls(root, device):
        action = "publish" if rule["acltype"] == "publishClientSend" else "subscribe"
        if rule["acltype"] != "publishClientReceive":
            assert acl_allows(acl, device, action, rule["topic"].replace("+", "lampang")), rule
    assert not acl_allows(acl, device, "publish", f"{root}/lampang/{other}/up"), "a device speaks for itself only"
    assert not acl_allows(acl, device, "publish", f"{root}/lampang/alerts/critical"), "no forged alerts"
    assert not acl_allows(acl, device, "subscribe", f"{root}/#"), "a device reads its own commands only"
    assert not acl_allows(acl, device, "subscribe", f"{root}/lampang/{other}/cmd/#")
    # A service prefix never falls through to the device rules.
    assert not acl_allows(acl, "lccm-anything", "publish", f"{root}/lampang/lccm-anything/up")


def test_scale_emqx_authenticates_every_client_by_client_id(emqx_conf: dict[str, Any]) -> None:
    """Keyed by client id, a credential opens one client id: the binding mosquitto's plugin makes between user
    name and client id (docs/security.md#mqtt-identity). No anonymous access: authentication is configured."""
    (authn,) = get(emqx_conf, "authentication")
    assert (authn["mechanism"], authn["backend"], authn["user_id_type"]) == (
        "password_based",
        "built_in_database",
        "clientid",
    )
    assert authn.get("enable", "true") == "true"
    assert get(emqx_conf, "listeners.ws.default.enable") == "false"
    assert get(emqx_conf, "listeners.wss.default.enable") == "false"


def test_scale_healthchecks_and_start_order(scale_services: dict[str, dict[str, Any]], workers: dict[str, Any]) -> None:
    for name, svc in scale_services.items():
        if not _one_shot(svc):
            check = svc.get("healthcheck") or {}
            assert check.get("test") and not check.get("disable"), f"{name}: no healthcheck"
            assert check["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: {check['test']!r}"
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in scale_services, f"{name} depends on unknown service {dep}"
            if spec.get("condition") == "service_healthy":
                assert scale_services[dep].get("healthcheck"), f"{name} waits for {dep}, which has no healthcheck"
            if spec.get("condition") == "service_completed_successfully":
                assert _one_shot(scale_services[dep]), f"{name} waits for {dep} to exit, but {dep} restarts"
    brokers = {n for n, s in scale_services.items() if str(s.get("image", "")).startswith(f"{EMQX_IMAGE}:")}
    for name in [*workers, "api"]:
        deps = scale_services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["timescaledb"]["condition"] == "service_healthy", name
    for name in workers:
        waits = {d for d, spec in scale_services[name]["depends_on"].items() if spec["condition"] == "service_healthy"}
        assert brokers <= waits, f"{name} must wait for every EMQX node: {sorted(brokers - waits)}"


def test_scale_timescaledb_gets_compression_and_retention(
    scale_services: dict[str, dict[str, Any]], scale_ours: dict[str, dict[str, Any]]
) -> None:
    """`lccm migrate` turns on compression and retention itself when the extension exists (store/migrate.py); the
    compose file only has to run TimescaleDB and hand it sane policy settings."""
    import inspect

    from lccm.store import migrate

    source = inspect.getsource(migrate)
    assert "add_compression_policy" in source and "add_retention_policy" in source
    assert str(scale_services["timescaledb"]["image"]).startswith("timescale/timescaledb:")
    env = environment(scale_ours["migrate"])
    compress, retain = (interpolate(env[f"LCCM_{k}"]) for k in ("COMPRESS_AFTER_DAYS", "RETENTION_DAYS"))
    settings = Settings.model_validate({"compress_after_days": compress, "retention_days": retain})
    assert 0 < settings.compress_after_days < settings.retention_days
    db = environment(scale_services["timescaledb"])
    for name, svc in scale_ours.items():
        url = urlsplit(interpolate(environment(svc)["LCCM_DATABASE_URL"]))
        assert (url.hostname, url.path.lstrip("/"), url.username) == ("timescaledb", db["POSTGRES_DB"], "lccm"), name


def test_scale_no_secret_is_written_in_the_files(scale_services: dict[str, dict[str, Any]]) -> None:
    required = re.compile(r"^\$\{[A-Z0-9_]+:\?[^}]+\}$")
    for name, svc in scale_services.items():
        for key, value in environment(svc).items():
            if SECRET_KEY.search(key):
                assert required.match(value), f"{name}: {key} must be ${{VAR:?message}}, not a value in the file"
            if key == "LCCM_DATABASE_URL":
                m = re.match(r"^[a-z]+://[^:/@]+:(?P<password>.*)@[^@]+$", value)
                assert m and required.match(m.group("password")), f"{name}: the password in {key}"
    for path in (EMQX_CONF, EMQX_ACL):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(cookie|default_password|password)\s*[=:]", text, re.MULTILINE), path.name
    text = SCALE_COMPOSE.read_text(encoding="utf-8")
    used = {m.group("name") for m in INTERPOLATION.finditer(text) if m.group("name")}
    example = (ROOT / "deploy" / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    assert used <= documented, f"not in deploy/.env.example: {sorted(used - documented)}"


def test_scale_only_the_device_port_is_published_beyond_loopback(scale_services: dict[str, dict[str, Any]]) -> None:
    published = {
        (name, str(m).split(":")[-1]): _host_address(str(m))
        for name, svc in scale_services.items()
        for m in _published(svc)
    }
    exposed = {port for (_, port), address in published.items() if address != "127.0.0.1"}
    assert exposed == {"8883"}, published
    assert not any(port in ("1883", "5432", "9108") for _, port in published), published


def test_scale_prometheus_scrapes_every_worker_and_node(
    scale_services: dict[str, dict[str, Any]],
    workers: dict[str, Any],
    derivers: dict[str, Any],
    emqx_nodes: dict[str, Any],
) -> None:
    conf = yaml.safe_load(PROMETHEUS_SCALE_CONF.read_text(encoding="utf-8"))
    targets = {str(t) for job in conf["scrape_configs"] for static in job["static_configs"] for t in static["targets"]}
    port = Settings.model_fields["metrics_port"].default
    for name, env in {**workers, **derivers}.items():
        assert env["LCCM_METRICS_HOST"] == "0.0.0.0", name
        assert f"{name}:{int(env.get('LCCM_METRICS_PORT', port))}" in targets, name
    api = command_argv(scale_services["api"]["command"])
    assert f"api:{api[api.index('--port') + 1]}" in targets
    assert {f"{n}:18083" for n in emqx_nodes} <= targets
    assert {t.rpartition(":")[0] for t in targets} <= set(scale_services), targets
    mounts = [str(v) for v in scale_services["prometheus"]["volumes"]]
    assert "./deploy/prometheus/prometheus-scale.yml:/etc/prometheus/prometheus.yml:ro" in mounts


# --- the scale-out stack: lccm writes EMQX's identities (LCCM_BROKER_ADMIN=emqx, ingest/emqx_admin.py) ---------------

EMQX_ENTRYPOINT = ROOT / "deploy" / "emqx" / "entrypoint.sh"
# EMQX's reading of a bootstrap line (v5.8.6 apps/emqx_management/src/emqx_mgmt_auth.erl: `(.+):(.+)(?::(.+))?$`,
# ungreedy, on the trimmed line).
EMQX_BOOTSTRAP_LINE = re.compile(r"(.+?):(.+?)(?::(.+?))?$")


def test_scale_broker_setup_gives_every_worker_its_emqx_entry_before_it_starts(
    scale_services: dict[str, dict[str, Any]],
    scale_ours: dict[str, dict[str, Any]],
    workers: dict[str, Any],
    derivers: dict[str, dict[str, str]],
) -> None:
    """Stream workers and derived workers (these publish the alerts they raise) alike."""
    from lccm.mqtt_identity import INGEST_CLIENT_ID

    workers = {**workers, **derivers}
    setup = scale_ours["broker-setup"]
    argv = command_argv(setup["command"])
    assert argv[:2] == ["broker", "setup"], argv
    named = [argv[i + 1] for i, a in enumerate(argv) if a == "--ingest-client-id"]
    assert sorted(named) == sorted(env["LCCM_MQTT_CLIENT_ID"] for env in workers.values()), "one entry per worker"
    assert all(INGEST_CLIENT_ID.fullmatch(c) for c in named), named
    assert setup.get("restart") == "no"
    for name in workers:
        assert scale_services[name]["depends_on"]["broker-setup"]["condition"] == "service_completed_successfully"
    emqx_nodes = [n for n, s in scale_services.items() if str(s.get("image", "")).startswith(f"{EMQX_IMAGE}:")]
    assert {n: setup["depends_on"][n]["condition"] for n in emqx_nodes} == dict.fromkeys(emqx_nodes, "service_healthy")
    # Every lccm command that writes identities in this stack writes them into EMQX.
    for name, svc in scale_ours.items():
        argv = command_argv(svc["command"])
        if argv[:1] == ["broker"] or argv[:1] == ["devices"]:
            settings = Settings.model_validate({"broker_admin": environment(svc).get("LCCM_BROKER_ADMIN", "")})
            assert settings.broker_admin == "emqx", name


def test_scale_emqx_serves_what_the_lccm_commands_assume(
    scale_services: dict[str, dict[str, Any]], scale_ours: dict[str, dict[str, Any]], emqx_conf: dict[str, Any]
) -> None:
    """The REST API where LCCM_EMQX_API_URL points, the authenticator ingest/emqx_admin.py writes to (its id, keyed by
    client id, sha256 with a prefix salt: what tests/_emqx_api.py implements), and the API key it authenticates with
    loaded by every node from the same .env variables."""
    from lccm.ingest.emqx_admin import AUTHENTICATOR_ID

    (authn,) = get(emqx_conf, "authentication")
    assert f"{authn['mechanism']}:{authn['backend']}" == AUTHENTICATOR_ID
    assert authn["user_id_type"] == "clientid"
    assert (authn["password_hash_algorithm"]["name"], authn["password_hash_algorithm"]["salt_position"]) == (
        "sha256",
        "prefix",
    )
    emqx_nodes = {n: s for n, s in scale_services.items() if str(s.get("image", "")).startswith(f"{EMQX_IMAGE}:")}
    dashboard_port = int(str(get(emqx_conf, "dashboard.listeners.http.bind")).rpartition(":")[2])
    bootstrap = str(get(emqx_conf, "api_key.bootstrap_file"))
    admins = {n: environment(s) for n, s in scale_ours.items() if "LCCM_EMQX_API_URL" in environment(s)}
    assert {"broker-setup", "devices"} <= set(admins), sorted(admins)
    for name, env in admins.items():
        url = urlsplit(env["LCCM_EMQX_API_URL"])
        assert url.port == dashboard_port and url.path in ("", "/"), (name, url)
        assert all(url.hostname in s["networks"]["default"]["aliases"] for s in emqx_nodes.values()), (name, url)
    keys = {(env["LCCM_EMQX_API_KEY"], env["LCCM_EMQX_API_SECRET"]) for env in admins.values()}
    for name, svc in emqx_nodes.items():
        env = environment(svc)
        # The node loads the same key and secret the lccm commands send.
        assert {(env["BOOTSTRAP_API_KEY"], env["BOOTSTRAP_API_SECRET"])} == keys, name
        mounts = {interpolate(str(v)).split(":")[1]: interpolate(str(v)).split(":")[0] for v in svc["volumes"]}
        entry = [str(a) for a in svc["entrypoint"]]
        assert entry[:2] == ["sh", "/opt/emqx/etc/lccm-entrypoint.sh"], name
        assert mounts["/opt/emqx/etc/lccm-entrypoint.sh"] == "./deploy/emqx/entrypoint.sh", name
        assert mounts[entry[2]] == "./deploy/emqx/emqx.conf", name  # the script reads the file EMQX reads
        # then the image's own entrypoint and command (v5.8.6 deploy/docker/Dockerfile)
        assert entry[3:] == ["/usr/bin/docker-entrypoint.sh", "/opt/emqx/bin/emqx", "foreground"], name
        # The file is written at start, into the node's own (writable) data volume, not a read-only mount.
        assert bootstrap.startswith("/opt/emqx/data/") and not mounts["/opt/emqx/data"].startswith("."), name


def _run_entrypoint(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    target = tmp_path / "data" / "lccm-api-key.bootstrap"
    target.parent.mkdir(exist_ok=True)
    conf = EMQX_CONF.read_text(encoding="utf-8")
    shipped = get(parse_hocon(conf), "api_key.bootstrap_file")
    conf_copy = tmp_path / "emqx.conf"
    conf_copy.write_text(conf.replace(f'"{shipped}"', f'"{target}"'), encoding="utf-8")
    started = tmp_path / "started"
    argv = ["sh", str(EMQX_ENTRYPOINT), str(conf_copy), "sh", "-c", f"echo yes > {started}"]
    done = subprocess.run(argv, env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True)
    return done, target


def test_scale_emqx_entrypoint_writes_the_api_key_as_emqx_reads_it(tmp_path: Path) -> None:
    key, secret = "lccm-setup", "0f3a9c_secret-value.~"
    done, target = _run_entrypoint(tmp_path, BOOTSTRAP_API_KEY=key, BOOTSTRAP_API_SECRET=secret)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "started").read_text() == "yes\n", "then runs the image's own start command"
    m = EMQX_BOOTSTRAP_LINE.fullmatch(target.read_text(encoding="utf-8").strip())
    assert m and m.groups() == (key, secret, "administrator")
    assert target.stat().st_mode & 0o777 == 0o600

    for bad in ({"BOOTSTRAP_API_KEY": key}, {"BOOTSTRAP_API_KEY": key, "BOOTSTRAP_API_SECRET": "has:colon"}):
        (tmp_path / "started").unlink(missing_ok=True)
        done, _ = _run_entrypoint(tmp_path, **bad)
        assert done.returncode == 1 and "LCCM_EMQX_API_" in done.stderr, done.stderr
        assert not (tmp_path / "started").exists(), "EMQX is not started without the key"


def test_scale_emqx_acl_grants_exactly_the_identities_lccm_writes(acl: list[AclRule]) -> None:
    """`lccm broker setup` on EMQX accepts the client ids INGEST_CLIENT_ID matches and writes <id> and <id>-alerts:
    the ACL must grant those ids the ingest's topics and no others; its topics are under the root the backend
    checks (EMQX_ACL_TOPIC_ROOT, the settings' default)."""
    from lccm.mqtt_identity import ALERT_PUBLISHER_SUFFIX, EMQX_ACL_TOPIC_ROOT, INGEST_CLIENT_ID

    root = EMQX_ACL_TOPIC_ROOT
    assert root == Settings.model_fields["mqtt_topic_root"].default
    granted = [t for rule in acl if rule.permission == "allow" for t in rule.topics]
    assert granted and all(t.startswith(root + "/") for t in granted), granted
    for client in ("lccm-ingest-1", "lccm-ingest-42", "lccm-ingest-", "lccm-ingest-1a", "lccm-ingest-x", "lccm-1"):
        accepted = INGEST_CLIENT_ID.fullmatch(client) is not None
        assert acl_allows(acl, client, "subscribe", f"{root}/#") == accepted, client
        publisher = client + ALERT_PUBLISHER_SUFFIX
        assert acl_allows(acl, publisher, "publish", f"{root}/lampang/alerts/critical") == accepted, publisher


def _compose_cli() -> list[str] | None:
    """A Compose that validates a file offline: the docker CLI's plugin (v2), or Debian's docker-compose (v1)."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.mark.parametrize("compose_file", [COMPOSE, SCALE_COMPOSE], ids=["main", "scale"])
def test_compose_accepts_the_file(compose_file: Path, tmp_path: Path) -> None:
    """`config` parses, interpolates and validates against the Compose schema without a Docker engine. Debian's
    docker-compose 1.29 (what .ci/run installs) predates the top-level `name`, so it reads a copy without it."""
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)")
    text = compose_file.read_text(encoding="utf-8")
    if cli[-1] != "compose":
        text = re.sub(r"^name: .*\n", "", text, flags=re.MULTILINE)
    copy = tmp_path / compose_file.name
    copy.write_text(text, encoding="utf-8")
    # Only the required variables (${VAR:?...}): the others keep the file's defaults.
    required = {m.group("name") for m in INTERPOLATION.finditer(text) if m.group("op") in (":?", "?")}
    env = {**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME")}, **dict.fromkeys(required, "x")}
    run = subprocess.run(
        [*cli, "--project-directory", str(ROOT), "-f", str(copy), "config", "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, f"{compose_file.name}: {run.stderr or run.stdout}"
