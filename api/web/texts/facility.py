"""The facility manager's pages: a site (live power, power charts, energy by day and by month, each meter's data
quality) and the streetlight cabinets (burning hours, day burning, outages)."""

from lccm.api.web.texts import Catalogue

MESSAGES: Catalogue = {
    # the site page
    "fac_site_title": {"th": "สถานที่", "en": "Site"},
    "fac_site_code": {"th": "รหัสสถานที่", "en": "Site code"},
    "fac_live": {"th": "ขณะนี้", "en": "Now"},
    "fac_live_power_kw": {"th": "กำลังไฟฟ้าขณะนี้ (kW)", "en": "Live power (kW)"},
    "fac_power_devices": {"th": "มิเตอร์ที่ส่งกำลังไฟฟ้าล่าสุด", "en": "Meters with recent power"},
    "fac_power_stale": {"th": "มิเตอร์ที่ข้อมูลกำลังไฟฟ้าเก่าเกินไป", "en": "Meters whose power reading is too old"},
    "fac_no_live_power": {
        "th": "ไม่มีข้อมูลกำลังไฟฟ้าล่าสุด (ไม่มีมิเตอร์ส่งค่าภายใน 3 รอบการส่ง)",
        "en": "No recent power (no meter sent a value within 3 of its reporting intervals)",
    },
    "fac_power_title": {"th": "กำลังไฟฟ้า", "en": "Power"},
    "fac_power_24h": {"th": "กำลังไฟฟ้า 24 ชั่วโมงล่าสุด (เฉลี่ยทุก 15 นาที)", "en": "Power, last 24 h (15-minute means)"},
    "fac_power_7d": {"th": "กำลังไฟฟ้า 7 วันล่าสุด (เฉลี่ยรายชั่วโมง)", "en": "Power, last 7 days (hourly means)"},
    "fac_chart_gaps": {
        "th": "ช่วงที่ไม่มีข้อมูลแสดงเป็นช่องว่าง ไม่ใช่ศูนย์",
        "en": "Periods without data are shown as gaps, not as zero",
    },
    "fac_energy_day_title": {"th": "พลังงานรายวัน (31 วันล่าสุด)", "en": "Energy by day (last 31 days)"},
    "fac_energy_month_title": {"th": "พลังงานรายเดือน", "en": "Energy by month"},
    "fac_fiscal_year": {"th": "ปีงบประมาณ", "en": "Fiscal year"},
    "fac_show": {"th": "แสดง", "en": "Show"},
    "fac_day": {"th": "วันที่", "en": "Day"},
    "fac_month": {"th": "เดือน", "en": "Month"},
    "fac_energy_kwh": {"th": "พลังงาน (kWh)", "en": "Energy (kWh)"},
    "fac_kgco2e": {"th": "การปล่อย (kgCO2e)", "en": "Emissions (kgCO2e)"},
    "fac_quality": {"th": "คุณภาพข้อมูล", "en": "Data quality"},
    "fac_covered_pct": {"th": "ครอบคลุม (%)", "en": "Covered (%)"},
    "fac_no_data": {"th": "ไม่มีข้อมูล", "en": "no data"},
    "fac_q_measured": {"th": "วัดจริง", "en": "measured"},
    "fac_q_estimated": {"th": "ประมาณค่า", "en": "estimated"},
    "fac_q_suspect": {"th": "น่าสงสัย", "en": "suspect"},
    "fac_q_missing": {"th": "ขาดหาย", "en": "missing"},
    # each meter's data quality
    "fac_meters_title": {"th": "คุณภาพข้อมูลของแต่ละมิเตอร์", "en": "Each meter's data quality"},
    "fac_meters_intro": {
        "th": "สิ่งที่ระบบบันทึกเกี่ยวกับข้อมูลของแต่ละมิเตอร์ในช่วง 7 วันล่าสุด",
        "en": "What the system has recorded about each meter's data over the last 7 days",
    },
    "fac_meter": {"th": "มิเตอร์", "en": "Meter"},
    "fac_kind": {"th": "ประเภท", "en": "Kind"},
    # the registry's device kinds (imports/registry.py DeviceKind), as the meter table names them
    "fac_kind_electricity_meter": {"th": "มิเตอร์ไฟฟ้า", "en": "Electricity meter"},
    "fac_kind_fuel_meter": {"th": "มิเตอร์เชื้อเพลิง", "en": "Fuel meter"},
    "fac_kind_streetlight_cabinet": {"th": "ตู้ควบคุมไฟถนน", "en": "Streetlight cabinet"},
    "fac_kind_lamp": {"th": "โคมไฟถนน", "en": "Street lamp"},
    "fac_kind_aq_station": {"th": "สถานีวัดคุณภาพอากาศ", "en": "Air-quality station"},
    "fac_complete_yesterday": {"th": "ความครบถ้วนเมื่อวาน (%)", "en": "Complete yesterday (%)"},
    "fac_complete_today": {"th": "ความครบถ้วนวันนี้ (%)", "en": "Complete today (%)"},
    "fac_messages_lost": {"th": "ข้อความที่หายเมื่อวาน", "en": "Messages lost yesterday"},
    "fac_estimated_15": {"th": "ช่วง 15 นาทีที่ประมาณค่า", "en": "Estimated 15-min intervals"},
    "fac_suspect_15": {"th": "ช่วง 15 นาทีที่น่าสงสัย", "en": "Suspect 15-min intervals"},
    "fac_missing_15": {"th": "ช่วง 15 นาทีที่ข้อมูลขาด", "en": "Missing 15-min intervals"},
    "fac_conflicts": {"th": "ค่าซ้ำที่ขัดแย้ง", "en": "Conflicting values"},
    "fac_late_spans": {"th": "ข้อมูลมาช้า (ยังไม่คำนวณใหม่)", "en": "Late data (not yet recomputed)"},
    "fac_status": {"th": "สถานะ", "en": "Status"},
    "fac_status_ok": {"th": "ปกติ", "en": "OK"},
    "fac_status_estimates": {"th": "มีค่าประมาณ", "en": "Has estimates"},
    "fac_status_check": {"th": "ควรตรวจสอบ", "en": "Needs checking"},
    "fac_no_meters": {"th": "สถานที่นี้ไม่มีมิเตอร์", "en": "This site has no meters"},
    "fac_flags_explained": {"th": "ความหมายของแต่ละคอลัมน์", "en": "What each column means"},
    "fac_explain_complete": {
        "th": "ร้อยละของค่าที่ได้รับเทียบกับที่ควรได้รับตามรอบการส่งของมิเตอร์ (วันนี้นับถึงตอนนี้) ต่ำกว่า 95% แปลว่ามีช่วงที่ข้อมูลหาย",
        "en": "Readings received as a share of those the meter's reporting interval should give (today: so far). "
        "Below 95% means parts of the day have no data",
    },
    "fac_explain_lost": {
        "th": "สำหรับมิเตอร์ที่ส่งเลขลำดับข้อความ: จำนวนเลขลำดับที่ไม่ได้รับระหว่างข้อความแรกและข้อความสุดท้ายของวัน",
        "en": "For meters that number their messages: sequence numbers never received between the day's first "
        "and last message",
    },
    "fac_explain_estimated": {
        "th": "ช่วงที่ยอดรวมถูกต้องแต่การกระจายตามเวลาเป็นการประมาณ เช่น ข้อมูลขาดไปช่วงหนึ่งแล้วมิเตอร์กลับมา "
        "จึงเฉลี่ยพลังงานตลอดช่วงที่ขาด หรือเชื่อมจากค่าที่เชื่อถือได้ล่าสุด",
        "en": "Intervals whose total is right but whose spread over time is assumed: after a gap the energy is "
        "spread evenly over it, or bridged from the last trusted reading",
    },
    "fac_explain_suspect": {
        "th": "ช่วงที่ไม่ผ่านการตรวจความสมเหตุสมผล เช่น ตัวนับถอยหลังโดยไม่ใช่การวนรอบหรือการรีเซ็ต "
        "หรือค่าสูงเกินพิกัดของมิเตอร์ ระบบบันทึกเป็นศูนย์และเก็บค่าที่คำนวณได้ไว้ตรวจสอบ",
        "en": "Intervals that failed a plausibility check, such as a counter going backwards without a rollover "
        "or reset, or more energy than the meter's rating allows: counted as zero, the computed value kept for review",
    },
    "fac_explain_missing": {
        "th": "ช่วงที่ไม่สามารถหาพลังงานได้ทั้งหมด (เช่น ค่าสุดท้ายของมิเตอร์เก่าก่อนเปลี่ยนไม่ได้บันทึก) ตัวเลขที่แสดงเป็นค่าต่ำสุด",
        "en": "Intervals whose energy could not be determined in full (e.g. the old meter's final reading at a "
        "swap was not recorded): the figure shown is a lower bound",
    },
    "fac_explain_rollover": {
        "th": "การวนรอบของตัวนับ (เกินค่าสูงสุดแล้วเริ่มที่ศูนย์) และการรีเซ็ตที่บันทึกไว้ ระบบแก้ไขให้อัตโนมัติ และนับเป็นข้อมูลวัดจริง จึงไม่แสดงแยก",
        "en": "Counter rollovers (passing the register's maximum back to zero) and recorded resets are corrected "
        "automatically and count as measured, so they are not listed separately",
    },
    "fac_explain_rollover_term": {"th": "การวนรอบและการรีเซ็ตตัวนับ", "en": "Counter rollovers and resets"},
    "fac_explain_conflicts": {
        "th": "ครั้งที่มิเตอร์ส่งค่าอื่นมาสำหรับเวลาเดียวกับค่าที่เก็บไว้แล้ว ระบบเก็บค่าแรกไว้และบันทึกค่าที่สองให้ตรวจสอบ",
        "en": "Times the meter sent another value for a moment already stored: the first value is kept and the "
        "second is recorded for review",
    },
    "fac_explain_late": {
        "th": "ชุดข้อมูลที่มาถึงช้ากว่าช่วงคำนวณสด ข้อมูลถูกเก็บแล้วแต่ยอดของช่วงเวลานั้นยังไม่คำนวณใหม่ จนกว่าผู้ดูแลจะสั่ง lccm recompute",
        "en": "Batches that arrived after the live horizon: stored, but the totals of their period are not "
        "recomputed until an operator runs lccm recompute",
    },
    # streetlights
    "fac_sl_title": {"th": "ตู้ควบคุมไฟถนน", "en": "Streetlight cabinets"},
    "fac_sl_intro": {
        "th": "ชั่วโมงที่โคมเปิด การเปิดไฟในเวลากลางวัน และโคมดับในเวลากลางคืน ของแต่ละตู้ควบคุม",
        "en": "Lamp burning hours, lamps burning in daylight and lamps out at night, per cabinet",
    },
    "fac_sl_date": {"th": "วันที่", "en": "Day"},
    "fac_sl_day_table": {"th": "วันเดียว", "en": "One day"},
    "fac_sl_week_table": {"th": "7 วันถึงวันที่เลือก", "en": "The 7 days to the chosen day"},
    "fac_sl_cabinet": {"th": "ตู้ควบคุม", "en": "Cabinet"},
    "fac_sl_lamps": {"th": "จำนวนโคม", "en": "Lamps"},
    "fac_sl_burning_h": {"th": "ชั่วโมงโคมเปิด (โคม-ชม.)", "en": "Burning (lamp-h)"},
    "fac_sl_day_burning_h": {"th": "เปิดกลางวัน (โคม-ชม.)", "en": "Day burning (lamp-h)"},
    "fac_sl_outage_h": {"th": "ดับกลางคืน (โคม-ชม.)", "en": "Outage at night (lamp-h)"},
    "fac_sl_outage_pct": {"th": "ดับกลางคืน (%)", "en": "Outage at night (%)"},
    "fac_sl_unknown_h": {"th": "ไม่ทราบสถานะ (โคม-ชม.)", "en": "State unknown (lamp-h)"},
    "fac_sl_cabinet_kwh": {"th": "พลังงานตู้ (kWh)", "en": "Cabinet energy (kWh)"},
    "fac_sl_none": {
        "th": "ไม่มีข้อมูลโคมไฟในช่วงนี้",
        "en": "No lamp data in this period",
    },
    "fac_sl_explain": {
        "th": "โคม-ชม. คือผลรวมชั่วโมงของทุกโคม (โคม 10 ดวงเปิด 1 ชั่วโมง = 10 โคม-ชม.) "
        "กลางวันและกลางคืนคิดจากเวลาพระอาทิตย์ขึ้นและตกที่ตำแหน่งของตู้ "
        "ร้อยละดับกลางคืนคิดจากชั่วโมงกลางคืนที่ทราบสถานะโคม",
        "en": "Lamp-hours add up every lamp's hours (10 lamps burning for 1 hour = 10 lamp-h). Day and night follow "
        "sunrise and sunset at the cabinet's location. The night outage share is of the night hours with a known "
        "lamp state",
    },
}
