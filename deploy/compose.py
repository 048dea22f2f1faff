"""docker-compose.yml as data, read the way Docker Compose reads it: merge keys (``<<: *anchor``), ``environment``
as a map or a list, and variable interpolation. Used by tests/test_compose.py (the files agree with the code) and
deploy/check_wheel.py (the built wheel runs as compose runs it)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"

INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


class MissingVariable(ValueError):
    """A ``${VAR:?message}`` whose variable is unset or empty (compose refuses to start)."""


def interpolate(text: str, env: dict[str, str] | None = None, *, strict: bool = False) -> str:
    """Compose's variable substitution: ``$$`` -> ``$``, ``${V:-default}``, ``${V:?error}``, ``${V}``.

    Unset required variables (``:?``) raise MissingVariable with ``strict``; otherwise they become
    ``required-<name>``, so the files can be checked without real secrets.
    """
    env = env or {}

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        value = env.get(name, "")
        if op in (":-", "-"):
            return value or arg
        if op in (":?", "?"):
            if not value and strict:
                raise MissingVariable(f"{name}: {arg}")
            return value or f"required-{name.lower()}"
        return value

    return INTERPOLATION.sub(sub, text)


def load(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise ValueError(f"{path}: no services")
    return data


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's ``environment`` (map or ``KEY=value`` list) as written, before interpolation."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def command_argv(command: str | list[Any]) -> list[str]:
    """A service's ``command`` in exec (list) form; a shell string is refused (the image's ENTRYPOINT is lccm)."""
    if not isinstance(command, list):
        raise ValueError(f"use the exec (list) form for commands, not a shell string: {command!r}")
    return [str(part) for part in command]


def lccm_services(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that run the project's image (built from the Dockerfile, ENTRYPOINT ["lccm"])."""
    return {name: svc for name, svc in data["services"].items() if "build" in svc}
