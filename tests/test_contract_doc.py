"""docs/contract.md is what vendors build against: it must say exactly what the code does."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

from lccm.ingest import codec

DOC = (Path(__file__).parent.parent / "docs" / "contract.md").read_text(encoding="utf-8")


def _table_after(heading: str) -> list[list[str]]:
    """The body rows of the first Markdown table after ``heading``."""
    rows: list[list[str]] = []
    started = False
    for line in DOC.split(heading, 1)[1].splitlines():
        if not line.startswith("|"):
            if started:
                break
            continue
        started = True
        if not set(line.replace("|", "").strip()) <= {"-", " "}:
            rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows[1:]


def test_metric_catalogue_in_the_doc_matches_the_database(fresh_db: str) -> None:
    doc_rows = _table_after("## Metric catalogue")
    with psycopg.connect(fresh_db) as conn:
        metrics = conn.execute("SELECT id, name, unit, key, kind, min_value, max_value FROM metrics").fetchall()
        units = conn.execute(
            "SELECT m.name, u.unit, u.key_suffix FROM metric_units u JOIN metrics m ON m.id = u.metric_id"
        ).fetchall()
    assert len(doc_rows) == len(metrics)
    by_name = {m[1]: m for m in metrics}
    for name, unit, key, accepted, kind, plausible in doc_rows:
        _, _, db_unit, db_key, db_kind, lo, hi = by_name[name]
        assert (unit if unit != "(none)" else "") == db_unit, name
        assert key == db_key and kind == db_kind, name
        doc_lo, doc_hi = (float(x) for x in plausible.split("…"))
        assert (doc_lo, doc_hi) == (lo, hi), name
        db_units = sorted(f"{u}→{s}" for n, u, s in units if n == name)
        doc_units = sorted(a.strip().replace(" → ", "→") for a in accepted.split(","))
        normalise = {"/→(none)", "(none)"}
        assert [d for d in doc_units if d not in normalise] == [u for u in db_units if u not in ("/→", "→")], name


def test_every_refusal_reason_the_decoder_can_give_is_documented() -> None:
    documented = {row[0].strip("`") for row in _table_after("## What is refused, and why")}
    source = Path(codec.__file__).read_text(encoding="utf-8")
    in_code = set(re.findall(r'(?:_Refused|Refusal)\(\s*"([a-z_]+)"', source))
    assert in_code == documented


@pytest.mark.parametrize("limit", ["262,144 bytes", "5,000 readings", "300 s"])
def test_documented_limits_are_the_default_settings(limit: str) -> None:
    from lccm.settings import Settings

    s = Settings()
    assert limit in DOC
    values = {"262,144 bytes": s.max_payload_bytes == 262_144, "5,000 readings": s.max_readings_per_message == 5000,
              "300 s": s.future_tolerance_s == 300}  # fmt: skip
    assert values[limit]
