"""`lccm compare`, `projection`, `kpis` and `targets list|set|status` against the API on the same database: the
``--json`` document of each command equals the API's answer to the same question, the tables show the same figures,
and the errors give exit codes and one clear line (2 for an unknown organisation or a question asked wrongly, 1 for
a refused targets file, which writes nothing).

The database is tests/test_baseline_api.py's (a 2024 base year, metered city hall from October 2025 to January
2026, manual LPG), with the KPI fleet of tests/test_kpi.py's checks not repeated here: the numbers themselves are
asserted against hand-computed figures there; this module checks that both faces give the same ones.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import ConnectionPool
from starlette.exceptions import StarletteDeprecationWarning
from typer.testing import CliRunner

from lccm.api.app import create_app
from lccm.cli import app
from lccm.settings import Settings
from tests._db import fresh_database
from tests._principal import as_caller
from tests.test_baseline_api import _seed

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

TARGETS = {"targets": [
    {"target_key": "org", "target_year": 2030},
    {"target_key": "electricity", "category": "purchased_electricity", "target_year": 2028, "reduction_pct": 8},
    {"target_key": "streetlights", "kpi": "kwh_per_lamp", "target_year": 2030, "reduction_pct": 10,
     "kpi_values": {"2024": 400, "2025": 395}},
    {"target_key": "buildings", "kpi": "kwh_per_m2", "target_year": 2030, "kpi_values": {"2024": 30}},
]}  # fmt: skip


@pytest.fixture(scope="module")
def db() -> Iterator[str]:
    with fresh_database() as url:
        _seed(url)
        yield url


@pytest.fixture(scope="module")
def api(db: str) -> Iterator[TestClient]:
    with (
        ConnectionPool(db, min_size=1, max_size=2, open=True) as pool,
        TestClient(as_caller(create_app(Settings(database_url=db), pool))) as c,
    ):
        yield c


def _cli(db: str, *args: str) -> Any:
    result = CliRunner().invoke(app, [*args, "--database-url", db], env={"COLUMNS": "200"})
    return result


def _cli_json(db: str, *args: str) -> Any:
    result = _cli(db, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _cells(table: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is ``first``."""
    rows = [[c.strip() for c in line.strip("│┃ ").split("│")] for line in table.splitlines() if "│" in line]
    return next(r for r in rows if r[0] == first)


def _api_json(api: TestClient, path: str, **params: object) -> Any:
    r = api.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize(
    ("period", "on", "by"),
    [("fytd", "2026-01-10", "scope"), ("day", "2025-11-22", "cfo_category"), ("week", "2025-12-03", "item"),
     ("month", "2026-03-15", "gpc_ref"), ("ytd", "2026-01-10", "site")],
)  # fmt: skip
def test_compare_prints_the_api_document(api: TestClient, db: str, period: str, on: str, by: str) -> None:
    cli = _cli_json(db, "compare", "--org", "lampang", "--period", period, "--date", on, "--by", by)
    assert cli == _api_json(api, "/organisations/lampang/comparison", period=period, date=on, by=by)
    assert cli["rows"] and cli["total"]["baseline_kgco2e"] > 0  # not an empty answer compared with another


def test_compare_custom_period_and_its_table(api: TestClient, db: str) -> None:
    args = ["compare", "--org", "lampang", "--period", "custom", "--from", "2025-10-01", "--to", "2026-01-11"]
    cli = _cli_json(db, *args)
    custom = {"period": "custom", "from": "2025-10-01", "to": "2026-01-11"}
    assert cli == _api_json(api, "/organisations/lampang/comparison", **custom)
    table = _cli(db, *args)
    assert table.exit_code == 0, table.output
    # The same figures as the JSON, as printed for people: scope 2 baseline 5,098.98 and actual 4,566.672 kgCO2e
    # (tests/test_baseline_api.py computes them by hand), delta -10.4 %, at the base year's factors -10.0 %; every
    # day covered, so the change over the covered time is the same -10.4 %.
    assert _cells(table.stdout, "2")[:9] == ["2", "5,099.0", "4,566.7", "-532.3", "-10.4 %", "4,589.1", "-10.0 %",
                                             "100.00 %", "-10.4 %"]  # fmt: skip
    assert "coverage 100.00 % of the base year's emissions in the period (readings 102 of 102 expected, 4 of 4 " \
           "item-months entered)" in " ".join(table.stdout.split())  # fmt: skip


def test_compare_table_withholds_the_change_and_says_why(db: str) -> None:
    # January 2026: a third of the data (tests/test_baseline_api.py: coverage 33.59 %, like for like -1.98 %).
    args = ["compare", "--org", "lampang", "--period", "custom", "--from", "2026-01-01", "--to", "2026-02-01"]
    table = _cli(db, *args)
    assert table.exit_code == 0, table.output
    assert _cells(table.stdout, "total")[3:9] == ["withheld", "withheld", "546.4", "withheld", "33.59 % (low)",
                                                  "-2.0 %"]  # fmt: skip
    text = " ".join(table.stdout.split())
    assert "coverage 33.59 % is below the threshold 90.00 % (LCCM_COMPARISON_MIN_COVERAGE); Δ withheld" in text
    # LCCM_COMPARISON_MIN_COVERAGE sets the threshold for the CLI as for the API.
    loose = CliRunner().invoke(
        app, [*args, "--database-url", db, "--json"], env={"LCCM_COMPARISON_MIN_COVERAGE": "0.3"}
    )
    assert loose.exit_code == 0, loose.output
    assert json.loads(loose.stdout)["total"]["coverage"]["sufficient"] is True


def test_projection_prints_the_api_document(api: TestClient, db: str) -> None:
    for kind, by in (("calendar", "scope"), ("fiscal", "item"), (None, "cfo_category")):
        args = ["projection", "--org", "lampang", "--date", "2026-01-10", "--by", by]
        params: dict[str, object] = {"date": "2026-01-10", "by": by}
        if kind:
            args += ["--kind", kind]
            params["kind"] = kind
        cli = _cli_json(db, *args)
        assert cli == _api_json(api, "/organisations/lampang/projection", **params)
    args = ["projection", "--org", "lampang", "--date", "2026-01-10", "--kind", "calendar"]
    scope2 = next(r for r in _cli_json(db, *args)["rows"] if r["group"] == "2")
    table = _cli(db, *args)
    # Scope 2: actual 427.5, baseline 499.9 to date, ratio 0.855, projected 427.5 / 499.9 x 18,146.37 kgCO2e
    # (tests/test_baseline_api.py); the table prints the JSON's float to 0.1 kg.
    assert scope2["projected_kgco2e"] == pytest.approx(427.5 / 499.9 * 18146.37)
    projected = f"{scope2['projected_kgco2e']:,.1f}"
    assert _cells(table.stdout, "2") == ["2", "427.5", "499.9", "17,646.5", "0.855", projected, "100.00 %",
                                         projected]  # fmt: skip


def test_kpis_print_the_api_document(api: TestClient, db: str) -> None:
    for params in ({"year": 2025, "date": "2025-12-31"}, {"date": "2026-01-10"}, {"year": 2025, "kind": "fiscal",
                                                                                  "date": "2025-12-31"}):  # fmt: skip
        args = [a for k, v in params.items() for a in (f"--{k}", str(v))]
        assert _cli_json(db, "kpis", "--org", "lampang", *args) == _api_json(api, "/organisations/lampang/kpis",
                                                                             **params)  # fmt: skip
    table = _cli(db, "kpis", "--org", "lampang", "--year", "2025", "--date", "2025-12-31")
    assert (
        table.exit_code == 0 and "kwh_per_lamp" in table.stdout and "no streetlight cabinet is mapped" in table.stdout
    )


def test_targets_set_from_a_file_list_and_status_match_the_api(api: TestClient, db: str, tmp_path: Path) -> None:
    file = tmp_path / "targets.json"
    file.write_text(json.dumps(TARGETS))
    stored = _cli_json(db, "targets", "set", str(file), "--org", "lampang")
    assert [t["target_key"] for t in stored] == ["buildings", "electricity", "org", "streetlights"]
    assert stored == _api_json(api, "/organisations/lampang/targets")  # written, and committed
    assert _cli_json(db, "targets", "list", "--org", "lampang") == stored
    for year, on in ((2025, "2025-12-31"), (2026, "2026-01-10")):
        cli = _cli_json(db, "targets", "status", "--org", "lampang", "--year", str(year), "--date", on)
        assert cli == _api_json(api, "/organisations/lampang/targets/status", year=year, date=on)
    table = _cli(db, "targets", "status", "--org", "lampang", "--year", "2025", "--date", "2025-12-31")
    # Base 18,519.978 kgCO2e, trajectory 2025 = base x (1 - 5 % / 6) = 18,365.6; 2025's actual 4,251.3 covers a
    # quarter of the year (26.85 % of the base year's emissions): no value, no verdict; over the covered time the year
    # is 16,443.8 (tests/test_baseline_api.py).
    assert _cells(table.stdout, "org")[1:] == ["all emissions", "18,365.6", "-", "-", "-", "-", "-", "26.85 % (low)",
                                               "16,443.8"]  # fmt: skip
    assert "org: no verdict: coverage 26.85 % is below the threshold 90.00 %" in " ".join(table.stdout.split())


def test_a_refused_targets_file_writes_nothing_and_lists_every_row(api: TestClient, db: str, tmp_path: Path) -> None:
    before = _api_json(api, "/organisations/lampang/targets")
    file = tmp_path / "bad.json"
    file.write_text(json.dumps([{"target_key": "x", "target_year": 2020}, {"target_key": "y", "base_year": 2023,
                                                                           "target_year": 2030}]))  # fmt: skip
    result = _cli(db, "targets", "set", str(file), "--org", "lampang")
    assert result.exit_code == 1
    assert "targets refused; nothing was written" in result.stderr
    assert "row 2, column 'base_year': emission targets use the base year 2024" in result.stderr
    assert _api_json(api, "/organisations/lampang/targets") == before
    file.write_text('{"targets": [{"target_key": "x"}]}')  # no target_year
    result = _cli(db, "targets", "set", str(file), "--org", "lampang")
    assert result.exit_code == 1 and "target_year" in result.stderr


def test_errors_exit_with_one_line(db: str) -> None:
    unknown = _cli(db, "compare", "--org", "nowhere")
    assert unknown.exit_code == 2 and unknown.stderr.strip() == "error: no organisation 'nowhere'; known: lampang"
    custom = _cli(db, "compare", "--org", "lampang", "--period", "custom", "--from", "2026-01-05")
    assert custom.exit_code == 2
    assert custom.stderr.strip() == "error: --from: a custom period needs from and to (dates; to is exclusive)"
    early = _cli(db, "kpis", "--org", "lampang", "--year", "2027", "--date", "2026-01-10")
    assert early.exit_code == 2 and early.stderr.strip() == "error: --year: 2027 has not started on 2026-01-10"
    before_base = _cli(db, "targets", "status", "--org", "lampang", "--year", "2023")
    assert before_base.exit_code == 2 and "--year: before the base year 2024" in before_base.stderr
    bad_date = _cli(db, "projection", "--org", "lampang", "--date", "2026-13-01")
    assert bad_date.exit_code == 2 and "not a date: '2026-13-01'" in bad_date.output


def test_table_cells_never_show_a_negative_zero() -> None:
    from lccm.cli_baseline import _kg, _num, _pct

    assert (_kg(-0.04), _pct(-0.04), _num(-0.001)) == ("0.0", "+0.0 %", "0.00")
    assert (_kg(-1234.56), _pct(-12.34), _num(2.005, 1, "kWh")) == ("-1,234.6", "-12.3 %", "2.0 kWh")
