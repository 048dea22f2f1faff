"""Every label of the web pages, in Thai and English: the one message catalogue. Thai is the default; ``?lang=en``
or ``?lang=th`` on any page switches, and the choice is kept in the ``lang`` cookie. Dates are shown in
Asia/Bangkok (lccm.engine.timebase) with the year in the Buddhist Era, and in English with both eras."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from lccm.engine.timebase import BANGKOK, buddhist_era

Lang = Literal["th", "en"]
LANGS: tuple[Lang, ...] = ("th", "en")
DEFAULT: Lang = "th"
LANG_COOKIE = "lang"

MESSAGES: dict[str, dict[Lang, str]] = {
    "app_name": {"th": "ระบบติดตามเมืองคาร์บอนต่ำ", "en": "Low Carbon City Monitor"},
    "login_title": {"th": "เข้าสู่ระบบ", "en": "Log in"},
    "username": {"th": "ชื่อผู้ใช้", "en": "Username"},
    "password": {"th": "รหัสผ่าน", "en": "Password"},
    "login_button": {"th": "เข้าสู่ระบบ", "en": "Log in"},
    "login_failed": {
        "th": "ชื่อผู้ใช้หรือรหัสผ่านไม่ถูกต้อง",
        "en": "Unknown username or wrong password",
    },
    "logout": {"th": "ออกจากระบบ", "en": "Log out"},
    "other_lang": {"th": "English", "en": "ไทย"},
    "overview_title": {"th": "ภาพรวมเมือง", "en": "City overview"},
    "overview_intro": {
        "th": "ทุกสถานที่ เรียงตามกำลังไฟฟ้าขณะนี้ พร้อมพลังงานและการปล่อยก๊าซเรือนกระจกของวันนี้",
        "en": "Every site, ranked by live power, with today's energy and greenhouse-gas emissions",
    },
    "as_of": {"th": "ข้อมูล ณ", "en": "As of"},
    "rank": {"th": "อันดับ", "en": "Rank"},
    "site": {"th": "สถานที่", "en": "Site"},
    "power_kw": {"th": "กำลังไฟฟ้า (kW)", "en": "Power (kW)"},
    "energy_today_kwh": {"th": "พลังงานวันนี้ (kWh)", "en": "Energy today (kWh)"},
    "kgco2e_today": {"th": "การปล่อยวันนี้ (kgCO2e)", "en": "Emissions today (kgCO2e)"},
    "no_power": {"th": "ไม่มีข้อมูล", "en": "no data"},
    "no_sites": {"th": "ไม่มีสถานที่ในขอบเขตของคุณ", "en": "No sites in your scope"},
    "download_csv": {"th": "ดาวน์โหลด CSV", "en": "Download CSV"},
    "refresh_note": {"th": "หน้านี้รีเฟรชเองทุก 30 วินาที", "en": "This page refreshes itself every 30 s"},
    "signed_in_as": {"th": "ผู้ใช้", "en": "Signed in as"},
}

_MONTHS_TH = ("ม.ค.", "ก.พ.", "มี.ค.", "เม.ย.", "พ.ค.", "มิ.ย.", "ก.ค.", "ส.ค.", "ก.ย.", "ต.ค.", "พ.ย.", "ธ.ค.")
_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def lang_of(query: str | None, cookie: str | None) -> Lang:
    for value in (query, cookie):
        if value in LANGS:
            return value
    return DEFAULT


def texts(lang: Lang) -> dict[str, str]:
    return {key: both[lang] for key, both in MESSAGES.items()}


def when(moment: datetime, lang: Lang) -> str:
    """An instant in Bangkok time: "7 ธ.ค. 2569 10:05" in Thai (BE), "7 Dec 2026 (BE 2569) 10:05" in English."""
    local = moment.astimezone(BANGKOK)
    clock = f"{local:%H:%M}"
    be = buddhist_era(local.year)
    if lang == "th":
        return f"{local.day} {_MONTHS_TH[local.month - 1]} {be} {clock}"
    return f"{local.day} {_MONTHS_EN[local.month - 1]} {local.year} (BE {be}) {clock}"
