"""GPC scopes per GPC v1.1: the GPC table of an inventory that uses every kind of reference the report must tell
apart, against a table computed by hand below; and the import refusing references that are no GPC reference
number, or that do not say where waste is treated. Real PostgreSQL (tests/_db.py).

GPC v1.1's reporting table (docs/reference.md#gpc-sectors-and-scopes): in waste the third number says where the
waste is treated, III.x.1 inside the city boundary (scope 1, BASIC), III.x.2 outside it (scope 3, BASIC), III.x.3
waste of other cities treated inside (scope 1, territorial total only). In stationary energy and transportation it
is the scope: .1 and .2 are BASIC, .3 BASIC+ only. IPPU (IV) and AFOLU (V) are scope 1, BASIC+.

Hand-computed table (kgCO2e; every quantity x factor, 12 months unless said):

| item      | gpc_ref (resolved)  | quantity x factor              | kgCO2e      | scope | level        |
|-----------|---------------------|--------------------------------|-------------|-------|--------------|
| E-BLDG    | I.2 (CFO 2: I.2.2)  | 12 x 1,000 kWh x 0.5           | 6,000       | 2     | BASIC        |
| G-GEN     | I.2.1               | 12 x 100 L x 2.7078            | 3,249.36    | 1     | BASIC        |
| E-LOSS    | I.2.3               | 12 x 1,000 kWh x 0.05          | 600         | 3     | BASIC+       |
| F-FLEET   | II.1.1              | 12 x 500 L x 2.7406            | 16,443.6    | 1     | BASIC        |
| W-INSIDE  | III.1.1             | 12 x 10 t x 1,000              | 120,000     | 1     | BASIC        |
| W-OUTSIDE | III.1.2             | 12 x 5 t x 1,000               | 60,000      | 3     | BASIC        |
| W-OTHERS  | III.1.3             | 12 x 2 t x 1,000               | 24,000      | 1     | territorial  |
| WW-PLANT  | III.4.1             | 12 x 10,000 m3 x 0.1           | 12,000      | 1     | BASIC        |
| R-R32     | IV.2                | 2 kg (March) x 677             | 1,354       | 1     | BASIC+       |
| RM-TREES  | V.2 (removal)       | -(12 x 100 trees x 0.75)       | -900        | 1     | BASIC+       |
| P-PAPER   | (none)              | 10 reams (January) x 2.5       | 25          | -     | unmapped     |
| W-LEGACY  | III.1 (stored)      | 1 t (January) x 1,000          | 1,000       | -     | unmapped     |

Rows: I.2 = scope 1 3,249.36 | scope 2 6,000 | scope 3 600 | total 9,849.36 | in BASIC 9,249.36;
II.1 = 16,443.6 | 0 | 0 | 16,443.6 | 16,443.6; III.1 = 120,000 + 24,000 = 144,000 | 0 | 60,000 | 204,000 |
180,000; III.4 = 12,000 | 0 | 0 | 12,000 | 12,000; IV.2 = 1,354 | 0 | 0 | 1,354 | 0; V.2 = -900 | 0 | 0 | -900 | 0.
BASIC = 9,249.36 + 16,443.6 + 180,000 + 12,000 = 217,692.96.
BASIC+ = 217,692.96 + 600 + 1,354 - 900 = 218,746.96.
All mapped = 218,746.96 + 24,000 (III.1.3) = 242,746.96. Unmapped = 25 + 1,000 = 1,025.

Before the fix the third number was read as the scope: W-OUTSIDE (III.1.2) fell in scope 2, out of BASIC, and
W-OTHERS (III.1.3) in scope 3, inside it: BASIC read 9,249.36 + 16,443.6 + 120,000 + 24,000 + 12,000 =
181,692.96, 36,000 short.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from lccm.engine.factors import SOURCE_CLASSES
from lccm.imports import gpc
from lccm.imports.inventory import TEMPLATE_HEADER_EN, InventoryInvalid, parse_inventory
from lccm.reports.annual import build_gpc_report
from lccm.runtime import factor_rows
from lccm.store.energy import sync_factor_registry
from lccm.store.inventory import import_inventory_file
from tests._db import fresh_database


def _row(code: str, scope: int, category: str, unit: str, ef: float, gpc_ref: str, months: list[float | None]) -> str:
    cells = [code, str(scope), category, code.lower(), "", unit, f"{ef:g}", f"kgCO2e/{unit}", "test factor", "AR5",
             "", gpc_ref, "manual", "", ""]  # fmt: skip
    return ",".join([*cells, *("" if q is None else f"{q:g}" for q in months)])


def _one(month: int, q: float) -> list[float | None]:
    return [q if m == month else None for m in range(1, 13)]


INVENTORY = "\r\n".join([
    ",".join(TEMPLATE_HEADER_EN),
    _row("E-BLDG", 2, "purchased_electricity", "kWh", 0.5, "I.2", [1000] * 12),
    _row("G-GEN", 1, "stationary_combustion", "L", 2.7078, "I.2.1", [100] * 12),
    _row("E-LOSS", 3, "other_indirect", "kWh", 0.05, "I.2.3", [1000] * 12),
    _row("F-FLEET", 1, "mobile_combustion", "L", 2.7406, "II.1.1", [500] * 12),
    _row("W-INSIDE", 1, "waste_landfill", "t", 1000, "III.1.1", [10] * 12),
    _row("W-OUTSIDE", 3, "waste_landfill", "t", 1000, "III.1.2", [5] * 12),
    _row("W-OTHERS", 1, "waste_landfill", "t", 1000, "III.1.3", [2] * 12),
    _row("WW-PLANT", 1, "fugitive_wastewater", "m3", 0.1, "III.4.1", [10000] * 12),
    _row("R-R32", 1, "fugitive_refrigerant", "kg", 677, "IV.2", _one(3, 2)),
    _row("RM-TREES", 1, "removal", "tree", 0.75, "V.2", [100] * 12),
    _row("P-PAPER", 3, "other_indirect", "ream", 2.5, "", _one(1, 10)),
    _row("W-LEGACY", 3, "waste_landfill", "t", 1000, "III.1.2", _one(1, 1)),
]).encode() + b"\r\n"  # fmt: skip

# (scope 1, scope 2, scope 3, total, in BASIC) per sub-sector, kgCO2e, from the table in the module docstring.
EXPECTED_ROWS = {
    "I.2": (3249.36, 6000.0, 600.0, 9849.36, 9249.36),
    "II.1": (16443.6, 0.0, 0.0, 16443.6, 16443.6),
    "III.1": (144000.0, 0.0, 60000.0, 204000.0, 180000.0),
    "III.4": (12000.0, 0.0, 0.0, 12000.0, 12000.0),
    "IV.2": (1354.0, 0.0, 0.0, 1354.0, 0.0),
    "V.2": (-900.0, 0.0, 0.0, -900.0, 0.0),
}
BASIC_KG = 9249.36 + 16443.6 + 180000 + 12000  # 217,692.96
BASIC_PLUS_KG = BASIC_KG + 600 + 1354 - 900  # 218,746.96
MAPPED_KG = BASIC_PLUS_KG + 24000  # 242,746.96


@pytest.fixture(scope="module")
def conn() -> Iterator[psycopg.Connection]:
    with fresh_database() as url, psycopg.connect(url) as c:
        sync_factor_registry(c, *factor_rows())
        import_inventory_file(c, INVENTORY, file_name="gpc.csv", organisation="lampang", year_ce=2025)
        # An item stored before references were checked: a two-level waste reference that says nothing of where
        # the waste went.
        c.execute("UPDATE inventory_items SET gpc_ref = 'III.1' WHERE item_code = 'W-LEGACY'")
        c.commit()
        yield c


def test_gpc_table_matches_the_hand_computed_table(conn: psycopg.Connection) -> None:
    g = build_gpc_report(conn, "lampang", 2025, "calendar")
    rows = {r.gpc_ref: r for r in g.rows}
    for ref, (s1, s2, s3, total, basic) in EXPECTED_ROWS.items():
        r = rows[ref]
        assert r.scope_kgco2e == pytest.approx({1: s1, 2: s2, 3: s3}), ref
        assert (r.kgco2e, r.basic_kgco2e) == pytest.approx((total, basic)), ref
    # Every other listed sub-sector (all of I-III) is empty.
    assert all(r.kgco2e == 0.0 for ref, r in rows.items() if ref not in EXPECTED_ROWS)
    assert g.basic_kgco2e == pytest.approx(BASIC_KG) == 217692.96
    assert g.basic_plus_kgco2e == pytest.approx(BASIC_PLUS_KG) == 218746.96
    assert g.total_kgco2e == pytest.approx(MAPPED_KG) == 242746.96
    assert g.basic_tco2e == pytest.approx(217.69296)
    # Each item is listed with its full reference number; I.2 took the item's CFO scope (2).
    assert list(zip(rows["III.1"].item_codes, rows["III.1"].item_refs, strict=True)) == [
        ("W-INSIDE", "III.1.1"), ("W-OUTSIDE", "III.1.2"), ("W-OTHERS", "III.1.3")]  # fmt: skip
    assert rows["I.2"].item_refs == ["I.2.2", "I.2.1", "I.2.3"]
    unmapped = {u.item_code: u for u in g.unmapped}
    assert set(unmapped) == {"P-PAPER", "W-LEGACY"} and g.unmapped_kgco2e == pytest.approx(1025.0)
    assert unmapped["P-PAPER"].reason == "no GPC reference"
    assert unmapped["W-LEGACY"].reason.startswith("III.1 must say where the waste is treated: III.1.1 = scope 1")


def _gpc_errors(gpc_ref: str, scope: int = 1, category: str = "waste_landfill") -> list[str]:
    data = "\r\n".join([",".join(TEMPLATE_HEADER_EN), _row("X", scope, category, "t", 1, gpc_ref, [1] * 12)])
    with pytest.raises(InventoryInvalid) as info:
        parse_inventory(data.encode())
    return [e.message for e in info.value.errors]


def test_import_refuses_a_waste_reference_that_does_not_say_where_the_waste_is_treated() -> None:
    assert _gpc_errors("III.1", 3) == [
        "III.1 must say where the waste is treated: III.1.1 = scope 1, waste generated in the city, treated inside "
        "the boundary; III.1.2 = scope 3, waste generated in the city, treated outside the boundary; III.1.3 = "
        "scope 1, waste generated outside the city, treated inside the boundary (the CFO scope cannot tell)"
    ]


def test_import_refuses_numbers_the_gpc_does_not_have() -> None:
    assert _gpc_errors("III.1.4") == [
        "III.1.4 is not a GPC reference number; III.1 has: III.1.1 = scope 1, waste generated in the city, treated "
        "inside the boundary; III.1.2 = scope 3, waste generated in the city, treated outside the boundary; "
        "III.1.3 = scope 1, waste generated outside the city, treated inside the boundary"
    ]
    # A two-level energy reference takes the row's CFO scope: I.7 (fugitive, coal) has no scope 2.
    assert _gpc_errors("I.7", 2, "purchased_electricity") == [
        "I.7.2 (taken from the row's scope 2) is not a GPC reference number; I.7 has: I.7.1 = scope 1, fugitive "
        "emissions inside the city"
    ]
    assert _gpc_errors("IV.2.1") == ["IV.2.1 is not a GPC reference number; IV.2 has: IV.2 alone"]
    assert _gpc_errors("I.9")[0].startswith("not a GPC reference number (sector.sub-sector.number, e.g. I.2.2")


@pytest.mark.parametrize(
    ("text", "cfo_scope", "number", "scope", "in_basic"),
    [("III.2.1", 1, "III.2.1", 1, True), ("III.3.2", 1, "III.3.2", 3, True), ("III.4.3", 3, "III.4.3", 1, False),
     ("II.1", 1, "II.1.1", 1, True), ("II.4.3", 3, "II.4.3", 3, False), ("V.2", 1, "V.2", 1, False),
     ("VI.1", 3, "VI.1", 3, False)],
)  # fmt: skip
def test_resolve_gives_the_gpc_scope_not_the_third_number(text: str, cfo_scope: int, number: str, scope: int,
                                                          in_basic: bool) -> None:  # fmt: skip
    ref = gpc.resolve(text, cfo_scope)
    assert (ref.number, ref.scope, ref.in_basic) == (number, scope, in_basic)


def test_every_metered_source_class_has_a_gpc_reference_number_of_its_scope() -> None:
    for c in SOURCE_CLASSES:
        if c.gpc_ref is not None:
            ref = gpc.resolve(c.gpc_ref, c.scope)
            assert (ref.number, ref.scope, ref.in_basic) == (c.gpc_ref, c.scope, True), c.key
