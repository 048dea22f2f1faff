"""Test helpers for the API and registry tests: a fresh, migrated PostgreSQL database, and data builders.

Each test module gets its own database (``lccm_t_<random>``), so modules never see each other's rows and can run in
any order; the database is dropped at the end even if a test left a connection open.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Sequence
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


@contextmanager
def fresh_database() -> Iterator[str]:
    """Create and migrate a uniquely named database; yield its URL; drop it afterwards."""
    name = f"lccm_t_{secrets.token_hex(6)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = _url_for(name)
        with psycopg.connect(url) as conn:
            migrate(conn)
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


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
