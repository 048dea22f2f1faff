"""The attacks of issue 12 on the HTTP API, replayed on a city in use: anonymous, as a viewer of the city and as an
administrator of another municipality. Each is refused with the status the policy gives, and the data it went for
is unchanged afterwards (read back with the city's own administrator). The roles and statuses of every operation
are tests/test_policy_matrix.py's; this file follows the issue's list, end to end.

Run as a script (``python -m tests.test_attacks_replayed``) it prints the table the issue's note shows.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import yaml
from psycopg_pool import ConnectionPool

from lccm.alerts import default_rules_file
from lccm.api.app import create_app
from lccm.api.principal import Role
from lccm.settings import Settings
from lccm.store.writer import DeadLetterRow, ReadingColumns, write_batch
from tests._auth import TestClient, add_organisation, admin_headers, bearer, named_key
from tests._db import fresh_database
from tests._seeded import Seeded, seed_city

BASE_YEAR = resources.files("lccm").joinpath("data", "examples", "lampang-cfo-2025.csv")
YEAR = 2025
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# The attacker knows the shipped rules' keys: the file is public.
SHIPPED_RULES = [r["key"] for r in yaml.safe_load(default_rules_file().read_text(encoding="utf-8"))["rules"]]
LETTER_PAYLOAD = '{"secret": "of Lampang"'
TARGET_ZERO = {"target_key": "org", "target_year": 2030, "reduction_pct": 0}


@dataclass
class Attack:
    name: str  # as the issue words it
    send: Callable[[TestClient, Seeded], Any]
    state: Callable[[TestClient, Seeded], Any]  # what it went for, read by the city's administrator


def _base_year_x001() -> bytes:
    """The shipped base-year file with every monthly quantity x 0.01: what the attacker uploaded."""
    rows = list(csv.DictReader(io.StringIO(BASE_YEAR.read_text(encoding="utf-8-sig"))))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{float(v) * 0.01:g}" if k in MONTHS and v else v for k, v in row.items()})
    return out.getvalue().encode()


class _Read:
    """A read's answer as the attacker got it: refused, or answered without one of Lampang's letters (as 404)."""

    def __init__(self, status: int, leaked: bool) -> None:
        self.status_code = 404 if status == 200 and not leaked else status
        self.label = "200, none of Lampang's" if status == 200 and not leaked else str(status)


def _read_letters(c: TestClient) -> _Read:
    r = c.get("/dead-letters")
    leaked = r.status_code == 200 and any(LETTER_PAYLOAD in i["payload"] for i in r.json()["items"])
    return _Read(r.status_code, leaked)


def _rated_kw(c: TestClient, s: Seeded) -> Any:
    return c.get(f"/devices/{s.meter}").json().get("rated_kw")


def _rerate(c: TestClient, s: Seeded) -> Any:
    registry = (
        "site_code,site_name,site_kind,city,device_id,device_kind,device_name,cadence_s,rated_kw\n"
        f"{s.site},x,building,Lampang,{s.meter},electricity_meter,x,900,0.001\n"
    )
    return c.post("/devices/import", content=registry.encode(), headers={"content-type": "text/csv"})


ATTACKS = [
    Attack(
        "rename the organisation",
        lambda c, s: c.put(
            "/organisations/lampang", json={"name_en": "Hacked", "province_en": "X", "municipality_type": "city"}
        ),
        lambda c, s: [o["name_en"] for o in c.get("/organisations").json()],
    ),
    Attack(
        "replace the 2025 base year with every value x 0.01",
        lambda c, s: c.post(
            f"/organisations/lampang/inventory/import?year={YEAR}&base_year=true",
            files={"file": ("cfo.csv", _base_year_x001(), "text/csv")},
        ),
        lambda c, s: c.get(f"/organisations/lampang/inventory?year={YEAR}").json(),
    ),
    Attack(
        "unmap every device",
        lambda c, s: c.put(f"/organisations/lampang/mappings?year={YEAR}", json={"mappings": []}),
        lambda c, s: c.get(f"/organisations/lampang/mappings?year={YEAR}").json(),
    ),
    Attack(
        "set the target to 0 %",
        lambda c, s: c.put("/organisations/lampang/targets", json={"targets": [TARGET_ZERO]}),
        lambda c, s: c.get("/organisations/lampang/targets").json(),
    ),
    Attack("re-rate a meter to 0.001 kW", _rerate, _rated_kw),
    Attack(
        'acknowledge an alert as "the mayor"',
        lambda c, s: c.post(f"/alerts/{s.open_alert}/ack", json={"by": "the mayor", "note": "fine"}),
        lambda c, s: {k: c.get(f"/alerts/{s.open_alert}").json()[k] for k in ("state", "acknowledged_by")},
    ),
    Attack(
        "delete every alert rule",
        lambda c, s: [c.delete(f"/alert-rules/{key}") for key in SHIPPED_RULES][-1],
        lambda c, s: sorted(r["key"] for r in c.get("/alert-rules").json()),
    ),
    Attack(
        "read every device's raw payloads (GET /dead-letters)",
        lambda c, s: _read_letters(c),
        lambda c, s: None,
    ),
]
# Who attacks, and the answer each gets: a viewer reaches the data but may not change it (or read dead letters); an
# administrator of another municipality does not see this one at all.
ATTACKERS = ("anonymous", "viewer", "another city's admin")


@dataclass
class City:
    url: str
    seeded: Seeded
    admin: TestClient
    clients: dict[str, TestClient]


@pytest.fixture(scope="module")
def city() -> Iterator[City]:
    with tempfile.TemporaryDirectory() as folder, fresh_database() as url:
        yield from _city(url, Path(folder))


def _city(url: str, folder: Path) -> Iterator[City]:
    seeded = seed_city(url, folder)
    with psycopg.connect(url) as conn:  # a device's raw payload the ingest refused
        letter = DeadLetterRow(0, f"lccm/v1/lampang/{seeded.meter}/up", LETTER_PAYLOAD.encode(), "bad_json", "x", None)
        no_readings = ReadingColumns(*(np.empty(0, dtype=t) for t in ("i4", "i2", "i8", "f8", "i8", "i8")))
        write_batch(conn, no_readings, [letter])
    add_organisation(url, "nan", "nan")
    keys = {
        "anonymous": {},
        "viewer": bearer(named_key(url, "viewer", Role.VIEWER)),
        "another city's admin": admin_headers(url, org="nan"),
    }
    with ConnectionPool(url, min_size=1, max_size=4, open=True) as pool:
        app = create_app(Settings(database_url=url), pool)
        with ExitStack() as opened:
            admin = opened.enter_context(TestClient(app, headers=admin_headers(url)))
            clients = {who: opened.enter_context(TestClient(app, headers=h)) for who, h in keys.items()}
            yield City(url, seeded, admin, clients)


def _attempt(city: City, attack: Attack, who: str) -> tuple[int, str]:
    """The attack's status (and how the note shows it); fails if it changed what it went for."""
    before = attack.state(city.admin, city.seeded)
    answer = attack.send(city.clients[who], city.seeded)
    assert attack.state(city.admin, city.seeded) == before, f"{attack.name} as {who} changed the data"
    return int(answer.status_code), str(getattr(answer, "label", answer.status_code))


def _refused(attack: Attack, who: str, status: int) -> None:
    if who == "anonymous":
        assert status == 401
    elif attack.name.startswith("acknowledge"):  # a client-typed name is refused outright, whoever sends it
        assert status in (403, 404, 422), status
    elif who == "viewer":
        assert status == 403
    else:
        # Not its organisation: as if it did not exist (404), a row outside it (422), or a shipped rule, which is
        # global and read-only through the API (409).
        assert status in (403, 404, 409, 422), status


@pytest.mark.parametrize("who", ATTACKERS)
@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_each_attack_is_refused_and_changes_nothing(city: City, attack: Attack, who: str) -> None:
    _refused(attack, who, _attempt(city, attack, who)[0])


def test_an_officer_cannot_name_someone_else_as_the_acknowledger(city: City) -> None:
    url_key = named_key(city.url, "officer", Role.ENVIRONMENT_OFFICER)
    with TestClient(city.admin.app, headers=bearer(url_key)) as officer:
        typed = officer.post(f"/alerts/{city.seeded.open_alert}/ack", json={"by": "the mayor"})
        assert typed.status_code == 422 and typed.json()["detail"][0]["loc"] == ["body", "by"]
        done = officer.post(f"/alerts/{city.seeded.open_alert}/ack", json={"note": "on my way"})
        assert done.status_code == 200, done.text
        assert done.json()["acknowledged_by"].startswith("API key officer <key:")


def main() -> None:
    with tempfile.TemporaryDirectory() as folder, fresh_database() as url:
        opened = _city(url, Path(folder))  # held: the clients stay open while the generator is suspended
        city = next(opened)
        print("| attack | " + " | ".join(ATTACKERS) + " | data afterwards |")
        print("|---|" + "---|" * (len(ATTACKERS) + 1))
        for attack in ATTACKS:
            statuses = [_attempt(city, attack, who)[1] for who in ATTACKERS]
            print(f"| {attack.name} | " + " | ".join(statuses) + " | unchanged |")


if __name__ == "__main__":
    main()
