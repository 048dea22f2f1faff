"""The web application: server-rendered pages (Jinja2 + htmx) for the people who use the product, served by the
API process. ``ROUTERS`` is every page module's router, in the order app.py includes them."""

from __future__ import annotations

from fastapi import APIRouter

from lccm.api.web import alerts, aq, carbon, facility, imports, pages, reports

# One router per area's module (api/web/*.py): add yours here, and its routes to api/policy.py.
ROUTERS: tuple[APIRouter, ...] = (
    pages.router,
    alerts.router,
    facility.router,
    carbon.router,
    aq.router,
    imports.router,
    reports.router,
)
