"""The SQL Dataform's executor sends to BigQuery for each action, ported from the pinned Dataform CLI."""

# Source of truth: node_modules/@dataform/cli/bundle.js 3.0.69, class ExecutionSql and its helpers
# (formatStatement, concatenateQueries, CompilationSql.resolveTarget). Every string below is copied from it,
# whitespace included; tests/engine/test_statements.py proves byte equality against the CLI's own code.
# JavaScript semantics that matter are kept on purpose: `||` treats "" / 0 / false / missing alike; the CLI
# works on protobuf messages, where a missing string is "" and a missing message is null; trim() strips
# JavaScript's whitespace set, not Python's.

from __future__ import annotations

import json
import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass

TABLE, VIEW, INCREMENTAL = "table", "view", "incremental"

# JavaScript's String.prototype.trim set: WhiteSpace (incl. BOM and Unicode Zs) and LineTerminator.
_JS_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_ENUM_TABLE_TYPES = {
    1: TABLE,
    2: INCREMENTAL,
    3: VIEW,
    "TABLE": TABLE,
    "INCREMENTAL": INCREMENTAL,
    "VIEW": VIEW,
}
_ON_SCHEMA_CHANGE = {0: "IGNORE", 1: "FAIL", 2: "EXTEND", 3: "SYNCHRONIZE"}
_INCREMENTAL_STRATEGY = {0: "INCREMENTAL_STRATEGY_UNSPECIFIED", 1: "MERGE", 2: "INSERT_OVERWRITE"}
# One line of the CLI's alterTableAddColumnsSql, too long for this file's line length.
_ADD_COLUMNS_SELECT = (
    '      SELECT STRING_AGG(FORMAT("ADD COLUMN IF NOT EXISTS %s %s", column_info.column_name, '
    'column_info.data_type), ", ")'
)
_SEMVER = re.compile(r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


# The alias of the local engine's schema-change step: a statement selecting no row of the incremental
# query, whose columns the engine compares with the table's before the merge, as the procedure Dataform
# compiles for onSchemaChange FAIL/EXTEND/SYNCHRONIZE does on BigQuery (runner.apply_schema_change). It is
# part of the script so that it reads the script's variables (DECLAREd in pre-operations).
SCHEMA_CHANGE = "lakehouse_schema_change"


@dataclass(frozen=True)
class TableMetadata:
    """The warehouse state of a target, as Dataform's dbadapter.table() returns it.

    Only tables and views count: BigQuery objects of any other type (external tables, materialized views,
    snapshots) are dropped by the CLI's state() and must be passed as None.
    """

    type: str  # "table" | "view"
    fields: tuple[str, ...]  # column names in table order

    def __post_init__(self) -> None:
        if self.type not in (TABLE, VIEW):
            raise ValueError(f'table metadata type must be "table" or "view", not {self.type!r}')


@dataclass(frozen=True)
class Task:
    """One ExecutionTask: a statement to run, or an assertion query whose row_count must not be positive."""

    type: str  # "statement" | "assertion"
    statement: str


def _js(value: object) -> str:
    """Return a protobuf scalar as a JavaScript template literal prints it (missing strings are "")."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _default_unique_id() -> str:
    """Return a random base-36 id like the CLI's Math.random().toString(36).substring(2)."""
    return "".join(random.choices(string.digits + string.ascii_lowercase, k=11))


def _semver_key(version: str) -> tuple:
    """Return a sort key for a semantic version; raise ValueError if it is not one (as semver.gt throws)."""
    match = _SEMVER.match(version.strip())
    if not match:
        raise ValueError(f"Invalid Version: {version}")
    major, minor, patch, pre = match.groups()
    if pre is None:
        pre_key: tuple = ((1,),)
    else:
        pre_key = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))
        pre_key = ((0,), *pre_key)
    return (int(major), int(minor), int(patch), pre_key)


def _version_gt(version: str, other: str) -> bool:
    return _semver_key(version) > _semver_key(other)


def table_type(table: dict) -> str:
    """Return "table", "view" or "incremental" for a compiled table, as setOrValidateTableEnumType decides.

    Raises ValueError when `type` is unknown or disagrees with `enumType`.
    """
    from_str = None
    if table.get("type") not in ("", None):
        from_str = {"table": TABLE, "incremental": INCREMENTAL, "view": VIEW}.get(table["type"])
        if from_str is None:
            raise ValueError(f"Unexpected table type: {table['type']}")
    enum_type = table.get("enumType")
    if enum_type in (None, 0, "UNKNOWN_TYPE"):
        if from_str is None:
            raise ValueError(f"table {readable_name(table.get('target') or {})} has no type")
        return from_str
    from_enum = _ENUM_TABLE_TYPES.get(enum_type)
    if from_enum is None:
        raise ValueError(f"Unexpected table enumType: {enum_type}")
    if from_str is not None and from_enum != from_str:
        raise ValueError(f'Table str type "{table["type"]}" and enumType "{from_enum}" are not equivalent.')
    return from_enum


def readable_name(target: dict) -> str:
    """Return the readable name of a target, "database.schema.name" (database omitted when empty)."""
    parts = [target.get("name"), target.get("schema")]
    if target.get("database"):
        parts.append(target["database"])
    return ".".join(_js(part) for part in reversed(parts))


def resolve_target(target: dict, project_config: dict) -> str:
    """Return the backquoted BigQuery name of a target, defaults taken from the project config."""
    database = target.get("database") or project_config.get("defaultDatabase")
    schema = _js(target.get("schema") or project_config.get("defaultSchema"))
    if not database:
        return f"`{schema}.{_js(target.get('name'))}`"
    return f"`{database}.{schema}.{_js(target.get('name'))}`"


def _format_statement(statement: str, is_last: bool) -> str:
    last_line_start = statement.rfind("\n") + 1
    comment_index = statement.find("--", last_line_start)
    if comment_index == 0:
        code, comment = "", statement
    elif comment_index > 0:
        code, comment = statement[:comment_index].rstrip(_JS_WHITESPACE), statement[comment_index:]
    else:
        code, comment = statement, ""
    if not is_last and code and not code.endswith(";"):
        code += ";"
    if code and comment:
        return f"{code} {comment}"
    return code or comment


def concatenate_queries(statements: list[str | None]) -> str:
    """Return the statements joined into one script the way the CLI's concatenateQueries does.

    Each is trimmed; all but the last get a `;` unless they end with one. A `--` comment on a statement's
    last line stays after the `;`.
    """
    processed = [s.strip(_JS_WHITESPACE) for s in statements if s]
    processed = [s for s in processed if s]
    return "\n".join(_format_statement(s, i == len(processed) - 1) for i, s in enumerate(processed))


def should_write_incrementally(table: dict, full_refresh: bool, metadata: TableMetadata | None) -> bool:
    """Return True when Dataform would update the table in place rather than rebuild it.

    That is: the target exists and is not a view, and either this is not a full refresh or the table is
    protected.
    """
    rebuild_forced = full_refresh and not table.get("protected")
    return not rebuild_forced and metadata is not None and metadata.type != VIEW


class _ExecutionSql:
    """A port of the CLI's ExecutionSql for one project config and core version."""

    def __init__(
        self,
        project_config: dict,
        core_version: str,
        unique_id: Callable[[], str],
        local_schema_change: bool = False,
    ) -> None:
        self.project = project_config
        self.core_version = core_version
        self.unique_id = unique_id
        self.local_schema_change = local_schema_change

    def resolve(self, target: dict) -> str:
        return resolve_target(target, self.project)

    def ops(self, table: dict, kind: str, full_refresh: bool, metadata: TableMetadata | None) -> list[str]:
        ops = table.get(f"{kind}Ops")
        incremental_kind = f"incremental{kind.capitalize()}Ops"
        if (
            _version_gt(self.core_version, "1.4.8")
            and table_type(table) == INCREMENTAL
            and should_write_incrementally(table, full_refresh, metadata)
        ):
            ops = table.get(incremental_kind)
        return list(ops or [])

    def publish(self, table: dict, full_refresh: bool, metadata: TableMetadata | None) -> str:
        statements = self.ops(table, "pre", full_refresh, metadata)
        kind = table_type(table)
        base_type = VIEW if kind == VIEW else TABLE
        if metadata is not None and metadata.type != base_type:
            opposite = VIEW if base_type == TABLE else TABLE
            statements.append(f"drop {opposite} if exists {self.resolve(table['target'])}")
        if kind == INCREMENTAL:
            if not should_write_incrementally(table, full_refresh, metadata):
                statements.append(self.create_or_replace(table))
            else:
                on_schema_change = _enum_name(table.get("onSchemaChange"), _ON_SCHEMA_CHANGE)
                if on_schema_change in ("FAIL", "EXTEND", "SYNCHRONIZE"):
                    if self.local_schema_change:
                        statements.append(
                            f"select * from ({self.incremental_query(table)}) as {SCHEMA_CHANGE} where false"
                        )
                    else:
                        statements.extend(self.schema_change_statements(table))
                statements.append(self.incremental_dml(table, list(metadata.fields) if metadata else []))
        else:
            statements.append(self.create_or_replace(table))
        statements.extend(self.ops(table, "post", full_refresh, metadata))
        return concatenate_queries(statements)

    def create_or_replace(self, table: dict) -> str:
        bigquery = table.get("bigquery") or {}
        options = []
        if bigquery.get("partitionBy") and bigquery.get("partitionExpirationDays"):
            options.append(f"partition_expiration_days={_js(bigquery['partitionExpirationDays'])}")
        if bigquery.get("partitionBy") and bigquery.get("requirePartitionFilter"):
            options.append(f"require_partition_filter={_js(bigquery['requirePartitionFilter'])}")
        for name, value in (bigquery.get("additionalOptions") or {}).items():
            options.append(f"{name}={_js(value)}")
        materialized = "materialized " if table.get("materialized") else ""
        base_type = VIEW if table_type(table) == VIEW else TABLE
        partition = f"partition by {bigquery['partitionBy']} " if bigquery.get("partitionBy") else ""
        cluster_by = bigquery.get("clusterBy") or []
        cluster = f"cluster by {', '.join(cluster_by)} " if cluster_by else ""
        options_sql = f"OPTIONS({','.join(options)})" if options else ""
        return (
            f"create or replace {materialized}{base_type} {self.resolve(table['target'])} "
            f"{partition}{cluster}{options_sql}as {_js(table.get('query'))}"
        )

    def incremental_query(self, table: dict) -> str:
        query = table.get("incrementalQuery") or table.get("query")
        where = table.get("where")
        if where:
            return f"\n  select * from ({_js(query)}) as subquery\n    where {where}"
        return _js(query)

    def incremental_dml(self, table: dict, columns: list[str]) -> str:
        query = self.incremental_query(table)
        strategy = _enum_name(table.get("incrementalStrategy"), _INCREMENTAL_STRATEGY)
        if strategy == "INSERT_OVERWRITE":
            return self.insert_overwrite(table["target"], columns, query, table.get("bigquery"))
        if table.get("uniqueKey"):
            return self.merge_into(table["target"], columns, query, table["uniqueKey"], table.get("bigquery"))
        return self.insert_into(table["target"], [f"`{column}`" for column in columns], query)

    def insert_into(self, target: dict, columns: list[str], query: str) -> str:
        return (
            f"\t\ninsert into {self.resolve(target)}\t\n({','.join(columns)})\t\n"
            f"select {','.join(columns)}\t\nfrom ({query}) as insertions"
        )

    @staticmethod
    def predicates(incremental_predicates: list[str] | None) -> str:
        valid = [p for p in incremental_predicates or [] if p.strip(_JS_WHITESPACE) != ""]
        if not valid:
            return ""
        return "and " + " and ".join(f"({p})" for p in valid)

    def merge_into(
        self, target: dict, columns: list[str], query: str, unique_key: list[str], bigquery: dict | None
    ) -> str:
        bigquery = bigquery or {}
        update_filter = bigquery.get("updatePartitionFilter")
        predicates = self.predicates(bigquery.get("incrementalPredicates"))
        backticked = ",".join(f"`{column}`" for column in columns)
        on = " and ".join(f"DATAFORM_DEST.{key} = DATAFORM_SOURCE.{key}" for key in unique_key)
        filter_sql = f"and DATAFORM_DEST.{update_filter}" if update_filter else ""
        updates = ",".join(f"`{column}` = DATAFORM_SOURCE.{column}" for column in columns)
        return (
            f"\nmerge {self.resolve(target)} DATAFORM_DEST\nusing ({query}\n) DATAFORM_SOURCE\n"
            f"on {on} {filter_sql}\n{f' {predicates}' if predicates else ''}\n"
            f"when matched then\n  update set {updates}\n"
            f"when not matched then\n  insert ({backticked}) values ({backticked})"
        )

    def insert_overwrite(self, target: dict, columns: list[str], query: str, bigquery: dict | None) -> str:
        # `bigquery && bigquery.partitionBy` on a message that is absent (null) prints "null".
        partition_by = "null" if bigquery is None else _js(bigquery.get("partitionBy"))
        bigquery = bigquery or {}
        update_filter = bigquery.get("updatePartitionFilter")
        predicates = self.predicates(bigquery.get("incrementalPredicates"))
        staging = f"staging_table_temp_{self.unique_id()}"
        backticked = ",".join(f"`{column}`" for column in columns)
        filter_sql = f"and DATAFORM_DEST.{update_filter}" if update_filter else ""
        return f"""CREATE OR REPLACE TEMP TABLE `{staging}` AS (
  {query}
);

BEGIN
  DECLARE partitions_for_replacement DEFAULT (
    ARRAY(
      SELECT DISTINCT {partition_by}
      FROM `{staging}`
      WHERE {partition_by} IS NOT NULL
    )
  );

  MERGE {self.resolve(target)} DATAFORM_DEST
  USING `{staging}` DATAFORM_SOURCE
  ON FALSE
  WHEN NOT MATCHED BY SOURCE AND {partition_by} IN UNNEST(partitions_for_replacement) {filter_sql}
  {f" {predicates}" if predicates else ""}
  THEN
    DELETE
  WHEN NOT MATCHED BY TARGET THEN
    INSERT ({backticked}) VALUES ({backticked});
END;

DROP TABLE IF EXISTS `{staging}`;"""

    def schema_change_statements(self, table: dict) -> list[str]:
        unique_id = self.unique_id()
        target = table["target"]
        empty_target = {**target, "name": f"{_js(target.get('name'))}_df_temp_{unique_id}_empty"}
        procedure = self.resolve({**target, "name": f"df_osc_{unique_id}"})
        empty_name = self.resolve(empty_target)
        body = "\n\n".join(
            [
                f"""
-- Create empty table to extract schema of new query.
CREATE OR REPLACE TABLE {empty_name} AS (
  SELECT * FROM ({self.incremental_query(table)}) AS insertions LIMIT 0
);""",
                self.compare_schemas(target, empty_target),
                self.apply_schema_change_strategy(table, self.resolve(target)),
                f"""
-- Cleanup temporary tables.
DROP TABLE IF EXISTS {empty_name};
    """,
            ]
        )
        create_procedure = f"CREATE OR REPLACE PROCEDURE {procedure}()\nOPTIONS(strict_mode=false)\nBEGIN\n{body}\nEND;"
        call_procedure = f"""
BEGIN
  CALL {procedure}();
EXCEPTION WHEN ERROR THEN
  DROP TABLE IF EXISTS {empty_name};
  DROP PROCEDURE IF EXISTS {procedure};
  RAISE;
END;
DROP PROCEDURE IF EXISTS {procedure};"""
        return [create_procedure, call_procedure]

    @staticmethod
    def compare_schemas(target: dict, empty_target: dict) -> str:
        # The CLI makes the temp target with Object.assign({}, target, {name}): a message field left at its
        # default is no own property, so a missing database prints "" for the target but "undefined" there.
        def columns_view(t: dict, missing: str) -> str:
            database, schema = (missing if t.get(k) is None else _js(t[k]) for k in ("database", "schema"))
            return f"`{database}.{schema}.INFORMATION_SCHEMA.COLUMNS`"

        return f"""
-- Compare schemas
DECLARE dataform_columns ARRAY<STRING>;
DECLARE temp_table_columns ARRAY<STRUCT<column_name STRING, data_type STRING>>;
DECLARE columns_added ARRAY<STRUCT<column_name STRING, data_type STRING>>;
DECLARE columns_removed ARRAY<STRING>;

SET dataform_columns = (
  SELECT IFNULL(ARRAY_AGG(DISTINCT column_name), [])
  FROM {columns_view(target, "")}
  WHERE table_name = '{_js(target.get("name"))}'
);

SET temp_table_columns = (
  SELECT IFNULL(ARRAY_AGG(STRUCT(column_name, data_type)), [])
  FROM {columns_view(empty_target, "undefined")}
  WHERE table_name = '{_js(empty_target.get("name"))}'
);

SET columns_added = (
  SELECT IFNULL(ARRAY_AGG(column_info), [])
  FROM UNNEST(temp_table_columns) AS column_info
  WHERE column_info.column_name NOT IN UNNEST(dataform_columns)
);
SET columns_removed = (
  SELECT IFNULL(ARRAY_AGG(column_name), [])
  FROM UNNEST(dataform_columns) AS column_name
  WHERE column_name NOT IN (SELECT col.column_name FROM UNNEST(temp_table_columns) AS col)
);"""

    @staticmethod
    def alter_table_add_columns(qualified: str) -> str:
        return f"""IF ARRAY_LENGTH(columns_added) > 0 THEN
  EXECUTE IMMEDIATE (
    "ALTER TABLE {qualified} " ||
    (
{_ADD_COLUMNS_SELECT}
      FROM UNNEST(columns_added) AS column_info
    )
  );
END IF;"""

    def apply_schema_change_strategy(self, table: dict, qualified: str) -> str:
        on_schema_change = _enum_name(table.get("onSchemaChange"), _ON_SCHEMA_CHANGE)
        sql = f"\n-- Apply schema change strategy ({on_schema_change})."
        if on_schema_change == "FAIL":
            sql += """
IF ARRAY_LENGTH(columns_added) > 0 OR ARRAY_LENGTH(columns_removed) > 0 THEN
  RAISE USING MESSAGE = FORMAT(
    "Schema mismatch defined by on_schema_change = 'FAIL'. Added columns: %T, removed columns: %T",
    columns_added,
    columns_removed
  );
END IF;
"""
        elif on_schema_change == "EXTEND":
            sql += f"""
IF ARRAY_LENGTH(columns_removed) > 0 THEN
  RAISE USING MESSAGE = FORMAT(
    "Column removals are not allowed when on_schema_change = 'EXTEND'. Removed columns: %T",
    columns_removed
  );
END IF;

{self.alter_table_add_columns(qualified)}
"""
        elif on_schema_change == "SYNCHRONIZE":
            unique_keys = json.dumps(table.get("uniqueKey") or [], separators=(",", ":"), ensure_ascii=False)
            sql += f"""
DECLARE invalid_removed_columns ARRAY<STRING>;
SET invalid_removed_columns = (
  SELECT IFNULL(ARRAY_AGG(col), []) FROM UNNEST(columns_removed) AS col WHERE col IN UNNEST({unique_keys})
);

IF ARRAY_LENGTH(invalid_removed_columns) > 0 THEN
  RAISE USING MESSAGE = FORMAT(
    "Cannot drop columns %T as they are part of the unique key for table {qualified}",
    invalid_removed_columns
  );
END IF;

IF ARRAY_LENGTH(columns_removed) > 0 THEN
  EXECUTE IMMEDIATE (
    "ALTER TABLE {qualified} " ||
    (
      SELECT STRING_AGG(FORMAT("DROP COLUMN IF EXISTS %s", col), ", ")
      FROM UNNEST(columns_removed) AS col
    )
  );
END IF;

{self.alter_table_add_columns(qualified)}
"""
        return sql


def schema_change_mode(table: dict) -> str:
    """Return the table's onSchemaChange: IGNORE, FAIL, EXTEND or SYNCHRONIZE."""
    return _enum_name(table.get("onSchemaChange"), _ON_SCHEMA_CHANGE)


def _enum_name(value: object, names: dict[int, str]) -> str:
    """Return the enum's name for a value given as its number or its name (compile --json prints names)."""
    if value in (None, 0, ""):
        return names[0]
    if isinstance(value, int):
        if value not in names:
            raise ValueError(f"unknown enum value {value}")
        return names[value]
    return str(value)


def table_tasks(
    table: dict,
    project_config: dict,
    *,
    core_version: str,
    full_refresh: bool,
    metadata: TableMetadata | None,
    unique_id: Callable[[], str] = _default_unique_id,
    local_schema_change: bool = False,
) -> list[Task]:
    """Return the tasks Dataform runs for a compiled table, view or incremental table (none if disabled).

    `core_version` is the graph's dataformCoreVersion ("1.0.0" when absent, as the CLI assumes); `metadata`
    is the current warehouse state of the target, None when it does not exist. `unique_id` names temporary
    objects (insert_overwrite staging tables, onSchemaChange procedures). With `local_schema_change`, an
    onSchemaChange FAIL/EXTEND/SYNCHRONIZE step is a statement selecting no row of the incremental query
    as SCHEMA_CHANGE, between the pre-operations and the merge, instead of Dataform's procedure. Raises ValueError on an
    unknown table type or an invalid core version.
    """
    if table.get("disabled"):
        return []
    sql = _ExecutionSql(project_config, core_version, unique_id, local_schema_change)
    return [Task("statement", sql.publish(table, full_refresh, metadata))]


def operation_tasks(operation: dict) -> list[Task]:
    """Return the tasks Dataform runs for a compiled operation: each query as is (none if disabled)."""
    if operation.get("disabled"):
        return []
    return [Task("statement", query) for query in operation.get("queries") or []]


def assertion_tasks(assertion: dict, project_config: dict) -> list[Task]:
    """Return the tasks Dataform runs for a compiled assertion (none if disabled).

    A view of the failing rows, then an assertion task that counts them (it fails when row_count > 0).
    """
    if assertion.get("disabled"):
        return []
    target = resolve_target(assertion["target"], project_config)
    return [
        Task("statement", f"\n      create or replace view {target} as {_js(assertion.get('query'))}"),
        Task("assertion", f"select sum(1) as row_count from {target}"),
    ]
