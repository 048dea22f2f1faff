"""Test helpers for the API and registry tests: a fresh, migrated PostgreSQL database, and data builders.

Each test module gets its own database (``lccm_t_<random>``), so modules never see each other's rows and can run in
any order; the database is dropped at the end even if a test left a connection open. Fresh databases are copies of
one database migrated once per test process (``lccm_tpl_<random>``): a copy takes ~0.2 s where running the
migrations takes 2-3 s, and the suite makes over a hundred of them.
"""

from __future__ import annotations

import atexit
import os
import secrets
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from psycopg import sql

from lccm.store.migrate import migrate
from lccm.store.writer import NO_SEQ, ReadingColumns, write_batch

ADMIN_URL = os.environ.get("LCCM_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _url_for(dbname: str) -> str:
    return psycopg.conninfo.make_conninfo(ADMIN_URL, dbname=dbname)


_template: str | None = None
_template_lock = threading.Lock()
# Dropping a database waits for PostgreSQL to forget its files (1-3 s on the shared machine); the test that used it
# need not wait for that, so drops run one at a time on a thread of their own, and the process waits for them to end
# before it exits.
_dropper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-db-drop")


def _drop(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@atexit.register
def _drop_all() -> None:
    _dropper.shutdown(wait=True)
    if _template is not None:
        _drop(_template)


def migrated_template() -> str:
    """The name of this process's migrated template database, created and migrated on first use, dropped when the
    process exits. Per process, not shared, so test runs (and pytest-xdist workers) never wait on each other's
    connections to it, and a run always copies the migrations of its own checkout. Nothing connects to it after
    the migration: PostgreSQL copies a database only while no one is connected to it."""
    global _template
    with _template_lock:
        if _template is None:
            name = f"lccm_tpl_{secrets.token_hex(6)}"
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            try:
                with psycopg.connect(_url_for(name)) as conn:
                    migrate(conn)
            except BaseException:
                _drop(name)
                raise
            _template = name
        return _template


@contextmanager
def fresh_database() -> Iterator[str]:
    """Create a uniquely named database, migrated (a copy of :func:`migrated_template`); yield its URL; drop it
    afterwards."""
    name = f"lccm_t_{secrets.token_hex(6)}"
    template = migrated_template()
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    try:
        yield _url_for(name)
    finally:
        _dropper.submit(_drop, name)


def us(ts: datetime) -> int:
    return (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def device_pk(conn: psycopg.Connection, device_id: str) -> int:
    row = conn.execute("SELECT id FROM devices WHERE device_id = %s", (device_id,)).fetchone()
    assert row is not None, device_id
    return int(row[0])


def write_readings(conn: psycopg.Connection, rows: Sequence[tuple[int, int, datetime, float, datetime]]) -> None:
    """Insert (device pk, metric id, ts, value, received_at) rows through the production writer."""
    cols = ReadingColumns(
        device_id=np.array([r[0] for r in rows], dtype=np.int32),
        metric_id=np.array([r[1] for r in rows], dtype=np.int16),
        ts_us=np.array([us(r[2]) for r in rows], dtype=np.int64),
        value=np.array([r[3] for r in rows], dtype=np.float64),
        seq=np.full(len(rows), NO_SEQ, dtype=np.int64),
        received_at_us=np.array([us(r[4]) for r in rows], dtype=np.int64),
    )
    write_batch(conn, cols, [])


REGISTRY_HEADER_EN = (
    "site_code,site_name,site_name_th,site_kind,city,lat,lon,floor_area_m2,"
    "device_id,device_kind,device_name,cadence_s,rated_kw"
)
REGISTRY_HEADER_TH = (
    "รหัสสถานที่,ชื่อสถานที่,ชื่อสถานที่ภาษาไทย,ประเภทสถานที่,เมือง,ละติจูด,ลองจิจูด,พื้นที่ใช้สอย_ตร.ม.,"
    "รหัสอุปกรณ์,ประเภทอุปกรณ์,ชื่ออุปกรณ์,รอบส่งข้อมูล_วินาที,พิกัดกำลัง_กิโลวัตต์"
)
REGISTRY_ROWS = [
    "HALL,City Hall,ศาลากลาง,building,Lampang,18.2888,99.4908,5200,HALL-M1,electricity_meter,Main meter,60,250",
    "HALL,City Hall,ศาลากลาง,building,Lampang,18.2888,99.4908,5200,HALL-M2,electricity_meter,Annex meter,60,",
    "RD1,Phahon Road,ถนนพหลโยธิน,street,Lampang,,,,RD1-C1,streetlight_cabinet,Cabinet 1,300,12.5",
    "AQ1,Station 1,สถานีที่ 1,station,Lampang,18.29,99.5,,AQ1-S1,aq_station,PM station,3600,",
]


def registry_csv(header: str = REGISTRY_HEADER_EN, rows: Sequence[str] = REGISTRY_ROWS, bom: bool = False) -> bytes:
    text = "\r\n".join([header, *rows]) + "\r\n"
    return (("\ufeff" if bom else "") + text).encode("utf-8")


def write_points(
    conn: psycopg.Connection,
    device: int,
    metric: int,
    points: Sequence[tuple[int, float]],
    *,
    received_us: int | None = None,
    late_s: int = 60,
) -> None:
    """One device's (ts_us, value) readings of one metric through the production writer, received ``late_s`` after
    the newest of them (or at ``received_us``)."""
    n = len(points)
    ts = np.array([t for t, _ in points], np.int64)
    received = received_us if received_us is not None else int(ts.max()) + late_s * 1_000_000
    cols = ReadingColumns(
        np.full(n, device, np.int32), np.full(n, metric, np.int16), ts, np.array([v for _, v in points], np.float64),
        np.full(n, NO_SEQ, np.int64), np.full(n, received, np.int64),
    )  # fmt: skip
    write_batch(conn, cols)
