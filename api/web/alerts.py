"""The environment division's alert pages: active alerts with acknowledge and close, the alert history with a
period filter, and the alert rules with an edit form (issue 13, item 2).

The figures are the JSON API's: alerts come from store.alerts ``list_alerts`` (what GET /alerts serves), rules from
``rules_in_force`` (GET /alert-rules), and every change goes through the API's own functions (api/routes/alerts.py
``acknowledge_alert``, ``close_alert``, ``save_rule``, ``remove_rule``): the same validation, the logged-in user as
the actor, audited in the request's one transaction. Buttons and forms are shown only to the roles the write
routes' policy allows (api/policy.py AIR); the write routes refuse the others anyway (403).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from lccm.api import cursors
from lccm.api.audit import Audit
from lccm.api.deps import Conn
from lccm.api.errors import NotFound
from lccm.api.policy import AIR
from lccm.api.principal import CurrentPrincipal, Principal, Scope
from lccm.api.routes.alerts import acknowledge_alert, close_alert, remove_rule, save_rule
from lccm.api.web.render import Form, csv_response, lang, render
from lccm.engine.alert_kinds import AlertState
from lccm.engine.alerts import COMPARISONS, AlertRulesInvalid
from lccm.engine.timebase import BANGKOK
from lccm.store import alerts as st
from lccm.store import queries

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
CSV_MAX_ROWS = 10_000
HISTORY_DAYS = 30  # the history's default period: the last 30 Bangkok days
ACTIVE = (AlertState.OPEN, AlertState.ACKNOWLEDGED)
HISTORY = (AlertState.CLEARED, AlertState.CLOSED)
_CURSOR = "alerts"  # the API's cursor tag (api/routes/alerts.py): a page's cursor works in both
ALERT_CSV_COLUMNS = (
    "id", "rule_key", "rule_name", "device_id", "site_code", "signal", "severity", "state", "started_at",
    "raised_at", "raised_value", "threshold", "peak_value", "cleared_at", "cleared_value", "clear_reason",
    "acknowledged_by", "acknowledged_at", "closed_by", "closed_at", "late", "flaps",
)  # fmt: skip


class AlertPageNotFound(NotFound):
    code = "alert_not_found"


class RulePageNotFound(NotFound):
    code = "alert_rule_not_found"


# --- alerts ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Period:
    """The history's period: Bangkok dates, ``until`` exclusive (None: up to now)."""

    since: date
    until: date | None
    invalid: bool = False

    @property
    def since_at(self) -> datetime:
        return datetime.combine(self.since, datetime.min.time(), tzinfo=BANGKOK)

    @property
    def until_at(self) -> datetime | None:
        return None if self.until is None else datetime.combine(self.until, datetime.min.time(), tzinfo=BANGKOK)


def period_of(since_text: str | None, until_text: str | None, today: date) -> Period:
    default = Period(today - timedelta(days=HISTORY_DAYS), None)
    try:
        since = date.fromisoformat(since_text) if since_text else default.since
        until = date.fromisoformat(until_text) if until_text else None
    except ValueError:
        return Period(default.since, None, invalid=True)
    if until is not None and until <= since:
        return Period(default.since, None, invalid=True)
    return Period(since, until)


@dataclass(frozen=True, slots=True)
class AlertList:
    items: list[st.Alert]
    next_cursor: str | None


def alert_list(
    conn: Conn, scope: Scope, states: Sequence[AlertState], *, since: datetime | None = None,
    until: datetime | None = None, cursor: str | None = None, limit: int = PAGE_SIZE,
) -> AlertList:  # fmt: skip
    """A page of alerts, newest raised first, as GET /alerts lists them (same store query and cursor); ``until``
    (exclusive) bounds the first page as a cursor would."""
    before = None if until is None else (until, 0)  # (raised_at, id) < (until, 0): raised before ``until``
    if cursor:
        us, ident = cursors.decode(_CURSOR, cursor, (int, int))
        before = (cursors.from_us(int(us)), int(ident))
    rows = st.list_alerts(conn, states=states, since=since, before=before, limit=limit + 1, scope=scope)
    page, more = rows[:limit], len(rows) > limit
    last = page[-1] if page else None
    next_cursor = cursors.encode(_CURSOR, cursors.to_us(last.raised_at), last.id) if more and last else None
    return AlertList(page, next_cursor)


def all_alerts(conn: Conn, scope: Scope, states: Sequence[AlertState], **bounds: Any) -> Iterator[st.Alert]:
    """Every alert of the states (up to CSV_MAX_ROWS), page by page."""
    cursor, count = None, 0
    while count < CSV_MAX_ROWS:
        found = alert_list(conn, scope, states, cursor=cursor, limit=1000, **bounds)
        yield from found.items
        count += len(found.items)
        if found.next_cursor is None:
            return
        cursor = found.next_cursor


def site_names(conn: Conn, scope: Scope, chosen: str) -> dict[str, str]:
    return {
        s.site_code: ((s.name_th or s.name) if chosen == "th" else s.name)
        for s in queries.list_sites(conn, scope=scope)
    }


def can_act(principal: Principal) -> bool:
    """The roles the write routes' policy allows (the guard refuses the others; the page hides their buttons)."""
    return AIR.allows(principal.roles)


def _today() -> date:
    return datetime.now(BANGKOK).date()


@router.get("/app/alerts")
def alerts_page(
    request: Request, conn: Conn, principal: CurrentPrincipal, acursor: str | None = None,
    hcursor: str | None = None,
) -> HTMLResponse:  # fmt: skip
    params = request.query_params
    period = period_of(params.get("from"), params.get("to"), _today())
    active = alert_list(conn, principal.scope, ACTIVE, cursor=acursor, limit=PAGE_SIZE)
    history = alert_list(
        conn, principal.scope, HISTORY, since=period.since_at, until=period.until_at, cursor=hcursor, limit=PAGE_SIZE
    )
    events = {a.id: st.alert_events(conn, a.id) for a in history.items}
    return render(
        request, "alerts.html", active=active, history=history, events=events, period=period,
        sites=site_names(conn, principal.scope, lang(request)), can_act=can_act(principal),
        user=principal.display_name, apaged=bool(acursor), hpaged=bool(hcursor),
    )  # fmt: skip


def _csv_row(a: st.Alert, chosen: str) -> tuple[Any, ...]:
    name = (a.rule_name_th or a.rule_name_en) if chosen == "th" else a.rule_name_en
    return (
        a.id, a.rule_key, name, a.device_id, a.site_code, a.signal, str(a.severity), str(a.state), a.started_at,
        a.raised_at, a.raised_value, a.threshold, a.peak_value, a.cleared_at, a.cleared_value,
        None if a.clear_reason is None else str(a.clear_reason), a.acknowledged_by, a.acknowledged_at, a.closed_by,
        a.closed_at, a.late, a.flaps,
    )  # fmt: skip


@router.get("/app/alerts/active.csv")
def active_csv(request: Request, conn: Conn, principal: CurrentPrincipal) -> Response:
    chosen = lang(request)
    rows = (_csv_row(a, chosen) for a in all_alerts(conn, principal.scope, ACTIVE))
    return csv_response("alerts-active.csv", ALERT_CSV_COLUMNS, rows)


@router.get("/app/alerts/history.csv")
def history_csv(request: Request, conn: Conn, principal: CurrentPrincipal) -> Response:
    chosen = lang(request)
    period = period_of(request.query_params.get("from"), request.query_params.get("to"), _today())
    found = all_alerts(conn, principal.scope, HISTORY, since=period.since_at, until=period.until_at)
    rows = []
    for a in found:  # the events in one cell, "kind at [late]" oldest first: one row per alert, like the table
        events = "; ".join(
            f"{e.kind} {e.at.isoformat()}{' late' if e.late else ''}" for e in st.alert_events(conn, a.id)
        )
        rows.append((*_csv_row(a, chosen), events))
    return csv_response("alerts-history.csv", (*ALERT_CSV_COLUMNS, "events"), rows)


def _action_row(request: Request, conn: Conn, principal: Principal, alert_id: int, done: str) -> HTMLResponse:
    """The alert's row after an action, re-rendered in place (htmx swaps it)."""
    alert = st.get_alert(conn, alert_id, scope=principal.scope)
    return render(
        request, "_alert_row.html", a=alert, sites=site_names(conn, principal.scope, lang(request)),
        can_act=can_act(principal), message=done,
    )  # fmt: skip


def _note(request: Request) -> str | None:
    """htmx's hx-prompt answer (the HX-Prompt header), the action's note; empty is none."""
    return (request.headers.get("hx-prompt") or "").strip()[:2000] or None


def _act(request: Request, conn: Conn, principal: Principal, alert_id: int, action: Any, done: str) -> HTMLResponse:
    try:
        action(conn, principal, alert_id, _note(request))
    except st.AlertNotFound as exc:  # another organisation's alert is unknown here, as in the API
        raise AlertPageNotFound(str(exc)) from exc
    except st.AlertStateConflict:  # someone else acted first: show the row as it is now, and say so
        return _action_row(request, conn, principal, alert_id, "alerts_conflict")
    return _action_row(request, conn, principal, alert_id, done)


@router.post("/app/alerts/{alert_id}/ack")
def acknowledge_page(
    alert_id: int, request: Request, conn: Conn, principal: CurrentPrincipal, audit: Audit
) -> HTMLResponse:
    def action(c: Conn, p: Principal, i: int, note: str | None) -> None:
        acknowledge_alert(c, p, audit, i, note)

    return _act(request, conn, principal, alert_id, action, "alerts_done_ack")


@router.post("/app/alerts/{alert_id}/close")
def close_page(alert_id: int, request: Request, conn: Conn, principal: CurrentPrincipal, audit: Audit) -> HTMLResponse:
    def action(c: Conn, p: Principal, i: int, note: str | None) -> None:
        close_alert(c, p, audit, i, note)

    return _act(request, conn, principal, alert_id, action, "alerts_done_close")


# --- rules ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleView:
    row: st.RuleRow
    replaces_file: bool  # an organisation's rule with the key of a file rule

    @property
    def key(self) -> str:
        return self.row.key


def rule_views(conn: Conn, organisation_id: int) -> list[RuleView]:
    """The rules in force for the organisation (GET /alert-rules), each knowing whether it replaces a file rule."""
    file_keys = {r.key for r in st.list_rules(conn) if r.organisation_id is None}
    rows = st.rules_in_force(conn, organisation_id)
    return [RuleView(r, r.origin == "api" and r.key in file_keys) for r in rows]


def _rule_view(conn: Conn, organisation_id: int, key: str) -> RuleView | None:
    return next((v for v in rule_views(conn, organisation_id) if v.key == key), None)


@router.get("/app/rules")
def rules_page(request: Request, conn: Conn, principal: CurrentPrincipal) -> HTMLResponse:
    views = rule_views(conn, principal.scope.organisation_id)
    return render(
        request, "rules.html", rules=views, can_edit=can_act(principal), comparisons=COMPARISONS,
        user=principal.display_name,
    )  # fmt: skip


RULE_CSV_COLUMNS = (
    "key", "origin", "replaces_file_rule", "version", "updated_at", "name_th", "name_en", "signal", "raise_op",
    "raise_value", "raise_for_s", "clear_op", "clear_value", "clear_for_s", "severity", "enabled", "definition",
)  # fmt: skip


def _rule_csv_row(v: RuleView) -> tuple[Any, ...]:
    d = v.row.definition
    up, down = d.get("raise") or {}, d.get("clear") or {}
    signal = d.get("metric") or d.get("index") or d.get("kind")
    return (
        v.key, v.row.origin, v.replaces_file, v.row.version, v.row.updated_at, d["name"]["th"], d["name"]["en"],
        signal, up.get("op"), up.get("value"), up.get("for"), down.get("op"), down.get("value"), down.get("for"),
        d["severity"], d.get("enabled", True), json.dumps(d, ensure_ascii=False, sort_keys=True),
    )  # fmt: skip


@router.get("/app/rules.csv")
def rules_csv(conn: Conn, principal: CurrentPrincipal) -> Response:
    rows = (_rule_csv_row(v) for v in rule_views(conn, principal.scope.organisation_id))
    return csv_response("alert-rules.csv", RULE_CSV_COLUMNS, rows)


# Form field -> the rule's field (dotted, as AlertRulesInvalid names it): errors go next to their input.
FORM_FIELDS = {
    "name_th": "name.th", "name_en": "name.en", "severity": "severity", "enabled": "enabled",
    "raise_op": "raise.op", "raise_value": "raise.value", "raise_for": "raise.for",
    "clear_op": "clear.op", "clear_value": "clear.value", "clear_for": "clear.for", "holdoff": "holdoff",
}  # fmt: skip
_FIELD_OF = {rule_field: form_field for form_field, rule_field in FORM_FIELDS.items()}


def _duration(text: str) -> str | float:
    """A duration as typed: a plain number is seconds (the rule model takes a number), else '6min', '24h' ..."""
    try:
        return float(text)
    except ValueError:
        return text


def _condition(form: dict[str, str], prefix: str) -> dict[str, Any]:
    condition: dict[str, Any] = {"op": form.get(f"{prefix}_op", ""), "value": form.get(f"{prefix}_value", "")}
    if form.get(f"{prefix}_for", "").strip():
        condition["for"] = _duration(form[f"{prefix}_for"].strip())
    return condition


def rule_body(current: dict[str, Any], form: dict[str, str]) -> dict[str, Any]:
    """The PUT /alert-rules/{key} body the form stands for: the rule in force, with the form's fields changed
    (the fields it does not show, such as the metric and the scope, stay as they are)."""
    body = {k: v for k, v in current.items() if k != "key"}
    body["name"] = {"th": form.get("name_th", "").strip(), "en": form.get("name_en", "").strip()}
    body["severity"] = form.get("severity", "")
    body["enabled"] = form.get("enabled") == "on"
    body["holdoff"] = _duration(form.get("holdoff", "").strip())
    if "raise" in current:  # threshold rules; other kinds (offline, flatline ...) have no raise condition
        body["raise"] = _condition(form, "raise")
        if form.get("clear_value", "").strip():
            body["clear"] = _condition(form, "clear")
        else:
            body.pop("clear", None)
    return body


def form_errors(exc: AlertRulesInvalid) -> dict[str, str]:
    """Each problem under its form field (``_form`` for those of fields the form does not show)."""
    errors: dict[str, str] = {}
    for e in exc.errors:
        field = _FIELD_OF.get(e.field) or _FIELD_OF.get(e.field.partition(".")[0]) or "_form"
        if e.field in ("raise", "clear"):
            field = f"{e.field}_op"
        errors[field] = f"{errors[field]}; {e.message}" if field in errors else e.message
    return errors


def _rule_fragment(request: Request, conn: Conn, principal: Principal, key: str, **context: Any) -> HTMLResponse:
    """One rule's block after a save or delete, re-rendered in place. Answered 200 even with errors: htmx swaps
    only a success, and the errors are what the person must see."""
    view = _rule_view(conn, principal.scope.organisation_id, key)
    return render(
        request, "_rule.html", r=view, key=key, can_edit=can_act(principal),
        comparisons=COMPARISONS, **{"errors": {}, "form": None, "message": None, **context},
    )  # fmt: skip


@router.post("/app/rules/{key}")
def save_rule_page(
    key: str, request: Request, conn: Conn, principal: CurrentPrincipal, audit: Audit, form: Form
) -> HTMLResponse:
    view = _rule_view(conn, principal.scope.organisation_id, key)
    if view is None:
        raise RulePageNotFound(f"no alert rule with key {key!r}")
    try:
        save_rule(conn, principal, audit, key, rule_body(view.row.definition, form))
    except AlertRulesInvalid as exc:  # shown next to the fields; nothing was written (the audit entry neither)
        return _rule_fragment(request, conn, principal, key, errors=form_errors(exc), form=form)
    return _rule_fragment(request, conn, principal, key, message="rules_saved")


@router.post("/app/rules/{key}/delete")
def delete_rule_page(key: str, request: Request, conn: Conn, principal: CurrentPrincipal, audit: Audit) -> HTMLResponse:
    try:
        remove_rule(conn, principal, audit, key)
    except st.RuleNotFound as exc:
        raise RulePageNotFound(str(exc)) from exc
    except st.RuleReadOnly as exc:  # the page offers no delete for a file rule; a hand-made request learns why
        return _rule_fragment(request, conn, principal, key, errors={"_form": str(exc)})
    return _rule_fragment(request, conn, principal, key, message="rules_deleted")
