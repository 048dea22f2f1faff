"""Every label of the web pages, in Thai and English: the one message catalogue, merged from one file per area of
the pages (api/web/texts/; a key defined twice is an error at import). Thai is the default; ``?lang=en``
or ``?lang=th`` on any page switches, and the choice is kept in the ``lang`` cookie. Dates are shown in
Asia/Bangkok (lccm.engine.timebase) with the year in the Buddhist Era, and in English with both eras."""

from __future__ import annotations

from datetime import date, datetime

from lccm.api.web.texts import Lang, alerts, aq, carbon, core, facility, merge, overview, reports
from lccm.engine.timebase import BANGKOK, buddhist_era

LANGS: tuple[Lang, ...] = ("th", "en")
DEFAULT: Lang = "th"
LANG_COOKIE = "lang"

# One argument per area's module (api/web/texts/): add yours here.
MESSAGES: dict[str, dict[Lang, str]] = merge(
    core.MESSAGES,
    alerts.MESSAGES,
    facility.MESSAGES,
    carbon.MESSAGES,
    aq.MESSAGES,
    reports.MESSAGES,
    overview.MESSAGES,
)

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


def day_text(day: date, lang: Lang) -> str:
    """A calendar day: "1 ต.ค. 2568" in Thai (BE), "1 Oct 2025 (BE 2568)" in English."""
    be = buddhist_era(day.year)
    if lang == "th":
        return f"{day.day} {_MONTHS_TH[day.month - 1]} {be}"
    return f"{day.day} {_MONTHS_EN[day.month - 1]} {day.year} (BE {be})"


def month_text(year: int, month: int, lang: Lang) -> str:
    """A calendar month: "ต.ค. 2569" in Thai (BE), "Oct 2026 (BE 2569)" in English."""
    if lang == "th":
        return f"{_MONTHS_TH[month - 1]} {buddhist_era(year)}"
    return f"{_MONTHS_EN[month - 1]} {year} (BE {buddhist_era(year)})"


def fiscal_year_text(year: int, lang: Lang) -> str:
    """A Thai fiscal year (named by the CE year it ends in): "ปีงบประมาณ 2570 (FY 2027)", "FY 2027 (BE 2570)"."""
    if lang == "th":
        return f"ปีงบประมาณ {buddhist_era(year)} (FY {year})"
    return f"FY {year} (BE {buddhist_era(year)})"
