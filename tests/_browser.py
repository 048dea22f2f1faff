"""What the browser tests (tests/test_browser.py) stand on: a demo-like city in a fresh database, the real app served
by uvicorn on a free loopback port, Debian's chromium driven by Playwright, and helpers to log in, take screenshots
and run axe-core's accessibility rules.

Chromium is the system's (``apt-get install chromium``; `.ci/run` installs it): Playwright only drives it, it never
downloads a browser of its own. Without chromium the tests skip, except where ``LCCM_REQUIRE_BROWSER`` or ``CI`` is
set (`.ci/run`): there a missing browser fails them, so CI cannot pass without running them.

A new page's test needs a few lines (or one entry in test_browser.py's PAGES for the screenshots and axe)::

    def test_my_page(page: Page) -> None:
        sign_in(page, Role.VIEWER)
        page.goto("/app/mine")
        screenshot(page, "mine-desktop-th")
        assert_accessible(page)

The fixtures: ``served_city`` (session: the database, the server, the users), ``browser`` (module: one chromium),
``page`` (per test: a fresh context at desktop size, 1280x800, Thai by default) and ``phone`` (per test: 390x844,
a touch screen). Both page fixtures fail the test on any console error or uncaught exception in the page (the
browser logs every 4xx/5xx answer as one: ``allow_console_error(page, "401 (Unauthorized)")`` when it is expected).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import psycopg
import pytest
import uvicorn

from lccm.api.app import create_app
from lccm.api.auth import accounts
from lccm.api.principal import Role
from lccm.api.web.i18n import LANG_COOKIE
from lccm.settings import Settings
from lccm.simulators.city import Device, load_city
from tests._auth import TEST_ACTOR, api_key
from tests._db import device_pk, fresh_database, write_readings
from tests._seeded import Seeded, seed_city

if TYPE_CHECKING:
    from playwright._impl._api_structures import FloatRect, SetCookieParam
    from playwright.sync_api import Browser, ConsoleMessage, Page

REQUIRE_ENV = "LCCM_REQUIRE_BROWSER"  # set by .ci/run: a missing chromium is a failure, not a skip
SCREENSHOT_ENV = "LCCM_SCREENSHOT_DIR"
REPO = Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO / ".lccm" / "artifacts" / "screenshots"  # git-ignored with .lccm/
AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"  # deploy/vendor_npm.py
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking")
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
PASSWORD = "browser tests pass phrase 42"
POWER = 2
# Live power (W) written a minute before the session starts for the first buildings' main meters, so the overview
# ranks sites by real figures; the other sites have none (a gap, not zero).
LIVE_POWER_W = (18_500.0, 42_250.0, 7_125.5, 95_000.0, 3_300.0)
SHOT_MAX_PX = 4_000  # a screenshot's height at most (screenshot)
WAIT_MS = 20_000  # what one page or action may take at most (CI shares 2 cores with the whole suite)


def username(role: Role) -> str:
    return f"browser-{role.value.replace('_', '-')}"


@dataclass(frozen=True)
class BrowserSite:
    """The served city: where the app answers, its database, and what was seeded."""

    base_url: str
    database_url: str
    seeded: Seeded
    live_sites: tuple[str, ...]  # the sites given fresh live power, in the order of LIVE_POWER_W
    facility_sites: tuple[str, ...]  # the only sites the facility manager may see
    viewer_key: str  # an API key of the viewer role, for the API's own answers


def browser_required() -> bool:
    return any(os.environ.get(name, "").lower() not in ("", "0", "false", "no") for name in (REQUIRE_ENV, "CI"))


def chromium_path() -> str:
    """The system's chromium; skips the test where there is none, except in CI, where that is a failure."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "no chromium on PATH (apt-get install chromium; .ci/run installs it)"
        if browser_required():
            pytest.fail(f"{reason}, and {REQUIRE_ENV}/CI says the browser tests must run", pytrace=False)
        pytest.skip(reason)
    return found


def _seed(url: str, folder: Path) -> tuple[Seeded, tuple[str, ...], tuple[str, ...]]:
    seeded = seed_city(url, folder)
    meters = [d for d in load_city().devices if d.kind == "electricity_meter" and d.site.kind == "building"]
    by_site: dict[str, Device] = {}
    for d in meters:
        by_site.setdefault(d.site.code, d)  # each site's main meter; the first is seed_city's (a day of energy)
    firsts = list(by_site.values())[: len(LIVE_POWER_W)]
    now = datetime.now(UTC)
    with psycopg.connect(url) as conn:
        rows = [
            (device_pk(conn, d.device_id), POWER, now - timedelta(minutes=1), w, now)
            for d, w in zip(firsts, LIVE_POWER_W, strict=True)
        ]
        write_readings(conn, rows)
        conn.commit()
        facility_sites = (seeded.site, firsts[1].site.code)
        change = accounts.Change(TEST_ACTOR, "browser tests")
        for role in Role:
            sites = list(facility_sites) if role is Role.FACILITY_MANAGER else None
            accounts.add_user(conn, change, username=username(role), display_name=f"Test {role.value}",
                              password=PASSWORD, organisation="lampang", roles=[role], sites=sites)  # fmt: skip
            conn.commit()
    return seeded, tuple(d.site.code for d in firsts), facility_sites


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serving(database_url: str) -> Iterator[str]:
    """The real app (its own connection pool, as `lccm api` runs it) served by uvicorn in a thread; yields its URL."""
    settings = Settings(database_url=database_url, session_cookie_secure=False)  # plain http on the loopback
    config = uvicorn.Config(create_app(settings), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    sock = _free_socket()
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="browser-tests-uvicorn")
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        host, port = sock.getsockname()
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@pytest.fixture(scope="session")
def served_city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserSite]:
    chromium_path()  # no city to build where no browser can visit it
    _SIGNED_IN.clear()  # sessions of another served city mean nothing here
    with fresh_database() as url:
        seeded, live_sites, facility_sites = _seed(url, tmp_path_factory.mktemp("browser-city"))
        key = api_key(url, Role.VIEWER)
        with serving(url) as base_url:
            yield BrowserSite(base_url, url, seeded, live_sites, facility_sites, key)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One chromium per test module: Playwright's sync API keeps an event loop running in the main thread while it
    lives, and a session-long one made every later test's ``asyncio.run`` fail ("cannot be called from a running
    event loop")."""
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS), headless=True)
        yield launched
        launched.close()


@dataclass
class PageErrors:
    """Console errors and uncaught exceptions of a page: any of them fails its test."""

    found: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)  # texts of errors the test expects (allow_console_error)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not any(text in message.text for text in self.allowed):
            self.found.append(f"console: {message.text} ({message.location.get('url')})")

    def exception(self, error: Exception) -> None:
        self.found.append(f"uncaught: {error}")


_ERRORS: weakref.WeakKeyDictionary[Page, PageErrors] = weakref.WeakKeyDictionary()


def allow_console_error(page: Page, text: str) -> None:
    """Expect console errors containing ``text`` on this page: e.g. the browser logs every 4xx answer as an error,
    and a refused login is answered 401 on purpose."""
    _ERRORS[page].allowed.append(text)


def _page(browser: Browser, served_city: BrowserSite, **options: Any) -> Iterator[Page]:
    context = browser.new_context(base_url=served_city.base_url, locale="th-TH", timezone_id="Asia/Bangkok", **options)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    errors = _ERRORS[page] = PageErrors()
    page.on("console", errors.console)
    page.on("pageerror", errors.exception)
    try:
        yield page
    finally:
        context.close()
    assert not errors.found, "the page's JavaScript reported errors:\n" + "\n".join(errors.found)


@pytest.fixture
def page(browser: Browser, served_city: BrowserSite) -> Iterator[Page]:
    """A fresh browser context (no cookies) at desktop size."""
    yield from _page(browser, served_city, viewport=DESKTOP)


@pytest.fixture
def phone(browser: Browser, served_city: BrowserSite) -> Iterator[Page]:
    """A fresh browser context the size of a phone, with a touch screen."""
    yield from _page(browser, served_city, viewport=PHONE, is_mobile=True, has_touch=True)


def log_in(page: Page, role: Role, *, lang: str | None = None) -> None:
    """Log in through the form as the user of ``role``; the page is then on the overview."""
    page.goto("/login" + (f"?lang={lang}" if lang else ""))
    page.locator("input[name=username]").fill(username(role))
    page.locator("input[name=password]").fill(PASSWORD)
    with page.expect_navigation():
        page.locator("form.login button[type=submit]").click()
    assert page.url.endswith("/"), page.url


# Each role's session cookies, from its first sign_in of the test session: the later tests of that role put them in
# their fresh context instead of logging in again (a login hashes the password, slow on purpose). A test must not
# log out of such a session (log_in's sessions are its own).
_SIGNED_IN: dict[Role, list[SetCookieParam]] = {}


def sign_in(page: Page, role: Role) -> None:
    """A session for the user of ``role`` in the page's browser context, posted without the form and without loading
    the overview behind it: quicker, for tests about another page (the form itself is log_in's). The session is
    shared by the role's tests; the language cookie is not."""
    if role not in _SIGNED_IN:
        answer = page.request.post("/login", form={"username": username(role), "password": PASSWORD}, max_redirects=0)
        assert answer.status == 303, answer.status
        _SIGNED_IN[role] = [cast("SetCookieParam", c) for c in page.context.cookies() if c["name"] != LANG_COOKIE]
    else:
        page.context.add_cookies(_SIGNED_IN[role])


def screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot as ``<name>.png`` (e.g. ``overview-phone-en``) in the screenshots folder, cut at
    SHOT_MAX_PX: the site page on a phone is some 9,600 px long, slow to capture and to look at."""
    folder = Path(os.environ.get(SCREENSHOT_ENV) or SCREENSHOTS)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    height, width = page.evaluate("[document.documentElement.scrollHeight, document.documentElement.clientWidth]")
    clip: FloatRect | None = None if height <= SHOT_MAX_PX else {"x": 0, "y": 0, "width": width, "height": SHOT_MAX_PX}
    page.screenshot(path=str(path), full_page=True, clip=clip)
    return path


def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now, one line each (empty: none)."""
    if page.evaluate("typeof window.axe") == "undefined":
        page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    result: dict[str, Any] = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['impact']} {v['id']}: {v['help']} at {json.dumps([n['target'] for n in v['nodes']][:5])}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def assert_accessible(page: Page) -> None:
    found = serious_violations(page)
    assert not found, f"axe-core on {page.url}:\n" + "\n".join(found)
