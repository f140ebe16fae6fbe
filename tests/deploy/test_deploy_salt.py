"""The PII salt end to end on the local engine: deploy's parameterised write, silver's query-time read."""

from __future__ import annotations

import hashlib
import json

from deploy_fakes import REPO, TEST_SALT

from deploy.handlers import build_salt_job
from deploy.resources import KEYS_DATASET, SALT_TABLE, SALT_TABLE_SCHEMA
from lakehouse import warehouse
from lakehouse.engine import keys
from lakehouse.engine.compile import compile_project
from lakehouse.engine.runner import run
from lakehouse.engine.translate import translate_script

PROJECT = "test-local"
TABLE = f"{PROJECT}.{KEYS_DATASET}.{SALT_TABLE}"
ROTATED = "7d2e4f6a8c0b13579bdf2468ace02468bdf13579ace0f1e2"
# The kit's own helpers and key-table declaration, and one model hashing PII the way silver does.
FILES = {
    **{name: (REPO / name).read_text() for name in ("includes/params.js", "includes/silver.js")},
    "definitions/sources/keys.js": (REPO / "definitions/sources/keys.js").read_text(),
    "definitions/people.sqlx": """
        config { type: "table", schema: "silver" }
        select ${silver.piiHash("email")} as email_hash
        from unnest(['ann@example.com']) as email
    """,
}


def _hash(salt: str) -> str:
    return hashlib.sha256((salt + "ann@example.com").encode()).hexdigest()


def _on_warehouse(home, sql: str, parameters: dict | None = None) -> list[str]:
    """Run BigQuery `sql` on the local warehouse as the engine translates it, binding `parameters` as
    the query's own parameters (never into the text); return the DuckDB statements that ran."""
    statements = translate_script(sql, default_project=PROJECT)
    con = warehouse.connect(home, [PROJECT])
    try:
        for statement in statements:
            bound = {k: v for k, v in (parameters or {}).items() if f"${k}" in statement}
            con.execute(statement, bound) if bound else con.execute(statement)
    finally:
        con.close()
    return statements


def _deploy_writes(home, salt: str) -> str:
    """Run deploy's salt job (its SQL and its one query parameter) locally; return the job's SQL text."""
    sql, config = build_salt_job({"table": TABLE, "salt": salt})
    ran = _on_warehouse(home, sql, {p.name: p.value for p in config.query_parameters})
    assert salt not in sql and all(salt not in statement for statement in ran)
    return sql


def _emails(home) -> list[tuple]:
    con = warehouse.connect(home, [PROJECT], read_only=True)
    try:
        return con.execute(f'select email_hash from "{PROJECT}".silver.people').fetchall()
    finally:
        con.close()


def test_the_salt_deploy_writes_is_the_one_silver_hashes_with_and_no_sql_holds_it(
    make_project, lakehouse_home, monkeypatch
):
    monkeypatch.delenv(keys.SALT_ENV, raising=False)
    project = make_project(FILES)
    columns = ", ".join(f"{name} {kind}{' not null' * (mode == 'REQUIRED')}" for name, kind, mode in SALT_TABLE_SCHEMA)
    # Deploy makes the restricted dataset and its table (deploy/resources.py) first, then writes the row.
    _on_warehouse(lakehouse_home, f"create schema `{PROJECT}.{KEYS_DATASET}`; create table `{TABLE}` ({columns})")
    job_sql = _deploy_writes(lakehouse_home, TEST_SALT)

    first = run(project, home_dir=lakehouse_home)
    assert first.status == "success"
    assert _emails(lakehouse_home) == [(_hash(TEST_SALT),)]
    # The run used deploy's row: it made no demo salt of its own.
    assert not (lakehouse_home / keys.SALT_FILE).exists()

    # Rotation: deploy writes a new row; the same compiled SQL hashes with it on the next run.
    _deploy_writes(lakehouse_home, ROTATED)
    second = run(project, home_dir=lakehouse_home)
    assert second.status == "success"
    assert _emails(lakehouse_home) == [(_hash(ROTATED),)]

    graph = json.dumps(compile_project(project, home_dir=lakehouse_home).graph)
    statements = [s for record in (first, second) for action in record.actions for s in action.statements]
    assert [a.statements for a in first.actions] == [a.statements for a in second.actions]
    assert any(f'"{KEYS_DATASET}"."{SALT_TABLE}"' in statement for statement in statements)
    for text in (graph, job_sql, *statements, (lakehouse_home / "runs" / "latest.json").read_text()):
        assert TEST_SALT not in text and ROTATED not in text
    assert f"(select salt from `{TABLE}`)" in graph
