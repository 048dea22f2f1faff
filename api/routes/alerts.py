"""Alerts and alert rules: the routes and their request and response models.

Alerts: list with filters, one with its history, acknowledge (open -> acknowledged: who, when, note) and close
(any state but closed). Clearing is automatic (the evaluator, when the rule's clear condition holds). Rules: the
same model as the rule file (engine/alerts.py AlertRule), validated by the same function. The file's rules apply to
every organisation and are read-only here; a rule written here is the caller's organisation's, and one with a file
rule's key replaces that rule for the organisation's devices until it is deleted (docs/security.md#organisation-
scoping). Every alert and rule route sees only the caller's organisation (and sites).

Errors are the stages' own (store.alerts.AlertNotFound, AlertStateConflict, RuleNotFound; engine.alerts
.AlertRulesInvalid), mapped to HTTP in api/errors.py. Event times (started_at, raised_at, cleared_at, an event's
``at`` for raised/cleared) are the readings' times; detected_at, acknowledged_at and closed_at are wall-clock times.
Every time is ISO 8601 UTC with a ``Z``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from lccm.api import cursors
from lccm.api.audit import Audit, Auditor
from lccm.api.deps import Conn, Cursor, _require_offset
from lccm.api.errors import SiteNotFound
from lccm.api.principal import CurrentPrincipal, Principal
from lccm.api.schemas import UtcTime
from lccm.engine.alert_kinds import AlertState, ClearReason, Severity, TransitionKind
from lccm.engine.alerts import AlertRulesInvalid, RuleError, check_rule
from lccm.store import alerts as st
from lccm.store import queries

router = APIRouter(tags=["alerts"])
_CURSOR = "alerts"


# --- request and response models ------------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # the store's dataclasses are handed over as they are


class AlertOut(_Out):
    id: int
    rule_key: str
    rule_name_en: str | None = Field(description="null when the rule has since been deleted")
    rule_name_th: str | None
    dedup_key: str
    device_id: str | None
    site_code: str | None
    signal: str = Field(description="metric key (pm25_ugm3 ...), index (aqi_th) or 'device' for offline")
    severity: Severity
    state: AlertState
    started_at: UtcTime = Field(description="event time the condition began")
    raised_at: UtcTime = Field(description="event time the raise condition (with its minimum duration) was met")
    raised_value: float | None
    threshold: float | None
    peak_value: float | None = Field(
        description="the most extreme value while raised, over its reopenings; kept current while the alert is active"
        " (a flatline's run length, an out-of-range reading's distance outside the range)"
    )
    cleared_at: UtcTime | None
    cleared_value: float | None
    clear_reason: ClearReason | None = Field(
        description="condition, schedule (its schedule ended), data_resumed (offline), revised (readings that"
        " arrived late show the raise condition did not hold), withdrawn or merged (closed by the evaluator: readings"
        " that arrived late show no such episode, or that it is one episode with an earlier alert)"
    )
    acknowledged_by: str | None
    acknowledged_at: UtcTime | None
    ack_note: str | None
    closed_by: str | None
    closed_at: UtcTime | None
    close_note: str | None
    late: bool = Field(
        description="raised from data that arrived after the lateness horizon (a buffered replay, readings behind"
        " their series' newest): recorded, not paged"
    )
    flaps: int = Field(description="times re-raised within the rule's hold-off after a clear (reopened)")
    detected_at: UtcTime = Field(description="wall-clock time the system raised it")


class AlertEventOut(_Out):
    id: int
    kind: TransitionKind
    at: UtcTime
    value: float | None
    device_id: str | None
    actor: str | None
    note: str | None
    late: bool
    page: bool = Field(description="handed to the notifier")
    notified_at: UtcTime | None
    recorded_at: UtcTime


class AlertDetailOut(AlertOut):
    events: list[AlertEventOut]


class AlertPage(_Out):
    items: list[AlertOut]
    next_cursor: str | None


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    note: str | None = Field(default=None, max_length=2000)
    # No `by`: who acknowledges or closes is the authenticated caller (its display name and subject), never a name
    # the client types. A body still carrying `by` is refused (422, extra="forbid"), so an old client learns it.


class AlertRuleOut(_Out):
    key: str
    origin: Literal["file", "api"] = Field(
        description="file: the shipped rule file's, for every organisation, read-only here; api: the caller's"
        " organisation's own (replacing the file rule of the same key, if any, for its devices)"
    )
    version: int
    updated_at: UtcTime
    definition: dict[str, Any] = Field(description="the rule as validated (durations in seconds)")


# --- alerts ---------------------------------------------------------------------------------------------------

Since = Annotated[
    datetime | None,
    Query(description="only alerts raised (event time) at or after this instant, ISO 8601 with offset"),
    AfterValidator(_require_offset),
]


@router.get("/alerts", response_model=AlertPage, responses={404: {"description": "unknown site"}})
def list_alerts(
    conn: Conn,
    principal: CurrentPrincipal,
    state: Annotated[list[AlertState] | None, Query(description="repeat for several: state=open&state=cleared")] = None,
    severity: Severity | None = None,
    site: Annotated[str | None, Query(description="site code")] = None,
    since: Since = None,
    rule: Annotated[str | None, Query(description="rule key")] = None,
    device: Annotated[str | None, Query(description="device id")] = None,
    late: Annotated[bool | None, Query(description="true: only late alerts; false: only on-time ones")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Cursor = None,
) -> AlertPage:
    """Alerts, newest raised first."""
    if site is not None and queries.get_site(conn, site, scope=principal.scope) is None:
        raise SiteNotFound(site)  # an empty page would hide a typo in the site code
    before = None
    if cursor:
        us, ident = cursors.decode(_CURSOR, cursor, (int, int))
        before = (cursors.from_us(int(us)), int(ident))
    rows = st.list_alerts(
        conn, states=state or (), severity=severity, site_code=site, rule_key=rule, device_id=device, late=late,
        since=since, before=before, limit=limit + 1, scope=principal.scope,
    )  # fmt: skip
    page, more = rows[:limit], len(rows) > limit
    last = page[-1] if page else None
    return AlertPage(
        items=[AlertOut.model_validate(a) for a in page],
        next_cursor=cursors.encode(_CURSOR, cursors.to_us(last.raised_at), last.id) if more and last else None,
    )


@router.get("/alerts/{alert_id}", response_model=AlertDetailOut, responses={404: {"description": "unknown alert"}})
def get_alert(alert_id: int, conn: Conn, principal: CurrentPrincipal) -> AlertDetailOut:
    """One alert with its history (raised, reopened, duplicate, acknowledged, cleared, closed, revised: the
    evaluator's correction once readings that arrived late are known, its note giving the old and new times),
    oldest first."""
    alert = st.get_alert(conn, alert_id, scope=principal.scope)
    events = [AlertEventOut.model_validate(e) for e in st.alert_events(conn, alert_id)]
    return AlertDetailOut.model_validate({**AlertOut.model_validate(alert).model_dump(), "events": events})


_ACTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "unknown alert"},
    409: {"description": "the alert's state does not allow this"},
}


def _who(principal: Principal) -> str:
    """The authenticated actor as the alert records it: display name and subject."""
    return f"{principal.display_name} <{principal.subject}>"


def _state(alert: st.Alert) -> dict[str, Any]:
    return {"state": str(alert.state), "acknowledged_by": alert.acknowledged_by, "closed_by": alert.closed_by}


def acknowledge_alert(conn: Conn, principal: Principal, audit: Auditor, alert_id: int, note: str | None) -> st.Alert:
    """Acknowledge as the authenticated caller, audited in the caller's transaction (the API's and the web page's
    one way to do it)."""
    before = _state(st.get_alert(conn, alert_id, scope=principal.scope))
    alert = st.acknowledge(conn, alert_id, _who(principal), note, scope=principal.scope)
    audit.record(f"alert:{alert_id}", before=before, after={**_state(alert), "note": note})
    return alert


def close_alert(conn: Conn, principal: Principal, audit: Auditor, alert_id: int, note: str | None) -> st.Alert:
    """Close as the authenticated caller, audited in the caller's transaction (the API's and the web page's)."""
    before = _state(st.get_alert(conn, alert_id, scope=principal.scope))
    alert = st.close(conn, alert_id, _who(principal), note, scope=principal.scope)
    audit.record(f"alert:{alert_id}", before=before, after={**_state(alert), "note": note})
    return alert


@router.post("/alerts/{alert_id}/ack", response_model=AlertOut, responses=_ACTION_RESPONSES)
def acknowledge(alert_id: int, body: ActionIn, conn: Conn, principal: CurrentPrincipal, audit: Audit) -> AlertOut:
    """Acknowledge an open alert: records who (the authenticated caller), when (now) and the note."""
    return AlertOut.model_validate(acknowledge_alert(conn, principal, audit, alert_id, body.note))


@router.post("/alerts/{alert_id}/close", response_model=AlertOut, responses=_ACTION_RESPONSES)
def close(alert_id: int, body: ActionIn, conn: Conn, principal: CurrentPrincipal, audit: Audit) -> AlertOut:
    """Close an alert (usually once cleared). Closing one whose condition still holds does not open a new alert
    for the same episode; the rule raises again after the condition has cleared. Records the caller as closer."""
    return AlertOut.model_validate(close_alert(conn, principal, audit, alert_id, body.note))


# --- rules ----------------------------------------------------------------------------------------------------


@router.get("/alert-rules", response_model=list[AlertRuleOut])
def list_rules(conn: Conn, principal: CurrentPrincipal) -> list[st.RuleRow]:
    """The rules in force for the caller's organisation: its own, and the file's it does not replace."""
    return st.rules_in_force(conn, principal.scope.organisation_id)


@router.get("/alert-rules/{key}", response_model=AlertRuleOut, responses={404: {"description": "unknown rule"}})
def get_rule(key: str, conn: Conn, principal: CurrentPrincipal) -> st.RuleRow:
    """The rule of this key in force for the caller's organisation (its own, else the file's)."""
    return st.get_rule(conn, key, principal.scope.organisation_id)


_RULE_BODY = Body(
    description="An alert rule in the shape of lccm/data/alert-rules.yaml (key optional: the path gives it)",
    examples=[
        {
            "name": {"en": "SO2 above 0.15 ppm for 6 minutes", "th": "SO2 เกิน 0.15 ppm นาน 6 นาที"},
            "metric": "so2_ppb",
            "raise": {"above": 150, "for": "6min"},
            "clear": {"below": 50},
            "severity": "critical",
            "scope": {"device_kinds": ["aq_station"]},
        }
    ],
)


@router.put(
    "/alert-rules/{key}",
    response_model=AlertRuleOut,
    responses={201: {"model": AlertRuleOut, "description": "created"}, 422: {"description": "invalid rule"}},
)
def put_rule(
    key: str,
    conn: Conn,
    principal: CurrentPrincipal,
    response: Response,
    audit: Audit,
    body: Annotated[dict[str, Any], _RULE_BODY],
) -> st.RuleRow:
    """Create or replace the caller's organisation's rule; validated exactly as the rule file is. With the key of a
    file rule, it replaces that rule for the organisation's devices (``"enabled": false`` switches it off for
    them). The evaluator applies it from its next run; a new rule starts from the data that arrives after it."""
    row, created = save_rule(conn, principal, audit, key, body)
    response.status_code = 201 if created else 200
    return row


def save_rule(
    conn: Conn, principal: Principal, audit: Auditor, key: str, body: dict[str, Any]
) -> tuple[st.RuleRow, bool]:
    """Create or replace the caller's organisation's rule of ``key``, validated as the rule file is (raises
    AlertRulesInvalid naming each field), audited; the API's PUT and the web page's form. Returns (row, created)."""
    source = f"PUT /alert-rules/{key}"
    if "key" in body and body["key"] != key:
        message = f"the body's key {body['key']!r} differs from the path's {key!r}"
        raise AlertRulesInvalid(source, [RuleError(key, "key", message)])
    rule, problems = check_rule({**body, "key": key}, key, metric_keys=st.metric_ids(conn))
    if rule is None:
        raise AlertRulesInvalid(source, problems)
    organisation_id = principal.scope.organisation_id
    before = _rule_summary(conn, key, organisation_id)
    row, created = st.put_rule(conn, key, rule.definition(), "api", organisation_id)
    audit.record(f"alert_rule:{key}", before=before, after={"definition": row.definition, "version": row.version})
    return row, created


def remove_rule(conn: Conn, principal: Principal, audit: Auditor, key: str) -> None:
    """Delete the caller's organisation's rule (RuleReadOnly for a file rule), audited; the API's DELETE and the
    web page's."""
    organisation_id = principal.scope.organisation_id
    before = _rule_summary(conn, key, organisation_id)
    st.delete_rule(conn, key, _who(principal), organisation_id)
    audit.record(f"alert_rule:{key}", before=before, after=None)


def _rule_summary(conn: Conn, key: str, organisation_id: int) -> dict[str, Any] | None:
    try:
        old = st.get_rule(conn, key, organisation_id)
    except st.RuleNotFound:
        return None
    return {"definition": old.definition, "version": old.version, "origin": old.origin}


@router.delete(
    "/alert-rules/{key}",
    status_code=204,
    responses={404: {"description": "unknown rule"}, 409: {"description": "a rule of the file: read-only here"}},
)
def delete_rule(key: str, conn: Conn, principal: CurrentPrincipal, audit: Audit) -> Response:
    """Delete the caller's organisation's rule; its alerts that are not closed yet are closed (note: rule deleted),
    their history kept. Where it replaced a file rule, the file rule applies again. A file rule itself cannot be
    deleted here (409 alert_rule_read_only): PUT it with ``"enabled": false`` to switch it off."""
    remove_rule(conn, principal, audit, key)
    return Response(status_code=204)
