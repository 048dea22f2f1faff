"""What the web page tests share: the app served in process on a test database, a client that logs in through the
login form as a browser does, and the headers htmx sends with a write."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from psycopg_pool import ConnectionPool

from lccm.api.app import create_app
from lccm.api.auth import sessions
from lccm.settings import Settings
from tests._auth import TestClient

PASSWORD = "correct horse battery staple 9"


@contextmanager
def served(url: str) -> Iterator[TestClient]:
    """The API process's app on ``url``, redirects not followed (a test sees the 303 after a login or a post)."""
    settings = Settings(database_url=url, session_cookie_secure=False)  # the TestClient speaks http://
    with (
        ConnectionPool(url, min_size=1, max_size=4, open=True) as pool,
        TestClient(create_app(settings, pool), follow_redirects=False) as client,
    ):
        yield client


def log_in(client: TestClient, username: str, password: str = PASSWORD) -> TestClient:
    """The client as a browser that has just logged in through the form (earlier tests' cookies gone)."""
    client.cookies.clear()
    answer = client.post("/login", data={"username": username, "password": password})
    assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text
    return client


def csrf_header(client: TestClient) -> dict[str, str]:
    """The session's CSRF token as a plain form post must send it (a missing cookie sends an empty token)."""
    return {"X-CSRF-Token": client.cookies.get(sessions.CSRF_COOKIE) or ""}


def htmx_write(client: TestClient) -> dict[str, str]:
    """The headers htmx sends with every write (base.html's hx-headers)."""
    return {**csrf_header(client), "HX-Request": "true"}
