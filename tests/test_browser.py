"""The web pages in a real browser (Debian's chromium, driven by Playwright; tests/_browser.py): logging in through
the form for every role, the overview's figures against the API's /sites/{code}/live, the language switch kept
across pages, logging out, the redirect of an anonymous visitor; the scripts load without an error; axe-core finds
nothing serious on the main pages at desktop and phone width; and a screenshot of each main page for people to look
at (.lccm/artifacts/screenshots/, or LCCM_SCREENSHOT_DIR)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING

import httpx
import pytest

from lccm.api.principal import Role
from lccm.api.web.i18n import MESSAGES, Lang
from lccm.api.web.pages import REFRESH_S
from tests._auth import bearer
from tests._browser import (
    AXE,
    PASSWORD,
    REQUIRE_ENV,
    BrowserSite,
    allow_console_error,
    assert_accessible,
    chromium_path,
    log_in,
    screenshot,
    sign_in,
    username,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page


def _overview(page: Page) -> dict[str, dict[str, str]]:
    """The overview table as the browser shows it: site code -> column -> the cell's visible text."""
    rows: dict[str, dict[str, str]] = page.eval_on_selector_all(
        "#overview tbody tr",
        """rows => Object.fromEntries(rows.map(r => [r.dataset.site, Object.fromEntries(
            Array.from(r.querySelectorAll('td[data-col]'), c => [c.dataset.col, c.innerText.trim()]))]))""",
    )
    return rows


def _kw(text: str) -> str:
    return text.split()[0]


@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
def test_every_role_logs_in_through_the_form_and_lands_on_the_overview(
    page: Page, served_city: BrowserSite, role: Role
) -> None:
    log_in(page, role)
    assert page.locator("h1").inner_text() == MESSAGES["overview_title"]["th"]
    assert f"Test {role.value}" in page.locator("header").inner_text()
    table = _overview(page)
    if role is Role.FACILITY_MANAGER:
        assert sorted(table) == sorted(served_city.facility_sites)  # only the sites given to them
    else:
        assert set(served_city.live_sites) <= set(table) and len(table) > len(served_city.live_sites)


def test_the_overview_shows_the_apis_live_figures(page: Page, served_city: BrowserSite) -> None:
    sign_in(page, Role.VIEWER)
    page.goto("/?lang=en")
    table = _overview(page)
    assert list(table)[: len(served_city.live_sites)] == [
        served_city.live_sites[i] for i in (3, 1, 0, 2, 4)
    ]  # highest live power first
    with httpx.Client(base_url=served_city.base_url, headers=bearer(served_city.viewer_key)) as api:
        for code, cells in table.items():
            live = api.get(f"/sites/{code}/live").json()
            if live["power_w"] is None:
                assert cells["power_kw"] == MESSAGES["no_power"]["en"], code
            else:
                assert cells["power_kw"] == f"{live['power_w'] / 1000:,.2f}", code
            assert cells["energy_today_kwh"] == f"{live['energy_today_kwh']:,.2f}", code
            assert cells["kgco2e_today"] == f"{live['kgco2e_today']:,.2f}", code
    assert table[served_city.live_sites[3]]["power_kw"] == "95.00"  # independent of the API: the reading as written


def test_logging_in_works_from_the_keyboard_alone(page: Page) -> None:
    page.goto("/login")
    page.keyboard.press("Tab")  # the header's links come first: tab until the user name field has the focus
    for _ in range(10):
        if page.evaluate("document.activeElement.name") == "username":
            break
        page.keyboard.press("Tab")
    page.keyboard.type(username(Role.VIEWER))
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("h1").inner_text() == MESSAGES["overview_title"]["th"]


def test_a_wrong_password_says_so_accessibly(page: Page) -> None:
    allow_console_error(page, "401 (Unauthorized)")  # the form comes back with 401: the login failed
    page.goto("/login?lang=en")
    page.get_by_label(MESSAGES["username"]["en"]).fill(username(Role.VIEWER))
    page.get_by_label(MESSAGES["password"]["en"]).fill("not the password at all")
    page.get_by_role("button", name=MESSAGES["login_button"]["en"]).click()
    assert page.get_by_role("alert").inner_text() == MESSAGES["login_failed"]["en"]
    screenshot(page, "login-failed-desktop-en")
    assert_accessible(page)


@pytest.mark.parametrize("lang", ["th", "en"])
def test_a_page_outside_the_role_says_so_in_the_users_language(page: Page, lang: Lang) -> None:
    allow_console_error(page, "403 (Forbidden)")  # the refusal is a page of its own, answered 403
    sign_in(page, Role.FACILITY_MANAGER)
    answer = page.goto(f"/app/rules?lang={lang}")
    assert answer is not None and answer.status == 403
    assert page.locator("h1").inner_text() == f"{MESSAGES['error_403_title'][lang]} (403)"
    assert page.locator("header").get_by_text(MESSAGES["logout"][lang]).is_visible()  # still logged in, can leave
    screenshot(page, f"forbidden-desktop-{lang}")
    assert_accessible(page)


def test_the_language_switch_is_kept_across_pages_until_switched_back(page: Page) -> None:
    sign_in(page, Role.VIEWER)
    page.goto("/")
    assert page.locator("html").get_attribute("lang") == "th"
    page.get_by_role("link", name=MESSAGES["other_lang"]["th"]).click()
    page.wait_for_url(re.compile(r"lang=en"))
    assert page.locator("h1").inner_text() == MESSAGES["overview_title"]["en"]
    page.goto("/")  # a new page without ?lang: the choice is remembered
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("h1").inner_text() == MESSAGES["overview_title"]["en"]
    page.goto("/login")  # and on another page
    assert page.locator("h1").inner_text() == MESSAGES["login_title"]["en"]
    page.goto("/")
    page.get_by_role("link", name=MESSAGES["other_lang"]["en"]).click()
    page.wait_for_url(re.compile(r"lang=th"))
    page.goto("/")
    assert page.locator("h1").inner_text() == MESSAGES["overview_title"]["th"]


def test_on_a_phone_the_navigation_is_a_menu_that_opens(phone: Page) -> None:
    sign_in(phone, Role.VIEWER)
    phone.goto("/app/aq?lang=en")
    header = phone.locator("header")
    # the name, then the menu button and the language: two short lines (the links took five, 238 px)
    assert header.bounding_box()["height"] < 120  # type: ignore[index]
    link = phone.get_by_role("link", name=MESSAGES["nav_carbon"]["en"])
    assert not link.is_visible() and not phone.get_by_role("button", name=MESSAGES["logout"]["en"]).is_visible()
    menu = phone.locator("header summary")
    assert menu.inner_text().endswith(MESSAGES["nav_menu"]["en"])
    menu.click()
    assert link.is_visible() and phone.get_by_role("button", name=MESSAGES["logout"]["en"]).is_visible()
    assert phone.get_by_role("link", name=MESSAGES["nav_aq"]["en"]).get_attribute("aria-current") == "page"
    screenshot(phone, "menu-open-phone-en")
    assert_accessible(phone)  # the opened menu too
    with phone.expect_navigation():
        link.click()
    assert phone.locator("h1").inner_text() == MESSAGES["carbon_title"]["en"]


def test_on_a_wide_screen_the_navigation_shows_every_link_without_a_menu_button(page: Page) -> None:
    sign_in(page, Role.VIEWER)
    page.goto("/app/aq")
    assert not page.locator("header summary").is_visible()
    for key in ("nav_overview", "nav_aq", "nav_carbon", "nav_reports"):
        assert page.get_by_role("link", name=MESSAGES[key]["th"]).is_visible(), key
    assert page.get_by_role("button", name=MESSAGES["logout"]["th"]).is_visible()
    # and chromium's own accessibility tree (what a screen reader gets) has them, though the <details> is closed
    tree = page.context.new_cdp_session(page).send("Accessibility.getFullAXTree")["nodes"]
    exposed = {
        n.get("name", {}).get("value") for n in tree if n.get("role", {}).get("value") == "link" and not n["ignored"]
    }
    assert {MESSAGES[k]["th"] for k in ("nav_overview", "nav_carbon", "nav_reports")} <= exposed


def test_logging_out_ends_the_session(page: Page) -> None:
    log_in(page, Role.VIEWER)
    page.get_by_role("button", name=MESSAGES["logout"]["th"]).click()
    page.wait_for_url("**/login")
    page.goto("/")
    assert page.url.endswith("/login")
    assert page.locator("input[name=password]").is_visible()


def test_an_anonymous_visit_lands_on_the_login_form(page: Page) -> None:
    page.goto("/")
    assert page.url.endswith("/login")
    assert page.locator("h1").inner_text() == MESSAGES["login_title"]["th"]


def test_the_pages_scripts_load(page: Page) -> None:
    """htmx and ECharts are defined (served from the package); the page fixture fails on any console error."""
    sign_in(page, Role.VIEWER)
    page.goto("/")
    page.wait_for_load_state("load")
    assert page.evaluate("[typeof htmx, typeof echarts]") == ["object", "object"]


def test_the_overview_reloads_its_figures_in_place(page: Page, served_city: BrowserSite) -> None:
    page.clock.install()  # the page's timers run when the test says so: no wait for the periodic refresh
    sign_in(page, Role.VIEWER)
    page.goto("/")
    before = _overview(page)
    page.evaluate("document.querySelector('#overview').dataset.old = '1'")
    with page.expect_response(lambda r: "/overview/table" in r.url) as polled:
        page.clock.run_for((REFRESH_S + 1) * 1000)
    assert polled.value.status == 200
    # htmx sends the session's CSRF token (base.html's hx-headers), which the guard wants on every write
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert csrf and polled.value.request.headers.get("x-csrf-token") == csrf
    page.wait_for_function("document.querySelector('#overview') && !document.querySelector('#overview').dataset.old")
    assert page.locator("#overview").count() == 1 and page.locator("h1").count() == 1  # swapped, not nested
    assert list(_overview(page)) == list(before)


def test_a_missing_chromium_skips_here_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no chromium"):
        chromium_path()
    for name, value in (("CI", "true"), (REQUIRE_ENV, "1")):
        with monkeypatch.context() as env:
            env.setenv(name, value)
            with pytest.raises(pytest.fail.Exception, match="must run"):
                chromium_path()


def test_the_vendored_axe_core_is_the_recorded_file() -> None:
    record = json.loads(AXE.with_name("VENDORED.json").read_text())
    assert record["package"] == "axe-core" and record["license"] == "MPL-2.0"
    for name, digest in record["files"].items():
        assert hashlib.sha256(AXE.with_name(name).read_bytes()).hexdigest() == digest, name


# The main pages: a screenshot for people, axe-core's rules for the machine, at desktop width in Thai and on a phone
# in English. The other two combinations found nothing the language or the width alone does not show (the texts'
# lengths differ by language, the layout by width), at twice the cost. A new page adds a line here.
# ``{site}`` and ``{station}``: the seeded building and air-quality station, each with a day of readings.
PAGES = [
    ("login", "/login", None),
    ("overview", "/", Role.VIEWER),
    ("site", "/app/sites/{site}", Role.FACILITY_MANAGER),
    ("streetlights", "/app/streetlights", Role.VIEWER),
    ("alerts", "/app/alerts", Role.ENVIRONMENT_OFFICER),
    ("rules", "/app/rules", Role.ENVIRONMENT_OFFICER),
    ("aq", "/app/aq", Role.ENVIRONMENT_OFFICER),
    ("aq-station", "/app/aq/{station}", Role.ENVIRONMENT_OFFICER),
    ("carbon", "/app/carbon", Role.CARBON_OFFICER),
    ("targets", "/app/targets", Role.CARBON_OFFICER),
    ("imports", "/app/imports", Role.CARBON_OFFICER),
    ("reports", "/app/reports", Role.CARBON_OFFICER),
]


@pytest.mark.parametrize(("name", "path", "role"), PAGES, ids=[p[0] for p in PAGES])
def test_main_pages_are_accessible_at_desktop_width_in_thai(
    page: Page, served_city: BrowserSite, name: str, path: str, role: Role | None
) -> None:
    _check_page(
        page, name, path.format(site=served_city.seeded.site, station=served_city.seeded.station), role, "th", "desktop"
    )


@pytest.mark.parametrize(("name", "path", "role"), PAGES, ids=[p[0] for p in PAGES])
def test_main_pages_are_accessible_on_a_phone_in_english(
    phone: Page, served_city: BrowserSite, name: str, path: str, role: Role | None
) -> None:
    _check_page(
        phone, name, path.format(site=served_city.seeded.site, station=served_city.seeded.station), role, "en", "phone"
    )
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width}px wide on a 390px screen: it scrolls sideways"


def _check_page(page: Page, name: str, path: str, role: Role | None, lang: str, device: str) -> None:
    if role is not None:
        sign_in(page, role)
    page.goto(f"{path}?lang={lang}")
    page.wait_for_load_state("load")
    assert page.locator("html").get_attribute("lang") == lang
    # charts.js has drawn every chart the server described (ECharts puts a canvas in its element)
    page.wait_for_function(
        "[...document.querySelectorAll('.chart[data-chart]')].every(el => el.querySelector('canvas'))"
    )
    screenshot(page, f"{name}-{device}-{lang}")
    assert_accessible(page)
