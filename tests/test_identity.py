"""Local accounts, sessions, API keys and the audit log, on a real database, through the API and the `lccm` CLI."""

from __future__ import annotations

import getpass
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg_pool import ConnectionPool
from typer.testing import CliRunner

from lccm.api.app import create_app
from lccm.api.principal import Role
from lccm.cli import app as cli
from lccm.settings import Settings
from tests._auth import TestClient, add_organisation, admin_headers, api_key, bearer
from tests._db import fresh_database

PASSWORD = "a long enough password"
RULE = {"name": {"en": "PM2.5 test", "th": "PM2.5"}, "metric": "pm25_ugm3", "raise": {"above": 500}, "severity": "info"}


@dataclass(frozen=True)
class Env:
    url: str
    client: TestClient  # no credentials of its own; cookies kept
    admin: dict[str, str]


@pytest.fixture
def env() -> Iterator[Env]:
    with fresh_database() as url:
        add_organisation(url, "khonkaen")
        settings = Settings(database_url=url, session_cookie_secure=False, login_lockout_after=3)
        with (
            ConnectionPool(url, min_size=1, max_size=3, open=True) as pool,
            TestClient(create_app(settings, pool)) as client,
        ):
            yield Env(url, client, admin_headers(url))


def lccm(*args: str, stdin: str | None = None) -> str:
    result = CliRunner().invoke(cli, list(args), input=stdin)
    assert result.exit_code == 0, result.output
    return result.stdout


def _add_user(env: Env, username: str, *roles: str, sites: list[str] | None = None) -> None:
    body = {"username": username, "password": PASSWORD, "roles": list(roles or ["viewer"]), "sites": sites}
    answer = env.client.post("/users", json=body, headers=env.admin)
    assert answer.status_code == 201, answer.text


def _login(env: Env, username: str, password: str = PASSWORD) -> tuple[int, dict[str, object]]:
    answer = env.client.post("/auth/login", json={"username": username, "password": password})
    return answer.status_code, answer.json()


def _audit_rows(url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT actor_subject, action, target FROM audit_log ORDER BY id").fetchall()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


def test_a_session_cookie_is_http_only_lax_and_secure_by_default() -> None:
    with (
        fresh_database() as url,
        ConnectionPool(url, min_size=1, max_size=2, open=True) as pool,
        TestClient(create_app(Settings(database_url=url), pool)) as client,
    ):
        user = {"username": "ploy", "password": PASSWORD, "roles": ["viewer"]}
        client.post("/users", json=user, headers=admin_headers(url))
        answer = client.post("/auth/login", json={"username": "ploy", "password": PASSWORD})
    cookie = answer.headers["set-cookie"].lower()
    assert answer.status_code == 200
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" in cookie and "path=/" in cookie


def test_login_session_csrf_and_logout(env: Env) -> None:
    _add_user(env, "somchai", "environment_officer")
    status, body = _login(env, "somchai")
    assert status == 200 and body["me"] == {
        "subject": "user:somchai", "display_name": "somchai", "roles": ["environment_officer"],
        "organisation": "lampang", "sites": None,
    }  # fmt: skip
    csrf = {"X-CSRF-Token": str(body["csrf_token"])}
    assert env.client.get("/auth/me").json()["subject"] == "user:somchai"  # the cookie alone, for a read
    # A change by cookie needs the session's CSRF token (a cross-site form cannot send it).
    refused = env.client.put("/alert-rules/pm", json=RULE)
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    wrong = env.client.put("/alert-rules/pm", json=RULE, headers={"X-CSRF-Token": "guess"})
    assert wrong.status_code == 403
    assert env.client.put("/alert-rules/pm", json=RULE, headers=csrf).status_code == 201
    assert ("user:somchai", "PUT /alert-rules/{key}", "alert_rule:pm") in _audit_rows(env.url)
    assert env.client.post("/auth/logout", headers=csrf).status_code == 204
    assert env.client.get("/auth/me").status_code == 401


def test_login_can_be_a_form_and_a_password_is_stored_as_argon2id(env: Env) -> None:
    _add_user(env, "malee")
    answer = env.client.post("/auth/login", data={"username": "malee", "password": PASSWORD})
    assert answer.status_code == 200
    with psycopg.connect(env.url) as conn:
        row = conn.execute("SELECT password_hash FROM users WHERE username = 'malee'").fetchone()
    assert row is not None and str(row[0]).startswith("$argon2id$") and PASSWORD not in str(row[0])


def test_failed_logins_answer_alike_and_lock_the_account(env: Env) -> None:
    _add_user(env, "nok")
    unknown = _login(env, "nobody")
    wrong = _login(env, "nok", "not the password")
    assert unknown == wrong == (401, {"error": "invalid_credentials", "detail": "unknown username or wrong password"})
    _login(env, "nok", "still wrong")
    _login(env, "nok", "third time")  # login_lockout_after=3: locked now
    assert _login(env, "nok") == unknown  # even the right password, while locked
    lccm("users", "passwd", "nok", "--password-stdin", "--database-url", env.url, stdin="a brand new password\n")
    assert _login(env, "nok", "a brand new password")[0] == 200  # a new password lifts the lock


def test_an_expired_or_disabled_session_is_refused(env: Env) -> None:
    _add_user(env, "dao")
    assert _login(env, "dao")[0] == 200 and env.client.get("/auth/me").status_code == 200
    with psycopg.connect(env.url) as conn:
        conn.execute("UPDATE sessions SET expires_at = now() - interval '1 second'")
    assert env.client.get("/auth/me").status_code == 401
    _login(env, "dao")
    assert env.client.patch("/users/dao", json={"disabled": True}, headers=env.admin).json()["disabled"] is True
    assert env.client.get("/auth/me").status_code == 401  # disabling ends the sessions
    assert _login(env, "dao")[0] == 401


def test_users_are_administered_within_the_admins_organisation(env: Env) -> None:
    answer = env.client.post(
        "/users", json={"username": "fm", "password": PASSWORD, "roles": ["facility_manager"], "sites": ["NOPE"]},
        headers=env.admin,
    )  # fmt: skip
    assert answer.status_code == 422 and answer.json()["error"] == "site_not_found"
    short = env.client.post("/users", json={"username": "x", "password": "short", "roles": ["viewer"]},
                            headers=env.admin)  # fmt: skip
    assert short.status_code == 422 and short.json()["detail"][0]["loc"] == ["body", "password"]
    _add_user(env, "kai")
    assert env.client.post("/users", json={"username": "kai", "password": PASSWORD, "roles": ["viewer"]},
                           headers=env.admin).status_code == 409  # fmt: skip
    other = admin_headers(env.url, org="khonkaen")
    assert [u["username"] for u in env.client.get("/users", headers=other).json()] == []
    assert env.client.patch("/users/kai", json={"roles": ["admin"]}, headers=other).status_code == 404
    patched = env.client.patch("/users/kai", json={"roles": ["environment_officer"]}, headers=env.admin).json()
    assert patched["roles"] == ["environment_officer"]
    viewer = bearer(api_key(env.url, Role.VIEWER))
    assert env.client.get("/users", headers=viewer).status_code == 403


def test_api_keys_are_stored_as_hashes_record_their_use_and_can_be_revoked(env: Env) -> None:
    created = env.client.post("/api-keys", json={"name": "scada", "roles": ["viewer"]}, headers=env.admin)
    assert created.status_code == 201
    key, key_id = created.json()["key"], created.json()["key_id"]
    assert key.startswith(f"lccm_{key_id}_")
    with psycopg.connect(env.url) as conn:
        stored = conn.execute("SELECT * FROM api_keys WHERE key_id = %s", (key_id,)).fetchone()
    assert stored is not None and key not in [str(v) for v in stored]
    assert hashlib.sha256(key.encode()).hexdigest() in [str(v) for v in stored]
    assert env.client.get("/auth/me", headers={"X-API-Key": key}).json()["subject"] == f"key:{key_id}"
    listed = {k["key_id"]: k for k in env.client.get("/api-keys", headers=env.admin).json()}
    assert listed[key_id]["last_used_at"] is not None and "key" not in listed[key_id]
    assert env.client.delete(f"/api-keys/{key_id}", headers=env.admin).json()["revoked_at"] is not None
    refused = env.client.get("/sites", headers=bearer(key))
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")


def test_a_change_has_one_audit_entry_and_a_failed_change_none(env: Env) -> None:
    before = _audit_rows(env.url)
    answer = env.client.put("/alert-rules/pm", json=RULE, headers=env.admin)
    assert answer.status_code == 201
    added = _audit_rows(env.url)[len(before) :]
    assert [(a, t) for _, a, t in added] == [("PUT /alert-rules/{key}", "alert_rule:pm")]
    entry = env.client.get("/audit", headers=env.admin).json()["items"][0]
    assert entry["request_id"] == answer.headers["x-request-id"]
    assert entry["before"] is None and entry["after"]["definition"]["metric"] == "pm25_ugm3"
    assert entry["actor_subject"].startswith("key:") and entry["actor_name"] == "API key test admin"
    # Refused by the store (no base year to count targets from): nothing changes, no entry.
    targets = {"targets": [{"target_key": "t2", "target_year": 2030}]}
    failed = env.client.put("/organisations/lampang/targets", json=targets, headers=env.admin)
    assert failed.status_code == 422
    assert env.client.get("/organisations/lampang/targets", headers=env.admin).json() == []
    refused = env.client.post("/alerts/1/ack", json={}, headers=env.admin)  # no such alert
    assert refused.status_code == 404
    csv = {**env.admin, "content-type": "text/csv"}
    bad_file = env.client.post(
        "/organisations/lampang/inventory/import", params={"year": 2025}, content=b"not,an,inventory\n", headers=csv
    )
    assert bad_file.status_code == 422
    assert _audit_rows(env.url)[len(before) :] == added
    # ... while the rejected file is still in the import log (committed on its own, as before).
    assert env.client.get("/organisations/lampang/imports", headers=env.admin).json()[0]["status"] == "rejected"


def test_the_audit_log_is_paged_filtered_and_per_organisation(env: Env) -> None:
    for n in range(3):
        _add_user(env, f"user{n}")
    page = env.client.get("/audit", params={"limit": 2, "target": "user:"}, headers=env.admin).json()
    assert [e["target"] for e in page["items"]] == ["user:user2", "user:user1"]
    rest = env.client.get("/audit", params={"limit": 2, "target": "user:", "before": page["next_cursor"]},
                          headers=env.admin).json()  # fmt: skip
    assert [e["target"] for e in rest["items"]] == ["user:user0"] and rest["next_cursor"] is None
    other = admin_headers(env.url, org="khonkaen")
    theirs = env.client.get("/audit", headers=other).json()["items"]
    assert theirs and all(e["organisation"] == "khonkaen" for e in theirs)  # only the key made for them
    assert env.client.get("/audit", headers=bearer(api_key(env.url, Role.VIEWER))).status_code == 403
    naive = env.client.get("/audit", params={"since": "2026-01-01T00:00:00"}, headers=env.admin)
    assert naive.status_code == 422


def test_the_cli_manages_users_and_keys_and_reads_the_audit_log(env: Env) -> None:
    db = ["--database-url", env.url]
    out = lccm("users", "add", "Lek", "--org", "lampang", "--role", "viewer", "--role", "carbon_officer",
               "--display-name", "Lek Srisuk", "--password-stdin", *db, stdin=f"{PASSWORD}\n")  # fmt: skip
    assert "added lek (carbon_officer, viewer) to lampang" in out
    assert _login(env, "lek")[0] == 200
    assert "lek\tLek Srisuk\tcarbon_officer,viewer\tall sites" in lccm("users", "list", *db)
    lccm("users", "roles", "lek", "--role", "environment_officer", *db)
    lccm("users", "disable", "lek", *db)
    assert _login(env, "lek")[0] == 401
    key = lccm("apikeys", "create", "--org", "khonkaen", "--role", "viewer", "--name", "bridge", *db).strip()
    me = env.client.get("/auth/me", headers=bearer(key)).json()
    assert (me["organisation"], me["roles"]) == ("khonkaen", ["viewer"])
    key_id = me["subject"].removeprefix("key:")
    assert key not in lccm("apikeys", "list", *db) and key_id in lccm("apikeys", "list", *db)
    lccm("apikeys", "revoke", key_id, *db)
    assert env.client.get("/auth/me", headers=bearer(key)).status_code == 401
    entries = [json.loads(line) for line in lccm("audit", "--json", "--actor", f"cli:{getpass.getuser()}", *db)
               .splitlines()]  # fmt: skip
    assert [(e["action"], e["target"]) for e in entries] == [
        ("lccm apikeys revoke", f"key:{key_id}"),
        ("lccm apikeys create", f"key:{key_id}"),
        ("lccm users disable", "user:lek"),
        ("lccm users roles", "user:lek"),
        ("lccm users add", "user:lek"),
    ]
    assert entries[3]["before"]["roles"] == ["carbon_officer", "viewer"]
    assert entries[3]["after"]["roles"] == ["environment_officer"]
    failed = CliRunner().invoke(cli, ["users", "add", "x", "--org", "atlantis", "--role", "viewer",
                                      "--password-stdin", *db], input=f"{PASSWORD}\n")  # fmt: skip
    assert failed.exit_code == 2 and "atlantis" in failed.output
