"""Thai and English message texts: every template lives in TEXTS, nowhere else.

Times are shown in the city's zone (Asia/Bangkok); Thai dates use Thai month abbreviations and the Buddhist Era
year (CE + 543, docs/reference.md#buddhist-era-years), the form Thai government staff read every day. Numbers keep
four significant digits with thousands separators, and units are shown with their usual symbols (ug/m3 -> µg/m³).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from lccm.engine.timebase import BANGKOK, buddhist_era
from lccm.notify.model import AlertMessage, Language, NotificationKind, Severity, as_utc

TEXTS: dict[str, dict[str, str]] = {
    "th": {
        "severity.info": "ข้อมูล",
        "severity.warning": "เตือน",
        "severity.critical": "วิกฤต",
        "transition.raised": "แจ้งเตือนใหม่",
        "transition.reopened": "แจ้งเตือนอีกครั้ง",
        "transition.duplicate": "แจ้งเตือนซ้ำจากอุปกรณ์อื่น",
        "transition.acknowledged": "รับทราบแล้ว",
        "transition.cleared": "กลับสู่ปกติ",
        "transition.closed": "ปิดแล้ว",
        "transition.raised.late": "แจ้งเตือนย้อนหลัง (ข้อมูลมาช้า)",
        "transition.cleared.late": "กลับสู่ปกติ ย้อนหลัง (ข้อมูลมาช้า)",
        "late": "{transition} (ข้อมูลมาช้า)",
        "subject": "[{severity}] {transition}: {metric} ที่ {site}",
        "value_threshold": "ค่าที่วัดได้ {value} (เกณฑ์ {threshold})",
        "value": "ค่าที่วัดได้ {value}",
        "threshold": "เกณฑ์ {threshold}",
        "time": "เวลา {time}",
        "footer": "กฎ {rule} · รหัสแจ้งเตือน {alert}",
        "digest.subject": "สรุปการแจ้งเตือนประจำวัน {date} ({count} รายการ)",
        "quiet_hours.subject": "การแจ้งเตือนระหว่างช่วงงดแจ้งเตือน ({count} รายการ)",
        "digest.counts": "วิกฤต {critical} · เตือน {warning} · ข้อมูล {info}",
        "digest.line": "{time} [{severity}] {transition}: {metric} ที่ {site}{value}",
        "digest.more": "… และอีก {count} รายการ",
        "time.format": "{day} {month} {year} {hh:02d}:{mm:02d} น.",
        "time.short": "{day} {month} {hh:02d}:{mm:02d} น.",
        "date.format": "{day} {month} {year}",
    },
    "en": {
        "severity.info": "Info",
        "severity.warning": "Warning",
        "severity.critical": "Critical",
        "transition.raised": "Raised",
        "transition.reopened": "Raised again",
        "transition.duplicate": "Raised again by another device",
        "transition.acknowledged": "Acknowledged",
        "transition.cleared": "Cleared",
        "transition.closed": "Closed",
        "transition.raised.late": "Raised late (delayed data)",
        "transition.cleared.late": "Cleared late (delayed data)",
        "late": "{transition} (delayed data)",
        "subject": "[{severity}] {transition}: {metric} at {site}",
        "value_threshold": "Value {value} (threshold {threshold})",
        "value": "Value {value}",
        "threshold": "Threshold {threshold}",
        "time": "Time {time}",
        "footer": "Rule {rule} · alert {alert}",
        "digest.subject": "Daily alert digest {date} ({count} alerts)",
        "quiet_hours.subject": "Alerts held during quiet hours ({count})",
        "digest.counts": "Critical {critical} · Warning {warning} · Info {info}",
        "digest.line": "{time} [{severity}] {transition}: {metric} at {site}{value}",
        "digest.more": "… and {count} more",
        "time.format": "{day} {month} {year} {hh:02d}:{mm:02d} Bangkok time",
        "time.short": "{day} {month} {hh:02d}:{mm:02d}",
        "date.format": "{day} {month} {year}",
    },
}

MONTHS = {
    "th": ["ม.ค.", "ก.พ.", "มี.ค.", "เม.ย.", "พ.ค.", "มิ.ย.", "ก.ค.", "ส.ค.", "ก.ย.", "ต.ค.", "พ.ย.", "ธ.ค."],
    "en": ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
}

# Display names of the metric catalogue's keys (simulators/units.py); unknown keys are shown as they are.
METRIC_NAMES: dict[str, tuple[str, str]] = {
    "pm25": ("PM2.5", "PM2.5"),
    "pm10": ("PM10", "PM10"),
    "o3": ("โอโซน (O3)", "Ozone (O3)"),
    "co": ("คาร์บอนมอนอกไซด์ (CO)", "Carbon monoxide (CO)"),
    "no2": ("ไนโตรเจนไดออกไซด์ (NO2)", "Nitrogen dioxide (NO2)"),
    "so2": ("ซัลเฟอร์ไดออกไซด์ (SO2)", "Sulphur dioxide (SO2)"),
    "aqi_th": ("ดัชนีคุณภาพอากาศ (AQI ไทย)", "Air quality index (Thai AQI)"),
    "aqi_us": ("ดัชนีคุณภาพอากาศ (AQI สหรัฐฯ)", "Air quality index (US AQI)"),
    "power": ("กำลังไฟฟ้า", "Power"),
    "energy": ("พลังงานไฟฟ้า", "Electric energy"),
    "fuel": ("เชื้อเพลิง", "Fuel"),
    "temperature": ("อุณหภูมิ", "Temperature"),
    "humidity": ("ความชื้น", "Humidity"),
}

UNIT_SYMBOLS = {"ug/m3": "µg/m³", "mg/m3": "mg/m³", "m3": "m³", "Cel": "°C", "/": "", "l": "L"}

LINE_SEPARATOR = "\n\n—\n\n"  # between the Thai and the English text when a recipient reads both
LINE_SUBJECT_SEPARATOR = " / "


def format_number(x: float) -> str:
    """Four significant digits, thousands separators, no trailing zeros: 87.4, 0.153, 12,346, 75."""
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    digits = max(0, 3 - math.floor(math.log10(abs(x))))
    text = f"{round(x, digits):,.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def format_quantity(x: float | None, unit: str) -> str:
    if x is None:
        return ""
    symbol = UNIT_SYMBOLS.get(unit, unit)
    number = format_number(x)
    if not symbol:
        return number
    return f"{number}{symbol}" if symbol in ("%", "°C") else f"{number} {symbol}"


def format_time(dt: datetime, lang: str, short: bool = False) -> str:
    """Bangkok wall-clock time; Thai uses the Buddhist Era year."""
    local = as_utc(dt).astimezone(BANGKOK)
    year = buddhist_era(local.year) if lang == "th" else local.year
    template = TEXTS[lang]["time.short" if short else "time.format"]
    month = MONTHS[lang][local.month - 1]
    return template.format(day=local.day, month=month, year=year, hh=local.hour, mm=local.minute)


def format_date(dt: datetime, lang: str) -> str:
    local = as_utc(dt).astimezone(BANGKOK)
    year = buddhist_era(local.year) if lang == "th" else local.year
    return TEXTS[lang]["date.format"].format(day=local.day, month=MONTHS[lang][local.month - 1], year=year)


def metric_name(metric: str, lang: str) -> str:
    names = METRIC_NAMES.get(metric)
    if names is None:
        return metric
    return names[0] if lang == "th" else names[1]


def site_name(alert: AlertMessage, lang: str) -> str:
    name = alert.site_name_th if lang == "th" else alert.site_name_en
    return name or alert.site_name_en or alert.site_name_th or alert.site_id


def _severity(s: Severity, lang: str) -> str:
    return TEXTS[lang][f"severity.{s.value}"]


def _transition(alert: AlertMessage, lang: str) -> str:
    """The change in words; a change found in data that arrived late says so."""
    t = TEXTS[lang]
    kind = f"transition.{alert.transition.value}"
    if not alert.late:
        return t[kind]
    return t.get(f"{kind}.late") or t["late"].format(transition=t[kind])


def _alert_one(alert: AlertMessage, lang: str) -> tuple[str, str]:
    t = TEXTS[lang]
    subject = t["subject"].format(
        severity=_severity(alert.severity, lang),
        transition=_transition(alert, lang),
        metric=metric_name(alert.metric, lang),
        site=site_name(alert, lang),
    )
    value = format_quantity(alert.value, alert.unit)
    threshold = format_quantity(alert.threshold, alert.unit)
    lines = []
    if value and threshold:
        lines.append(t["value_threshold"].format(value=value, threshold=threshold))
    elif value:
        lines.append(t["value"].format(value=value))
    elif threshold:
        lines.append(t["threshold"].format(threshold=threshold))
    lines.append(t["time"].format(time=format_time(alert.event_time, lang)))
    note = alert.note_th if lang == "th" else alert.note_en
    if note:
        lines.append(note)
    lines.append(t["footer"].format(rule=alert.rule_key, alert=alert.alert_id))
    return subject, "\n".join(lines)


def _digest_one(
    alerts: Sequence[AlertMessage], lang: str, kind: NotificationKind, at: datetime, max_lines: int
) -> tuple[str, str]:
    t = TEXTS[lang]
    subject = t[f"{kind}.subject"].format(date=format_date(at, lang), count=len(alerts))
    counts = Counter(a.severity for a in alerts)
    lines = [t["digest.counts"].format(**{s.value: counts.get(s, 0) for s in Severity}), ""]
    ordered = sorted(alerts, key=lambda a: (a.event_time, a.alert_id))
    for a in ordered[:max_lines]:
        value = format_quantity(a.value, a.unit)
        lines.append(
            t["digest.line"].format(
                time=format_time(a.event_time, lang, short=True),
                severity=_severity(a.severity, lang),
                transition=_transition(a, lang),
                metric=metric_name(a.metric, lang),
                site=site_name(a, lang),
                value=f" {value}" if value else "",
            )
        )
    if len(ordered) > max_lines:
        lines.append(t["digest.more"].format(count=len(ordered) - max_lines))
    return subject, "\n".join(lines)


def _both(th: tuple[str, str], en: tuple[str, str]) -> tuple[str, str]:
    return th[0] + LINE_SUBJECT_SEPARATOR + en[0], th[1] + LINE_SEPARATOR + en[1]


def render_alert(alert: AlertMessage, language: Language) -> tuple[str, str]:
    """(subject, body) of one alert state change."""
    if language == "both":
        return _both(_alert_one(alert, "th"), _alert_one(alert, "en"))
    return _alert_one(alert, language)


def render_digest(
    alerts: Sequence[AlertMessage], language: Language, kind: NotificationKind, at: datetime, max_lines: int = 200
) -> tuple[str, str]:
    """(subject, body) of a daily digest or a quiet-hours summary; ``at`` is when it goes out."""
    if kind == "alert":
        raise ValueError("render_digest renders 'digest' or 'quiet_hours', not 'alert'")
    if language == "both":
        return _both(_digest_one(alerts, "th", kind, at, max_lines), _digest_one(alerts, "en", kind, at, max_lines))
    return _digest_one(alerts, language, kind, at, max_lines)
