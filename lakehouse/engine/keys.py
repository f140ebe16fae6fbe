"""The local stand-in of the restricted key table keys.pii_salt that silver's PII hashes read."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import duckdb

from lakehouse import warehouse

SCHEMA, TABLE = "keys", "pii_salt"
SALT_ENV = "LAKEHOUSE_PII_SALT"
# A salt made here starts with this, so deploy and the trigger recognise it and refuse it on GCP.
DEMO_PREFIX = "demo-"
SALT_FILE = "pii-salt"
log = logging.getLogger("lakehouse.keys")


class SaltError(ValueError):
    """The local salt cannot be used as it is; the message says what to do."""


def demo_salt(home_dir: Path) -> str:
    """Return this home's demo salt, made once (random, so no published dictionary reverses it) and
    kept in <home>/pii-salt, readable by its owner only."""
    path = Path(home_dir) / SALT_FILE
    if path.is_file():
        value = path.read_text().strip()
        if value:
            return value
    value = DEMO_PREFIX + secrets.token_hex(16)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value + "\n")
    return value


def ensure(con: duckdb.DuckDBPyConnection, project: str, home_dir: Path, *, replace: bool = False) -> None:
    """Create `project`.keys.pii_salt with one row if it is missing: $LAKEHOUSE_PII_SALT, else this
    home's demo salt (said once, when the table is made). With `replace` (a full refresh, which
    re-hashes all of silver) a different $LAKEHOUSE_PII_SALT replaces the stored one.

    Raises SaltError when $LAKEHOUSE_PII_SALT differs from the stored salt without `replace`: silver
    would hold hashes of two salts.
    """
    table = f'"{project}"."{SCHEMA}"."{TABLE}"'
    wanted = os.environ.get(SALT_ENV) or None
    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{project}"."{SCHEMA}"')
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND table_name = ?",
        [project, SCHEMA, TABLE],
    ).fetchone()[0]
    if exists:
        rows = con.execute(f"SELECT salt FROM {table}").fetchall()
        stored = rows[0][0] if len(rows) == 1 else None
        if wanted is None or wanted == stored:
            return
        if not replace:
            raise SaltError(
                f"{SALT_ENV} differs from the salt in {SCHEMA}.{TABLE}; a new salt re-hashes silver: "
                'run with --full-refresh to rotate it (docs/runbook.md, "Rotate the PII salt")'
            )
    salt = wanted or demo_salt(home_dir)
    with warehouse.transaction(con):
        con.execute(f"CREATE OR REPLACE TABLE {table} (salt VARCHAR NOT NULL)")
        con.execute(f"INSERT INTO {table} VALUES (?)", [salt])
    if wanted is None:
        log.warning(
            "using a demo PII salt (kept in %s); set %s to a secret before real data, deploy refuses a demo salt",
            Path(home_dir) / SALT_FILE,
            SALT_ENV,
        )
