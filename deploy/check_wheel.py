"""The product as deployed: the built wheel runs as the Dockerfile and docker-compose.yml run it.

1. Builds the wheel from a copy of the Docker build context (.dockerignore) and installs it, with constraints.txt and
   no extras (as the Dockerfile does), into a fresh virtual environment in a temporary folder; proves ``lccm`` is
   imported from that environment's site-packages and that commands needing an extra stop with one line.
2. Starts a private mosquitto with compose's command (deploy/mosquitto/entrypoint.sh, which creates the
   dynamic-security file with the broker admin) and the shipped deploy/mosquitto/mosquitto.conf (listener ports,
   paths and the plugin's location adapted; a throwaway CA and TLS certificate made with openssl for this run), and
   a fresh PostgreSQL database and role.
3. Runs compose's lccm services (``migrate`` and ``broker-setup``, then ``ingest`` and ``api``; the ``devices``
   tool to register a device and issue its MQTT credential) with compose's commands and LCCM_* variables, the
   Dockerfile's ENV, WORKDIR and ENTRYPOINT, waiting for each with compose's own healthcheck. Only hosts, ports,
   passwords, paths, and the database's name and role (it is a shared server) are replaced for this machine.
4. The device publishes one reading over TLS with the credential ``lccm devices import`` wrote to its 0600 file
   (and is refused another device's topic and client id); the reading is read back through
   ``GET /devices/<id>/latest``.
5. SIGTERM to every process: each must exit 0 (the API: uvicorn's orderly shutdown, after which it re-raises the
   signal on purpose). Then what every process was started with is compared with compose:
   a command or LCCM_* variable compose gives that the run did not use, or one the run needed that compose lacks,
   fails the check.

Run from the repository root with the dev environment: ``.venv/bin/python -m deploy.check_wheel`` (``.ci/run`` does,
after ``make test``). One line per step; exit 1 with the processes' log tails on the first failure.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from psycopg import sql

from deploy.compose import command_argv, environment, interpolate, lccm_services, load
from deploy.mosquitto_local import PLUGIN_IN_IMAGE, broker_user, local_plugin, make_certs

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("LCCM_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LOCAL = "127.0.0.1"
# Readiness of the API, polled before compose's healthcheck runs. (Switch to /health/ready once it exists.)
API_READY_PATH = "/health/ready"
# The device side speaks the message contract (docs/contract.md), not the product's settings.
TOPIC_ROOT = "lccm/v1"
DEVICE_ID = "CI-WHEEL-M1"
CITY = "ci-wheel"
READING = {"energy_kwh": 1234.5}
# Packages of extras (and of dev) that the deployed install must not have.
NOT_INSTALLED = ("pgserver", "amqtt", "grafana_client", "pandas", "pytest")
# Variables the run must point at this machine, per compose service: compose must give each of them.
NEEDS = {
    "migrate": {"LCCM_DATABASE_URL"},
    "broker-setup": {
        "LCCM_MQTT_HOST", "LCCM_MQTT_PORT", "LCCM_MQTT_USERNAME", "LCCM_MQTT_PASSWORD", "LCCM_MQTT_ADMIN_PASSWORD",
    },
    "ingest": {"LCCM_DATABASE_URL", "LCCM_MQTT_HOST", "LCCM_MQTT_PORT", "LCCM_MQTT_USERNAME", "LCCM_MQTT_PASSWORD"},
    "api": {"LCCM_DATABASE_URL"},
    "devices": {"LCCM_DATABASE_URL", "LCCM_MQTT_HOST", "LCCM_MQTT_PORT", "LCCM_MQTT_ADMIN_PASSWORD"},
}  # fmt: skip
ONE_SHOTS = ["migrate", "broker-setup"]  # compose's lccm one-shots without a profile, in the order they run
REGISTER = "devices"  # compose's operator tool that registers devices and issues credentials (this run's one device)
DEVICE_PORT = 8883  # devices reach the broker over TLS only
BROKER, DATABASE = "mosquitto", "timescaledb"
UVICORN_SHUTDOWN = "Finished server process"


class CheckFailed(Exception):
    pass


def fail_unless(condition: object, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


class Report:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def step(self, name: str, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {name:<10} {text}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return int(s.getsockname()[1])


# --- the Dockerfile's runtime stage -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    env: dict[str, str]
    workdir: str
    entrypoint: list[str]


def read_image(path: Path = ROOT / "Dockerfile") -> Image:
    """ENV, WORKDIR and ENTRYPOINT of the last stage (the image compose runs)."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if line.upper().startswith("FROM "):
            stages.append([])
        elif line and not line.startswith("#") and stages:
            stages[-1].append(line)
    env: dict[str, str] = {}
    workdir, entrypoint = "/", []
    for line in stages[-1]:
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
        elif keyword.upper() == "WORKDIR":
            workdir = rest.strip()
        elif keyword.upper() == "ENTRYPOINT":
            entrypoint = json.loads(rest)
    fail_unless(entrypoint, "Dockerfile: no ENTRYPOINT in the runtime stage")
    return Image(env, workdir, entrypoint)


# --- compose services, localised -----------------------------------------------------------------------------------


@dataclass
class Machine:
    """What replaces the containers' world on this machine: folders, ports, and the run's secrets (the .env)."""

    tmp: Path
    venv: Path
    dotenv: dict[str, str]
    db_name: str
    ca_file: Path | None = None  # the throwaway CA that signed the broker's TLS certificate
    device_password: str = ""  # from the credentials file `lccm devices import` wrote
    ports: dict[tuple[str, int], int] = field(default_factory=dict)

    def port(self, service: str, container_port: int) -> int:
        return self.ports.setdefault((service, container_port), free_port())

    def paths(self, service: str, svc: dict[str, Any], image: Image) -> dict[str, Path]:
        """Container path -> local path: the service's volumes (named: a folder per volume; binds: the repository),
        the image's virtual environment, and the image's WORKDIR (a folder per container when no volume covers it)."""
        found = {"/opt/lccm": self.venv}
        for spec in svc.get("volumes", []):
            source, target = interpolate(str(spec), self.dotenv).split(":")[:2]
            if source.startswith((".", "/")):
                found[target] = (ROOT / source).resolve()
            else:
                found[target] = self.tmp / "volumes" / source
        if image.workdir not in found:
            found[image.workdir] = self.tmp / "containers" / service / image.workdir.strip("/")
        return found


@dataclass
class Localised:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    substituted: dict[str, str]  # what was replaced for this machine, and why


def localise_path(value: str, paths: dict[str, Path]) -> str | None:
    for target in sorted(paths, key=len, reverse=True):
        if value == target or value.startswith(target.rstrip("/") + "/"):
            return str(paths[target]) + value[len(target.rstrip("/")) :]
    return None


def localise_value(key: str, value: str, service: str, machine: Machine, paths: dict[str, Path]) -> tuple[str, str]:
    """(local value, what was replaced or "") for one LCCM_* variable's compose value (already interpolated)."""
    if key == "LCCM_DATABASE_URL":
        url = urlsplit(value)
        fail_unless(url.hostname == DATABASE, f"{service}: LCCM_DATABASE_URL host {url.hostname}, not {DATABASE}")
        admin = urlsplit(ADMIN_URL)
        netloc = f"{machine.db_name}:{url.password}@{admin.hostname}:{admin.port or 5432}"
        local = urlunsplit((url.scheme, netloc, f"/{machine.db_name}", url.query, url.fragment))
        return local, "host, port, role and database name"
    if key == "LCCM_MQTT_HOST":
        fail_unless(value == BROKER, f"{service}: LCCM_MQTT_HOST {value!r}, not the {BROKER} service")
        return LOCAL, "host"
    if key == "LCCM_MQTT_PORT":
        return str(machine.port(BROKER, int(value))), "port"
    if key == "LCCM_METRICS_PORT" and value not in ("", "0"):
        return str(machine.port(service, int(value))), "port"
    if key == "LCCM_METRICS_HOST" and value == "0.0.0.0":
        return LOCAL, "host"
    if value.startswith("/"):
        mapped = localise_path(value, paths)
        fail_unless(mapped is not None, f"{service}: {key}={value} is a container path with no local counterpart")
        return str(mapped), "path"
    return value, ""


def localise(service: str, svc: dict[str, Any], image: Image, machine: Machine) -> Localised:
    """The process compose would run for ``service``, on this machine."""
    paths = machine.paths(service, svc, image)
    substituted: dict[str, str] = {}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": str(paths[image.workdir])}
    for key, value in image.env.items():  # the image's ENV, then compose's environment over it (as Docker does)
        value = value.replace("$PATH", env["PATH"])
        local = ":".join(localise_path(p, paths) or p for p in value.split(":")) if key == "PATH" else value
        if value.startswith("/") and key != "PATH":
            local = localise_path(value, paths) or value
        env[key] = local
        if local != value:
            substituted[key] = "path"
    for key, raw in environment(svc).items():
        value = interpolate(raw, machine.dotenv, strict=True)
        if "PASSWORD" in key and value:
            substituted[key] = "password"
        local, why = localise_value(key, value, service, machine, paths)
        env[key] = local
        if why:
            substituted[key] = why if substituted.get(key, why) == why else f"{substituted[key]}, {why}"

    argv = [*image.entrypoint, *[interpolate(a, machine.dotenv, strict=True) for a in command_argv(svc["command"])]]
    for i, arg in enumerate(argv):
        before = argv[i - 1] if i else ""
        if before == "--host":
            argv[i] = LOCAL
        elif before == "--port":
            argv[i] = str(machine.port(service, int(arg)))
        elif arg.startswith("/"):
            mapped = localise_path(arg, paths)
            fail_unless(mapped is not None, f"{service}: argument {arg} is a container path with no local counterpart")
            argv[i] = str(mapped)
        if argv[i] != arg:
            substituted[f"argv[{i}] {arg}"] = argv[i]
    exe = shutil.which(argv[0], path=env["PATH"])
    fail_unless(exe, f"{service}: {argv[0]} is not on the image's PATH")
    argv[0] = str(exe)
    cwd = Path(localise_path(image.workdir, paths) or image.workdir)
    cwd.mkdir(parents=True, exist_ok=True)
    return Localised(argv, env, cwd, substituted)


def healthcheck_argv(service: str, svc: dict[str, Any], machine: Machine, env: dict[str, str]) -> list[str] | None:
    """Compose's healthcheck command for the service, ports mapped; None if it has none."""
    test = [interpolate(str(t), machine.dotenv) for t in (svc.get("healthcheck") or {}).get("test", [])]
    if not test:
        return None

    def ports(text: str) -> str:
        for (name, container_port), local_port in machine.ports.items():
            if name == service:
                text = re.sub(rf"\b(127\.0\.0\.1|localhost):{container_port}\b", f"{LOCAL}:{local_port}", text)
                text = re.sub(rf"(^|\s)-p {container_port}\b", rf"\g<1>-p {local_port}", text)
        return text

    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", ports(test[1])]
    fail_unless(test[0] == "CMD", f"{service}: healthcheck {test!r}")
    argv = [ports(t) for t in test[1:]]
    for i, arg in enumerate(argv[:-1]):
        if arg == "-p" and (service, int(argv[i + 1])) in machine.ports:
            argv[i + 1] = str(machine.ports[(service, int(argv[i + 1]))])
    exe = shutil.which(argv[0], path=env["PATH"])
    fail_unless(exe, f"{service}: healthcheck command {argv[0]} not found")
    return [str(exe), *argv[1:]]


# --- processes ---------------------------------------------------------------------------------------------------


@dataclass
class Process:
    service: str
    run: Localised
    log: Path
    proc: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)

    def tail(self, lines: int = 25) -> str:
        text = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(f"    {line}" for line in text[-lines:])

    def output(self) -> str:
        return self.log.read_text(errors="replace").strip() if self.log.exists() else ""


class Processes:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.all: list[Process] = []

    def start(self, service: str, run: Localised) -> Process:
        log = self.tmp / "logs" / f"{service}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                run.argv, env=run.env, cwd=run.cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        p = Process(service, run, log, proc)
        self.all.append(p)
        return p

    def run(self, service: str, run: Localised, timeout_s: float = 180) -> Process:
        p = self.start(service, run)
        try:
            p.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise CheckFailed(f"{service}: still running after {timeout_s:.0f} s\n{p.tail()}") from None
        fail_unless(p.proc.returncode == 0, f"{service}: exit {p.proc.returncode}\n{p.tail()}")
        return p

    def stop(self, p: Process, timeout_s: float) -> tuple[int, float]:
        """SIGTERM, as `docker compose stop` sends it (through tini); (exit code, seconds to exit)."""
        started = time.monotonic()
        p.proc.send_signal(signal.SIGTERM)
        try:
            code = p.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            p.proc.kill()
            p.proc.wait()
            raise CheckFailed(f"{p.service}: did not exit within {timeout_s:.0f} s of SIGTERM\n{p.tail()}") from None
        return code, time.monotonic() - started

    def kill_all(self) -> None:
        for p in self.all:
            if p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait()


def wait_healthy(
    service: str, svc: dict[str, Any], p: Process, machine: Machine, ready: str | None = None
) -> tuple[float, str]:
    """Poll compose's healthcheck (every second, within its start_period plus retries x interval) until it passes.
    ``ready``: a line the process prints once it can serve, waited for first."""
    check = healthcheck_argv(service, svc, machine, p.run.env)
    fail_unless(check, f"{service}: compose gives it no healthcheck")
    assert check is not None
    spec = svc.get("healthcheck") or {}
    deadline = (
        time.monotonic()
        + _seconds(spec.get("start_period", "0s"))
        + _seconds(spec.get("interval", "30s")) * int(spec.get("retries", 3))
    )
    answer = ""
    while time.monotonic() < deadline:
        fail_unless(p.proc.poll() is None, f"{service}: exited {p.proc.returncode} while starting\n{p.tail()}")
        if ready is None or ready in p.output():
            done = subprocess.run(check, env=p.run.env, cwd=p.run.cwd, capture_output=True, text=True, timeout=30)
            answer = (done.stdout + done.stderr).strip()
            if done.returncode == 0:
                return time.monotonic() - p.started, answer
        time.sleep(1)
    raise CheckFailed(f"{service}: healthcheck {shlex.join(check)} still failing: {answer}\n{p.tail()}")


def _seconds(text: str) -> float:
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(text)):
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


# --- the wheel --------------------------------------------------------------------------------------------------


def quiet(argv: list[str], cwd: Path, timeout_s: float = 600) -> str:
    """Run a setup command; its output only matters when it fails."""
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout_s)
    fail_unless(done.returncode == 0, f"{shlex.join(argv)}: exit {done.returncode}\n{done.stdout}{done.stderr}")
    return done.stdout


def build_context(tmp: Path) -> Path:
    """A copy of what the Docker build context holds (.dockerignore: everything excluded but its ``!`` entries, less
    its ignore patterns): the wheel is built from what the image gets, never from leftovers of an earlier build."""
    context = tmp / "context"
    keep, drop = [], []
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("!"):
            keep.append(line[1:].rstrip("/"))
        elif line and not line.startswith("#") and line != "*":
            drop.append(line.removeprefix("**/").rstrip("/"))
    ignore = shutil.ignore_patterns(*drop)
    for name in keep:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, context / name, symlinks=True, ignore=ignore)
        else:
            context.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, context / name)
    for path in (d for d in drop if "/" in d):  # a path, not a name pattern
        shutil.rmtree(context / path, ignore_errors=True)
    return context


def build_and_install(tmp: Path, report: Report) -> Path:
    """The wheel, built from the Docker build context and installed as the Dockerfile installs the project: pip,
    the context's constraints.txt, no extras."""
    context, dist = build_context(tmp), tmp / "dist"
    files = sorted(p.name for p in context.iterdir())
    quiet([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dist), str(context)], tmp)
    (wheel,) = dist.glob("lccm-*.whl")
    report.step("wheel", f"built {wheel.name} ({wheel.stat().st_size // 1024} kB) from the build context {files}")

    venv = tmp / "venv"
    started = time.monotonic()
    quiet([sys.executable, "-m", "venv", str(venv)], tmp)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    quiet([*pip, "install", "-c", str(context / "constraints.txt"), str(wheel)], tmp)
    installed = dict(line.split("==", 1) for line in quiet([*pip, "freeze"], tmp).splitlines() if "==" in line)
    pins = constraints()
    off = {n: v for n, v in installed.items() if _norm(n) != "lccm" and pins.get(_norm(n)) != v}
    fail_unless(not off, f"installed versions not in constraints.txt: {off}")
    report.step(
        "venv",
        f"installed the wheel with -c constraints.txt, no extras: {len(installed) - 1} distributions, each at its "
        f"constraints.txt version ({time.monotonic() - started:.0f} s)",
    )
    return venv


def constraints() -> dict[str, str]:
    pins = {}
    for raw in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_norm(name)] = version
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def prove_installed_copy(venv: Path, tmp: Path, report: Report) -> None:
    probe = (
        "import importlib.util, json, sys, sysconfig, lccm\n"
        "print(json.dumps({'file': lccm.__file__, 'path': sys.path, 'purelib': sysconfig.get_paths()['purelib'],"
        f" 'missing': [m for m in {NOT_INSTALLED!r} if importlib.util.find_spec(m) is None]}}))"
    )
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "LANG": "C.UTF-8"}
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe], env=env, cwd=tmp, capture_output=True, text=True, check=True
    )
    seen = json.loads(done.stdout)
    purelib = Path(seen["purelib"])
    fail_unless(purelib.is_relative_to(venv), f"site-packages {purelib} is not in the new venv")
    fail_unless(Path(seen["file"]).is_relative_to(purelib), f"lccm imported from {seen['file']}, not {purelib}")
    in_tree = [p for p in seen["path"] if p and Path(p).resolve().is_relative_to(ROOT)]
    fail_unless(not in_tree, f"the source tree is on sys.path: {in_tree}")
    pth = [p.name for p in purelib.glob("*.pth") if str(ROOT) in p.read_text(errors="replace")]
    fail_unless(not pth, f".pth files point into the source tree: {pth}")
    unexpected = sorted(set(NOT_INSTALLED) - set(seen["missing"]))
    fail_unless(not unexpected, f"installed without being asked for: {unexpected}")
    report.step(
        "import",
        f"lccm from {seen['file']} (cwd {tmp}, no source tree on sys.path); not installed: {', '.join(NOT_INSTALLED)}",
    )

    # Without the extras, the commands that need them stop with one line naming the extra.
    for command, extra in (
        (["demo", "--duration", "1"], "demo"),
        (["dashboards", "push", "--url", "http://127.0.0.1:9", "--token", "x"], "grafana"),
    ):
        done = subprocess.run(
            [str(venv / "bin" / "lccm"), *command], env=env, cwd=tmp, capture_output=True, text=True, timeout=60
        )
        lines = done.stderr.strip().splitlines()
        fail_unless(
            done.returncode == 2 and len(lines) == 1 and f"lccm[{extra}]" in lines[0],
            f"`lccm {' '.join(command)}` without [{extra}]: exit {done.returncode}, stderr {done.stderr!r}",
        )
        report.step("extras", f"`lccm {shlex.join(command)}` -> exit 2: {lines[0]}")


# --- servers -------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(machine: Machine, password: str, report: Report) -> Iterator[None]:
    """A database and a login role of the same fresh name, owned by it; both dropped afterwards."""
    name = sql.Identifier(machine.db_name)
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(name, sql.Literal(password)))
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(name, name))
    report.step("postgres", f"database and role {machine.db_name} on {urlsplit(ADMIN_URL).netloc.split('@')[-1]}")
    try:
        yield
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(name))
        report.step("postgres", f"dropped database and role {machine.db_name}")


def start_broker(compose: dict[str, Any], machine: Machine, processes: Processes, report: Report) -> Process:
    """Compose's mosquitto service: its command (deploy/mosquitto/entrypoint.sh) and environment, its configuration
    folder (a copy, with the ports this machine gives it and the local plugin), data volume and certificate volume
    (a throwaway CA and server certificate)."""
    svc = compose["services"][BROKER]
    paths: dict[str, Path] = {}
    for spec in svc.get("volumes", []):
        name, target = interpolate(str(spec), machine.dotenv).split(":")[:2]
        if target == "/mosquitto/config":
            paths[target] = machine.tmp / "mosquitto-config"
            shutil.copytree((ROOT / name).resolve(), paths[target], ignore=shutil.ignore_patterns("certs"))
        elif name.startswith("/"):
            paths[target] = Path(name)
        else:
            paths[target] = machine.tmp / "volumes" / Path(name).name
        paths[target].mkdir(parents=True, exist_ok=True)
    machine.ca_file = make_certs(paths["/mosquitto/certs"])

    argv = [interpolate(a, machine.dotenv) for a in command_argv(svc["command"])]
    conf_arg = next(a for a in argv if a.endswith(".conf"))
    conf_path = Path(localise_path(conf_arg, paths) or "")
    fail_unless(conf_path.is_file(), f"{BROKER}: no configuration file {conf_path}")
    changed = []
    lines = []
    for line in conf_path.read_text(encoding="utf-8").splitlines():
        words = line.split()
        if words and words[0] == "listener":
            port = machine.port(BROKER, int(words[1]))
            changed.append(f"{' '.join(words[1:])} -> {LOCAL}:{port}")
            line = f"listener {port} {LOCAL}"
        elif len(words) == 2 and words[1] == PLUGIN_IN_IMAGE:
            line = f"{words[0]} {local_plugin()}"
        elif len(words) == 2 and words[1].startswith("/mosquitto/"):
            line = f"{words[0]} {localise_path(words[1], paths)}"
        lines.append(line)
    conf_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    owner = broker_user()
    if owner is not None:
        machine.tmp.chmod(0o755)
        for folder in paths.values():
            for path in [folder, *folder.rglob("*")]:
                shutil.chown(path, user=owner, group=owner)

    argv = [localise_path(a, paths) or a for a in argv]
    exe = shutil.which(argv[0])
    fail_unless(exe, f"{BROKER}: {argv[0]} is not installed")
    argv[0] = str(exe)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env |= {k: interpolate(v, machine.dotenv, strict=True) for k, v in environment(svc).items()}
    run = Localised(argv, env, machine.tmp, {})
    p = processes.start(BROKER, run)
    took, answer = wait_healthy(BROKER, svc, p, machine)
    created = next((line for line in p.output().splitlines() if line.startswith("entrypoint:")), "")
    report.step(
        BROKER,
        f"{_cmd_any(run)} ({conf_path.name}: listeners {', '.join(changed)}; dynamic-security plugin "
        f"{local_plugin()}; throwaway CA and certificate); {created}; healthcheck as the admin ($SYS uptime "
        f"{answer}) passed after {took:.1f} s",
    )
    return p


# --- the device and the API -----------------------------------------------------------------------------------------


def device_csv(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "site_code,site_name,site_kind,city,device_id,device_kind,device_name,cadence_s\n"
        f"CI-HALL,CI town hall,building,{CITY},{DEVICE_ID},electricity_meter,Main meter,60\n",
        encoding="utf-8",
    )


def publish(machine: Machine, port: int, topic: str, payload: bytes, client_id: str = DEVICE_ID) -> str:
    """Publish once with QoS 1 as the device (user name = device id) over TLS; the CONNACK's reason code if the
    broker refused the connection, else the PUBACK's."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(DEVICE_ID, machine.device_password)
    client.tls_set(ca_certs=str(machine.ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    connected, acked = threading.Event(), threading.Event()
    reason: list[str] = []

    def on_connect(_c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        reason.append(str(rc))
        connected.set()

    def on_publish(_c: mqtt.Client, _u: object, _mid: int, rc: ReasonCode, _p: object) -> None:
        reason.append(str(rc))
        acked.set()

    client.on_connect = on_connect
    client.on_publish = on_publish
    client.connect(LOCAL, port)
    client.loop_start()
    try:
        fail_unless(connected.wait(10), f"no CONNACK within 10 s from {LOCAL}:{port}")
        if reason[0] != "Success":
            return reason[0]
        client.publish(topic, payload, qos=1)
        fail_unless(acked.wait(10), f"no PUBACK for {topic} within 10 s")
    finally:
        client.disconnect()
        client.loop_stop()
    return reason[-1]


def http_json(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except (urllib.error.URLError, ConnectionError):
        return 0, None


# --- compose against the run ----------------------------------------------------------------------------------------


def compare_with_compose(
    compose: dict[str, Any], image: Image, dotenv: dict[str, str], started: list[Process], core: list[str]
) -> str:
    """Every core lccm service ran; each process had exactly compose's command and LCCM_* variables, differing only
    where this machine's hosts, ports, passwords, paths and database were put in."""
    ran = {p.service: p for p in started}
    not_run = [s for s in core if s not in ran]
    fail_unless(not not_run, f"compose runs lccm services this run did not start: {not_run}")
    problems = []
    for service, p in ran.items():
        svc = compose["services"][service]
        expected_argv = [*image.entrypoint, *command_argv(svc["command"])]
        got_argv = p.run.argv
        if len(expected_argv) != len(got_argv):
            problems.append(f"{service}: ran {got_argv[1:]}, compose says {expected_argv[1:]}")
        for i, (want, got) in enumerate(zip(expected_argv[1:], got_argv[1:], strict=False), start=1):
            if interpolate(want) != got and f"argv[{i}] {interpolate(want)}" not in p.run.substituted:
                problems.append(f"{service}: argument {i} {got!r}, compose says {want!r}")
        declared = {k: v for k, v in {**image.env, **environment(svc)}.items() if k.startswith("LCCM_")}
        used = {k for k in p.run.env if k.startswith("LCCM_")}
        if used - set(declared):
            problems.append(f"{service}: the run needed {sorted(used - set(declared))}, which compose does not give it")
        if set(declared) - used:
            problems.append(f"{service}: compose gives {sorted(set(declared) - used)}, which the run did not use")
        for key, value in declared.items():
            want = interpolate(value, dotenv)
            if key in used and p.run.env[key] != want and key not in p.run.substituted:
                problems.append(f"{service}: ran with {key}={p.run.env[key]!r}, compose says {want!r}")
    fail_unless(not problems, "compose and the run disagree:\n  " + "\n  ".join(problems))
    counts = ", ".join(f"{p.service} {sum(k.startswith('LCCM_') for k in p.run.env)}" for p in started)
    subs = sorted({f"{k} ({v})" for p in started for k, v in p.run.substituted.items() if not k.startswith("argv")})
    args = sorted(
        {k.split(" ", 1)[1] + "->" + v for p in started for k, v in p.run.substituted.items() if k.startswith("argv")}
    )
    return (
        f"each process had exactly compose's command and LCCM_* variables (per service: {counts}); replaced for this "
        f"machine: {'; '.join(subs)}; arguments {', '.join(args)}"
    )


# --- the run -----------------------------------------------------------------------------------------------------


def core_services(compose: dict[str, Any]) -> tuple[list[str], list[str]]:
    """compose's lccm services without a profile, and which of them are one-shots; checked before anything starts:
    the services and the variables the run needs to reach this machine's database and broker are there."""
    services = lccm_services(compose)
    core = [name for name, svc in services.items() if not svc.get("profiles")]
    one_shots = [s for s in core if str(services[s].get("restart", "no")) in ("no", "False", "false")]
    fail_unless(one_shots == ONE_SHOTS, f"expected the one-shot lccm services {ONE_SHOTS}, compose has {one_shots}")
    missing = [s for s in NEEDS if s not in services]
    fail_unless(not missing, f"compose lacks the services the run needs: {missing}")
    lacking = {s: sorted(need - set(environment(services[s]))) for s, need in NEEDS.items()}
    lacking = {s: keys for s, keys in lacking.items() if keys}
    fail_unless(not lacking, f"the run needs these to reach the database and broker; compose lacks them: {lacking}")
    return core, one_shots


def run_services(compose: dict[str, Any], image: Image, machine: Machine, processes: Processes, report: Report) -> None:
    """compose's order: the one-shot migrate, then the long-running services (each until its healthcheck passes);
    then a device is registered on the running system, publishes, and is read back; then SIGTERM to each."""
    services = lccm_services(compose)
    core, one_shots = core_services(compose)

    for service in one_shots:
        run = localise(service, services[service], image, machine)
        started = time.monotonic()
        p = processes.run(service, run)
        report.step(service, f"{_cmd(run)} -> exit 0 in {time.monotonic() - started:.1f} s: {p.output()}")
    running = {s: processes.start(s, localise(s, services[s], image, machine)) for s in core if s not in one_shots}
    for service, p in running.items():
        if service == "api":
            wait_api_ready(p, report)
        ready = "ingesting from" if service == "ingest" else None
        took, answer = wait_healthy(service, services[service], p, machine, ready)
        said = next((f": {line}" for line in p.output().splitlines() if ready and ready in line), "")
        report.step(
            service, f"{_cmd(p.run)}{said}; compose's healthcheck passed after {took:.1f} s ({answer or 'exit 0'})"
        )

    register_device(services[REGISTER], image, machine, processes, report)
    ts = publish_reading(machine, report)
    key = create_api_key(running["api"], processes, report)
    read_back(_api_port(running["api"]), key, ts, running["ingest"], report)
    scrape_ingest(running["ingest"], report)
    docs_offline(_api_port(running["api"]), report)

    for service, p in running.items():
        code, took = processes.stop(p, _seconds(services[service].get("stop_grace_period", "10s")))
        report.step("stop", f"{service}: SIGTERM -> {clean_exit(p, code)} in {took:.1f} s")

    lccm_processes = [p for p in processes.all if p.service in services]
    report.step("compose", compare_with_compose(compose, image, machine.dotenv, lccm_processes, core))


def clean_exit(p: Process, code: int) -> str:
    """How the process ended, if that was clean: exit 0, or -- uvicorn (the API) only -- the re-raised SIGTERM
    after its orderly shutdown finished (uvicorn >= 0.29 does that on purpose; in a container: exit status 143)."""
    if code == 0:
        return "exit 0"
    orderly = UVICORN_SHUTDOWN in p.output()
    fail_unless(
        code == -signal.SIGTERM and orderly, f"{p.service}: exit {code} after SIGTERM (not a clean stop)\n{p.tail()}"
    )
    return f"orderly shutdown ({UVICORN_SHUTDOWN!r}), then uvicorn's re-raised SIGTERM"


def _api_port(p: Process) -> str:
    return p.run.argv[p.run.argv.index("--port") + 1]


def wait_api_ready(p: Process, report: Report, timeout_s: float = 120) -> None:
    url = f"http://{LOCAL}:{_api_port(p)}{API_READY_PATH}"
    deadline = time.monotonic() + timeout_s
    status, body = http_json(url)
    while status != 200 and time.monotonic() < deadline:
        fail_unless(p.proc.poll() is None, f"api: exited {p.proc.returncode}\n{p.tail()}")
        time.sleep(0.5)
        status, body = http_json(url)
    fail_unless(status == 200, f"api: {url} answered {status} {body}\n{p.tail()}")
    report.step("api", f"{_cmd(p.run)}: GET {API_READY_PATH} -> 200 {json.dumps(body)}")


def register_device(svc: dict[str, Any], image: Image, machine: Machine, processes: Processes, report: Report) -> None:
    """compose's devices tool, on the running system (as an operator adds a device), with a one-row CSV: registers
    it and issues its credential, which the device then reads from the 0600 file the command wrote."""
    run = localise(REGISTER, svc, image, machine)
    registry = next(Path(a) for a in run.argv if a.endswith(".csv"))
    device_csv(registry)
    p = processes.run(REGISTER, run)
    said = "; ".join(" ".join(line.split()) for line in p.output().splitlines())
    files = sorted((Path(run.env["LCCM_DATA_DIR"]) / "credentials").glob("device-credentials-*.csv"))
    fail_unless(len(files) == 1, f"{REGISTER}: expected one credentials file, found {files}")
    mode = files[0].stat().st_mode & 0o777
    fail_unless(mode == 0o600, f"{files[0]}: mode {mode:o}, not 600")
    with files[0].open(encoding="utf-8", newline="") as f:
        (row,) = list(csv.DictReader(f))
    fail_unless(row["device_id"] == row["mqtt_username"] == row["mqtt_client_id"] == DEVICE_ID, f"{files[0]}: {row}")
    fail_unless(row["mqtt_password"] not in p.output(), f"{REGISTER}: printed the device's secret")
    machine.device_password = row["mqtt_password"]
    report.step("devices", f"{_cmd(run)} ({REGISTER}; one row, {DEVICE_ID}) -> exit 0: {said}; file mode 0600")


def publish_reading(machine: Machine, report: Report) -> int:
    """The device publishes one reading over TLS on its own topic, after the broker refused it another device's
    client id and topic; its time."""
    port = machine.ports[(BROKER, DEVICE_PORT)]
    ts = int(time.time()) - 30
    payload = json.dumps({"device_id": DEVICE_ID, "seq": 1, "ts": ts, "values": READING}).encode()
    other = publish(machine, port, f"{TOPIC_ROOT}/{CITY}/CI-OTHER-M1/up", payload, client_id="CI-OTHER-M1")
    fail_unless(other == "Not authorized", f"{DEVICE_ID} connected with another device's client id: {other}")
    denied = publish(machine, port, f"{TOPIC_ROOT}/{CITY}/CI-OTHER-M1/up", payload)
    fail_unless(denied == "Not authorized", f"the broker let {DEVICE_ID} publish as another device: {denied}")
    topic = f"{TOPIC_ROOT}/{CITY}/{DEVICE_ID}/up"
    rc = publish(machine, port, topic, payload)
    fail_unless(rc == "Success", f"publish to {topic}: {rc}")
    report.step(
        "publish",
        f"{DEVICE_ID} over TLS ({LOCAL}:{port}, verified against the run's CA) -> {topic} {payload.decode()}: PUBACK "
        f"{rc}; another device's client id: CONNACK {other}; another device's topic: {denied}",
    )
    return ts


def create_api_key(api: Process, processes: Processes, report: Report) -> str:
    """An admin's API key for the reads below, made the product's way: `lccm apikeys create`, with the API service's
    own environment (its database); the key is the line of output that is one."""
    # The device's city is an organisation of its own, as an operator sets one up: every read is scoped to the
    # caller's organisation, and a site of no organisation is in nobody's scope.
    org = [api.run.argv[0], "organisations", "put", CITY, "--name-en", "CI wheel town", "--province-en", "CI",
           "--type", "town", "--city-key", CITY]  # fmt: skip
    processes.run("organisations", Localised(org, api.run.env, api.run.cwd, {}))
    argv = [api.run.argv[0], "apikeys", "create", "--org", CITY, "--role", "admin", "--name", "check-wheel"]
    p = processes.run("apikeys", Localised(argv, api.run.env, api.run.cwd, {}))
    (key,) = [line for line in p.output().splitlines() if line.startswith("lccm_")]
    status, _ = http_json(f"http://{LOCAL}:{_api_port(api)}/sites")
    fail_unless(status == 401, f"GET /sites without credentials answered {status}, not 401")
    report.step("api key", f"{_cmd(Localised(org, {}, api.run.cwd, {}))}; {_cmd(Localised(argv, {}, api.run.cwd, {}))}"
                " -> a key; GET /sites without it -> 401")  # fmt: skip
    return key


def read_back(api_port: str, key: str, ts: int, ingest: Process, report: Report, timeout_s: float = 30) -> None:
    url = f"http://{LOCAL}:{api_port}/devices/{DEVICE_ID}/latest"
    auth = {"Authorization": f"Bearer {key}"}
    started = time.monotonic()
    values: list[dict[str, Any]] = []
    while not values and time.monotonic() - started < timeout_s:
        status, body = http_json(url, auth)
        values = body.get("values", []) if status == 200 and isinstance(body, dict) else []
        if not values:
            time.sleep(0.2)
    if not values:
        _, dead = http_json(f"http://{LOCAL}:{api_port}/dead-letters", auth)
        raise CheckFailed(f"{url}: no reading after {timeout_s:.0f} s; dead letters: {dead}\n{ingest.tail()}")
    (value,) = values
    fail_unless(
        (value["metric"], value["unit"], value["value"]) == ("energy", "kWh", READING["energy_kwh"]),
        f"{url}: {value}",
    )
    fail_unless(_epoch(value["ts"]) == ts, f"{url}: event time {value['ts']}, published {ts}")
    took = time.monotonic() - started
    report.step("read back", f"GET /devices/{DEVICE_ID}/latest after {took:.1f} s: {json.dumps(value)}")


def scrape_ingest(ingest: Process, report: Report) -> None:
    """The ingest's monitoring server as Prometheus and an orchestrator see it: /metrics counts the reading, and
    /health/ready names every worker healthy."""
    base = f"http://{ingest.run.env['LCCM_METRICS_HOST']}:{ingest.run.env['LCCM_METRICS_PORT']}"
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    wanted = ("lccm_ingest_readings_stored_total", "lccm_worker_up")
    lines = [ln for ln in text.splitlines() if ln.startswith(wanted)]
    stored = next((float(ln.split()[-1]) for ln in lines if ln.startswith(wanted[0])), None)
    fail_unless(stored == 1.0, f"{base}/metrics: readings stored {stored}, expected 1\n{text[-2000:]}")
    status, body = http_json(f"{base}/health/ready")
    fail_unless(status == 200, f"{base}/health/ready answered {status} {body}")
    workers = ", ".join(f"{k} {v['state']}" for k, v in body["checks"]["workers"].items())
    report.step("metrics", f"GET {base}/metrics: {'; '.join(lines)}")
    report.step("ready", f"GET {base}/health/ready -> 200: schema {body['checks']['schema']}; workers {workers}")


def docs_offline(api_port: str, report: Report) -> None:
    """/docs from the installed wheel: every asset the page loads is this server's and is served (the Swagger UI
    files are package data, api/static/swagger-ui/)."""
    base = f"http://{LOCAL}:{api_port}"
    with urllib.request.urlopen(f"{base}/docs", timeout=5) as answer:
        page = answer.read().decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    fail_unless(len(assets) == 3 and all(a.startswith("/docs/assets/") for a in assets), f"/docs loads {assets}")
    sizes = []
    for asset in assets:
        with urllib.request.urlopen(base + asset, timeout=5) as answer:
            sizes.append(f"{asset.split('?')[0].rsplit('/', 1)[-1]} {len(answer.read()) // 1024} kB")
    report.step("docs", f"GET /docs -> its assets from this server: {', '.join(sizes)}")


def _cmd(run: Localised) -> str:
    return "lccm " + shlex.join(run.argv[1:])


def _cmd_any(run: Localised) -> str:
    return shlex.join([Path(run.argv[0]).name, *run.argv[1:]])


def _epoch(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (venv, logs) for inspection")
    args = parser.parse_args()
    report = Report()
    tmp = Path(tempfile.mkdtemp(prefix="lccm-wheel-"))
    processes = Processes(tmp)
    compose, image = load(), read_image()
    # The run's .env: the secrets compose requires of the lccm services (deploy/.env.example).
    dotenv = {
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "LCCM_MQTT_PASSWORD": secrets.token_hex(16),
        "LCCM_MQTT_ADMIN_PASSWORD": secrets.token_hex(16),
        "LCCM_DEVICES_DIR": str(tmp / "devices"),  # the devices tool's bind mount: the registry CSV, the secrets
        "LCCM_MQTT_CERTS_DIR": str(tmp / "certs"),  # the broker's TLS certificate and key
    }
    try:
        core_services(compose)  # fail before the slow part
        venv = build_and_install(tmp, report)
        prove_installed_copy(venv, tmp, report)
        machine = Machine(tmp, venv, dotenv, f"lccm_wheel_{secrets.token_hex(4)}")
        broker = start_broker(compose, machine, processes, report)
        with fresh_database(machine, dotenv["POSTGRES_PASSWORD"], report):
            run_services(compose, image, machine, processes, report)
        code, took = processes.stop(broker, _seconds(compose["services"][BROKER].get("stop_grace_period", "10s")))
        report.step("stop", f"{BROKER}: SIGTERM -> {clean_exit(broker, code)} in {took:.1f} s")
        report.step("ok", "the wheel runs as compose runs it")
    except (CheckFailed, subprocess.SubprocessError) as e:
        print(f"FAILED: {e}", flush=True)
        for p in processes.all:
            print(f"--- {p.service} ({p.log}):\n{p.tail()}", flush=True)
        return 1
    finally:
        processes.kill_all()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
