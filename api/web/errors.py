"""Errors on the web pages as pages: a logged-in person who lacks the role, or asks for an object outside their
organisation's scope, reads why in Thai or English instead of the API's JSON. Everything else (and every JSON
route) keeps the API's handler (api/errors.py)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from lccm.api.errors import ApiError, Forbidden, NotFound, PageForbidden, _api_error
from lccm.api.policy import Access, policy_for
from lccm.api.principal import Role
from lccm.api.web.render import render

PAGE_PREFIX = "/app/"


def is_page(request: Request) -> bool:
    """A web page or one of its writes: a route of Access.PAGE, or under /app/."""
    path = str(getattr(request.scope.get("route"), "path", ""))
    policy = policy_for("GET" if request.method == "HEAD" else request.method, path)
    return path.startswith(PAGE_PREFIX) or (policy is not None and policy.access is Access.PAGE)


def page_or_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if not isinstance(exc, Forbidden | NotFound) or not is_page(request):
        return _api_error(request, exc)
    principal = getattr(request.state, "principal", None)
    user = {} if principal is None else {"user": principal.display_name}
    # a page the caller's roles do not open names the roles that do
    roles = [r.value for r in Role if r in exc.roles] if isinstance(exc, PageForbidden) else []
    return render(
        request, "error.html", status_code=exc.status_code, status=exc.status_code, detail=exc.message, roles=roles,
        **user,
    )  # fmt: skip


def install(app: FastAPI) -> None:
    """Replaces the ApiError handler that api/errors.py installed (call after ``install_handlers``)."""
    app.add_exception_handler(ApiError, page_or_api_error)
