"""Roll-up and per-site rows updated in place (migration 027): every hour, day and month row equals, bit for bit, the
sum of its finer rows in time order, and every site row the sum of its devices' rows in device order (pure Python
float additions over the rows stored), after writes across a month's change, after rewrites, and after a rewrite
that leaves buckets with no finer rows (their rows go). Two transactions refreshing one site's rows take turns, so
the second one's sums include the first one's devices."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg

from lccm.engine.timebase import BANGKOK
from lccm.imports.registry import parse_registry_csv
from lccm.runtime import factor_rows
from lccm.store.devices import import_registry
from lccm.store.energy import BucketRows, Spans, replace_buckets, sync_factor_registry
from lccm.store.samples import SampleRows, replace_samples

ENERGY, POWER = 1, 2
Q_US = 15 * 60 * 1_000_000
T0 = datetime(2026, 10, 31, 19, 0, tzinfo=BANGKOK)  # across a day's and a month's change in Bangkok
N_Q = 30 * 4
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SITES = {"M1": "A", "M2": "A", "M3": "A", "M4": "B", "M5": "B"}
ENERGY_SUMS = ("amount", "amount_estimated", "covered_s", "kgco2e", "kgco2e_base")


def _registry(site_of: dict[str, str]) -> bytes:
    lines = ["site_code,site_name,site_kind,city,device_id,device_kind,device_name,cadence_s"]
    lines += [f"{s},Building {s},building,Lampang,{d},electricity_meter,Meter {d},900" for d, s in site_of.items()]
    return ("\n".join(lines) + "\n").encode()


def _us(t: datetime) -> int:
    return (t - EPOCH) // timedelta(microseconds=1)


def _spread(rng: np.random.Generator, n: int) -> np.ndarray:
    """Values over nine orders of magnitude: adding them in another order changes the last bits."""
    return rng.uniform(1, 10, n) * 10.0 ** rng.integers(-4, 5, n)


def _write(conn: psycopg.Connection, ids: np.ndarray, lo: int, hi: int, rng: np.random.Generator,
           keep_us: int | None = None) -> None:  # fmt: skip
    """Rewrite [lo, hi) of these devices; with ``keep_us``, only the buckets before it get rows."""
    buckets = np.arange(lo, hi if keep_us is None else keep_us, Q_US, dtype=np.int64)
    n = ids.size * buckets.size
    rows = BucketRows(
        device_id=np.repeat(ids, buckets.size), metric_id=np.full(n, ENERGY, np.int16),
        bucket_start_us=np.tile(buckets, ids.size), amount=_spread(rng, n), amount_estimated=_spread(rng, n),
        covered_s=_spread(rng, n), quality=rng.integers(0, 4, n).astype(np.int16),
        intervals=rng.integers(1, 4, n).astype(np.int32), kgco2e=_spread(rng, n), kgco2e_base=_spread(rng, n),
    )  # fmt: skip
    full = np.full(ids.size, lo, np.int64), np.full(ids.size, hi, np.int64)
    replace_buckets(conn, Spans(ids, np.full(ids.size, ENERGY, np.int16), *full), rows)
    count = rng.integers(1, 16, n).astype(np.int32)
    # Every device's latest reading at the same time in some buckets: the site's latest value is the lowest id's.
    last_ts = rows.bucket_start_us + np.where(rng.random(n) < 0.5, Q_US - 1_000_000, rng.integers(0, Q_US, n))
    samples = SampleRows(
        device_id=rows.device_id, metric_id=np.full(n, POWER, np.int16), bucket_start_us=rows.bucket_start_us,
        n=count, sum=_spread(rng, n), min=-_spread(rng, n), max=_spread(rng, n), last=_spread(rng, n),
        last_ts_us=last_ts,
    )  # fmt: skip
    replace_samples(conn, Spans(ids, np.full(ids.size, POWER, np.int16), *full), samples)


def _calendar(t: datetime, level: str) -> datetime:
    local = t.astimezone(BANGKOK)
    if level == "1h":
        return local.replace(minute=0)
    if level == "1d":
        return local.replace(hour=0, minute=0)
    return local.replace(day=1, hour=0, minute=0)


def _rows(conn: psycopg.Connection, table: str, level: str, columns: str) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    key = "site_id" if "site" in table else "device_id"
    rows = conn.execute(
        f"SELECT {key}, metric_id, bucket_start, {columns} FROM {table} WHERE resolution = %s ORDER BY 1, 2, 3",
        (level,),
    ).fetchall()
    return {tuple(r[:3]): tuple(r[3:]) for r in rows}


def _energy_up(finer: dict[tuple[Any, ...], tuple[Any, ...]], level: str) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """A level's rows from the finer level's, each float sum added in time order (the finer rows come sorted)."""
    out: dict[tuple[Any, ...], list[Any]] = {}
    for (d, m, t), (*sums, quality, intervals) in sorted(finer.items()):
        acc = out.get((d, m, _calendar(t, level)))
        if acc is None:
            out[(d, m, _calendar(t, level))] = [*sums, quality, intervals]
            continue
        for i, v in enumerate(sums):
            acc[i] += v
        acc[-2], acc[-1] = max(acc[-2], quality), acc[-1] + intervals
    return {k: tuple(v) for k, v in out.items()}


def _samples_up(finer: dict[tuple[Any, ...], tuple[Any, ...]], level: str) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    out: dict[tuple[Any, ...], list[Any]] = {}
    for (d, m, t), (n, total, lo, hi, last, last_ts) in sorted(finer.items()):
        acc = out.setdefault((d, m, _calendar(t, level)), [0, None, lo, hi, last, last_ts])
        acc[0] += n
        acc[1] = total if acc[1] is None else acc[1] + total
        acc[2], acc[3] = min(acc[2], lo), max(acc[3], hi)
        if last_ts > acc[5]:
            acc[4], acc[5] = last, last_ts
    return {k: tuple(v) for k, v in out.items()}


Rows = dict[tuple[Any, ...], tuple[Any, ...]]


def _energy_sites(devices: Rows, site: dict[int, int]) -> Rows:
    """Site rows from the device rows, each float sum added in device order."""
    out: dict[tuple[Any, ...], list[Any]] = {}
    for (d, m, t), (*sums, quality, intervals) in sorted(devices.items(), key=lambda kv: (kv[0][2], kv[0][0])):
        acc = out.get((site[d], m, t))
        if acc is None:
            out[(site[d], m, t)] = [*sums, quality, intervals, 1]
            continue
        for i, v in enumerate(sums):
            acc[i] += v
        acc[-3], acc[-2], acc[-1] = max(acc[-3], quality), acc[-2] + intervals, acc[-1] + 1
    return {k: tuple(v) for k, v in out.items()}


def _sample_sites(devices: Rows, site: dict[int, int]) -> Rows:
    out: dict[tuple[Any, ...], list[Any]] = {}
    for (d, m, t), (n, total, lo, hi, last, last_ts) in sorted(devices.items(), key=lambda kv: (kv[0][2], kv[0][0])):
        acc = out.get((site[d], m, t))
        if acc is None:
            out[(site[d], m, t)] = [1, n, total, lo, hi, last, last_ts, total / n]
            continue
        acc[0], acc[1], acc[2] = acc[0] + 1, acc[1] + n, acc[2] + total
        acc[3], acc[4] = min(acc[3], lo), max(acc[4], hi)
        if last_ts > acc[6]:  # ties: the first device in id order keeps it
            acc[5], acc[6] = last, last_ts
        acc[7] += total / n
    return {k: tuple(v) for k, v in out.items()}


E_COLS = ", ".join(ENERGY_SUMS) + ", quality, intervals"
S_COLS = "n, sum, min, max, last, last_ts"


def _check(conn: psycopg.Connection) -> None:
    site: dict[int, int] = dict(conn.execute("SELECT id, site_id FROM devices").fetchall())
    energy = {"15min": _rows(conn, "energy_buckets", "15min", E_COLS)}
    samples = {"15min": _rows(conn, "sample_buckets", "15min", S_COLS)}
    for level, finer in (("1h", "15min"), ("1d", "1h"), ("1mo", "1d")):
        energy[level] = _rows(conn, "energy_buckets", level, E_COLS)
        assert energy[level] == _energy_up(energy[finer], level), level  # exact: == on floats
        samples[level] = _rows(conn, "sample_buckets", level, S_COLS)
        assert samples[level] == _samples_up(samples[finer], level), level
    for level in ("15min", "1h", "1d", "1mo"):
        got = _rows(conn, "energy_site_buckets", level, E_COLS + ", devices")
        assert got == _energy_sites(energy[level], site), level
        got = _rows(conn, "sample_site_buckets", level, "devices, " + S_COLS + ", sum_of_device_means")
        assert got == _sample_sites(samples[level], site), level


def _devices(conn: psycopg.Connection) -> np.ndarray:
    sync_factor_registry(conn, *factor_rows())
    import_registry(conn, parse_registry_csv(_registry(SITES)))
    return np.array([r[0] for r in conn.execute("SELECT id FROM devices ORDER BY device_id")], np.int32)


def test_rows_are_ordered_sums_after_writes_rewrites_and_removals(fresh_db: str) -> None:
    rng = np.random.default_rng(26)
    with psycopg.connect(fresh_db) as conn:
        ids = _devices(conn)
        lo = _us(T0)
        _write(conn, ids, lo, lo + N_Q * Q_US, rng)
        conn.commit()
        _check(conn)
        # The updaters' usual work: the last hours again, then a few devices' middle part, several times.
        for _ in range(3):
            _write(conn, ids, lo + (N_Q - 9) * Q_US, lo + N_Q * Q_US, rng)
            _write(conn, ids[[1, 3]], lo + 13 * Q_US, lo + 71 * Q_US, rng)
            conn.commit()
        _check(conn)
        # A rewrite that leaves the range's second half without 15-minute rows (from 01:45 on 1 November): its
        # hours and the site's go, the day and month rows shrink, and B's rows go where M4 and M5 both have none.
        _write(conn, ids[[3, 4]], lo + 20 * Q_US, lo + N_Q * Q_US, rng, keep_us=lo + 27 * Q_US)
        conn.commit()
        _check(conn)
        b = conn.execute("SELECT id FROM sites WHERE site_code = 'B'").fetchone()
        assert b is not None
        latest = conn.execute(
            "SELECT max(bucket_start) FROM energy_site_buckets WHERE resolution = '1h' AND site_id = %s", (b[0],)
        ).fetchone()
        assert latest is not None and latest[0] == T0 + timedelta(hours=6)


def test_two_refreshes_of_one_site_take_turns(fresh_db: str) -> None:
    """A's devices are written by two transactions at once (two ingest processes' partitions): the second one's site
    rows wait for the first's commit and then sum both, instead of overwriting them with sums that miss the first's
    devices."""
    rng = np.random.default_rng(3)
    with psycopg.connect(fresh_db) as conn:
        ids = _devices(conn)
        conn.commit()
    lo = _us(T0)
    first = psycopg.connect(fresh_db)
    second = psycopg.connect(fresh_db)
    try:
        _write(first, ids[[0]], lo, lo + 8 * Q_US, rng)  # M1, site A: not committed yet
        done = threading.Event()

        def other() -> None:
            _write(second, ids[[1]], lo, lo + 8 * Q_US, rng)  # M2, site A
            second.commit()
            done.set()

        worker = threading.Thread(target=other)
        worker.start()
        assert not done.wait(1.0), "the second refresh of site A did not wait for the first"
        first.commit()
        worker.join(30)
        assert done.is_set()
    finally:
        first.close()
        second.close()
    with psycopg.connect(fresh_db) as conn:
        _check(conn)
        devices = conn.execute(
            "SELECT DISTINCT devices FROM energy_site_buckets s JOIN sites x ON x.id = s.site_id"
            " WHERE x.site_code = 'A'"
        ).fetchall()
        assert devices == [(2,)]
