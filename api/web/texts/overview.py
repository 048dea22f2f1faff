"""The city overview's labels beyond the shared ones (texts/core.py): last week's figures, completeness, the live
update note."""

from lccm.api.web.texts import Catalogue

MESSAGES: Catalogue = {
    "overview_live_note": {
        "th": "ตารางอัปเดตเองเมื่อกำลังไฟฟ้าเปลี่ยน และอย่างน้อยทุก 1 นาที",
        "en": "The table updates itself when power changes, and at least once a minute",
    },
    "overview_week_note": {
        "th": "เทียบกับวันเดียวกันของสัปดาห์ก่อน ช่วงเวลาเดียวกัน: วันนี้ 00:00 ถึงตอนนี้ เทียบกับ {start} ถึง {cut}",
        "en": "Compared with the same weekday last week over the same hours: "
        "today 00:00 to now against {start} to {cut}",
    },
    "overview_energy_week_kwh": {"th": "พลังงานสัปดาห์ก่อน (kWh)", "en": "Energy a week ago (kWh)"},
    "overview_kgco2e_week": {"th": "การปล่อยสัปดาห์ก่อน (kgCO2e)", "en": "Emissions a week ago (kgCO2e)"},
    "overview_change_pct": {"th": "เปลี่ยนแปลงพลังงาน (%)", "en": "Energy change (%)"},
    "overview_completeness": {"th": "ความครบถ้วนของข้อมูลวันนี้ (%)", "en": "Data completeness today (%)"},
    "overview_complete": {"th": "ครบ", "en": "complete"},
    "overview_incomplete": {"th": "ไม่ครบ", "en": "incomplete"},
    "overview_no_devices": {"th": "ไม่มีอุปกรณ์", "en": "no devices"},
    "overview_completeness_note": {
        "th": "ความครบถ้วน = จำนวนค่าที่ได้รับ ÷ จำนวนที่ควรได้รับตั้งแต่ 00:00 (ตามรอบส่งของแต่ละอุปกรณ์); ต่ำกว่า {pct}% ถือว่าไม่ครบ",
        "en": "Completeness = readings received ÷ readings expected since 00:00 (each device's cadence); "
        "below {pct}% is incomplete",
    },
}
