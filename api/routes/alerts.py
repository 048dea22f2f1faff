"""Alerts and alert rules.

Alerts: list with filters, one with its history, acknowledge (open -> acknowledged: who, when, note) and close
(any state but closed). Clearing is automatic (the evaluator, when the rule's clear condition holds). Rules: the
same model as the rule file (engine/alerts.py AlertRule); a rule written here is kept over the file's version of
the same key until it is deleted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response
from pydantic import AfterValidator, ValidationError

from lccm.api import cursors
from lccm.api.deps import Conn, Cursor, _require_offset
from lccm.api.errors import ApiError, NotFound, SiteNotFound
from lccm.api.schemas_alerts import (
    ActionIn,
    AlertDetailOut,
    AlertEventOut,
    AlertOut,
    AlertPage,
    AlertRuleOut,
    AlertState,
    Severity,
)
from lccm.engine.alerts import AlertRule
from lccm.store import alerts as st
from lccm.store import queries

router = APIRouter(tags=["alerts"])
_CURSOR = "alerts"


class AlertNotFound(NotFound):
    code = "alert_not_found"

    def __init__(self, alert_id: int) -> None:
        super().__init__(f"no alert with id {alert_id}")


class RuleNotFound(NotFound):
    code = "alert_rule_not_found"

    def __init__(self, key: str) -> None:
        super().__init__(f"no alert rule with key {key!r}")


class AlertStateConflict(ApiError):
    status_code = 409
    code = "alert_state_conflict"

    def __init__(self, message: str, state: str) -> None:
        super().__init__(message)
        self.state = state

    def body(self) -> dict[str, Any]:
        return {**super().body(), "state": self.state}


class RuleInvalid(ApiError):
    """422 in the shape of FastAPI's validation errors: one entry per problem, ``loc`` naming the field."""

    status_code = 422
    code = "alert_rule_invalid"

    def __init__(self, problems: list[tuple[tuple[str, ...], str]]) -> None:
        super().__init__("; ".join(f"{'.'.join(loc) or 'rule'}: {msg}" for loc, msg in problems))
        self.problems = problems

    def body(self) -> dict[str, Any]:
        return {"detail": [{"type": self.code, "loc": ["body", *loc], "msg": msg} for loc, msg in self.problems]}


Since = Annotated[
    datetime | None,
    Query(description="only alerts raised (event time) at or after this instant, ISO 8601 with offset"),
    AfterValidator(_require_offset),
]


@router.get("/alerts", response_model=AlertPage, responses={404: {"description": "unknown site"}})
def list_alerts(
    conn: Conn,
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
    if site is not None and queries.get_site(conn, site) is None:
        raise SiteNotFound(site)  # an empty page would hide a typo in the site code
    before = None
    if cursor:
        us, ident = cursors.decode(_CURSOR, cursor, (int, int))
        before = (cursors.from_us(int(us)), int(ident))
    rows = st.list_alerts(
        conn, states=state or (), severity=severity, site_code=site, rule_key=rule, device_id=device, late=late,
        since=since, before=before, limit=limit + 1,
    )  # fmt: skip
    page, more = rows[:limit], len(rows) > limit
    last = page[-1] if page else None
    return AlertPage(
        items=[AlertOut.model_validate(a) for a in page],
        next_cursor=cursors.encode(_CURSOR, cursors.to_us(last.raised_at), last.id) if more and last else None,
    )


@router.get("/alerts/{alert_id}", response_model=AlertDetailOut, responses={404: {"description": "unknown alert"}})
def get_alert(alert_id: int, conn: Conn) -> AlertDetailOut:
    """One alert with its history (raised, reopened, duplicate, acknowledged, cleared, closed), oldest first."""
    alert = st.get_alert(conn, alert_id)
    if alert is None:
        raise AlertNotFound(alert_id)
    events = [AlertEventOut.model_validate(e) for e in st.alert_events(conn, alert_id)]
    return AlertDetailOut.model_validate({**AlertOut.model_validate(alert).model_dump(), "events": events})


_ACTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "unknown alert"},
    409: {"description": "the alert's state does not allow this"},
}


@router.post("/alerts/{alert_id}/ack", response_model=AlertOut, responses=_ACTION_RESPONSES)
def acknowledge(alert_id: int, body: ActionIn, conn: Conn) -> AlertOut:
    """Acknowledge an open alert: records who, when (now) and the note."""
    try:
        return AlertOut.model_validate(st.acknowledge(conn, alert_id, body.by, body.note))
    except st.AlertNotFound as e:
        raise AlertNotFound(alert_id) from e
    except st.AlertStateConflict as e:
        raise AlertStateConflict(str(e), e.state) from e


@router.post("/alerts/{alert_id}/close", response_model=AlertOut, responses=_ACTION_RESPONSES)
def close(alert_id: int, body: ActionIn, conn: Conn) -> AlertOut:
    """Close an alert (usually once cleared). Closing one whose condition still holds does not open a new alert
    for the same episode; the rule raises again after the condition has cleared."""
    try:
        return AlertOut.model_validate(st.close(conn, alert_id, body.by, body.note))
    except st.AlertNotFound as e:
        raise AlertNotFound(alert_id) from e
    except st.AlertStateConflict as e:
        raise AlertStateConflict(str(e), e.state) from e


# --- rules ----------------------------------------------------------------------------------------------------


@router.get("/alert-rules", response_model=list[AlertRuleOut])
def list_rules(conn: Conn) -> list[st.RuleRow]:
    return st.list_rules(conn)


@router.get("/alert-rules/{key}", response_model=AlertRuleOut, responses={404: {"description": "unknown rule"}})
def get_rule(key: str, conn: Conn) -> st.RuleRow:
    row = st.get_rule(conn, key)
    if row is None:
        raise RuleNotFound(key)
    return row


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
def put_rule(key: str, conn: Conn, response: Response, body: Annotated[dict[str, Any], _RULE_BODY]) -> st.RuleRow:
    """Create or replace a rule; validated exactly as the rule file is. The evaluator applies it from its next
    run; a new rule starts from the data that arrives after it."""
    if "key" in body and body["key"] != key:
        raise RuleInvalid([(("key",), f"the body's key {body['key']!r} differs from the path's {key!r}")])
    rule = _validate(conn, {**body, "key": key})
    row, created = st.put_rule(conn, key, rule.definition(), "api")
    response.status_code = 201 if created else 200
    return row


@router.delete("/alert-rules/{key}", status_code=204, responses={404: {"description": "unknown rule"}})
def delete_rule(key: str, conn: Conn) -> Response:
    """Delete a rule; its alerts that are not closed yet are closed (note: rule deleted), their history kept."""
    if not st.delete_rule(conn, key, "api"):
        raise RuleNotFound(key)
    return Response(status_code=204)


def _validate(conn: Conn, definition: dict[str, Any]) -> AlertRule:
    try:
        rule = AlertRule.model_validate(definition)
    except ValidationError as e:
        raise RuleInvalid(
            [
                (tuple(str(p) for p in err["loc"]), err["msg"].removeprefix("Value error, "))
                for err in e.errors(include_url=False)
            ]
        ) from e
    if rule.metric is not None and rule.metric not in (known := st.metric_ids(conn)):
        raise RuleInvalid([(("metric",), f"unknown metric {rule.metric!r}; one of {', '.join(sorted(known))}")])
    return rule
