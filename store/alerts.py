"""Storage of alerts (migration 005): rules, alerts and their history, the evaluator's carry state, the reads the
evaluator needs (devices, reading windows, newest data per series), and the outbox of alert events to page.

Domain errors (:class:`AlertNotFound`, :class:`AlertStateConflict`, :class:`RuleNotFound`) are defined and raised
here; api/errors.py maps them to HTTP. Kinds, states and severities are ``lccm.engine.alert_kinds``' enums. Times
cross this module as aware datetimes (API side) or UTC epoch microseconds (evaluator side).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from lccm.engine.alert_kinds import AlertState, ClearReason, Severity, TransitionKind
from lccm.store import leases
from lccm.store.energy import Spans, window_readings
from lccm.store.leases import IN_PARTITIONS, Held, partition_params
from lccm.store.scope import Scope, scope_and, scope_clauses
from lccm.store.writer import int_array, sent_rows, sent_us, us_to_datetime

_EPOCH = "'epoch'::timestamptz"
_US = "interval '1 microsecond'"
NEVER_US = 2**62  # "no upper bound" for reading windows
# The active states (engine.alert_kinds.AlertState.active) spelt out as the partial unique index alerts_active_key
# (migration 005) states them: a query with this very predicate can use that index.
_ACTIVE_SQL = "state IN ('open', 'acknowledged')"


def _ts(expr: str) -> str:
    return f"({_EPOCH} + ({expr}) * {_US})"


def _us(expr: str) -> str:
    return f"(extract(epoch FROM {expr}) * 1000000)::bigint"


class AlertNotFound(LookupError):
    def __init__(self, alert_id: int) -> None:
        super().__init__(f"no alert with id {alert_id}")
        self.alert_id = alert_id


class AlertStateConflict(Exception):
    """The alert is in a state that does not allow the action (acknowledging a closed alert ...)."""

    def __init__(self, alert_id: int, state: AlertState, message: str) -> None:
        super().__init__(message)
        self.alert_id = alert_id
        self.state = state


class RuleNotFound(LookupError):
    def __init__(self, key: str) -> None:
        super().__init__(f"no alert rule with key {key!r}")
        self.key = key


class RuleReadOnly(Exception):
    """An organisation tried to delete a rule of the shipped file (global, read-only through the API)."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"alert rule {key!r} comes from the rule file and applies to every organisation; it cannot be deleted"
            f' here. To switch it off for your organisation, PUT /alert-rules/{key} with "enabled": false'
        )
        self.key = key


# --- rules ----------------------------------------------------------------------------------------------------
#
# Rules of the shipped file are global (organisation_id NULL, origin 'file'); a rule written through the API belongs
# to one organisation (origin 'api') and, when it has a file rule's key, replaces that rule for the organisation's
# devices (migration 015). The rules in force for an organisation are its own plus the global ones it does not
# replace; a device of no organisation is watched by the global rules only.


@dataclass(frozen=True, slots=True)
class RuleRow:
    key: str
    definition: dict[str, Any]
    origin: str
    version: int
    updated_at: datetime
    organisation_id: int | None = None  # None: a rule of the file, for every organisation


@dataclass(frozen=True, slots=True)
class SyncReport:
    inserted: int
    updated: int
    unchanged: int
    removed: int
    kept_api: int  # rules in the file that an organisation's own rule replaces for that organisation


_RULE_COLUMNS = "key, definition, origin, version, updated_at, organisation_id"


def list_rules(conn: psycopg.Connection) -> list[RuleRow]:
    """Every rule, global and of every organisation (what the evaluator applies), by key then organisation."""
    with conn.cursor(row_factory=class_row(RuleRow)) as cur:
        return cur.execute(
            f"SELECT {_RULE_COLUMNS} FROM alert_rules ORDER BY key, organisation_id NULLS FIRST"
        ).fetchall()


# The rule in force for an organisation per key: its own, else the global one.
_IN_FORCE = (
    f"SELECT DISTINCT ON (key) {_RULE_COLUMNS} FROM alert_rules"
    " WHERE (organisation_id = %(org)s OR organisation_id IS NULL) {key} ORDER BY key, organisation_id NULLS LAST"
)


def rules_in_force(conn: psycopg.Connection, organisation_id: int) -> list[RuleRow]:
    """The rules that apply to the organisation's devices: its own, and the file's that it does not replace."""
    with conn.cursor(row_factory=class_row(RuleRow)) as cur:
        return cur.execute(_IN_FORCE.replace("{key}", ""), {"org": organisation_id}).fetchall()


def get_rule(conn: psycopg.Connection, key: str, organisation_id: int | None = None) -> RuleRow:
    """The rule of this key in force for the organisation (its own, else the global one); with None, the global
    one. RuleNotFound when there is none."""
    with conn.cursor(row_factory=class_row(RuleRow)) as cur:
        row = cur.execute(
            _IN_FORCE.replace("{key}", "AND key = %(key)s"), {"org": organisation_id, "key": key}
        ).fetchone()
    if row is None:
        raise RuleNotFound(key)
    return row


def put_rule(
    conn: psycopg.Connection,
    key: str,
    definition: dict[str, Any],
    origin: str,
    organisation_id: int | None = None,
) -> tuple[RuleRow, bool]:
    """Insert or replace a rule (validated by the caller): a global one (origin 'file', ``organisation_id`` None) or
    an organisation's (origin 'api'). Returns the row and whether it was created."""
    if (origin == "file") != (organisation_id is None):
        raise ValueError("a rule of the file is global; a rule written through the API belongs to an organisation")
    target = "(key) WHERE organisation_id IS NULL" if organisation_id is None else (
        "(organisation_id, key) WHERE organisation_id IS NOT NULL"
    )  # fmt: skip
    with conn.cursor(row_factory=class_row(RuleRow)) as cur:
        row = cur.execute(
            "INSERT INTO alert_rules (key, definition, origin, organisation_id) VALUES (%s, %s, %s, %s)"
            f" ON CONFLICT {target} DO UPDATE SET definition = excluded.definition, origin = excluded.origin,"
            " version = alert_rules.version + 1, updated_at = now()"
            f" RETURNING {_RULE_COLUMNS}",
            (key, Jsonb(definition), origin, organisation_id),
        ).fetchone()
    assert row is not None
    return row, row.version == 1


def _rule_devices(organisation_id: int | None) -> str:
    """SQL: the devices a rule of this owner watches (``%(key)s``, ``%(org)s``): the organisation's, or for a global
    rule every device whose organisation does not replace it."""
    if organisation_id is not None:
        return (
            "SELECT d.id FROM devices d JOIN site_organisations so ON so.site_id = d.site_id"
            " WHERE so.organisation_id = %(org)s"
        )
    return (
        "SELECT d.id FROM devices d JOIN site_organisations so ON so.site_id = d.site_id"
        " WHERE so.organisation_id IS NULL OR NOT EXISTS (SELECT 1 FROM alert_rules o"
        " WHERE o.key = %(key)s AND o.organisation_id = so.organisation_id)"
    )


def delete_rule(conn: psycopg.Connection, key: str, actor: str = "system", organisation_id: int | None = None) -> None:
    """Delete a rule (the organisation's own; the global one for None) and its carry state; the alerts it raised
    that are not closed yet are closed with a note. For an organisation's own rule that replaced a file rule, the
    file rule applies again from the next run. RuleNotFound when there is no such rule; RuleReadOnly when an
    organisation names a rule of the file."""
    params = {"key": key, "org": organisation_id}
    devices = [r[0] for r in conn.execute(_rule_devices(organisation_id), params)]  # before the rule goes
    where = "organisation_id IS NULL" if organisation_id is None else "organisation_id = %(org)s"
    gone = conn.execute(f"DELETE FROM alert_rules WHERE key = %(key)s AND {where}", params).rowcount
    if not gone:
        if (
            organisation_id is not None
            and conn.execute("SELECT 1 FROM alert_rules WHERE key = %s AND organisation_id IS NULL", (key,)).fetchone()
        ):
            raise RuleReadOnly(key)
        raise RuleNotFound(key)
    conn.execute("DELETE FROM alert_series_state WHERE rule_key = %s AND device_id = ANY(%s)", (key, devices))
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM alerts WHERE rule_key = %s AND state <> 'closed' AND device_id = ANY(%s)", (key, devices)
        )
    ]
    for alert_id in ids:
        _close(conn, alert_id, actor, f"rule {key} deleted")


def sync_file_rules(conn: psycopg.Connection, definitions: Sequence[dict[str, Any]]) -> SyncReport:
    """Make the file's (global) rules current: insert new ones, update changed ones, delete those no longer in the
    file. Organisations' own rules are left as they are (``kept_api`` counts the file rules one replaces)."""
    stored = {r.key: r for r in list_rules(conn) if r.organisation_id is None}
    replaced = {r.key for r in list_rules(conn) if r.organisation_id is not None}
    inserted = updated = unchanged = 0
    keys = set()
    for d in definitions:
        key = str(d["key"])
        keys.add(key)
        old = stored.get(key)
        if old is not None and old.definition == d:
            unchanged += 1
        else:
            _, created = put_rule(conn, key, d, "file")
            inserted, updated = inserted + created, updated + (not created)
    removed = 0
    for key in stored:
        if key not in keys:
            delete_rule(conn, key, "rule file")
            removed += 1
    return SyncReport(inserted, updated, unchanged, removed, len(keys & replaced))


# --- what the evaluator reads ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceRow:
    id: int
    device_id: str
    site_code: str
    kind: str
    site_kind: str
    cadence_s: int
    lat: float | None
    lon: float | None
    tags: list[str]
    organisation_id: int | None = None  # its site's (site_organisations); None: of no organisation


DEVICE_ROWS_CHUNK = 2_000  # rows in memory at a time while the device catalogue streams in


def device_rows(conn: psycopg.Connection) -> Iterator[DeviceRow]:
    """Every device, streamed a chunk at a time: with 100,000 devices the whole result as Python rows would take
    tens of MB next to the cache being rebuilt from it. Consume it before running anything else on ``conn``."""
    with conn.cursor(row_factory=class_row(DeviceRow)) as cur:
        yield from cur.stream(
            "SELECT d.id, d.device_id, s.site_code, d.kind, s.kind AS site_kind, d.cadence_s, s.lat, s.lon,"
            " coalesce(ARRAY(SELECT jsonb_array_elements_text(CASE WHEN jsonb_typeof(d.meta -> 'tags') = 'array'"
            "   THEN d.meta -> 'tags' ELSE '[]'::jsonb END)), '{}') AS tags, so.organisation_id"
            " FROM devices d JOIN sites s ON s.id = d.site_id JOIN site_organisations so ON so.site_id = s.id"
            " ORDER BY d.id",
            size=DEVICE_ROWS_CHUNK,
        )


def metric_ids(conn: psycopg.Connection) -> dict[str, int]:
    """Catalogue key (pm25_ugm3 ...) -> metric id."""
    return {str(k): int(i) for k, i in conn.execute("SELECT key, id FROM metrics")}


def series_readings(
    conn: psycopg.Connection,
    device_ids: Sequence[int],
    metric_ids: Sequence[int],
    after_us: Sequence[int],
    until_us: Sequence[int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(series index, ts_us, value) of the readings with after < ts <= until for each (device, metric), ordered by
    series then time. Read as the updaters read their windows (``energy.window_readings``: one binary string per
    series, not a Python tuple per reading), from after + 1 us: PostgreSQL keeps whole microseconds."""
    if not device_ids:
        return np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.float64)
    windows = Spans(
        np.asarray(device_ids, np.int32), np.asarray(metric_ids, np.int16), np.asarray(after_us, np.int64) + 1,
        np.asarray(until_us, np.int64),
    )  # fmt: skip
    return window_readings(conn, windows)


# --- carry state and progress ---------------------------------------------------------------------------------


def load_states(
    conn: psycopg.Connection, rule_keys: Sequence[str], device_ids: Sequence[int]
) -> dict[tuple[str, int], tuple[dict[str, Any], int | None]]:
    if not rule_keys:
        return {}
    rows = conn.execute(
        "SELECT s.rule_key, s.device_id, s.state, s.alert_id FROM alert_series_state s"
        " JOIN unnest(%s::text[], %s::int[]) AS k(r, d) ON s.rule_key = k.r AND s.device_id = k.d",
        (list(rule_keys), list(device_ids)),
    ).fetchall()
    return {(str(r), int(d)): (dict(st), None if a is None else int(a)) for r, d, st, a in rows}


def raised_series(conn: psycopg.Connection, held: Held | None = None) -> list[tuple[str, int]]:
    """(rule, device) of every series whose machine is raised or clearing, of devices in ``held`` (None: all)."""
    rows = conn.execute(
        "SELECT rule_key, device_id FROM alert_series_state WHERE state ->> 'phase' IN ('raised', 'clearing')"
        f" AND {IN_PARTITIONS}",
        partition_params(held),
    ).fetchall()
    return [(str(r), int(d)) for r, d in rows]


def save_states(conn: psycopg.Connection, rows: Sequence[tuple[str, int, dict[str, Any], int | None]]) -> None:
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO alert_series_state (rule_key, device_id, state, alert_id) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (rule_key, device_id) DO UPDATE SET state = excluded.state, alert_id = excluded.alert_id,"
            " updated_at = now()",
            [(r, d, Jsonb(st), a) for r, d, st, a in rows],
        )


# --- the hand-over and the device clocks (migration 022) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueuedRows:
    """Claimed ``alert_queue`` rows, columnar (int64 arrays), in the order they were committed: per row a series' span
    of event times in a batch, and the batch's newest event time and newest receipt (the watermark is made of
    them)."""

    device_id: np.ndarray
    metric_id: np.ndarray
    lo_us: np.ndarray
    hi_us: np.ndarray
    batch_newest_us: np.ndarray
    batch_received_us: np.ndarray

    def __len__(self) -> int:
        return len(self.device_id)


_QUEUED_COLUMNS = ("id", "device_id", "metric_id", "lo", "hi", "batch_newest", "batch_received")
# The claimed rows as one binary string, each row in PostgreSQL's send format (big-endian; times as microseconds
# since 2000-01-01), that numpy reads as it is: a claim takes a batch's every series (a thousand rows for 200 meters),
# and a Python tuple of ints per row, with a numeric conversion of each time in PostgreSQL, cost the evaluator more
# than the rest of its run. Unordered: the rows are put in commit order (by id) on arrival.
_QUEUED = sql.SQL(
    "SELECT count(*), string_agg(int8send(id) || int4send(device_id) || int2send(metric_id) || timestamptz_send(lo)"
    " || timestamptz_send(hi) || timestamptz_send(batch_newest) || timestamptz_send(batch_received), ''::bytea)"
    " FROM taken"
)
_QUEUED_ROW = np.dtype(
    [("id", ">i8"), ("d", ">i4"), ("m", ">i2"), ("lo", ">i8"), ("hi", ">i8"), ("newest", ">i8"), ("received", ">i8")]
)


def claim_queued(conn: psycopg.Connection, limit: int, held: Held | None = None) -> QueuedRows:
    """Take up to ``limit`` rows of the hand-over, oldest committed first, of devices in ``held`` (the caller's
    locked leases; None: every device). Deleted in the caller's transaction: if it fails, they come back."""
    ((n, data),) = leases.claim(
        conn, "alert_queue", _QUEUED_COLUMNS, _QUEUED, limit=limit, held=held, oldest_first="id", binary=True
    )
    rows = sent_rows(data, n, _QUEUED_ROW, "alert_queue claim")
    rows = rows[np.argsort(rows["id"], kind="stable")]
    return QueuedRows(
        rows["d"].astype(np.int64), rows["m"].astype(np.int64), sent_us(rows["lo"]), sent_us(rows["hi"]),
        sent_us(rows["newest"]), sent_us(rows["received"]),
    )  # fmt: skip


def queued(conn: psycopg.Connection, held: Held | None = None) -> bool:
    """Whether the hand-over holds rows of devices in ``held`` (None: any)."""
    row = conn.execute(
        f"SELECT EXISTS (SELECT 1 FROM alert_queue WHERE {IN_PARTITIONS})", partition_params(held)
    ).fetchone()
    return bool(row and row[0])


def count_queued(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM alert_queue").fetchone()
    return int(row[0]) if row else 0


def city_clocks(conn: psycopg.Connection) -> tuple[int | None, int | None]:
    """(newest event time committed, newest delivery clock) over every device: the city's event-clock watermark and
    offline rules' clock as the evaluators have recorded them. One index probe each."""
    row = conn.execute(
        f"SELECT (SELECT {_us('max(newest_ts)')} FROM alert_device_clock),"
        f" (SELECT {_us('max(delivered_ts)')} FROM alert_device_clock)"
    ).fetchone()
    assert row is not None
    return (None if row[0] is None else int(row[0])), (None if row[1] is None else int(row[1]))


def slowest_writer(conn: psycopg.Connection, heard_within_s: float) -> int | None:
    """The newest event time committed by the slowest ingest process heard from within ``heard_within_s`` (None:
    none recorded): every process has committed at least this far."""
    row = conn.execute(
        f"SELECT {_us('min(newest_ts)')} FROM ingest_progress WHERE updated_at > now() - %s * interval '1 second'",
        (heard_within_s,),
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


@dataclass(frozen=True, slots=True)
class DeviceClockRow:
    device_id: int
    first_us: int
    newest_us: int
    delivered_us: int
    spans: list[int] | None  # flat (newest event time, watermark) pairs; None: as stored


@dataclass(frozen=True, slots=True)
class StoredClocks:
    """Device clocks as stored, columnar (int64 arrays, one entry per device), and the span history of the devices
    that keep one (flat (newest event time, watermark) pairs)."""

    device_id: np.ndarray
    first_us: np.ndarray
    newest_us: np.ndarray
    delivered_us: np.ndarray
    spans: dict[int, list[int]]


# The times of every device asked for as one binary string (as a claim's rows: a run reads a clock for each device
# it touched, every device of a batch), and a row of its own for each device with a span history (the stations index
# rules watch: few).
_CLOCKS = (
    "WITH c AS (SELECT * FROM alert_device_clock WHERE device_id = ANY(%s::int[]))"
    " SELECT NULL::int, count(*), string_agg(int4send(device_id) || timestamptz_send(first_ts)"
    "   || timestamptz_send(newest_ts) || timestamptz_send(delivered_ts), ''::bytea), NULL::bigint[] FROM c"
    " UNION ALL SELECT device_id, NULL, NULL, spans FROM c WHERE cardinality(spans) > 0"
)
_CLOCK_ROW = np.dtype([("d", ">i4"), ("first", ">i8"), ("newest", ">i8"), ("delivered", ">i8")])


def device_clocks(conn: psycopg.Connection, device_ids: Sequence[int]) -> StoredClocks:
    """The stored clocks of these devices (those that have one)."""
    n, data, spans = 0, b"", {}
    if device_ids:
        for d, count, times, history in conn.execute(_CLOCKS, (int_array(device_ids),), binary=True):
            if d is None:
                n, data = count, times or b""
            else:
                spans[d] = history
    rows = sent_rows(data, n, _CLOCK_ROW, "device clocks")
    return StoredClocks(
        rows["d"].astype(np.int64), sent_us(rows["first"]), sent_us(rows["newest"]), sent_us(rows["delivered"]), spans
    )


def newest_in(conn: psycopg.Connection, held: Held | None = None) -> dict[int, int]:
    """Device -> the newest event time it committed, for the devices in ``held`` (None: all)."""
    rows = conn.execute(
        f"SELECT device_id, {_us('newest_ts')} FROM alert_device_clock WHERE {IN_PARTITIONS}", partition_params(held)
    ).fetchall()
    return {int(d): int(t) for d, t in rows}


def delivered_in(conn: psycopg.Connection, held: Held | None = None) -> dict[int, int]:
    """Device -> its delivery clock (offline rules), for the devices in ``held`` (None: all)."""
    rows = conn.execute(
        f"SELECT device_id, {_us('delivered_ts')} FROM alert_device_clock WHERE {IN_PARTITIONS}", partition_params(held)
    ).fetchall()
    return {int(d): int(t) for d, t in rows}


def save_device_clocks(conn: psycopg.Connection, rows: Sequence[DeviceClockRow]) -> None:
    """Write the devices' clocks as the run computed them (from the stored rows it loaded, under its leases): the
    times of every device in one statement, the span history of those whose history changed (the few stations index
    rules watch) one by one."""
    if not rows:
        return
    conn.execute(
        "INSERT INTO alert_device_clock (device_id, first_ts, newest_ts, delivered_ts)"
        f" SELECT u.d, {_ts('u.f')}, {_ts('u.n')}, {_ts('u.t')}"
        " FROM unnest(%s::int[], %s::bigint[], %s::bigint[], %s::bigint[]) AS u(d, f, n, t)"
        " ON CONFLICT (device_id) DO UPDATE SET first_ts = excluded.first_ts, newest_ts = excluded.newest_ts,"
        " delivered_ts = excluded.delivered_ts",
        (
            int_array(r.device_id for r in rows),
            int_array(r.first_us for r in rows),
            int_array(r.newest_us for r in rows),
            int_array(r.delivered_us for r in rows),
        ),
    )
    spans = [(r.spans, r.device_id) for r in rows if r.spans is not None]
    if spans:
        with conn.cursor() as cur:
            cur.executemany("UPDATE alert_device_clock SET spans = %s::bigint[] WHERE device_id = %s", spans)


def add_behind(conn: psycopg.Connection, by_partition: dict[int, int]) -> None:
    """Count readings that arrived behind their series' frontier, in each partition's own row."""
    if not by_partition:
        return
    conn.execute(
        "INSERT INTO alert_behind (partition, behind_frontier) SELECT * FROM unnest(%s::int[], %s::bigint[])"
        " ON CONFLICT (partition) DO UPDATE SET behind_frontier = alert_behind.behind_frontier"
        " + excluded.behind_frontier, updated_at = now()",
        (list(by_partition), list(by_partition.values())),
    )


# --- alerts: writes by the evaluator --------------------------------------------------------------------------
#
# An event is handed to the notifier (``page``) when it is on time; a clear only if its alert's raise was (a clear of
# an alert nobody was told about would puzzle whoever gets it). Late events are recorded, not paged.


@dataclass(frozen=True, slots=True)
class NewAlert:
    rule_key: str
    dedup_key: str
    device_pk: int
    signal: str
    severity: Severity
    started_us: int
    raised_us: int
    value: float
    threshold: float | None
    late: bool
    peak: float | None = None  # the machine's peak at the raise (None: the value)


@dataclass(frozen=True, slots=True)
class Clear:
    """How an alert cleared: event time, the value then, why, the most extreme value while raised, late or not."""

    at_us: int
    value: float
    reason: ClearReason
    peak: float | None
    late: bool


def lock_dedup_key(conn: psycopg.Connection, rule_key: str, dedup_key: str) -> None:
    """Until the caller's transaction ends, be the only evaluator deciding who holds this dedup key: devices of one key
    (a site's stations) may be in partitions two processes evaluate at once. Without it the second to insert an
    active alert would fail on alerts_active_key; with it, it waits, then finds the first's alert active."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"alert:{rule_key}/{dedup_key}",))


def active_alert(conn: psycopg.Connection, rule_key: str, dedup_key: str) -> int | None:
    row = conn.execute(
        f"SELECT id FROM alerts WHERE rule_key = %s AND dedup_key = %s AND {_ACTIVE_SQL}", (rule_key, dedup_key)
    ).fetchone()
    return None if row is None else int(row[0])


def alert_state(conn: psycopg.Connection, alert_id: int) -> AlertState | None:
    row = conn.execute("SELECT state FROM alerts WHERE id = %s FOR UPDATE", (alert_id,)).fetchone()
    return None if row is None else AlertState(row[0])


def insert_alert(conn: psycopg.Connection, a: NewAlert, cleared: Clear | None = None) -> int:
    """A new open alert and its 'raised' event (paged unless late); returns its id. With ``cleared``, an episode that
    is over (found in readings that arrived late): the alert is recorded cleared, with its 'cleared' event."""
    c = cleared
    row = conn.execute(
        "INSERT INTO alerts (rule_key, dedup_key, device_id, site_id, signal, severity, state, started_at,"
        " raised_at, raised_value, threshold, peak_value, late, cleared_at, cleared_value, clear_reason)"
        " SELECT %(rule)s, %(dedup)s, d.id, d.site_id, %(signal)s, %(severity)s, %(state)s, %(started)s, %(raised)s,"
        " %(value)s, %(threshold)s, %(peak)s, %(late)s, %(cleared)s, %(cleared_value)s, %(reason)s FROM devices d"
        " WHERE d.id = %(device)s RETURNING id",
        {
            "rule": a.rule_key, "dedup": a.dedup_key, "signal": a.signal, "severity": str(a.severity),
            "state": str(AlertState.OPEN if c is None else AlertState.CLEARED),
            "started": us_to_datetime(a.started_us), "raised": us_to_datetime(a.raised_us), "value": _num(a.value),
            "threshold": a.threshold,
            "peak": _num(c.peak if c is not None and c.peak is not None else a.value if a.peak is None else a.peak),
            "late": a.late, "device": a.device_pk,
            "cleared": None if c is None else us_to_datetime(c.at_us),
            "cleared_value": None if c is None else _num(c.value), "reason": None if c is None else str(c.reason),
        },
    ).fetchone()  # fmt: skip
    assert row is not None, f"device {a.device_pk} vanished"
    alert_id = int(row[0])
    add_event(conn, alert_id, TransitionKind.RAISED, a.raised_us, a.value, a.device_pk, late=a.late, page=not a.late)
    if c is not None:
        page = not a.late and not c.late
        add_event(
            conn, alert_id, TransitionKind.CLEARED, c.at_us, c.value, a.device_pk, note=str(c.reason), late=c.late,
            page=page,
        )  # fmt: skip
    return alert_id


def reopen_alert(
    conn: psycopg.Connection, alert_id: int, at_us: int, value: float, device_pk: int, late: bool,
    peak: float | None = None,
) -> None:  # fmt: skip
    """A cleared alert raised again within the hold-off: open again, one more flap, its peak carried on (the
    reopening continues it), not paged again."""
    conn.execute(
        "UPDATE alerts SET state = 'open', cleared_at = NULL, cleared_value = NULL, clear_reason = NULL,"
        " flaps = flaps + 1, peak_value = coalesce(%s, peak_value) WHERE id = %s",
        (_num(peak), alert_id),
    )
    add_event(conn, alert_id, TransitionKind.REOPENED, at_us, value, device_pk, late=late, page=False)


def clear_alert(conn: psycopg.Connection, alert_id: int, c: Clear, device_pk: int) -> None:
    """The clear condition held: an active alert becomes cleared (paged if on time and its raise was); a closed one
    only records it."""
    row = conn.execute("SELECT state, late FROM alerts WHERE id = %s FOR UPDATE", (alert_id,)).fetchone()
    if row is None:
        return
    active, raised_late = AlertState(row[0]).active, bool(row[1])
    conn.execute(
        f"UPDATE alerts SET state = CASE WHEN {_ACTIVE_SQL} THEN 'cleared' ELSE state END,"
        " cleared_at = coalesce(cleared_at, %s), cleared_value = coalesce(cleared_value, %s),"
        " clear_reason = coalesce(clear_reason, %s), peak_value = coalesce(%s, peak_value) WHERE id = %s",
        (us_to_datetime(c.at_us), _num(c.value), str(c.reason), _num(c.peak), alert_id),
    )
    page = active and not raised_late and not c.late
    add_event(
        conn, alert_id, TransitionKind.CLEARED, c.at_us, c.value, device_pk, note=str(c.reason), late=c.late, page=page
    )


def add_event(
    conn: psycopg.Connection,
    alert_id: int,
    kind: TransitionKind,
    at_us: int | None,
    value: float | None = None,
    device_pk: int | None = None,
    *,
    actor: str | None = None,
    note: str | None = None,
    late: bool = False,
    page: bool = False,
) -> None:
    at = "clock_timestamp()" if at_us is None else "%(at)s"
    conn.execute(
        "INSERT INTO alert_events (alert_id, kind, at, value, device_id, actor, note, late, page)"
        f" VALUES (%(a)s, %(k)s, {at}, %(v)s, %(d)s, %(actor)s, %(note)s, %(late)s, %(page)s)",
        {
            "a": alert_id, "k": str(kind), "at": None if at_us is None else us_to_datetime(at_us),
            "v": _num(value), "d": device_pk, "actor": actor, "note": note, "late": late, "page": page,
        },
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class RecordedRow:
    """An alert of a rule and dedup key as recorded, for the evaluator's revisions (engine.alerts.RecordedAlert)."""

    alert_id: int
    device_pk: int | None
    started_us: int
    raised_us: int
    raised_value: float | None
    peak: float | None
    cleared_us: int | None
    cleared_value: float | None
    reason: ClearReason | None
    flaps: int


def recorded_alerts(
    conn: psycopg.Connection, rule_key: str, dedup_key: str, since_us: int, also: int | None = None
) -> list[RecordedRow]:
    """The alerts of a rule and dedup key not cleared before ``since_us``, and alert ``also`` (a series' alert at a
    checkpoint): what readings that arrived late are compared with.
    Alerts the evaluator withdrew or merged are not: they are no longer alerts of the series."""
    rows = conn.execute(
        f"SELECT a.id, a.device_id, {_us('a.started_at')}, {_us('a.raised_at')}, a.raised_value, a.peak_value,"
        f" {_us('a.cleared_at')}, a.cleared_value, a.clear_reason, a.flaps"
        " FROM alerts a WHERE a.rule_key = %s AND a.dedup_key = %s"
        f" AND (a.cleared_at IS NULL OR a.cleared_at >= {_ts('%s::bigint')} OR a.id = %s)"
        " AND a.clear_reason IS DISTINCT FROM 'withdrawn' AND a.clear_reason IS DISTINCT FROM 'merged'"
        " ORDER BY a.raised_at, a.id",
        (rule_key, dedup_key, since_us, also),
    ).fetchall()
    return [
        RecordedRow(
            int(i), None if d is None else int(d), int(s), int(r), _float(rv), _float(pk),
            None if c is None else int(c), _float(cv), None if why is None else ClearReason(why), int(f),
        )
        for i, d, s, r, rv, pk, c, cv, why, f in rows
    ]  # fmt: skip


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


@dataclass(frozen=True, slots=True)
class Retimed:
    """What a re-timed alert holds now (engine.alerts.AlertRecord, with the values as the alert shows them)."""

    started_us: int
    raised_us: int
    raised_value: float
    peak: float | None
    cleared_us: int | None
    cleared_value: float | None
    reason: ClearReason | None
    flaps: int


def retime_alert(
    conn: psycopg.Connection, alert_id: int, new: Retimed, device_pk: int, note: str, cleared: Clear | None
) -> None:
    """Correct a recorded alert to what every stored reading says (readings arrived behind its series' frontier):
    its times, values and reopenings, and a 'revised' event whose note says what changed (never paged). An active
    alert the correction ends is cleared (``cleared``: its 'cleared' event, paged as a clear is); a cleared one it
    makes active again is opened (not paged: nobody was told it ended ... or they were, and the revised event says
    why it is active again), unless another alert of its dedup key is active now (the key is shared: it stays
    cleared and the note says so). A closed alert stays closed."""
    row = conn.execute(
        "SELECT state, late, rule_key, dedup_key FROM alerts WHERE id = %s FOR UPDATE", (alert_id,)
    ).fetchone()
    if row is None:
        return
    state, raised_late = AlertState(row[0]), bool(row[1])
    if new.cleared_us is None and state == AlertState.CLEARED and active_alert(conn, row[2], row[3]) is None:
        state = AlertState.OPEN
    elif new.cleared_us is None and state == AlertState.CLEARED:
        note += "; left cleared: another alert of its dedup key is active"
    elif new.cleared_us is not None and state.active:
        state = AlertState.CLEARED
    conn.execute(
        "UPDATE alerts SET state = %s, started_at = %s, raised_at = %s, raised_value = %s, peak_value = %s,"
        " cleared_at = %s, cleared_value = %s, clear_reason = %s, flaps = %s WHERE id = %s",
        (
            str(state), us_to_datetime(new.started_us), us_to_datetime(new.raised_us), _num(new.raised_value),
            _num(new.peak), None if new.cleared_us is None else us_to_datetime(new.cleared_us),
            _num(new.cleared_value), None if new.reason is None else str(new.reason), new.flaps, alert_id,
        ),
    )  # fmt: skip
    add_event(conn, alert_id, TransitionKind.REVISED, None, device_pk=device_pk, actor="evaluator", note=note)
    if cleared is not None and row[0] in (AlertState.OPEN, AlertState.ACKNOWLEDGED):
        page = not raised_late and not cleared.late
        add_event(
            conn, alert_id, TransitionKind.CLEARED, cleared.at_us, cleared.value, device_pk, note=str(cleared.reason),
            late=cleared.late, page=page,
        )  # fmt: skip


def withdraw_alert(
    conn: psycopg.Connection, alert_id: int, reason: ClearReason, device_pk: int, note: str
) -> None:  # fmt: skip
    """Close a recorded alert that every stored reading contradicts: withdrawn (no such episode) or merged (into an
    earlier alert of the same episode), by the evaluator, with a 'revised' event saying so (never paged)."""
    conn.execute(
        "UPDATE alerts SET state = 'closed', closed_by = 'evaluator', closed_at = clock_timestamp(),"
        " close_note = %s, clear_reason = %s WHERE id = %s",
        (note, str(reason), alert_id),
    )
    add_event(conn, alert_id, TransitionKind.REVISED, None, device_pk=device_pk, actor="evaluator", note=note)


def set_peaks(conn: psycopg.Connection, peaks: Sequence[tuple[int, float]]) -> None:
    """The peak so far of active alerts (alert id, peak), as their series' state carries it."""
    if not peaks:
        return
    conn.execute(
        "UPDATE alerts a SET peak_value = u.p FROM unnest(%s::bigint[], %s::float8[]) AS u(i, p)"
        " WHERE a.id = u.i AND a.peak_value IS DISTINCT FROM u.p",
        ([i for i, _ in peaks], [p for _, p in peaks]),
    )


def _num(value: float | None) -> float | None:
    return None if value is None or value != value else float(value)  # NaN -> NULL


# --- alerts: reads and human actions --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    rule_key: str
    rule_name_en: str | None
    rule_name_th: str | None
    dedup_key: str
    device_id: str | None
    site_code: str | None
    signal: str
    severity: Severity
    state: AlertState
    started_at: datetime
    raised_at: datetime
    raised_value: float | None
    threshold: float | None
    peak_value: float | None
    cleared_at: datetime | None
    cleared_value: float | None
    clear_reason: ClearReason | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    ack_note: str | None
    closed_by: str | None
    closed_at: datetime | None
    close_note: str | None
    late: bool
    flaps: int
    detected_at: datetime

    def __post_init__(self) -> None:  # the row factory hands over the column's text
        object.__setattr__(self, "severity", Severity(self.severity))
        object.__setattr__(self, "state", AlertState(self.state))
        if self.clear_reason is not None:
            object.__setattr__(self, "clear_reason", ClearReason(self.clear_reason))


@dataclass(frozen=True, slots=True)
class AlertEvent:
    id: int
    kind: TransitionKind
    at: datetime
    value: float | None
    device_id: str | None
    actor: str | None
    note: str | None
    late: bool
    page: bool
    notified_at: datetime | None
    recorded_at: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", TransitionKind(self.kind))


# The rule an alert was raised by, for its name: its organisation's own rule of the key, else the file's.
_RULE_OF_ALERT = (
    " LEFT JOIN site_organisations so ON so.site_id = a.site_id"
    " LEFT JOIN LATERAL (SELECT x.definition FROM alert_rules x WHERE x.key = a.rule_key"
    "   AND (x.organisation_id = so.organisation_id OR x.organisation_id IS NULL)"
    "   ORDER BY x.organisation_id NULLS LAST LIMIT 1) r ON true"
)

_ALERT_SELECT = (
    "SELECT a.id, a.rule_key, r.definition -> 'name' ->> 'en' AS rule_name_en,"
    " r.definition -> 'name' ->> 'th' AS rule_name_th, a.dedup_key, d.device_id, s.site_code, a.signal, a.severity,"
    " a.state, a.started_at, a.raised_at, a.raised_value, a.threshold, a.peak_value, a.cleared_at, a.cleared_value,"
    " a.clear_reason, a.acknowledged_by, a.acknowledged_at, a.ack_note, a.closed_by, a.closed_at, a.close_note,"
    " a.late, a.flaps, a.detected_at"
    " FROM alerts a" + _RULE_OF_ALERT + " LEFT JOIN devices d ON d.id = a.device_id"
    " LEFT JOIN sites s ON s.id = a.site_id"
)


def get_alert(conn: psycopg.Connection, alert_id: int, *, scope: Scope | None = None) -> Alert:
    """The alert; AlertNotFound when there is none of that id in ``scope`` (outside it, an alert looks unknown).
    ``scope=None``: any (the evaluator and the command line)."""
    query = sql.SQL(_ALERT_SELECT + " WHERE a.id = %s") + scope_and(scope, "a.site_id")
    with conn.cursor(row_factory=class_row(Alert)) as cur:
        alert = cur.execute(query, (alert_id,)).fetchone()
    if alert is None:
        raise AlertNotFound(alert_id)
    return alert


def list_alerts(
    conn: psycopg.Connection,
    *,
    states: Sequence[AlertState] = (),
    severity: Severity | None = None,
    site_code: str | None = None,
    rule_key: str | None = None,
    device_id: str | None = None,
    late: bool | None = None,
    since: datetime | None = None,
    before: tuple[datetime, int] | None = None,
    limit: int = 100,
    scope: Scope | None,
) -> list[Alert]:
    """Alerts newest raised first; ``before`` = (raised_at, id) of the last row of the previous page."""
    clauses: list[sql.Composable] = []
    params: list[object] = []
    optional: tuple[tuple[LiteralString, object], ...] = (
        ("a.severity = %s", severity),
        ("s.site_code = %s", site_code),
        ("a.rule_key = %s", rule_key),
        ("d.device_id = %s", device_id),
        ("a.late = %s", late),
        ("a.raised_at >= %s", since),
    )
    for text, value in optional:
        if value is not None:
            clauses.append(sql.SQL(text))
            params.append(value)
    if states:
        clauses.append(sql.SQL("a.state = ANY(%s)"))
        params.append(list(states))
    if before is not None:
        clauses.append(sql.SQL("(a.raised_at, a.id) < (%s, %s)"))
        params.extend(before)
    clauses += scope_clauses(scope, "a.site_id")
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
    query = sql.SQL(_ALERT_SELECT) + where + sql.SQL(" ORDER BY a.raised_at DESC, a.id DESC LIMIT %s")
    with conn.cursor(row_factory=class_row(Alert)) as cur:
        return cur.execute(query, [*params, limit]).fetchall()


def alert_events(conn: psycopg.Connection, alert_id: int) -> list[AlertEvent]:
    """The alert's history, oldest first (empty for an alert that does not exist)."""
    with conn.cursor(row_factory=class_row(AlertEvent)) as cur:
        return cur.execute(
            "SELECT e.id, e.kind, e.at, e.value, d.device_id, e.actor, e.note, e.late, e.page, e.notified_at,"
            " e.recorded_at FROM alert_events e LEFT JOIN devices d ON d.id = e.device_id"
            " WHERE e.alert_id = %s ORDER BY e.id",
            (alert_id,),
        ).fetchall()


def acknowledge(
    conn: psycopg.Connection, alert_id: int, by: str, note: str | None, *, scope: Scope | None = None
) -> Alert:
    """open -> acknowledged (who, when, note). Acknowledging a cleared or closed alert is refused; one outside
    ``scope`` is unknown."""
    get_alert(conn, alert_id, scope=scope)  # AlertNotFound outside the scope
    state = alert_state(conn, alert_id)
    if state is None:
        raise AlertNotFound(alert_id)
    if state != AlertState.OPEN:
        current = get_alert(conn, alert_id)
        who = f" by {current.acknowledged_by}" if current.acknowledged_by else ""
        raise AlertStateConflict(
            alert_id, state, f"alert {alert_id} is {state}{who}; only an open alert is acknowledged"
        )
    conn.execute(
        "UPDATE alerts SET state = 'acknowledged', acknowledged_by = %s, acknowledged_at = clock_timestamp(),"
        " ack_note = %s WHERE id = %s",
        (by, note, alert_id),
    )
    add_event(conn, alert_id, TransitionKind.ACKNOWLEDGED, None, actor=by, note=note)
    return get_alert(conn, alert_id)


def close(conn: psycopg.Connection, alert_id: int, by: str, note: str | None, *, scope: Scope | None = None) -> Alert:
    """Any state but closed -> closed. Closing an active alert does not stop its rule: the evaluator keeps the
    condition's state, so the same episode does not open a new alert; the next one after a clear does. One outside
    ``scope`` is unknown."""
    get_alert(conn, alert_id, scope=scope)  # AlertNotFound outside the scope
    state = alert_state(conn, alert_id)
    if state is None:
        raise AlertNotFound(alert_id)
    if state == AlertState.CLOSED:
        raise AlertStateConflict(alert_id, state, f"alert {alert_id} is already closed")
    _close(conn, alert_id, by, note)
    return get_alert(conn, alert_id)


def _close(conn: psycopg.Connection, alert_id: int, by: str, note: str | None) -> None:
    conn.execute(
        "UPDATE alerts SET state = 'closed', closed_by = %s, closed_at = clock_timestamp(), close_note = %s"
        " WHERE id = %s",
        (by, note, alert_id),
    )
    add_event(conn, alert_id, TransitionKind.CLOSED, None, actor=by, note=note)


# --- the outbox of alert events to page -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PagedEvent:
    """An alert event to page (``alert_events.page``), with what a message about it needs of its alert, site and
    metric. The notify-dispatch worker turns it into a notify ``AlertMessage`` (lccm/alerts.py)."""

    event_id: int
    kind: TransitionKind
    at: datetime
    value: float | None
    late: bool
    alert_id: int
    rule_key: str
    rule_name_en: str | None
    rule_name_th: str | None
    severity: Severity
    dedup_key: str
    device_id: str | None
    site_code: str | None
    signal: str
    threshold: float | None
    detected_at: datetime
    city: str | None
    site_name_en: str | None
    site_name_th: str | None
    unit: str | None  # the metric's catalogue unit; None for indices and device health
    metric_name: str | None  # the metric's catalogue name (pm25, so2, power ...); None for indices and health

    def __post_init__(self) -> None:  # the row factory hands over the columns' text
        object.__setattr__(self, "kind", TransitionKind(self.kind))
        object.__setattr__(self, "severity", Severity(self.severity))


def pending_notifications(conn: psycopg.Connection, limit: int = 1000, *, claim: bool = False) -> list[PagedEvent]:
    """Events to page that are not notified yet, oldest first. With ``claim`` (inside a transaction) the rows are
    locked until it ends and rows another transaction holds are skipped: two dispatchers never take the same event."""
    lock = " FOR UPDATE OF e SKIP LOCKED" if claim else ""
    with conn.cursor(row_factory=class_row(PagedEvent)) as cur:
        return cur.execute(
            "SELECT e.id AS event_id, e.kind, e.at, e.value, e.late, a.id AS alert_id, a.rule_key,"
            " r.definition -> 'name' ->> 'en' AS rule_name_en, r.definition -> 'name' ->> 'th' AS rule_name_th,"
            " a.severity, a.dedup_key, d.device_id, s.site_code, a.signal, a.threshold, a.detected_at, s.city,"
            " s.name AS site_name_en, s.name_th AS site_name_th, m.unit,"
            " m.name AS metric_name"
            " FROM alert_events e JOIN alerts a ON a.id = e.alert_id"
            + _RULE_OF_ALERT
            + " LEFT JOIN devices d ON d.id = a.device_id LEFT JOIN sites s ON s.id = a.site_id"
            " LEFT JOIN metrics m ON m.key = a.signal"
            f" WHERE e.page AND e.notified_at IS NULL ORDER BY e.id LIMIT %s{lock}",
            (limit,),
        ).fetchall()


def mark_notified(conn: psycopg.Connection, event_ids: Sequence[int]) -> None:
    if event_ids:
        conn.execute("UPDATE alert_events SET notified_at = clock_timestamp() WHERE id = ANY(%s)", (list(event_ids),))


# --- index series ---------------------------------------------------------------------------------------------

# Index names of the rules (engine.alerts.INDEX_SIGNALS) -> aqi_hourly.index_key (migration 006).
AQI_INDEX_KEYS = {"aqi_th": "thai_pcd_2023", "aqi_us": "us_epa_2024"}
_HOUR_US = 3_600_000_000


class StoredAqiIndex:
    """The alert evaluator's IndexSource over ``aqi_hourly`` (the AQI updater's hourly index per station).

    An hour's index is a sample at the hour's end (its window ends there), and only once the hour is over for the
    station: ``until`` is the newest reading the evaluator was told about, so the running hour's live row, which
    changes with every batch, is not taken before its last readings are in.

    Only a complete index is a value (migration 010): an incomplete one (a measured pollutant withheld, or a
    sub-index from a partial window) is a lower bound and a withheld one has none, so both are NaN - unknown to the
    evaluator, which neither raises nor clears on an unknown sample (engine/alerts.py)."""

    period_us = _HOUR_US

    def index_series(
        self, conn: psycopg.Connection, index: str, device_pk: int, after_us: int, until_us: int
    ) -> tuple[np.ndarray, np.ndarray]:
        key = AQI_INDEX_KEYS.get(index)
        if key is None:
            raise ValueError(f"no stored series for index {index!r}; one of {', '.join(sorted(AQI_INDEX_KEYS))}")
        rows = conn.execute(
            f"SELECT {_us('hour_start')} + {_HOUR_US}, CASE WHEN status = 'complete' THEN aqi END"
            " FROM aqi_hourly WHERE index_key = %s AND device_id = %s"
            f" AND hour_start > {_ts('%s::bigint')} - interval '1 hour'"
            f" AND hour_start <= {_ts('%s::bigint')} - interval '1 hour' ORDER BY hour_start",
            (key, device_pk, after_us, until_us),
        ).fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        ts, value = zip(*rows, strict=True)
        return np.array(ts, np.int64), np.array([math.nan if v is None else v for v in value], np.float64)
