"""Who may call what: every operation of the API (method + path template) and its policy, in one table.

api/auth/guard.py enforces it for every route, as an app-level dependency that looks up the matched route here, so a
route cannot forget it; ``create_app`` refuses to start when a route has no entry (``check_complete``), and
tests/test_policy_matrix.py calls every operation of the OpenAPI document as anonymous, as each role and as an
admin of another organisation against it. docs/security.md prints the table (``markdown_table``; a test keeps the
two in sync). The reasons for each choice are in docs/security.md.

Every role is scoped to its organisation; an ``admin`` may do everything within it, so it is in every set. The
``/organisations/{code}/...`` routes answer 404 for another organisation's code (as if it did not exist).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from lccm.api.principal import ALL_ROLES, Role


class Access(StrEnum):
    PUBLIC = "public"  # anyone: probes, the login, the documentation
    METRICS = "metrics"  # anyone who reaches it, or with Settings.metrics_token only a scraper sending it
    PUBLIC_AQI = "public_aqi"  # anyone when Settings.public_aqi is on, else the roles
    ROLES = "roles"  # an authenticated caller with one of the roles
    PAGE = "page"  # a web page for the roles; without a session the browser is redirected to /login (303), not 401


@dataclass(frozen=True, slots=True)
class Policy:
    access: Access
    roles: frozenset[Role] = frozenset()

    def is_public(self, public_aqi: bool) -> bool:
        return self.access in (Access.PUBLIC, Access.METRICS) or (self.access is Access.PUBLIC_AQI and public_aqi)

    def allows(self, roles: Iterable[Role]) -> bool:
        return bool(self.roles & frozenset(roles))

    def describe(self) -> str:
        if self.access is Access.PUBLIC:
            return "public"
        if self.access is Access.METRICS:
            return "public, or Bearer LCCM_METRICS_TOKEN when set"
        names = "all roles" if self.roles == ALL_ROLES else ", ".join(r.value for r in Role if r in self.roles)
        if self.access is Access.PAGE:
            other = "" if self.roles == ALL_ROLES else "; another role: a 403 page"
            return f"{names} (web page; anonymous: 303 to /login{other})"
        return f"{names}; public when LCCM_PUBLIC_AQI" if self.access is Access.PUBLIC_AQI else names


def roles(*granted: Role) -> Policy:
    """The roles given, and admin (everything in their organisation)."""
    return Policy(Access.ROLES, frozenset({*granted, Role.ADMIN}))


V, FM, ENV, CO, ADMIN = Role.VIEWER, Role.FACILITY_MANAGER, Role.ENVIRONMENT_OFFICER, Role.CARBON_OFFICER, Role.ADMIN
PUBLIC = Policy(Access.PUBLIC)
EVERYONE = roles(*Role)  # any authenticated caller of the organisation
READ = roles(V, ENV, CO)  # the organisation's data, not site-limited: not for facility managers
READ_ENERGY = roles(V, FM, ENV, CO)  # site data (energy, devices, readings): facility managers too, for their sites
AIR = roles(ENV)  # air quality and alerts: changes
CARBON = roles(CO)  # inventories, activity, mappings, targets, M&V, temperatures: changes
ADMIN_ONLY = roles()
PAGE = Policy(Access.PAGE, EVERYONE.roles)  # the web pages (api/web/): any role; each shows only the caller's scope
PAGE_READ_ENERGY = Policy(Access.PAGE, READ_ENERGY.roles)  # pages of site data (alerts ...): as their JSON routes
PAGE_READ = Policy(Access.PAGE, READ.roles)  # pages of the organisation's data (alert rules ...)

POLICIES: dict[tuple[str, str], Policy] = {
    # operations: probes and scrapes
    ("GET", "/health"): PUBLIC,
    ("GET", "/health/live"): PUBLIC,
    ("GET", "/health/ready"): PUBLIC,
    ("GET", "/metrics"): Policy(Access.METRICS),
    ("GET", "/dead-letters"): ADMIN_ONLY,  # raw payloads of every device
    ("GET", "/dead-letters/summary"): ADMIN_ONLY,
    ("GET", "/conflicts"): READ_ENERGY,
    ("GET", "/late-data"): READ_ENERGY,
    # documentation
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/docs/assets/{name}"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    # identity
    ("POST", "/auth/login"): PUBLIC,
    ("POST", "/auth/logout"): EVERYONE,
    ("GET", "/auth/me"): EVERYONE,
    ("GET", "/users"): ADMIN_ONLY,
    ("POST", "/users"): ADMIN_ONLY,
    ("PATCH", "/users/{username}"): ADMIN_ONLY,
    ("GET", "/api-keys"): ADMIN_ONLY,
    ("POST", "/api-keys"): ADMIN_ONLY,
    ("DELETE", "/api-keys/{key_id}"): ADMIN_ONLY,
    ("GET", "/audit"): ADMIN_ONLY,
    # registry and readings
    ("GET", "/sites"): READ_ENERGY,
    ("GET", "/sites/{site_code}"): READ_ENERGY,
    ("GET", "/devices"): READ_ENERGY,
    ("GET", "/devices/{device_id}"): READ_ENERGY,
    ("POST", "/devices/import"): ADMIN_ONLY,
    ("GET", "/sites/{site_code}/service"): READ_ENERGY,
    ("PATCH", "/sites/{site_code}/service"): ADMIN_ONLY,  # the asset base: when a site entered and left service
    ("GET", "/devices/{device_id}/service"): READ_ENERGY,
    ("PATCH", "/devices/{device_id}/service"): ADMIN_ONLY,
    ("GET", "/devices/{device_id}/latest"): READ_ENERGY,
    ("GET", "/latest"): READ_ENERGY,
    ("GET", "/devices/{device_id}/readings"): READ_ENERGY,
    # energy
    ("GET", "/sites/{site_code}/live"): READ_ENERGY,
    ("GET", "/energy"): READ_ENERGY,
    ("GET", "/emission-factors"): READ_ENERGY,
    ("GET", "/completeness"): READ_ENERGY,
    ("GET", "/rollups"): READ_ENERGY,
    ("GET", "/streetlights"): READ_ENERGY,
    ("GET", "/sites/{code}/mv/savings"): READ_ENERGY,
    ("POST", "/sites/{code}/mv/fit"): CARBON,
    # air quality
    ("GET", "/aqi/current"): Policy(Access.PUBLIC_AQI, READ.roles),
    ("GET", "/aqi/history"): READ,
    ("GET", "/aqi/stations.geojson"): Policy(Access.PUBLIC_AQI, READ.roles),
    # alerts
    ("GET", "/alerts"): READ_ENERGY,
    ("GET", "/alerts/{alert_id}"): READ_ENERGY,
    ("POST", "/alerts/{alert_id}/ack"): AIR,
    ("POST", "/alerts/{alert_id}/close"): AIR,
    ("GET", "/alert-rules"): READ,
    ("GET", "/alert-rules/{key}"): READ,
    ("PUT", "/alert-rules/{key}"): AIR,
    ("DELETE", "/alert-rules/{key}"): AIR,
    # the live feed: any role; each event kind only to the roles of the route that gives its figures (api/live.py)
    ("GET", "/live/events"): EVERYONE,
    # organisations, inventories, targets, reports
    ("GET", "/organisations"): EVERYONE,
    ("PUT", "/organisations/{code}"): ADMIN_ONLY,
    ("GET", "/organisations/{code}/years"): READ,
    ("GET", "/organisations/{code}/imports"): READ,
    ("GET", "/organisations/{code}/inventory"): READ,
    ("POST", "/organisations/{code}/inventory/import"): CARBON,
    ("POST", "/organisations/{code}/activity"): CARBON,
    ("POST", "/organisations/{code}/activity/import"): CARBON,
    ("GET", "/organisations/{code}/mappings"): READ,
    ("PUT", "/organisations/{code}/mappings"): CARBON,
    ("GET", "/organisations/{code}/comparison"): READ,
    ("GET", "/organisations/{code}/projection"): READ,
    ("GET", "/organisations/{code}/targets"): READ,
    ("PUT", "/organisations/{code}/targets"): CARBON,
    ("GET", "/organisations/{code}/targets/status"): READ,
    ("GET", "/organisations/{code}/kpis"): READ,
    ("POST", "/organisations/{code}/temperatures/import"): CARBON,
    ("GET", "/organisations/{code}/reports/cfo"): READ,
    ("GET", "/organisations/{code}/reports/gpc"): READ,
    # web pages (api/web/), not in the OpenAPI document
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("POST", "/logout"): PUBLIC,  # the route itself ends only a session whose CSRF token the form sends
    ("GET", "/web/assets/{name:path}"): PUBLIC,  # the pages' style sheet, scripts and vendored libraries
    ("GET", "/"): PAGE,
    ("GET", "/overview/table"): PAGE,  # the overview's table alone, fetched by the page as the live feed says
    ("GET", "/overview.csv"): PAGE,
    ("GET", "/app/alerts"): PAGE_READ_ENERGY,  # as GET /alerts
    ("GET", "/app/alerts/active.csv"): PAGE_READ_ENERGY,
    ("GET", "/app/alerts/history.csv"): PAGE_READ_ENERGY,
    ("POST", "/app/alerts/{alert_id}/ack"): AIR,  # as POST /alerts/{alert_id}/ack
    ("POST", "/app/alerts/{alert_id}/close"): AIR,
    ("GET", "/app/rules"): PAGE_READ,  # as GET /alert-rules
    ("GET", "/app/rules.csv"): PAGE_READ,
    ("POST", "/app/rules/{key}"): AIR,  # as PUT /alert-rules/{key}
    ("POST", "/app/rules/{key}/delete"): AIR,  # as DELETE /alert-rules/{key}
    ("GET", "/app/sites/{site_code}"): PAGE_READ_ENERGY,
    ("GET", "/app/sites/{site_code}/energy.csv"): PAGE_READ_ENERGY,
    ("GET", "/app/sites/{site_code}/meters.csv"): PAGE_READ_ENERGY,
    ("GET", "/app/streetlights"): PAGE_READ_ENERGY,
    ("GET", "/app/streetlights.csv"): PAGE_READ_ENERGY,
    ("GET", "/app/carbon"): PAGE_READ,  # GET /organisations/{code}/comparison
    ("GET", "/app/carbon.csv"): PAGE_READ,
    ("GET", "/app/targets"): PAGE_READ,  # GET .../targets, .../targets/status, .../kpis
    ("GET", "/app/targets.csv"): PAGE_READ,
    ("GET", "/app/kpis.csv"): PAGE_READ,
    ("POST", "/app/targets"): CARBON,  # as PUT /organisations/{code}/targets (htmx sends the CSRF token)
    ("POST", "/app/targets/delete"): CARBON,
    # the air-quality pages: the readers of GET /aqi/current and /aqi/history (a login always: no public pages)
    ("GET", "/app/aq"): PAGE_READ,
    ("GET", "/app/aq.csv"): PAGE_READ,
    ("GET", "/app/aq/{device_id}"): PAGE_READ,
    ("GET", "/app/aq/{device_id}/hours.csv"): PAGE_READ,
    ("GET", "/app/imports"): PAGE_READ,  # the import history (GET /organisations/{code}/imports); forms for CARBON
    ("GET", "/app/imports.csv"): PAGE_READ,
    ("GET", "/app/imports/templates/{name}"): PAGE,  # the blank templates the product ships
    ("POST", "/app/imports/inventory"): CARBON,  # as POST /organisations/{code}/inventory/import
    ("POST", "/app/imports/inventory/check"): CARBON,  # the inventory upload's dry run: nothing stored
    ("POST", "/app/imports/activity"): CARBON,  # as POST /organisations/{code}/activity/import
    ("GET", "/app/reports"): PAGE_READ,  # as GET /organisations/{code}/reports/cfo|gpc
    ("GET", "/app/reports/summary.csv"): PAGE_READ,
}

ORGANISATION_PREFIX = "/organisations/{code}"  # {code} is an organisation code: the caller's own, or 404


def policy_for(method: str, path: str) -> Policy | None:
    return POLICIES.get((method, path))


def operations(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path template) the app answers (HEAD goes with GET)."""
    found: list[tuple[str, str]] = []
    for route in iter_route_contexts(app.routes):  # routers included (FastAPI keeps them as branches) flattened
        found += [(m, str(route.path)) for m in sorted(route.methods or ()) if m != "HEAD"]
    return found


class PolicyMissing(RuntimeError):
    pass


def check_complete(app: FastAPI) -> None:
    """Refuse an app with a route the table does not cover, or a table entry no route answers (a renamed path)."""
    present = set(operations(app))
    missing = sorted(present - POLICIES.keys())
    stale = sorted(POLICIES.keys() - present)
    if missing or stale:
        raise PolicyMissing(
            "api/policy.py must give every route a policy: "
            + "; ".join([*(f"no policy for {m} {p}" for m, p in missing), *(f"no route {m} {p}" for m, p in stale)])
        )


def markdown_table() -> str:
    """The table for docs/security.md."""
    lines = ["| Method | Path | Who |", "|---|---|---|"]
    for (method, path), policy in sorted(POLICIES.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines.append(f"| {method} | `{path}` | {policy.describe()} |")
    return "\n".join(lines) + "\n"
