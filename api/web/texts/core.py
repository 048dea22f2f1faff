"""The labels shared by every page: the frame, the navigation, log in, the city overview."""

from lccm.api.web.texts import Catalogue

MESSAGES: Catalogue = {
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
    "signed_in_as": {"th": "ผู้ใช้", "en": "Signed in as"},
    # the navigation (api/web/templates/base.html)
    "nav_overview": {"th": "ภาพรวม", "en": "Overview"},
    "nav_streetlights": {"th": "ไฟถนน", "en": "Streetlights"},
    "nav_aq": {"th": "คุณภาพอากาศ", "en": "Air quality"},
    "nav_alerts": {"th": "การแจ้งเตือน", "en": "Alerts"},
    "nav_rules": {"th": "กฎการแจ้งเตือน", "en": "Alert rules"},
    "nav_carbon": {"th": "เทียบปีฐาน", "en": "Base-year comparison"},
    "nav_targets": {"th": "เป้าหมายและตัวชี้วัด", "en": "Targets and KPIs"},
    "nav_imports": {"th": "นำเข้าข้อมูล", "en": "Imports"},
    "nav_reports": {"th": "รายงาน", "en": "Reports"},
    "nav_menu": {"th": "เมนู", "en": "Menu"},
    # a page the caller's roles do not open (api/web/errors.py, templates/error.html)
    "forbidden_roles": {"th": "บทบาทที่เปิดหน้านี้ได้", "en": "Roles that can open it"},
    "role_viewer": {"th": "ผู้ดูข้อมูล", "en": "viewer"},
    "role_facility_manager": {"th": "ผู้จัดการอาคาร", "en": "facility manager"},
    "role_environment_officer": {"th": "เจ้าหน้าที่สิ่งแวดล้อม", "en": "environment officer"},
    "role_carbon_officer": {"th": "เจ้าหน้าที่คาร์บอน", "en": "carbon officer"},
    "role_admin": {"th": "ผู้ดูแลระบบ", "en": "administrator"},
}
