"""Batch writer: readings by COPY, dead letters alongside, in one transaction.

Split as psycopg splits its own COPY: ``encode_readings`` is a pure function from columns to the bytes of a
PostgreSQL binary COPY stream (numpy, no Python loop per row), and ``write_batch`` does the I/O.

Duplicates: the fast path COPYs straight into ``readings`` (about twice the rate of the dedup path, measured:
docs/reference.md#platform-measurements). If the batch collides with rows already stored (a redelivery after a
crash, a replay) or with itself, the transaction is rolled back to a savepoint and the batch goes through a
temporary table with ``INSERT ... ON CONFLICT DO NOTHING``: a duplicate is a no-op and is counted, never an error.

Corrections, first wins (docs/contract.md#duplicates-and-corrections): on that path, a reading whose key is already
stored with another value (beyond 1 part in 10^9, which absorbs unit-conversion rounding) leaves the stored reading
as it is and is recorded in ``reading_conflicts`` (once per key and offered value, so a redelivered correction is a
no-op too). Within a batch the first reading of a key in arrival order is the one stored. The comparison runs after
the insert, in a statement of its own, so under READ COMMITTED it also sees a value another ingest worker committed
for the same key while this insert waited for it.

Derived work is queued, not done: the transaction that stores readings also records, in one statement
(:func:`_enqueue`), what each derived-data updater has to do for them: the (device, metric) spans of the energy and
sample updaters, the late spans, and each (device, Asia/Bangkok day) whose ``reading_days`` row the day counter
brings up to date (store/reading_days.py), so a crash after the commit loses no derived work and the stream thread
does none of it.

Dead letters of retained messages (redelivered by the broker at every subscription) are recorded once per (topic,
payload): a unique index on the retained ones makes the repeats no-ops.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from psycopg import errors

from lccm.engine.timebase import BKK_OFFSET_US, US_PER_DAY
from lccm.store import reading_days

# Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01 UTC).
PG_EPOCH_OFFSET_US = 946_684_800_000_000


def sent_rows(data: bytes | None, count: int, dtype: np.dtype, what: str) -> np.ndarray:
    """Rows PostgreSQL sent as one string of send-format fields (``string_agg`` of ``int8send``, ``timestamptz_send``
    ...: big-endian), read by numpy as they are, not as a Python tuple per row; ``count``, the rows' ``count(*)``,
    checks that ``dtype`` matches the layout."""
    rows = np.frombuffer(data or b"", dtype)
    if len(rows) != count:
        raise ValueError(f"{what}: the binary rows do not match their count")
    return rows


def int_array(values: np.ndarray | Iterable[int]) -> str:
    """Integers as one array parameter in PostgreSQL's text form, for a placeholder cast to an integer array
    (``%s::bigint[]``). psycopg dumps a list element by element in Python: 1.8 ms for the four lists of 1,000 of one
    queue line against 0.3 ms for this join, and the writer sends three or four such lines with every batch, on the
    path that holds the stream back (benchmarks/README.md#the-writers-queue-lines)."""
    return "{" + ",".join(map(str, values.tolist() if isinstance(values, np.ndarray) else values)) + "}"


def sent_us(pg_us: np.ndarray) -> np.ndarray:
    """``timestamptz_send``'s microseconds since 2000-01-01 as epoch microseconds."""
    return pg_us.astype(np.int64) + PG_EPOCH_OFFSET_US


_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)

READING_COLUMNS = "(device_id, metric_id, ts, value, seq, received_at)"
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NO_SEQ = -1  # marks "device sent no sequence number" in the seq column array; stored as NULL
DEFAULT_LATE_HORIZON_US = 7 * 86_400 * 1_000_000  # Settings.late_horizon_s overrides it


@dataclass(frozen=True, slots=True)
class ReadingColumns:
    """One batch of readings, columnar. Times are UTC epoch microseconds; values in canonical units."""

    device_id: np.ndarray  # int32
    metric_id: np.ndarray  # int16
    ts_us: np.ndarray  # int64
    value: np.ndarray  # float64
    seq: np.ndarray  # int64, NO_SEQ where absent
    received_at_us: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.device_id.shape[0])

    def take(self, index: np.ndarray) -> ReadingColumns:
        return ReadingColumns(
            self.device_id[index], self.metric_id[index], self.ts_us[index], self.value[index], self.seq[index],
            self.received_at_us[index],
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    received_at_us: int
    topic: str
    payload: bytes
    reason: str
    detail: str
    device_ref: str | None
    retained: bool = False  # delivered as a retained message: recorded once per (topic, payload)


@dataclass(frozen=True, slots=True)
class StatusRow:
    device_id: int
    status: str
    changed_at_us: int


@dataclass(frozen=True, slots=True)
class WriteResult:
    inserted: int
    duplicates: int  # exact repeats (same value), and corrections already recorded
    dead_letters: int
    conflicts: int = 0  # new rows in reading_conflicts: a second value for a stored reading


# How often an ingest process records how far it has committed while its batches come back to back: what reads it
# (the alert evaluator's offline rules, stream/alerts.py) looks for the slowest process heard from within a minute.
PROGRESS_EVERY_S = 1.0


class Progress:
    """How far one ingest process has committed: its row of ``ingest_progress`` (keyed by its MQTT client id), the
    newest event time of its committed batches, which the alert evaluator's offline rules read
    (docs/partitions.md#alerts). Written in a batch's queueing statement (no round trip of its own), with the newest
    event time of every batch committed since the last write; held back only while more messages wait to be written
    behind the batch (``waiting()``), and then at most every ``every_s`` seconds (``clock``: monotonic): under load
    one row rewritten by every batch is a write per batch for a reader that needs one a second. A batch with nothing
    waiting behind it may be the last for a while, so it always writes: a row left behind would hold offline rules
    back (a device whose data the row says is not committed yet is not judged silent) until the next batch or for the
    minute the process still counts. Not thread-safe: one per writer (DbSink)."""

    def __init__(
        self,
        client_id: str,
        *,
        waiting: Callable[[], bool] = lambda: False,
        every_s: float = PROGRESS_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client_id = client_id
        self._waiting = waiting
        self._every_s = every_s
        self._clock = clock
        self._written_at: float | None = None
        self._unwritten_us: int | None = None  # the newest event time committed since the last write

    def due(self, newest_us: int) -> tuple[str, int] | None:
        """The row to write with a batch whose newest event time is ``newest_us`` (client id, newest event time
        committed), or None: not due yet."""
        recent = self._written_at is not None and self._clock() - self._written_at < self._every_s
        if recent and self._waiting():
            return None
        return self.client_id, newest_us if self._unwritten_us is None else max(newest_us, self._unwritten_us)

    def committed(self, newest_us: int, *, written: bool) -> None:
        """After the batch's commit: whether it wrote the row (the batch's :meth:`due`)."""
        if written:
            self._written_at, self._unwritten_us = self._clock(), None
        else:
            self._unwritten_us = newest_us if self._unwritten_us is None else max(newest_us, self._unwritten_us)


def encode_readings(cols: ReadingColumns) -> bytes:
    """The whole binary COPY stream (header, rows, trailer) for ``READING_COLUMNS``, rows in the batch's order."""
    return encode_columns([
        (">i4", cols.device_id), (">i2", cols.metric_id), (">i8", cols.ts_us - PG_EPOCH_OFFSET_US),
        (">f8", cols.value), (">i8", cols.seq, cols.seq == NO_SEQ), (">i8", cols.received_at_us - PG_EPOCH_OFFSET_US),
    ])  # fmt: skip


Values = np.ndarray | bytes | int | float
Column = tuple[str, Values] | tuple[str, Values, np.ndarray]


def encode_columns(columns: Sequence[Column]) -> bytes:
    """The whole binary COPY stream of rows from columns given as (numpy big-endian type of the field, values: an
    array, or one value for every row[, mask of the rows where the field is NULL]): ``>i2`` smallint, ``>i4`` integer,
    ``>i8`` bigint or timestamptz (microseconds since PostgreSQL's epoch: :data:`PG_EPOCH_OFFSET_US`), ``>f8`` double
    precision, ``S<n>`` text of n bytes. Numpy, no Python loop per row; rows stay in the order given."""
    size = max((np.size(c[1]) for c in columns if np.ndim(c[1])), default=1)
    nulls = [np.broadcast_to(np.asarray(c[2], bool), (size,)) if len(c) > 2 else None for c in columns]
    # A field NULL in every row is its length alone (-1): the rows keep one fixed layout.
    absent = [m is not None and bool(m.all()) for m in nulls]
    fields: list[tuple[str, str]] = [("nf", ">i2")]
    for i, c in enumerate(columns):
        fields += [(f"l{i}", ">i4")] + ([] if absent[i] else [(f"v{i}", c[0])])
    rows = np.empty(size, dtype=np.dtype(fields))
    rows["nf"] = len(columns)
    mixed: list[int] = []
    for i, c in enumerate(columns):
        if absent[i]:
            rows[f"l{i}"] = -1
            continue
        rows[f"l{i}"] = rows.dtype[f"v{i}"].itemsize
        rows[f"v{i}"] = c[1]
        mask = nulls[i]
        if mask is not None and mask.any():
            rows[f"l{i}"][mask] = -1
            mixed.append(i)
    if not mixed:
        return _HEADER + rows.tobytes() + _TRAILER
    # NULL in some rows only: drop those rows' value bytes from the fixed layout (rows keep their order).
    raw = rows.view(np.uint8).reshape(size, rows.dtype.itemsize)
    keep = np.ones(raw.shape, dtype=bool)
    for i in mixed:
        offset, width = int(rows.dtype.fields[f"v{i}"][1]), rows.dtype[f"v{i}"].itemsize  # type: ignore[index]
        keep[nulls[i], offset : offset + width] = False
    return _HEADER + raw[keep].tobytes() + _TRAILER


def write_batch(
    conn: psycopg.Connection,
    cols: ReadingColumns,
    dead_letters: Sequence[DeadLetterRow] = (),
    statuses: Sequence[StatusRow] = (),
    *,
    late_horizon_us: int = DEFAULT_LATE_HORIZON_US,
    alerts: bool = True,
    progress: Progress | None = None,
) -> WriteResult:
    """Store a batch atomically. Returns only after COMMIT, so the caller may then ack the messages.

    With ``alerts`` (an ingest process with alerts on) the batch is queued for the alert evaluator too, and with
    ``progress`` (the process's) that process's progress is recorded for it when due.

    Readings whose event time is more than ``late_horizon_us`` before their receipt are stored but queued for no
    live recomputation: they are listed in ``late_spans`` until ``lccm recompute`` covers them."""
    data = encode_readings(cols) if len(cols) else b""
    newest_us = int(cols.ts_us.max()) if len(cols) and alerts else None
    progress_row = None if progress is None or newest_us is None else progress.due(newest_us)
    with conn.transaction():
        inserted, conflicts = _copy_readings(conn, data, cols) if len(cols) else (0, 0)
        if len(cols):
            _enqueue(conn, cols, late_horizon_us, counted=inserted > 0, alerts=alerts, progress=progress_row)
        if dead_letters:
            _copy_dead_letters(conn, dead_letters)
        if statuses:
            _upsert_statuses(conn, statuses)
    if progress is not None and newest_us is not None:
        progress.committed(newest_us, written=progress_row is not None)
    return WriteResult(
        inserted=inserted,
        duplicates=len(cols) - inserted - conflicts,
        dead_letters=len(dead_letters),
        conflicts=conflicts,
    )


# The batch in arrival order (ord), so that within a batch the first reading of a key is the one stored.
_CREATE_READINGS_IN = (
    "CREATE TEMP TABLE IF NOT EXISTS readings_in (LIKE readings INCLUDING DEFAULTS,"
    " ord bigint GENERATED ALWAYS AS IDENTITY) ON COMMIT DELETE ROWS"
)
_INSERT = (
    f"INSERT INTO readings {READING_COLUMNS} SELECT {READING_COLUMNS[1:-1]} FROM readings_in ON CONFLICT DO NOTHING"
)
# When a key occurs twice in the batch (another value: the stream loop has removed exact repeats), the first wins.
_INSERT_FIRST = (
    f"INSERT INTO readings {READING_COLUMNS} SELECT DISTINCT ON (device_id, metric_id, ts) {READING_COLUMNS[1:-1]}"
    " FROM readings_in ORDER BY device_id, metric_id, ts, ord ON CONFLICT DO NOTHING"
)
# Relative tolerance of "the same value": far below any meter's resolution, far above float rounding.
SAME_VALUE_RTOL = 1e-9
# Every row of the batch whose stored reading has another value. A row this statement's transaction inserted has its
# own value stored, so it never matches: no need to tell inserted rows from the others.
_RECORD_CONFLICTS = f"""
INSERT INTO reading_conflicts (device_id, metric_id, ts, stored_value, offered_value, seq, received_at)
SELECT i.device_id, i.metric_id, i.ts, r.value, i.value, i.seq, i.received_at
FROM readings_in i CROSS JOIN LATERAL (
    -- LIMIT keeps this a lookup in the primary key per row: a plain join is planned as a hash join over all of
    -- readings (the temporary table has no statistics), a full scan of the largest table.
    SELECT s.value FROM readings s WHERE s.device_id = i.device_id AND s.metric_id = i.metric_id AND s.ts = i.ts
    LIMIT 1
) r
WHERE abs(r.value - i.value) > {SAME_VALUE_RTOL} * greatest(abs(r.value), abs(i.value))
ON CONFLICT DO NOTHING
"""


def _copy_readings(conn: psycopg.Connection, data: bytes, cols: ReadingColumns) -> tuple[int, int]:
    """(readings inserted, conflicts recorded)."""
    try:
        with (
            conn.transaction(),
            conn.cursor().copy(f"COPY readings {READING_COLUMNS} FROM STDIN (FORMAT BINARY)") as cp,
        ):
            cp.write(data)
        return len(cols), 0
    except errors.UniqueViolation:
        pass
    # The per-row lookups below are cheap, but their summed cost estimate would make PostgreSQL JIT-compile them
    # (measured: a quarter of a second per 100,000-row batch, more than the lookups). For this transaction only.
    conn.execute("SET LOCAL jit = off")
    conn.execute(_CREATE_READINGS_IN)
    with conn.cursor().copy(f"COPY readings_in {READING_COLUMNS} FROM STDIN (FORMAT BINARY)") as cp:
        cp.write(data)
    inserted = conn.execute(_INSERT_FIRST if _repeats_a_key(cols) else _INSERT).rowcount
    conflicts = conn.execute(_RECORD_CONFLICTS).rowcount
    return inserted, conflicts


def _repeats_a_key(cols: ReadingColumns) -> bool:
    order = np.lexsort((cols.ts_us, cols.metric_id, cols.device_id))
    dev, met, ts = cols.device_id[order], cols.metric_id[order], cols.ts_us[order]
    return bool(((np.diff(dev) == 0) & (np.diff(met) == 0) & (np.diff(ts) == 0)).any())


def touched_spans(cols: ReadingColumns) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per (device, metric) in the batch: the earliest and latest event time and the number of readings
    (device, metric, lo_us, hi_us, n)."""
    order = np.lexsort((cols.metric_id, cols.device_id))
    dev, met, ts = cols.device_id[order], cols.metric_id[order], cols.ts_us[order]
    starts = np.flatnonzero(np.r_[True, (np.diff(dev) != 0) | (np.diff(met) != 0)])
    n = np.diff(np.r_[starts, len(dev)])
    return dev[starts], met[starts], np.minimum.reduceat(ts, starts), np.maximum.reduceat(ts, starts), n


def day_spans(cols: ReadingColumns) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per (device, Asia/Bangkok day) of the batch: device ids, days since 1970-01-01, and the earliest and latest
    event time in that day, sorted by day then device (the order ``reading_days`` locks them in)."""
    day = (cols.ts_us + BKK_OFFSET_US) // US_PER_DAY
    order = np.lexsort((cols.device_id, day))
    dev, day, ts = cols.device_id[order], day[order], cols.ts_us[order]
    starts = np.flatnonzero(np.r_[True, (np.diff(dev) != 0) | (np.diff(day) != 0)])
    return dev[starts], day[starts], np.minimum.reduceat(ts, starts), np.maximum.reduceat(ts, starts)


_TS_LO = "'epoch'::timestamptz + u.lo * interval '1 microsecond'"
_TS_HI = "'epoch'::timestamptz + u.hi * interval '1 microsecond'"
_UNNEST_SPANS = "unnest(%s::int[], %s::smallint[], %s::bigint[], %s::bigint[]) AS u(d, m, lo, hi)"


def _enqueue(
    conn: psycopg.Connection, cols: ReadingColumns, late_horizon_us: int, *, counted: bool, alerts: bool,
    progress: tuple[str, int] | None,
) -> None:  # fmt: skip
    """The batch's derived work, one line per queue, sent as one statement (a data-modifying CTE per line): one
    round trip whatever the number of queues. ``counted``: the batch stored readings (a batch of repeats only
    changes no day's count). ``alerts``: the evaluator's hand-over too (:func:`alert_lines`, with ``progress``)."""
    lines: list[tuple[str, Sequence[object]]] = []
    late = (cols.received_at_us - cols.ts_us) > late_horizon_us
    on_time = cols if not late.any() else cols.take(np.flatnonzero(~late))
    if len(on_time):
        spans = tuple(map(int_array, touched_spans(on_time)[:4]))
        # Registers feed the energy engine, instantaneous and state metrics the sample/lamp updater; the join with
        # the catalogue keeps that rule in the database.
        lines.append((_queue_spans("rollup_queue", "('register')"), spans))
        lines.append((_queue_spans("sample_queue", "('instant', 'state')"), spans))
    if late.any():
        old = cols.take(np.flatnonzero(late))
        dev, met, lo, hi, n = touched_spans(old)
        received = us_to_datetime(int(old.received_at_us.max()))
        lines.append((_LATE_SPANS, (received, *map(int_array, (dev, met, lo, hi, n)))))
    if counted:
        lines.append((reading_days.ENQUEUE, tuple(map(int_array, day_spans(cols)))))
    if alerts:
        lines.extend(alert_lines(cols, progress))
    if lines:
        *ctes, (last, _) = lines
        sql = "".join(f"{'WITH' if i == 0 else ','} q{i} AS ({q}) " for i, (q, _) in enumerate(ctes)) + last
        conn.execute(sql, [p for _, params in lines for p in params])


def _queue_spans(queue: str, kinds: str) -> str:
    return (
        f"INSERT INTO {queue} (device_id, metric_id, lo, hi) SELECT u.d, u.m, {_TS_LO}, {_TS_HI}"
        f" FROM {_UNNEST_SPANS} JOIN metrics ON metrics.id = u.m AND metrics.kind IN {kinds}"
    )


_LATE_SPANS = (
    f"INSERT INTO late_spans (device_id, metric_id, lo, hi, readings, received_at) SELECT u.d, u.m, {_TS_LO}, {_TS_HI},"
    " u.n, %s FROM unnest(%s::int[], %s::smallint[], %s::bigint[], %s::bigint[], %s::int[]) AS u(d, m, lo, hi, n)"
)


def alert_lines(cols: ReadingColumns, progress: tuple[str, int] | None = None) -> list[tuple[str, Sequence[object]]]:
    """The alert evaluator's hand-over (``alert_queue``, migration 022), in the readings' transaction: per (device,
    metric) the span of event times, with the batch's newest event time and newest receipt, which its watermark is
    made of (stream/alerts.py). Every reading of the batch counts, late ones and repeats too: the evaluator judges
    what is stored, and a repeat finds it recorded already. With ``progress`` (an ingest process's MQTT client id
    and newest event time committed, when :meth:`Progress.due`), that process's row of ``ingest_progress``. Lines of
    :func:`_enqueue`'s one statement."""
    newest = us_to_datetime(int(cols.ts_us.max()))
    lines: list[tuple[str, Sequence[object]]] = []
    if progress is not None:
        client_id, progress_us = progress
        lines.append((_PROGRESS, (client_id, us_to_datetime(progress_us))))
    spans = map(int_array, touched_spans(cols)[:4])
    received = us_to_datetime(int(cols.received_at_us.max()))
    lines.append((_ALERT_SPANS, (newest, received, *spans)))
    return lines


_PROGRESS = (
    "INSERT INTO ingest_progress (client_id, newest_ts) VALUES (%s, %s) ON CONFLICT (client_id) DO UPDATE"
    " SET newest_ts = greatest(ingest_progress.newest_ts, excluded.newest_ts), updated_at = now()"
)
_ALERT_SPANS = (
    "INSERT INTO alert_queue (device_id, metric_id, lo, hi, batch_newest, batch_received)"
    f" SELECT u.d, u.m, {_TS_LO}, {_TS_HI}, %s, %s FROM {_UNNEST_SPANS}"
)


def _copy_dead_letters(conn: psycopg.Connection, rows: Sequence[DeadLetterRow]) -> None:
    fresh = [r for r in rows if not r.retained]
    if fresh:
        with conn.cursor().copy(
            "COPY dead_letters (received_at, topic, payload, reason, detail, device_ref) FROM STDIN"
        ) as cp:
            for r in fresh:
                cp.write_row((us_to_datetime(r.received_at_us), r.topic, r.payload, r.reason, r.detail, r.device_ref))
    retained = [r for r in rows if r.retained]
    if retained:
        # A retained message comes again at every subscription: the partial unique index keeps its first record.
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO dead_letters (received_at, topic, payload, reason, detail, device_ref, retained)"
                " VALUES (%s, %s, %s, %s, %s, %s, true) ON CONFLICT DO NOTHING",
                [(us_to_datetime(r.received_at_us), r.topic, r.payload, r.reason, r.detail, r.device_ref)
                 for r in retained],
            )  # fmt: skip


def _upsert_statuses(conn: psycopg.Connection, rows: Sequence[StatusRow]) -> None:
    # Retained status messages are redelivered on every reconnect: keep the newest by time.
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO device_status (device_id, status, changed_at) VALUES (%s, %s, %s)"
            " ON CONFLICT (device_id) DO UPDATE SET status = excluded.status, changed_at = excluded.changed_at"
            " WHERE device_status.changed_at <= excluded.changed_at",
            [(r.device_id, r.status, us_to_datetime(r.changed_at_us)) for r in rows],
        )


def us_to_datetime(us: int) -> datetime:
    return _UNIX_EPOCH + timedelta(microseconds=us)
