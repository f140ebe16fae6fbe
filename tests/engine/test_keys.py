"""The local PII key table: made by the first run, read by the hashes at query time, never in SQL."""

from __future__ import annotations

import hashlib
import logging
import stat

import pytest

from lakehouse import warehouse
from lakehouse.engine import keys
from lakehouse.engine.runner import RunError, run

SALT = "coalesce((select salt from `test-local.keys.pii_salt`), error('keys.pii_salt is empty'))"
PROJECT = {
    "definitions/keys.js": 'declare({ schema: "keys", name: "pii_salt" });',
    "definitions/people.sqlx": f"""
        config {{ type: "table", schema: "silver" }}
        select to_hex(sha256(concat({SALT}, email))) as email_hash
        from unnest(['ann@example.com']) as email
    """,
}


def _hash(salt: str) -> str:
    return hashlib.sha256((salt + "ann@example.com").encode()).hexdigest()


def _read(home, sql: str) -> list[tuple]:
    con = warehouse.connect(home, ["test-local"])
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _statements(record) -> str:
    return "\n".join(s for action in record.actions for s in action.statements)


def test_first_run_makes_a_demo_salt_and_says_so_once(make_project, lakehouse_home, monkeypatch, caplog):
    monkeypatch.delenv(keys.SALT_ENV, raising=False)
    project = make_project(PROJECT)
    with caplog.at_level(logging.WARNING, logger="lakehouse.keys"):
        first = run(project, home_dir=lakehouse_home)
        second = run(project, home_dir=lakehouse_home)
    assert first.status == second.status == "success"
    salt = (lakehouse_home / keys.SALT_FILE).read_text().strip()
    assert salt.startswith("demo-") and len(salt) == len("demo-") + 32
    assert stat.S_IMODE((lakehouse_home / keys.SALT_FILE).stat().st_mode) == 0o600
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["using a demo PII salt"]
    assert _read(lakehouse_home, 'select email_hash from "test-local".silver.people') == [(_hash(salt),)]
    assert _read(lakehouse_home, 'select salt from "test-local".keys.pii_salt') == [(salt,)]
    assert salt not in _statements(first)


def test_the_salt_comes_from_the_environment_and_stays_out_of_the_sql(make_project, lakehouse_home, monkeypatch):
    monkeypatch.setenv(keys.SALT_ENV, "a-secret-salt-for-the-test-0123456789")
    project = make_project(PROJECT)
    record = run(project, home_dir=lakehouse_home)
    assert record.status == "success"
    assert not (lakehouse_home / keys.SALT_FILE).exists()
    assert _read(lakehouse_home, 'select email_hash from "test-local".silver.people') == [
        (_hash("a-secret-salt-for-the-test-0123456789"),)
    ]
    assert "a-secret-salt" not in _statements(record)
    assert "a-secret-salt" not in (lakehouse_home / "runs" / "latest.json").read_text()


def test_a_new_salt_needs_a_full_refresh(make_project, lakehouse_home, monkeypatch):
    monkeypatch.setenv(keys.SALT_ENV, "first-salt-0123456789abcdef")
    project = make_project(PROJECT)
    assert run(project, home_dir=lakehouse_home).status == "success"
    monkeypatch.setenv(keys.SALT_ENV, "second-salt-0123456789abcdef")
    with pytest.raises(RunError, match="LAKEHOUSE_PII_SALT differs from the salt in keys.pii_salt; .*--full-refresh"):
        run(project, home_dir=lakehouse_home)
    assert run(project, home_dir=lakehouse_home, full_refresh=True).status == "success"
    assert _read(lakehouse_home, 'select email_hash from "test-local".silver.people') == [
        (_hash("second-salt-0123456789abcdef"),)
    ]


def test_an_empty_key_table_fails_the_hash_instead_of_nulls(make_project, lakehouse_home, monkeypatch):
    monkeypatch.delenv(keys.SALT_ENV, raising=False)
    project = make_project(PROJECT)
    assert run(project, home_dir=lakehouse_home).status == "success"
    _read(lakehouse_home, 'delete from "test-local".keys.pii_salt')
    record = run(project, home_dir=lakehouse_home, actions=["people"])
    assert record.status == "failed"
    assert "keys.pii_salt is empty" in record.actions[0].error
