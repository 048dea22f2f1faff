-- 024: alerts corrected once readings that arrived late are known (issue 14 item 1; engine.alerts.revise). The
-- evaluator re-times a recorded alert (started, raised, cleared, values, reopenings), merges two recorded alerts
-- that are one episode, or withdraws one whose episode does not exist: each correction is an alert event of the new
-- kind 'revised' (never paged), its note saying what changed (old and new times). A merged or withdrawn alert is
-- closed by the evaluator with clear_reason 'merged' or 'withdrawn' (engine.alert_kinds.ClearReason, not checked
-- by the database).
ALTER TABLE alert_events DROP CONSTRAINT alert_events_kind_check;
ALTER TABLE alert_events ADD CONSTRAINT alert_events_kind_check
    CHECK (kind IN ('raised', 'reopened', 'duplicate', 'acknowledged', 'cleared', 'closed', 'revised'));
