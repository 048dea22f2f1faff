"""Grafana dashboards as code.

``build_all(thai)`` returns the JSON models (``thai``: the Thai AQI scale, :class:`ThaiScale`, which lccm/ builds
from the engine's table and its colour setting); ``write_all(directory, thai)`` writes them as files for Grafana's file
provisioning (deploy/grafana/provisioning/dashboards/lccm.yaml reads the committed copies in
deploy/grafana/dashboards; ``lccm dashboards write deploy/grafana/dashboards`` rebuilds them); ``push()`` sends them
through the Grafana HTTP API instead (a Grafana without this provisioning: Grafana refuses API saves of
file-provisioned dashboards). All SQL is in
dashboards/sql.py; every panel of the four data dashboards reads the provisioned PostgreSQL datasource uid
``lccm-pg``; the operations dashboard reads Prometheus (uid ``lccm-prom``), which scrapes the processes' /metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lccm.dashboards import air_quality, emissions, energy, operations, streetlights
from lccm.dashboards._common import DATASOURCE_UID
from lccm.dashboards.air_quality import ThaiScale

__all__ = ["DATASOURCE_UID", "ThaiScale", "build_all", "dump", "push", "write_all"]


def build_all(thai: ThaiScale) -> dict[str, dict[str, Any]]:
    """Every dashboard's JSON model, keyed by its uid (also its file name). ``thai``: the Thai AQI categories and
    colours (lccm/ builds it from the engine's table and LCCM_AQI_THAI_COLOURS_HEX)."""
    models = [energy.build(), emissions.build(), air_quality.build(thai), streetlights.build(), operations.build()]
    return {d["uid"]: d for d in models}


def dump(model: dict[str, Any]) -> str:
    """The file text of one model: stable key order and a final newline, so a rebuild without change is no diff."""
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_all(directory: Path, thai: ThaiScale) -> list[Path]:
    """Write ``<uid>.json`` per dashboard into ``directory`` and remove stale ``lccm-*.json`` files there."""
    directory.mkdir(parents=True, exist_ok=True)
    models = build_all(thai)
    written = []
    for uid, model in models.items():
        path = directory / f"{uid}.json"
        path.write_text(dump(model), encoding="utf-8")
        written.append(path)
    for old in directory.glob("lccm-*.json"):
        if old.stem not in models:
            old.unlink()
    return written


def push(
    url: str, token: str, dashboards: dict[str, dict[str, Any]], *, folder_uid: str | None = None
) -> list[dict[str, Any]]:
    """Create or overwrite each dashboard through Grafana's HTTP API (``POST /api/dashboards/db``).

    ``url`` is Grafana's base URL, ``token`` a service-account token with dashboard write rights. Returns
    Grafana's answers (uid, url, version per dashboard). Raises grafana_client's error on the first refusal.
    """
    from grafana_client import GrafanaApi  # imported here: only pushing needs the HTTP client

    api = GrafanaApi.from_url(url, credential=token)
    answers = []
    for model in dashboards.values():
        body: dict[str, Any] = {"dashboard": {**model, "id": None}, "overwrite": True, "message": "lccm dashboards"}
        if folder_uid is not None:
            body["folderUid"] = folder_uid
        answers.append(api.dashboard.update_dashboard(body))
    return answers
