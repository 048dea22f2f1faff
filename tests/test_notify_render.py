"""Thai and English texts, checked against strings written out by hand (Bangkok = UTC+7, Buddhist Era = CE + 543)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from lccm.notify.model import AlertMessage
from lccm.notify.render import format_number, format_quantity, format_time, render_alert, render_digest


def alert(**kw: object) -> AlertMessage:
    fields: dict = {
        "alert_id": "A-42",
        "rule_key": "pm25_24h_red",
        "dedup_key": "cm-01/pm25",
        "city": "chiang-mai",
        "site_id": "cm-01",
        "metric": "pm25",
        "severity": "critical",
        "transition": "raised",
        "event_time": datetime(2025, 11, 22, 7, 5, tzinfo=UTC),  # 14:05 in Bangkok
        "value": 87.4,
        "threshold": 75.0,
        "unit": "ug/m3",
        "site_name_th": "สถานีศาลากลาง",
        "site_name_en": "City Hall station",
    }
    fields.update(kw)
    return AlertMessage(**fields)


@pytest.mark.parametrize(
    ("x", "text"),
    [
        (87.4, "87.4"),
        (75.0, "75"),
        (37.5, "37.5"),
        (0.153, "0.153"),  # SO2 in ppm keeps its digits
        (0.15, "0.15"),
        (12345.6, "12,346"),  # four significant digits: 12,345.6 -> 12,346
        (1234.6, "1,235"),
        (9.99961, "10"),  # 9.99961 to 3 decimals is 10.000
        (-2.25, "-2.25"),
        (0.0, "0"),
    ],
)
def test_format_number(x: float, text: str) -> None:
    assert format_number(x) == text


def test_quantities_use_unit_symbols() -> None:
    assert format_quantity(87.4, "ug/m3") == "87.4 µg/m³"
    assert format_quantity(31.5, "Cel") == "31.5°C"
    assert format_quantity(0.153, "ppm") == "0.153 ppm"
    assert format_quantity(1500.0, "kWh") == "1,500 kWh"
    assert format_quantity(3.0, "") == "3"
    assert format_quantity(None, "ppm") == ""


def test_times_are_bangkok_with_buddhist_era_in_thai() -> None:
    # 2025-12-31 17:30 UTC is 2026-01-01 00:30 in Bangkok: the Thai date is 1 ม.ค. 2569 (2026 + 543).
    t = datetime(2025, 12, 31, 17, 30, tzinfo=UTC)
    assert format_time(t, "th") == "1 ม.ค. 2569 00:30 น."
    assert format_time(t, "en") == "1 Jan 2026 00:30 Bangkok time"
    # The zone of the input does not matter, only the instant: 09:30 in Tokyo (UTC+9) is 07:30 in Bangkok.
    tokyo = datetime(2026, 4, 13, 9, 30, tzinfo=timezone(timedelta(hours=9)))
    assert format_time(tokyo, "th") == "13 เม.ย. 2569 07:30 น."


def test_thai_alert_text() -> None:
    subject, body = render_alert(alert(), "th")
    assert subject == "[วิกฤต] แจ้งเตือนใหม่: PM2.5 ที่ สถานีศาลากลาง"
    assert body == ("ค่าที่วัดได้ 87.4 µg/m³ (เกณฑ์ 75 µg/m³)\nเวลา 22 พ.ย. 2568 14:05 น.\nกฎ pm25_24h_red · รหัสแจ้งเตือน A-42")


def test_english_alert_text() -> None:
    subject, body = render_alert(alert(transition="cleared", value=33.0, note_en="Back below the standard."), "en")
    assert subject == "[Critical] Cleared: PM2.5 at City Hall station"
    assert body == (
        "Value 33 µg/m³ (threshold 75 µg/m³)\n"
        "Time 22 Nov 2025 14:05 Bangkok time\n"
        "Back below the standard.\n"
        "Rule pm25_24h_red · alert A-42"
    )


def test_both_languages_thai_first() -> None:
    subject, body = render_alert(
        alert(severity="warning", metric="so2", unit="ppm", value=0.153, threshold=0.15), "both"
    )
    assert subject == (
        "[เตือน] แจ้งเตือนใหม่: ซัลเฟอร์ไดออกไซด์ (SO2) ที่ สถานีศาลากลาง"
        " / [Warning] Raised: Sulphur dioxide (SO2) at City Hall station"
    )
    th, en = body.split("\n\n—\n\n")
    assert th.startswith("ค่าที่วัดได้ 0.153 ppm (เกณฑ์ 0.15 ppm)")
    assert en.startswith("Value 0.153 ppm (threshold 0.15 ppm)")


def test_missing_site_name_falls_back_and_unknown_metric_is_shown_as_is() -> None:
    subject, body = render_alert(
        alert(site_name_th="", site_name_en="", metric="noise_db", unit="dB", value=None), "th"
    )
    assert subject == "[วิกฤต] แจ้งเตือนใหม่: noise_db ที่ cm-01"
    assert body.splitlines()[0] == "เกณฑ์ 75 dB"


def test_digest_counts_and_orders_by_event_time() -> None:
    t0 = datetime(2025, 11, 22, 2, 0, tzinfo=UTC)  # 09:00 Bangkok
    alerts = [
        alert(alert_id="A-2", severity="warning", event_time=t0 + timedelta(hours=6), value=41.0),
        alert(alert_id="A-1", severity="info", event_time=t0, value=None, metric="power", unit="W"),
        alert(alert_id="A-3", severity="warning", event_time=t0 + timedelta(hours=1), transition="late", value=40.2),
    ]
    at = datetime(2025, 11, 23, 1, 0, tzinfo=UTC)  # 08:00 Bangkok on the 23rd
    subject, body = render_digest(alerts, "en", "digest", at)
    assert subject == "Daily alert digest 23 Nov 2025 (3 alerts)"
    assert body.splitlines() == [
        "Critical 0 · Warning 2 · Info 1",
        "",
        "22 Nov 09:00 [Info] Raised: Power at City Hall station",
        "22 Nov 10:00 [Warning] Raised late (delayed data): PM2.5 at City Hall station 40.2 µg/m³",
        "22 Nov 15:00 [Warning] Raised: PM2.5 at City Hall station 41 µg/m³",
    ]
    th_subject, th_body = render_digest(alerts, "th", "quiet_hours", at, max_lines=2)
    assert th_subject == "การแจ้งเตือนระหว่างช่วงงดแจ้งเตือน (3 รายการ)"
    assert th_body.splitlines()[0] == "วิกฤต 0 · เตือน 2 · ข้อมูล 1"
    assert th_body.splitlines()[-1] == "… และอีก 1 รายการ"
    assert len(th_body.splitlines()) == 2 + 2 + 1
