"""One type per alert concept, shared by every stage (lccm.engine.alert_kinds): the enums agree with the database's
constraints (migration 005, read as text here), each alert type and exception is defined once in the source tree,
and a notification message says when the change it reports was found in late data."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import pytest

from lccm.alerts import alert_message
from lccm.engine.alert_kinds import AlertState, ClearReason, Severity, TransitionKind
from lccm.notify.model import AlertMessage
from lccm.notify.render import render_alert
from lccm.store import alerts as st

ROOT = Path(__file__).resolve().parent.parent
MIGRATION = (ROOT / "store" / "migrations" / "005_alerts.sql").read_text(encoding="utf-8")
MIGRATIONS = sorted((ROOT / "store" / "migrations").glob("*.sql"))


def check_values(column: str) -> set[str]:
    """The values of ``CHECK (<column> IN (...))`` as the newest migration that states it has it (005, or 024 for
    the events' kinds)."""
    for path in reversed(MIGRATIONS):
        m = re.search(rf"CHECK \({column} IN \(([^)]*)\)\)", path.read_text(encoding="utf-8"))
        if m is not None:
            return set(re.findall(r"'([a-z_]+)'", m.group(1)))
    raise AssertionError(column)


@pytest.mark.parametrize(
    ("column", "kind"), [("kind", TransitionKind), ("state", AlertState), ("severity", Severity)]
)  # fmt: skip
def test_the_enums_are_the_values_the_database_accepts(column: str, kind: type[StrEnum]) -> None:
    assert {str(k) for k in kind} == check_values(column)


def test_the_active_states_are_those_of_the_unique_index_and_the_store_queries() -> None:
    active = ", ".join(f"'{s}'" for s in AlertState if s.active)
    assert f"WHERE state IN ({active})" in MIGRATION  # alerts_active_key
    assert f"state IN ({active})" == st._ACTIVE_SQL


ONE_DEFINITION = {
    "TransitionKind", "Transition", "Severity", "AlertState", "ClearReason", "AlertNotFound", "AlertStateConflict",
    "RuleNotFound", "AlertRulesInvalid", "RuleError", "Notification", "PagedEvent", "AlertMessage",
}  # fmt: skip


def test_each_alert_type_and_exception_is_defined_once() -> None:
    found: dict[str, list[str]] = {}
    for stage in ("engine", "stream", "store", "api", "notify", "ingest", "lccm"):
        for path in (ROOT / stage).rglob("*.py"):
            if path.is_relative_to(ROOT / "lccm") and path.parent != ROOT / "lccm":
                continue  # lccm/<stage> are links to the stage folders, seen above
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.ClassDef):
                    names = [node.name]
                elif isinstance(node, ast.Assign):  # type aliases such as Severity = Literal[...]
                    names = [t.id for t in node.targets if isinstance(t, ast.Name)]
                for name in names:
                    if name in ONE_DEFINITION:
                        found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    twice = {n: where for n, where in found.items() if len(where) > 1}
    assert not twice, twice
    # notify's Notification (a rendered message for one recipient) is the one type of that name
    assert found["Notification"] == ["notify/model.py"] and found["PagedEvent"] == ["store/alerts.py"]


def alert(**kw: object) -> AlertMessage:
    fields: dict = {
        "alert_id": "7", "rule_key": "so2_mae_moh", "dedup_key": "MM1/so2_ppb", "city": "lampang", "site_id": "MM1",
        "metric": "so2", "severity": "critical", "transition": "raised",
        "event_time": datetime(2026, 1, 10, 2, 25, tzinfo=UTC), "value": 180.0, "threshold": 150.0, "unit": "ppb",
    }  # fmt: skip
    return AlertMessage(**(fields | kw))


def test_a_late_change_is_told_as_late_whatever_its_kind() -> None:
    assert render_alert(alert(late=True), "en")[0].startswith("[Critical] Raised late (delayed data): ")
    assert render_alert(alert(transition="cleared", late=True), "en")[0].startswith(
        "[Critical] Cleared late (delayed data): "
    )  # an earlier version sent a late clear as "late" too, which read "Raised late"
    assert render_alert(alert(transition="reopened", late=True), "en")[0].startswith(
        "[Critical] Raised again (delayed data): "
    )
    assert render_alert(alert(transition="cleared"), "th")[0].startswith("[วิกฤต] กลับสู่ปกติ: ")


def test_the_earlier_spelling_of_a_late_raise_is_still_read() -> None:
    old = alert(transition="late")  # what the outbox may hold from an earlier version
    assert (old.transition, old.late) == (TransitionKind.RAISED, True)
    d = old.to_dict()
    assert (d["transition"], d["late"]) == ("raised", True) and AlertMessage.from_dict(d) == old
    legacy = {k: v for k, v in d.items() if k != "late"} | {"transition": "late"}
    assert AlertMessage.from_dict(legacy) == old


def test_a_paged_event_becomes_a_message_with_its_kind_and_lateness() -> None:
    at = datetime(2026, 1, 10, 2, 45, tzinfo=UTC)
    event = st.PagedEvent(
        event_id=11, kind="cleared", at=at, value=45.0, late=False, alert_id=7, rule_key="so2_mae_moh",  # type: ignore[arg-type]
        rule_name_en="SO2 above 0.15 ppm", rule_name_th="SO2 เกิน 0.15 ppm", severity="critical",  # type: ignore[arg-type]
        dedup_key="MM1/so2_ppb", device_id="MM1-S", site_code="MM1", signal="so2_ppb", threshold=150.0,
        detected_at=at, city="Lampang", site_name_en="Sop Pat", site_name_th="สบป้าด", unit="ppb", metric_name="so2",
    )  # fmt: skip
    assert (event.kind, event.severity) == (TransitionKind.CLEARED, Severity.CRITICAL)  # the row's text, typed
    m = alert_message(event)
    assert (m.transition, m.late, m.severity, m.city, m.message_id) == (
        TransitionKind.CLEARED, False, Severity.CRITICAL, "lampang", "7/cleared/1768013100000000",
    )  # fmt: skip  # 2026-01-10 02:45 UTC = 1,768,013,100 s


def test_clear_reasons_are_the_ones_the_api_describes() -> None:
    assert {str(r) for r in ClearReason} == {"condition", "schedule", "data_resumed", "revised", "withdrawn", "merged"}
