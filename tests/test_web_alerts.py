"""The alert pages (issue 13, item 2) on a real database through the app: active alerts and their history against
GET /alerts, acknowledge and close as the logged-in environment officer (the row re-rendered, the audit entry, the
API showing who), a viewer without buttons and refused, the CSRF token, another organisation's alert, the rule
list against GET /alert-rules and its edit form (errors next to their field), the CSVs, both languages."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import psycopg
import pytest

from lccm.api.auth import accounts
from lccm.api.principal import Role
from lccm.api.web.i18n import MESSAGES
from lccm.engine.alert_kinds import ClearReason, Severity
from lccm.engine.alerts import AlertRule
from lccm.imports.registry import parse_registry_csv
from lccm.store import alerts as st
from lccm.store import inventory as inv
from lccm.store.devices import import_registry
from tests._auth import TEST_ACTOR, TestClient, api_key, bearer
from tests._db import REGISTRY_HEADER_EN, device_pk, fresh_database, registry_csv, us
from tests._web import PASSWORD, log_in, served

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
REGISTRY = [
    "MM1,Sop Pat,สบป้าด,station,Lampang,18.273,99.721,,MM1-S,aq_station,Sop Pat SO2,300,",
    "CITY,City Hall,ศาลากลาง,station,Lampang,18.2885,99.4912,,CITY-S,aq_station,City Hall station,300,",
    "NANS,Nan Station,,station,Nan,18.78,100.77,,NAN-S,aq_station,Nan station,300,",
]
SO2: dict[str, Any] = {
    "key": "so2_mae_moh",
    "name": {"en": "SO2 above 0.15 ppm for 6 minutes", "th": "SO2 เกิน 0.15 ppm นาน 6 นาที"},
    "metric": "so2_ppb",
    "raise": {"above": 150, "for": "6min"},
    "clear": {"below": 50},
    "dedup_key": "{site}/{signal}",
    "severity": "critical",
    "scope": {"device_kinds": ["aq_station"]},
}
OFFLINE: dict[str, Any] = {
    "key": "aq_offline",
    "name": {"en": "station silent", "th": "สถานีไม่ส่งข้อมูล"},
    "kind": "offline",
    "after_cadences": 6,
    "dedup_key": "{device}/offline",
    "severity": "warning",
    "scope": {"device_kinds": ["aq_station"]},
}
USERS = {  # username: (organisation, role)
    "env": ("lampang", Role.ENVIRONMENT_OFFICER),
    "viewer": ("lampang", Role.VIEWER),
    "fm": ("lampang", Role.FACILITY_MANAGER),
    "nanenv": ("nan", Role.ENVIRONMENT_OFFICER),
}


@dataclass(frozen=True)
class Web:
    client: TestClient
    url: str
    ids: dict[str, int]  # name -> alert id


def _alert(conn: psycopg.Connection, rule: str, device: str, hours_ago: float, value: float, **kw: Any) -> int:
    at = NOW - timedelta(hours=hours_ago)
    signal = "device" if rule == "aq_offline" else "so2_ppb"
    new = st.NewAlert(
        rule, f"{device}/{signal}", device_pk(conn, device), signal, Severity.CRITICAL, us(at - timedelta(minutes=10)),
        us(at), value, None if rule == "aq_offline" else 150.0, kw.get("late", False),
    )  # fmt: skip
    cleared = kw.get("cleared")
    clear = None if cleared is None else st.Clear(us(at + cleared), 40.0, ClearReason.CONDITION, value + 20, False)
    return st.insert_alert(conn, new, clear)


def _seed(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        inv.put_organisation(conn, inv.OrganisationIn("nan", "Nan Town Municipality", "Nan", "town", city_key="nan"))
        import_registry(conn, parse_registry_csv(registry_csv(REGISTRY_HEADER_EN, REGISTRY)))
        for d in (SO2, OFFLINE):
            st.put_rule(conn, d["key"], AlertRule.model_validate(d).definition(), "file")
        ids = {
            "open": _alert(conn, "so2_mae_moh", "MM1-S", 1, 180.0),
            "older_open": _alert(conn, "aq_offline", "CITY-S", 3, 0.0),
            "cleared": _alert(conn, "so2_mae_moh", "CITY-S", 30, 170.0, cleared=timedelta(hours=1)),
            "late": _alert(conn, "so2_mae_moh", "MM1-S", 50, 165.0, cleared=timedelta(hours=2), late=True),
            "old": _alert(conn, "so2_mae_moh", "MM1-S", 24 * 40, 155.0, cleared=timedelta(hours=1)),
            "nan": _alert(conn, "so2_mae_moh", "NAN-S", 2, 200.0),
        }
        change = accounts.Change(TEST_ACTOR, "test")
        for name, (org, role) in USERS.items():
            accounts.add_user(conn, change, username=name, display_name=f"{name} person", password=PASSWORD,
                              organisation=org, roles=[role], sites=None)  # fmt: skip
    return ids


@pytest.fixture(scope="module")
def web() -> Iterator[Web]:
    with fresh_database() as url:
        ids = _seed(url)
        with served(url) as client:
            yield Web(client, url, ids)


def _log_in(web: Web, username: str) -> tuple[TestClient, dict[str, str]]:
    """The client as a browser just logged in, and the headers htmx sends with a write (the CSRF token)."""
    browser = log_in(web.client, username)
    token = re.search(r'"X-CSRF-Token": "([^"]+)"', browser.get("/app/alerts").text)
    assert token
    return browser, {"X-CSRF-Token": token.group(1), "HX-Request": "true"}


def _rows(html: str, table: str) -> dict[int, dict[str, str]]:
    """A table's rows: alert id -> column -> the cell's text (tags dropped, spaces collapsed)."""
    body = re.search(rf'<table id="{table}".*?</table>', html, flags=re.DOTALL)
    if body is None:
        return {}
    rows: dict[int, dict[str, str]] = {}
    for ident, cells in re.findall(r'<tr[^>]*data-alert="(\d+)"[^>]*>(.*?)</tr>', body.group(0), flags=re.DOTALL):
        found = re.findall(r'<td data-col="(\w+)"[^>]*>(.*?)</td>', cells, flags=re.DOTALL)
        rows[int(ident)] = {c: unescape(" ".join(re.sub(r"<[^>]+>", " ", text).split())) for c, text in found}
    return rows


def _api(web: Web, path: str, role: Role = Role.VIEWER, org: str = "lampang") -> Any:
    answer = web.client.get(path, headers=bearer(api_key(web.url, role, org=org)))
    assert answer.status_code == 200, answer.text
    return answer.json()


def _csv(answer: Any) -> list[dict[str, str]]:
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(answer.content.decode("utf-8-sig"))))


def test_anonymous_is_sent_to_the_login_form(web: Web) -> None:
    web.client.cookies.clear()
    for page in ("/app/alerts", "/app/rules", "/app/alerts/active.csv", "/app/rules.csv"):
        answer = web.client.get(page)
        assert answer.status_code == 303 and answer.headers["location"] == "/login"


def test_the_active_and_history_tables_equal_the_apis_alerts(web: Web) -> None:
    browser, _ = _log_in(web, "viewer")
    html = browser.get("/app/alerts?lang=en").text
    active, history = _rows(html, "active"), _rows(html, "history")
    api_active = _api(web, "/alerts?state=open&state=acknowledged")["items"]
    assert list(active) == [a["id"] for a in api_active] == [web.ids["open"], web.ids["older_open"]]
    for a in api_active:
        row = active[a["id"]]
        assert a["device_id"] in row["device"] and a["site_code"] in row["site"]
        assert row["value"].startswith(f"{a['raised_value']:,.2f}")
        assert row["threshold"] == ("–" if a["threshold"] is None else f"{a['threshold']:,.2f}")
        assert MESSAGES[f"alerts_state_{a['state']}"]["en"] in row["state"]
    # The default period is the last 30 days: the 40-day-old alert is not in it.
    since = (NOW - timedelta(days=31)).isoformat()
    api_history = _api(web, f"/alerts?state=cleared&state=closed&since={since}".replace("+", "%2B"))["items"]
    assert list(history) == [a["id"] for a in api_history] == [web.ids["cleared"], web.ids["late"]]
    assert MESSAGES["alerts_late"]["en"] in history[web.ids["late"]]["state"]
    assert MESSAGES["alerts_late"]["en"] not in history[web.ids["cleared"]]["state"]
    assert history[web.ids["cleared"]]["peak"] == "190.00"
    assert web.ids["nan"] not in active  # another organisation's


def test_the_history_period_filter_and_paging(web: Web) -> None:
    browser, _ = _log_in(web, "viewer")
    since = (NOW - timedelta(days=60)).date().isoformat()
    history = _rows(browser.get(f"/app/alerts?from={since}").text, "history")
    assert list(history) == [web.ids["cleared"], web.ids["late"], web.ids["old"]]
    until = (NOW - timedelta(days=20)).date().isoformat()
    assert list(_rows(browser.get(f"/app/alerts?from={since}&to={until}").text, "history")) == [web.ids["old"]]
    bad = browser.get("/app/alerts?from=yesterday")
    assert bad.status_code == 200 and MESSAGES["alerts_bad_date"]["th"] in bad.text
    # Paging: one alert a page, through the API's cursor.
    from lccm.api.web import alerts as pages

    limit, pages.PAGE_SIZE = pages.PAGE_SIZE, 1
    try:
        first = browser.get(f"/app/alerts?from={since}").text
        assert list(_rows(first, "history")) == [web.ids["cleared"]]
        link = re.search(r'href="\?(from=[^"]+&amp;hcursor=[^"]+)"', first)
        assert link
        second = browser.get("/app/alerts?" + link.group(1).replace("&amp;", "&")).text
        assert list(_rows(second, "history")) == [web.ids["late"]]
    finally:
        pages.PAGE_SIZE = limit


def test_an_environment_officer_acknowledges_and_closes_in_place(web: Web) -> None:
    browser, htmx = _log_in(web, "env")
    page = browser.get("/app/alerts").text
    alert_id = web.ids["older_open"]
    assert f'hx-post="/app/alerts/{alert_id}/ack"' in page
    answer = browser.post(f"/app/alerts/{alert_id}/ack", headers={**htmx, "HX-Prompt": "on my way"})
    assert answer.status_code == 200
    row = _rows(f'<table id="active">{answer.text}</table>', "active")[alert_id]
    assert MESSAGES["alerts_state_acknowledged"]["th"] in row["state"]
    assert "env person <user:env>" in row["acknowledged"] and "on my way" in row["acknowledged"]
    assert MESSAGES["alerts_done_ack"]["th"] in answer.text
    assert f"/app/alerts/{alert_id}/ack" not in answer.text  # no second acknowledge
    got = _api(web, f"/alerts/{alert_id}")
    assert got["state"] == "acknowledged" and got["acknowledged_by"] == "env person <user:env>"
    assert got["ack_note"] == "on my way"
    with psycopg.connect(web.url) as conn:
        audited = conn.execute(
            "SELECT actor_subject, action, before ->> 'state', after ->> 'state' FROM audit_log WHERE target = %s",
            (f"alert:{alert_id}",),
        ).fetchall()
    assert audited == [("user:env", "POST /app/alerts/{alert_id}/ack", "open", "acknowledged")]
    # Acknowledging again: the row as it is, and why nothing was done.
    again = browser.post(f"/app/alerts/{alert_id}/ack", headers=htmx)
    assert again.status_code == 200 and MESSAGES["alerts_conflict"]["th"] in again.text
    closed = browser.post(f"/app/alerts/{alert_id}/close", headers=htmx)
    assert closed.status_code == 200 and MESSAGES["alerts_state_closed"]["th"] in closed.text
    assert _api(web, f"/alerts/{alert_id}")["closed_by"] == "env person <user:env>"


def test_a_viewer_gets_no_buttons_and_a_403(web: Web) -> None:
    browser, htmx = _log_in(web, "viewer")
    page = browser.get("/app/alerts")
    assert "hx-post=" not in page.text and MESSAGES["alerts_read_only"]["th"] in page.text
    refused = browser.post(f"/app/alerts/{web.ids['open']}/ack", headers=htmx)
    assert refused.status_code == 403 and MESSAGES["error_403_title"]["th"] in refused.text
    assert _api(web, f"/alerts/{web.ids['open']}")["state"] == "open"


def test_a_write_without_the_csrf_token_is_refused(web: Web) -> None:
    browser, _ = _log_in(web, "env")
    refused = browser.post(f"/app/alerts/{web.ids['open']}/ack", headers={"HX-Request": "true"})
    assert refused.status_code == 403
    assert _api(web, f"/alerts/{web.ids['open']}")["state"] == "open"


def test_another_organisations_alert_is_not_found_and_cannot_be_acknowledged(web: Web) -> None:
    browser, htmx = _log_in(web, "env")
    answer = browser.post(f"/app/alerts/{web.ids['nan']}/ack", headers=htmx)
    assert answer.status_code == 404 and MESSAGES["error_404_title"]["th"] in answer.text
    assert _api(web, f"/alerts/{web.ids['nan']}", org="nan")["state"] == "open"
    nan_browser, _ = _log_in(web, "nanenv")
    assert list(_rows(nan_browser.get("/app/alerts").text, "active")) == [web.ids["nan"]]


def test_the_csv_downloads_equal_the_tables(web: Web) -> None:
    browser, _ = _log_in(web, "viewer")
    html = browser.get("/app/alerts").text
    active = _csv(browser.get("/app/alerts/active.csv"))
    assert [int(r["id"]) for r in active] == list(_rows(html, "active"))
    history = _csv(browser.get("/app/alerts/history.csv"))
    assert [int(r["id"]) for r in history] == list(_rows(html, "history"))
    by_id = {int(r["id"]): r for r in history}
    assert float(by_id[web.ids["cleared"]]["raised_value"]) == 170.0
    assert by_id[web.ids["late"]]["late"] == "True" and " late" in by_id[web.ids["late"]]["events"]


def test_the_pages_speak_thai_by_default_and_english_on_request(web: Web) -> None:
    browser, _ = _log_in(web, "viewer")
    thai = browser.get("/app/alerts?lang=th").text
    assert MESSAGES["alerts_history"]["th"] in thai and "SO2 เกิน 0.15 ppm" in thai
    english = browser.get("/app/alerts?lang=en").text
    assert MESSAGES["alerts_history"]["en"] in english and MESSAGES["alerts_history"]["th"] not in english
    rules = browser.get("/app/rules?lang=en").text
    assert MESSAGES["rules_origin_file"]["en"] in rules
    assert MESSAGES["rules_title"]["th"] in browser.get("/app/rules?lang=th").text


def _rule_rows(html: str) -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}
    for key, cells in re.findall(r'<tr data-rule="([^"]+)">(.*?)</tr>', html, flags=re.DOTALL):
        found = re.findall(r'<td data-col="(\w+)"[^>]*>(.*?)</td>', cells, flags=re.DOTALL)
        rows[key] = {c: unescape(" ".join(re.sub(r"<[^>]+>", " ", text).split())) for c, text in found}
    return rows


def test_the_rule_list_equals_the_api_and_a_viewer_cannot_edit(web: Web) -> None:
    browser, htmx = _log_in(web, "viewer")
    html = browser.get("/app/rules?lang=en").text
    rows = _rule_rows(html)
    api = _api(web, "/alert-rules")
    assert sorted(rows) == sorted(r["key"] for r in api)
    for r in api:
        assert rows[r["key"]]["version"] == str(r["version"])
        assert rows[r["key"]]["name"] == r["definition"]["name"]["en"]
    assert "hx-post=" not in html and MESSAGES["rules_read_only"]["en"] in html
    assert browser.post("/app/rules/so2_mae_moh", headers=htmx, data={"name_th": "x"}).status_code == 403
    csv_rows = _csv(browser.get("/app/rules.csv"))
    assert sorted(r["key"] for r in csv_rows) == sorted(rows)


def test_a_facility_manager_reads_a_403_page_for_the_rules(web: Web) -> None:
    browser, _ = _log_in(web, "fm")
    answer = browser.get("/app/rules?lang=en")
    assert answer.status_code == 403 and MESSAGES["error_403_text"]["en"] in unescape(answer.text)
    assert "text/html" in answer.headers["content-type"]


def _form(**changes: str) -> dict[str, str]:
    fields = {
        "name_th": "SO2 สูง", "name_en": "SO2 high", "severity": "critical", "enabled": "on", "raise_op": "above",
        "raise_value": "120", "raise_for": "6min", "clear_op": "below", "clear_value": "50", "clear_for": "",
        "holdoff": "1800",
    }  # fmt: skip
    return {**fields, **changes}


def test_editing_a_file_rule_makes_the_organisations_rule_and_errors_sit_by_their_field(web: Web) -> None:
    browser, htmx = _log_in(web, "env")
    page = browser.get("/app/rules").text
    assert 'hx-post="/app/rules/so2_mae_moh"' in page
    bad = browser.post("/app/rules/so2_mae_moh?lang=en", headers=htmx, data=_form(raise_value="lots", name_en=""))
    assert bad.status_code == 200 and MESSAGES["rules_invalid_form"]["en"] in bad.text
    assert 'id="rule-so2_mae_moh-raise_value-err"' in bad.text and 'id="rule-so2_mae_moh-name_en-err"' in bad.text
    assert 'value="lots"' in bad.text  # what was typed stays in the field
    file_rule = _api(web, "/alert-rules/so2_mae_moh")
    assert file_rule["origin"] == "file"  # nothing written
    saved = browser.post("/app/rules/so2_mae_moh?lang=th", headers=htmx, data=_form())
    assert saved.status_code == 200 and MESSAGES["rules_saved"]["th"] in saved.text
    rule = _api(web, "/alert-rules/so2_mae_moh")
    assert rule["origin"] == "api" and rule["definition"]["raise"] == {"op": "above", "value": 120.0, "for": 360.0}
    assert rule["definition"]["name"] == {"th": "SO2 สูง", "en": "SO2 high"}
    for kept in ("scope", "metric", "dedup_key"):  # what the form does not show stays as it was
        assert rule["definition"][kept] == file_rule["definition"][kept]
    rows = _rule_rows(browser.get("/app/rules?lang=en").text)
    assert MESSAGES["rules_replaces_file"]["en"] in rows["so2_mae_moh"]["origin"]
    with psycopg.connect(web.url) as conn:
        actions = [r[0] for r in conn.execute(
            "SELECT action FROM audit_log WHERE target = 'alert_rule:so2_mae_moh' ORDER BY id").fetchall()]  # fmt: skip
    assert actions == ["POST /app/rules/{key}"]
    deleted = browser.post("/app/rules/so2_mae_moh/delete?lang=th", headers=htmx)
    assert deleted.status_code == 200 and MESSAGES["rules_deleted"]["th"] in deleted.text
    assert _api(web, "/alert-rules/so2_mae_moh")["origin"] == "file"  # the file's rule applies again
    # A file rule cannot be deleted (the page offers no button; a hand-made request is told why).
    refused = browser.post("/app/rules/aq_offline/delete", headers=htmx)
    assert refused.status_code == 200 and "cannot be deleted" in refused.text
