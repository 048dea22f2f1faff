"""Per-site bucket rows (migration 021): the energy and rollup figures by site, and the dashboards' panels that read
them, equal pure-Python sums over the 15-minute rows written, at every resolution, after a rewrite, and after a
device moves to another site (through the registry import and a plain UPDATE)."""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest

from lccm.dashboards import sql as dsql
from lccm.engine.timebase import BANGKOK
from lccm.imports.registry import parse_registry_csv
from lccm.runtime import factor_rows
from lccm.store import queries, rollup_queries
from lccm.store.devices import import_registry
from lccm.store.energy import BucketRows, Spans, replace_buckets, sync_factor_registry
from lccm.store.samples import SampleRows, replace_samples

ENERGY, POWER = 1, 2
Q_US = 15 * 60 * 1_000_000
T0 = datetime(2026, 9, 29, 20, 0, tzinfo=BANGKOK)  # 2 days 10 hours across the fiscal year's change
N_Q = (2 * 24 + 10) * 4
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _registry(site_of: dict[str, str]) -> bytes:
    lines = ["site_code,site_name,site_kind,city,device_id,device_kind,device_name,cadence_s"]
    for dev, site in site_of.items():
        lines.append(f"{site},Building {site},building,Lampang,{dev},electricity_meter,Meter {dev},900")
    return ("\n".join(lines) + "\n").encode()


SITES = {"M1": "A", "M2": "A", "M3": "B", "M4": "B", "M5": "B"}


def _us(t: datetime) -> int:
    return (t - EPOCH) // timedelta(microseconds=1)


def _write(conn: psycopg.Connection, ids: np.ndarray, lo: int, hi: int, rng: np.random.Generator) -> None:
    buckets = np.arange(lo, hi, Q_US, dtype=np.int64)
    n = ids.size * buckets.size
    amount = rng.uniform(0, 5, n)
    rows = BucketRows(
        device_id=np.repeat(ids, buckets.size), metric_id=np.full(n, ENERGY, np.int16),
        bucket_start_us=np.tile(buckets, ids.size), amount=amount, amount_estimated=amount * rng.uniform(0, 0.3, n),
        covered_s=rng.uniform(0, 900, n), quality=rng.integers(0, 4, n).astype(np.int16),
        intervals=rng.integers(1, 4, n).astype(np.int32), kgco2e=amount * 0.5, kgco2e_base=amount * 0.4,
    )  # fmt: skip
    spans = Spans(ids, np.full(ids.size, ENERGY, np.int16), np.full(ids.size, lo), np.full(ids.size, hi))
    replace_buckets(conn, spans, rows)
    mean = rng.uniform(100, 5000, n)
    count = rng.integers(1, 16, n).astype(np.int32)
    srows = SampleRows(
        device_id=rows.device_id, metric_id=np.full(n, POWER, np.int16), bucket_start_us=rows.bucket_start_us,
        n=count, sum=mean * count, min=mean * 0.9, max=mean * 1.1, last=mean * rng.uniform(0.9, 1.1, n),
        last_ts_us=rows.bucket_start_us + rng.integers(0, Q_US, n),
    )  # fmt: skip
    replace_samples(conn, Spans(ids, np.full(ids.size, POWER, np.int16), spans.lo_us, spans.hi_us), srows)


def _stored(conn: psycopg.Connection, table: str, columns: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        f"SELECT d.device_id, (extract(epoch FROM b.bucket_start) * 1000000)::bigint, {columns} FROM {table} b"
        " JOIN devices d ON d.id = b.device_id WHERE b.resolution = '15min' ORDER BY 1, 2"
    ).fetchall()


def _key(t_us: int, resolution: str) -> datetime:
    local = datetime.fromtimestamp(t_us / 1e6, BANGKOK)
    if resolution == "15min":
        return local
    if resolution == "1h":
        return local.replace(minute=0)
    if resolution == "1d":
        return local.replace(hour=0, minute=0)
    if resolution == "1mo":
        return local.replace(day=1, hour=0, minute=0)
    year = local.year + (1 if local.month >= 10 else 0)
    return datetime(year - 1, 10, 1, tzinfo=BANGKOK)


def _expected_energy(conn: psycopg.Connection, resolution: str, sites: dict[str, str]) -> dict[tuple, tuple]:
    out: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
    for dev, t, amount, kg, kg_base, quality in _stored(
        conn, "energy_buckets", "b.amount, b.kgco2e, b.kgco2e_base, b.quality"
    ):
        acc = out[(_key(t, resolution), sites[dev])]
        acc[0] += amount
        acc[1] += kg
        acc[2] += kg_base
        acc[3] = max(acc[3], quality)
    return {k: tuple(v) for k, v in out.items()}


def _expected_samples(conn: psycopg.Connection, resolution: str, sites: dict[str, str]) -> dict[tuple, tuple]:
    per_device: dict[tuple, list[Any]] = {}
    for dev, t, n, total, lo, hi, last, last_ts in _stored(
        conn, "sample_buckets", "b.n, b.sum, b.min, b.max, b.last, b.last_ts"
    ):
        key = (_key(t, resolution), sites[dev], dev)
        acc = per_device.setdefault(key, [0, 0.0, lo, hi, last, last_ts])
        acc[0] += n
        acc[1] += total
        acc[2], acc[3] = min(acc[2], lo), max(acc[3], hi)
        if last_ts > acc[5]:
            acc[4], acc[5] = last, last_ts
    out: dict[tuple, list[Any]] = {}
    for (bucket, site, _), (n, total, lo, hi, last, last_ts) in per_device.items():
        acc = out.setdefault((bucket, site), [0, 0, 0.0, lo, hi, last, last_ts, 0.0])
        acc[0] += 1
        acc[1] += n
        acc[2] += total
        acc[3], acc[4] = min(acc[3], lo), max(acc[4], hi)
        if last_ts > acc[6]:
            acc[5], acc[6] = last, last_ts
        acc[7] += total / n
    return {k: tuple(v) for k, v in out.items()}


def _check(conn: psycopg.Connection, sites: dict[str, str]) -> None:
    start, end, as_of = T0 - timedelta(days=40), T0 + timedelta(days=40), T0 + timedelta(days=3)
    members = {s: sum(1 for v in sites.values() if v == s) for s in set(sites.values())}
    for resolution in ("15min", "1h", "1d", "1mo", "fy"):
        got = queries.energy_series(conn, resolution=resolution, group_by="site", start=start, end=end, as_of=as_of,
                                    limit=100_000, scope=None)  # fmt: skip
        want = _expected_energy(conn, resolution, sites)
        assert {(r.bucket_start, r.group) for r in got} == set(want), resolution
        for r in got:
            amount, kg, kg_base, quality = want[(r.bucket_start, r.group)]
            assert (r.amount, r.kgco2e, r.kgco2e_base, r.quality) == (
                pytest.approx(amount), pytest.approx(kg), pytest.approx(kg_base), quality,
            )  # fmt: skip
            assert r.group is not None and r.devices == members[r.group]
        if resolution == "fy":
            continue
        rows = rollup_queries.sample_series(conn, metric_id=POWER, resolution=resolution, group_by="site",
                                            start=start, end=end, limit=100_000, scope=None)  # fmt: skip
        swant = _expected_samples(conn, resolution, sites)
        assert {(s.bucket_start, s.group) for s in rows} == set(swant), resolution
        for s in rows:
            devices, n, total, lo, hi, last, last_ts, sum_means = swant[(s.bucket_start, s.group)]
            assert (s.devices, s.n, s.sum, s.min, s.max, s.last, s.last_ts, s.sum_of_device_means) == (
                devices, n, pytest.approx(total), pytest.approx(lo), pytest.approx(hi), pytest.approx(last),
                last_ts, pytest.approx(sum_means),
            )  # fmt: skip


def _grafana(text: str, lo: datetime, hi: datetime, sites: list[str]) -> str:
    def rfc(t: datetime) -> str:
        return "'" + t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + "'"

    out = re.sub(r"\$__timeFilter\(([^()]*)\)", lambda m: f"{m.group(1)} BETWEEN {rfc(lo)} AND {rfc(hi)}", text)
    out = out.replace("$__timeFrom()", rfc(lo)).replace("$__timeTo()", rfc(hi))
    return out.replace("$site", ",".join(f"'{s}'" for s in sites))


# The data-quality panel as it read the 15-minute rows only: the reference for the mixed-resolution one.
_QUALITY_15MIN = """
SELECT s.site_code AS site, d.device_id AS device, coalesce(max(e.quality), 3),
       coalesce(100 * sum(e.covered_s) / extract(epoch FROM $__timeTo()::timestamptz - $__timeFrom()::timestamptz), 0),
       coalesce(100 * sum(e.amount_estimated) / nullif(sum(e.amount), 0), 0), coalesce(sum(e.amount), 0)
FROM devices d JOIN sites s ON s.id = d.site_id
LEFT JOIN energy_buckets e ON e.device_id = d.id AND e.resolution = '15min' AND e.metric_id = 1
     AND $__timeFilter(e.bucket_start)
WHERE d.kind = 'electricity_meter' AND s.site_code IN ($site)
GROUP BY 1, 2 ORDER BY 1, 2"""


# Live power as it summed each meter's 15-minute mean: the reference for the per-site rows.
_POWER_PER_METER = """
SELECT b.bucket_start, s.site_code, sum(b.sum / b.n) FROM sample_buckets b
JOIN devices d ON d.id = b.device_id JOIN sites s ON s.id = d.site_id
WHERE b.resolution = '15min' AND b.metric_id = 2 AND $__timeFilter(b.bucket_start) AND s.site_code IN ($site)
GROUP BY 1, 2 ORDER BY 1, 2"""


def _check_panels(conn: psycopg.Connection, sites: dict[str, str]) -> None:
    codes = sorted(set(sites.values()))
    # Ranges starting and ending off the hour and the day, one exactly on them, one shorter than an hour.
    for lo, hi in [
        (T0 + timedelta(minutes=7), T0 + timedelta(days=2, hours=3, minutes=52)),
        (T0 + timedelta(hours=4), T0 + timedelta(days=2, hours=4)),
        (T0 + timedelta(hours=5, minutes=16), T0 + timedelta(hours=5, minutes=44)),
    ]:
        got = conn.execute(_grafana(dsql.DATA_QUALITY, lo, hi, codes)).fetchall()
        want = conn.execute(_grafana(_QUALITY_15MIN, lo, hi, codes)).fetchall()
        assert [r[:3] for r in got] == [r[:3] for r in want]
        assert [r[3:] for r in got] == [pytest.approx(r[3:]) for r in want]
        power = conn.execute(_grafana(dsql.LIVE_POWER, lo, hi, codes)).fetchall()
        want_power = conn.execute(_grafana(_POWER_PER_METER, lo, hi, codes)).fetchall()
        assert [r[:2] for r in power] == [r[:2] for r in want_power]
        assert [r[2] for r in power] == pytest.approx([r[2] for r in want_power])


def test_site_rows_follow_writes_rewrites_and_moves(fresh_db: str) -> None:
    rng = np.random.default_rng(7)
    with psycopg.connect(fresh_db) as conn:
        sync_factor_registry(conn, *factor_rows())
        import_registry(conn, parse_registry_csv(_registry(SITES)))
        ids = np.array([r[0] for r in conn.execute("SELECT id FROM devices ORDER BY device_id")], np.int32)
        lo = _us(T0)
        _write(conn, ids, lo, lo + N_Q * Q_US, rng)
        # A rewrite of part of the range by some devices (the updaters' usual work) replaces their share only.
        _write(conn, ids[[0, 3]], lo + 37 * Q_US, lo + 130 * Q_US, rng)
        conn.commit()
        _check(conn, SITES)
        _check_panels(conn, SITES)

        moved = SITES | {"M2": "B"}  # re-imported at another site: its whole history goes with it
        import_registry(conn, parse_registry_csv(_registry(moved)))
        conn.commit()
        _check(conn, moved)

        back = conn.execute("SELECT id FROM sites WHERE site_code = 'A'").fetchone()
        assert back is not None
        conn.execute("UPDATE devices SET site_id = %s WHERE device_id IN ('M3', 'M2')", (back[0],))
        conn.commit()
        _check(conn, moved | {"M2": "A", "M3": "A"})
        _check_panels(conn, moved | {"M2": "A", "M3": "A"})


def test_two_claims_rewriting_one_sites_rows_at_once_both_commit_and_the_sums_are_of_both(fresh_db: str) -> None:
    """Two processes' updaters derive devices of one site in different partitions: each rewrites the site's rows in
    its claim's transaction. The second used to fail on the site rows' primary key when the first committed (its
    claim rolled back and retried); now it waits for the first and sums its committed rows with its own."""
    rng = np.random.default_rng(11)
    lo = _us(T0)
    with psycopg.connect(fresh_db) as conn:
        sync_factor_registry(conn, *factor_rows())
        import_registry(conn, parse_registry_csv(_registry(SITES)))
        ids = np.array([r[0] for r in conn.execute("SELECT id FROM devices ORDER BY device_id")], np.int32)
        _write(conn, ids, lo, lo + 8 * Q_US, rng)
        conn.commit()
    m1, m2 = ids[[0]], ids[[1]]  # both at site A
    errors: list[BaseException] = []
    second_done = threading.Event()

    def second() -> None:
        try:
            with psycopg.connect(fresh_db) as conn2:
                _write(conn2, m2, lo + 2 * Q_US, lo + 6 * Q_US, np.random.default_rng(12))
                conn2.commit()
        except BaseException as e:  # reported below
            errors.append(e)
        finally:
            second_done.set()

    with psycopg.connect(fresh_db) as conn1:
        _write(conn1, m1, lo + Q_US, lo + 5 * Q_US, rng)  # not committed yet: holds the site's rows
        t = threading.Thread(target=second)
        t.start()
        assert not second_done.wait(1.0)  # the second waits for the first's site rows
        conn1.commit()
    t.join(30)
    assert not t.is_alive() and errors == []
    with psycopg.connect(fresh_db) as conn:
        _check(conn, SITES)  # every site row is the sum of the stored device rows, both claims' included


def _seq_scans(conn: psycopg.Connection) -> dict[str, int]:
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.commit()
    conn.execute("SELECT pg_stat_clear_snapshot()")
    rows = conn.execute(
        "SELECT relname, seq_scan FROM pg_stat_user_tables WHERE relname ~ '^(energy|sample)_buckets_15min$'"
    ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def _write_samples(conn: psycopg.Connection, ids: np.ndarray, lo: int, hi: int, rng: np.random.Generator) -> None:
    """A meter's four instantaneous metrics (power, voltage, current, power factor), as the benchmark's meters send."""
    buckets = np.arange(lo, hi, Q_US, dtype=np.int64)
    n = ids.size * buckets.size
    for metric in (2, 3, 4, 5):
        mean = rng.uniform(1, 5000, n)
        count = rng.integers(1, 16, n).astype(np.int32)
        rows = SampleRows(
            device_id=np.repeat(ids, buckets.size), metric_id=np.full(n, metric, np.int16),
            bucket_start_us=np.tile(buckets, ids.size), n=count, sum=mean * count, min=mean * 0.9, max=mean * 1.1,
            last=mean, last_ts_us=np.tile(buckets, ids.size) + rng.integers(0, Q_US, n),
        )  # fmt: skip
        spans = Spans(ids, np.full(ids.size, metric, np.int16), np.full(ids.size, lo), np.full(ids.size, hi))
        replace_samples(conn, spans, rows)


def test_a_claims_site_rows_read_its_devices_bucket_rows_by_key_not_the_partition(fresh_db: str) -> None:
    """Migration 029: the site rows of a claim read the bucket rows of the site's devices in the claim's range by the
    primary key. Migration 027's join was planned as a hash join over a sequential scan of the whole partition (seen
    in the deployed benchmark: 108,000 rows read for 8,800 used, with statistics): every claim read every device's
    history. The benchmark's shape: 200 meters at one site, four instantaneous metrics, 32.5 hours of history."""
    rng = np.random.default_rng(5)
    lo, hi = _us(T0), _us(T0) + 130 * Q_US
    site = {f"M{i:03d}": "A" for i in range(200)}
    with psycopg.connect(fresh_db) as conn:
        sync_factor_registry(conn, *factor_rows())
        import_registry(conn, parse_registry_csv(_registry(site)))
        ids = np.array([r[0] for r in conn.execute("SELECT id FROM devices ORDER BY device_id")], np.int32)
        _write_samples(conn, ids, lo, hi, rng)
        conn.commit()
        conn.execute("ANALYZE sample_buckets")  # as the ingest's statistics worker keeps them
        conn.commit()
        before = _seq_scans(conn)
        _write_samples(conn, ids, hi - 12 * Q_US, hi, rng)  # one claim: every meter's last three hours
        conn.commit()
        after = _seq_scans(conn)
    assert {t: n - before[t] for t, n in after.items() if n != before[t]} == {}
