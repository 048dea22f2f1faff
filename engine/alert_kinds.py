"""The words every stage uses about an alert, defined once: what happened to it (:class:`TransitionKind`), how
serious it is (:class:`Severity`), where it is in its lifecycle (:class:`AlertState`) and why it cleared
(:class:`ClearReason`).

A leaf module (the standard library only, no I/O), like ``lccm.engine.timebase``, so every stage may import it:
the engine's state machine emits these kinds, the store writes and reads them (``alert_events.kind``, migration
005), the API serves them and notify/ tells people about them. Each is a ``StrEnum``: its members equal the strings
stored in the database and sent in JSON.
"""

from __future__ import annotations

from enum import StrEnum


class TransitionKind(StrEnum):
    """One change in an alert's history (``alert_events.kind``). The evaluator's state machine produces RAISED,
    REOPENED (raised again within the rule's hold-off after a clear) and CLEARED; DUPLICATE is another device's raise
    under an alert it does not own; ACKNOWLEDGED and CLOSED are people's actions; REVISED is the evaluator's
    correction of a recorded alert once readings that arrived late are known (re-timed, merged into another alert of
    the same episode, or withdrawn: its note says which, with the old and new times; never paged)."""

    RAISED = "raised"
    REOPENED = "reopened"
    DUPLICATE = "duplicate"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"
    CLOSED = "closed"
    REVISED = "revised"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class AlertState(StrEnum):
    """open -> acknowledged -> cleared -> closed (``alerts.state``). Open and acknowledged alerts are active: at most
    one per rule and dedup key."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"
    CLOSED = "closed"

    @property
    def active(self) -> bool:
        return self in (AlertState.OPEN, AlertState.ACKNOWLEDGED)


class ClearReason(StrEnum):
    """Why an alert cleared (``alerts.clear_reason``)."""

    CONDITION = "condition"  # the rule's clear condition held for its minimum duration
    SCHEDULE = "schedule"  # the rule's schedule ended (an after-hours rule at the start of the working day)
    DATA_RESUMED = "data_resumed"  # an offline device delivered again
    REVISED = "revised"  # readings that arrived late show the raise condition never held at the raise
    WITHDRAWN = "withdrawn"  # closed by the evaluator: readings that arrived late show no such episode
    MERGED = "merged"  # closed by the evaluator: one episode with an earlier alert once late readings are known
