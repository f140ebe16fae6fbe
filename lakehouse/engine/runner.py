"""Run a compiled Dataform graph on the local DuckDB warehouse, action by action, atomically."""

from __future__ import annotations

import contextlib
import glob
import heapq
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from lakehouse import paths, warehouse
from lakehouse.engine import dry_run, functions, keys, query, records, scripts, statements, unchanged
from lakehouse.engine.compile import Compiled, compile_project
from lakehouse.engine.graph import NOT_LOCAL, Action, AmbiguousActionError, CycleError, Graph, sql_texts
from lakehouse.engine.iceberg import IcebergStore, is_iceberg, quoted
from lakehouse.engine.iceberg_committer import IcebergCommitter

WARN_TAG = "warn"
_NAMED_FILE = re.compile(r'from file "([^"]+)"')
# DuckDB's words for a hive folder value its declared partition type cannot hold (ingest_date=2026-13-45)
_HIVE_CAST = re.compile(r"Unable to cast '((?:[^']|'')*)' \(from hive partition column '([^']+)'\) to: '([^']+)'")
NOT_LOCAL_NOTE = "not run locally"
_DML_PREFIXES = ("insert", "merge", "update", "delete", "create table", "create or replace table")
_ROW_DML_PREFIXES = ("insert", "merge", "update", "delete")  # statements that change rows of a table in place


class RunError(Exception):
    """The run could not start (compile error, cycle, busy warehouse); nothing was executed."""


@dataclass
class RunOptions:
    """What to run and how; mirrors the Dataform CLI's run flags."""

    tags: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    include_deps: bool = False
    include_dependents: bool = False
    full_refresh: bool = False
    vars: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False
    # The time CURRENT_TIMESTAMP() reads during the run (None: the real clock); a replay or a test
    # of data stamped in the past runs "as of" then.
    now: datetime | None = None
    # Independent actions run at once, as Dataform runs them; each stays one transaction.
    concurrency: int = 0  # 0: one per core
    # Skip an action whose statements and inputs are what they were when it last ran (unchanged.py).
    skip_unchanged: bool = True
    # Work in the run's connection before anything is read (not in a dry run): called with the
    # connection, the compiled projectConfig and the home directory. The kit's commands record the
    # local landing bucket's arrivals here (ingest/audit.py local_finalize), as GCS notifies on GCP.
    prepare: Callable[[duckdb.DuckDBPyConnection, dict, Path], object] | None = None
    # Called with the finished record while the warehouse closes (its checkpoint is written meanwhile);
    # the warehouse is closed when run returns.
    on_finished: Callable[[records.RunRecord], object] | None = None
    # An Iceberg committer process the caller started before importing the engine
    # (IcebergCommitter.start_early): the run uses it where it would start one, else ends it. The
    # caller closes it once the run returns or fails (closing again does nothing).
    committer: IcebergCommitter | None = None

    def workers(self) -> int:
        """Return how many actions may run at once (at least 1)."""
        return max(1, self.concurrency or os.cpu_count() or 1)


def severity(action: Action) -> str | None:
    """Return an assertion's severity: warn when tagged "warn", else error; None for other actions."""
    if action.kind != "assertion":
        return None
    return "warn" if WARN_TAG in (action.tags or ()) else "error"


def gcs_resolver(home_dir: Path) -> Callable[[str], str]:
    """Return a function mapping gs://bucket/path (globs allowed) to the local landing files."""

    def resolve(uri: str) -> str:
        if not uri.startswith("gs://"):
            raise ValueError(f"{uri!r} is not a gs:// URI")
        bucket, _, name = uri[len("gs://") :].partition("/")
        return str(paths.gcs_object_path(home_dir, bucket, name))

    return resolve


class Engine:
    """Executes one compiled graph against one warehouse connection."""

    def __init__(self, compiled: Compiled, home_dir: Path, con: duckdb.DuckDBPyConnection | None):
        self.compiled = compiled
        self.graph = Graph.from_compiled(compiled.graph)
        self.project_config = compiled.graph.get("projectConfig", {})
        self.core_version = self.graph.core_version
        self.default_project = self.project_config.get("defaultDatabase") or "lakehouse-local"
        self.home_dir = home_dir
        self._base_con = con
        self._local = threading.local()
        self._schemas_lock = threading.Lock()
        self.iceberg = IcebergStore(home_dir)
        self.resolve_gcs = gcs_resolver(home_dir)
        self._state: dict[tuple[str, str, str], statements.TableMetadata] | None = None
        self._schemas: set[tuple[str, str]] = set()
        self.tracker: unchanged.Tracker | None = None
        self.run_id = ""
        self.feeds_iceberg = _feeding_iceberg(self.graph)
        self.python_udfs = True  # register the Python UDFs on every connection (see run)
        self.gate: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
        self._publisher: ThreadPoolExecutor | None = None
        self._publishing: list[tuple[Future, records.ActionResult]] = []
        self._committer: IcebergCommitter | None = None
        self._publishing_lock = threading.Lock()
        # actions whose last attempt ran out of DuckDB's memory limit (the run may try them again alone)
        self.out_of_memory: set[str] = set()

    @property
    def con(self) -> duckdb.DuckDBPyConnection | None:
        """The connection of the calling thread: a worker's own cursor, else the run's connection."""
        return getattr(self._local, "con", None) or self._base_con

    @con.setter
    def con(self, value: duckdb.DuckDBPyConnection | None) -> None:
        self._base_con = value

    def bind_worker(self, now: datetime | None) -> duckdb.DuckDBPyConnection:
        """Give the calling thread its own connection to the warehouse (DuckDB transactions and
        script variables are per connection); returns it."""
        assert self._base_con is not None
        con = self._base_con.cursor()
        functions.register_functions(con, now, python=self.python_udfs)
        self._local.con = con
        return con

    # -- warehouse state -------------------------------------------------------------------
    def exists(self, target: dict) -> bool:
        return self.metadata(target) is not None

    def metadata(self, target: dict) -> statements.TableMetadata | None:
        """Return the warehouse state of `target` as Dataform's adapter reports it at run start (an
        Iceberg table's warehouse table mirrors its current snapshot: IcebergStore.reconcile)."""
        if self._state is None:
            self._state = self._read_state()
        key = (target.get("database") or self.default_project, target["schema"], target["name"])
        return self._state.get(key)

    def load_state(self) -> None:
        """Read the warehouse state now, before any action runs (and before actions run at once)."""
        if self._state is None:
            self._state = self._read_state()
        if self.con is not None:
            # A schema there already is not created again: CREATE SCHEMA IF NOT EXISTS is a write, and a
            # write waits for the checkpoint the run makes beside its last actions (_Checkpoint), which
            # held the first assertion of an hourly run ~1.3 s behind it.
            self._schemas.update(self.con.execute("SELECT database_name, schema_name FROM duckdb_schemas()").fetchall())

    def _read_state(self) -> dict[tuple[str, str, str], statements.TableMetadata]:
        # Dataform reads the warehouse state once, before the run, and decides every action's
        # statements from it; so does the engine (one catalog query instead of one per action).
        if self.con is None:
            return {}
        rows = self.con.execute(
            "SELECT c.database_name, c.schema_name, c.table_name, v.view_name IS NOT NULL, c.column_name "
            "FROM duckdb_columns() c LEFT JOIN duckdb_views() v ON v.database_name = c.database_name "
            "AND v.schema_name = c.schema_name AND v.view_name = c.table_name "
            "WHERE c.database_name NOT IN ('system', 'temp', 'memory') "
            "ORDER BY 1, 2, 3, c.column_index"
        ).fetchall()
        columns: dict[tuple[str, str, str], list[str]] = {}
        kinds: dict[tuple[str, str, str], str] = {}
        for database, schema, name, is_view, column in rows:
            key = (database, schema, name)
            columns.setdefault(key, []).append(column)
            kinds[key] = "view" if is_view else "table"
        return {key: statements.TableMetadata(kinds[key], tuple(cols)) for key, cols in columns.items()}

    # -- statements ----------------------------------------------------------------------------
    def tasks(self, action: Action, full_refresh: bool) -> list[statements.Task]:
        raw = action.raw
        if action.kind in ("table", "view", "incremental"):
            return statements.table_tasks(
                raw,
                self.project_config,
                core_version=self.core_version,
                full_refresh=full_refresh,
                metadata=self.metadata(action.target),
                local_schema_change=True,
            )
        if action.kind == "operation":
            return statements.operation_tasks(raw)
        if action.kind == "assertion":
            return statements.assertion_tasks(raw, self.project_config)
        return []

    def translated(self, tasks: Iterable[statements.Task]) -> list[tuple[str, str]]:
        """Return (task type, DuckDB statement) pairs; raises translate errors unchanged."""
        out: list[tuple[str, str]] = []
        for task in tasks:
            for sql in scripts.translate_script(
                task.statement, default_project=self.default_project, gcs_resolver=self.resolve_gcs
            ):
                out.append((task.type, sql))
        return out

    def missing_sources(self, action: Action) -> list[str]:
        """Return declared sources this action reads that have no local data."""
        missing = []
        for dep in action.dependencies:
            declared = self.graph.declarations.get(dep)
            # A wildcard declaration (`events_*`) with no match fails with BigQuery's own message when read.
            wildcard = declared is not None and declared.target["name"].endswith("*")
            if declared is not None and not wildcard and not self.exists(declared.target):
                if not self._exists_now(declared.target):  # an upstream operation may have created it
                    missing.append(dep)
        return missing

    def _exists_now(self, target: dict) -> bool:
        """Whether target is in the warehouse now (the run-start state misses what upstream actions created)."""
        if self.con is None:
            return False
        key = (target.get("database") or self.default_project, target["schema"], target["name"])
        found = self.con.execute(
            "SELECT count(*) FROM (SELECT database_name, schema_name, table_name AS name FROM duckdb_tables() "
            "UNION ALL SELECT database_name, schema_name, view_name FROM duckdb_views()) "
            "WHERE database_name = ? AND schema_name = ? AND name = ?",
            list(key),
        ).fetchone()[0]
        return found > 0

    # -- execution -----------------------------------------------------------------------------
    def execute(self, action: Action, options: RunOptions) -> records.ActionResult:
        result = records.ActionResult(
            name=action.name,
            type=action.kind,
            status="success",
            file_name=action.file_name or "",
            severity=severity(action),
        )
        if action.kind in NOT_LOCAL:
            result.status, result.error, result.note = "skipped", NOT_LOCAL[action.kind], NOT_LOCAL_NOTE
            return result
        started = time.perf_counter()
        try:
            self._execute(action, options, result)
        except scripts.UnsupportedConstruct as error:
            result.status = "failed"
            result.error = (
                f"{action.file_name}: action {action.name} uses {error.construct}, which the local engine "
                f"does not run. {error.hint}"
            )
        except (scripts.TranslationError, duckdb.Error, ValueError, OSError) as error:
            result.status = "failed"
            result.error = self._explain(action, error)
            if isinstance(error, duckdb.OutOfMemoryException):
                self.out_of_memory.add(action.name)
                result.error += self._memory_hint()
        finally:
            result.duration_s = time.perf_counter() - started
        if action.kind == "assertion" and result.status == "success" and result.failing_rows:
            result.status = "failed"
            result.error = f"assertion {action.name} has {result.failing_rows} failing row(s)"
        return result

    def _memory_hint(self) -> str:
        """What to change when an action ran out of DuckDB's memory limit."""
        try:
            limit = self.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        except duckdb.Error:
            return ""
        return f" (DuckDB's memory limit is {limit}: set {warehouse.MEMORY_LIMIT_ENV} higher, e.g. 4GiB)"

    def _explain(self, action: Action, error: Exception) -> str:
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        match = query.MISSING_TABLE.search(str(error))
        if match or query.MISSING_CATALOG.search(str(error)):
            missing = [
                name
                for name in query.missing_tables(self.con, sql_texts(action), self.default_project)
                if name != action.name
            ]
            if missing:
                return f"{action.file_name}: action {action.name}: {query.missing_table_message(missing)}"
        if match:
            return (
                f"{action.file_name}: action {action.name} reads {match.group(1)}, which does not exist in the "
                f"local warehouse; run the action that creates it first, or load local data for it "
                f"(lakehouse load)"
            )
        hive = _HIVE_CAST.search(str(error))
        if hive:
            return f"{action.file_name}: action {action.name} failed: {self._hive_folder_message(*hive.groups())}"
        failed_file = query.FAILED_FILE.search(str(error))
        if failed_file:
            text += f" (file {failed_file.group(1).strip()})"
        return f"{action.file_name}: action {action.name} failed: {text}"

    def _hive_folder_message(self, value: str, column: str, type_name: str) -> str:
        """Name the folders whose partition value is not of the external table's declared type."""
        value = value.replace("''", "'")
        folder = f"{column.lower()}={value}"
        root = paths.gcs_root(self.home_dir)
        found = sorted(
            str(path) for path in root.glob(f"*/**/{glob.escape(folder)}") if path.is_dir()
        ) if root.is_dir() else []  # fmt: skip
        where = f": {', '.join(found[:3])}{' …' if len(found) > 3 else ''}" if found else ""
        return (
            f"a landing folder {folder} is not a {type_name}, the type of the external table's partition column "
            f"{column.lower()}, so no file of the table can be read{where}. Move the folder out of the table's "
            f"prefix (its files wait there unread); to have them taken, put them under a folder whose value is a "
            f"{type_name}"
        )

    def _execute(self, action: Action, options: RunOptions, result: records.ActionResult) -> None:
        # An operation may create the very table it declares (CREATE TABLE IF NOT EXISTS on a declared
        # log table): it is run, and a table still missing is named when it fails.
        missing = self.missing_sources(action) if action.kind != "operation" else []
        if missing:
            raise ValueError(
                f"reads {', '.join(missing)}, declared as a source but with no local data; "
                f"load a sample with `lakehouse load {missing[0]} <file.csv|.jsonl|.parquet>`"
            )
        plan = ""
        if self.tracker is not None:
            plan = self.tracker.plan_hash(action, self.project_config, f"{self.core_version}/{scripts.VERSION}")
            if options.skip_unchanged and not options.full_refresh:
                carried, why = self.tracker.unchanged(self.con, action, plan)
                if carried is not None:
                    result.failing_rows = carried.get("failing_rows")
                    result.note = f"{records.UNCHANGED_NOTE} {carried.get('run_id')}: not re-run"
                    return
            else:
                why = "a full refresh" if options.full_refresh else "asked to re-run unchanged actions"
            result.note = f"ran: {why}"
        iceberg = action.kind in ("table", "incremental") and is_iceberg(action.raw)
        tasks = self.tasks(action, options.full_refresh)
        translated = self.translated(tasks)
        result.statements = [str(sql) for _, sql in translated]
        con = self.con
        assert con is not None
        decision = None
        if self.tracker is not None:
            decision = self.tracker.decide(action, [sql for _, sql in translated], action.kind)
            if decision.reason:
                result.note = f"ran: {decision.reason}"
        target = action.target
        schema = (target["database"], target["schema"])
        with self._schemas_lock:
            if schema not in self._schemas:
                con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema[0]}"."{schema[1]}"')
                self._schemas.add(schema)
        committed = None  # the decision of what it wrote, once its transaction committed
        con.execute("BEGIN TRANSACTION")
        try:
            # Whether the action's statements write into the table it had (not a first or full-refresh build).
            incremental_write = action.kind == "incremental" and statements.should_write_incrementally(
                action.raw, options.full_refresh, self.metadata(target)
            )
            if iceberg and not incremental_write and not options.dry_run:
                # the table is built whole: open the catalog (about 1 s of imports) while its SQL runs
                self.iceberg.warm()
            rows = 0
            counted = False
            schema_changed = False
            # an Iceberg table merged into by key: what it had before, to tell whether the write only
            # appended rows (its commit then takes those, without comparing every row: stage_changes)
            by_key = iceberg and incremental_write and not options.dry_run and bool(action.raw.get("uniqueKey"))
            mark = self.iceberg.write_mark(con, target) if by_key else None
            every_change_counted = True  # each statement a read, or a DML statement whose rows are counted
            # @@row_count is kept (a variable set after each DML statement) only for a script that reads
            # it; such a script resets its variables when it ends, so the next one starts without it
            reads_row_count = any(
                not isinstance(sql, str) or scripts.ROW_COUNT_VARIABLE in sql for _, sql in translated
            )
            for kind, sql in translated:
                if not isinstance(sql, str):  # a procedural block (loop, IF, FOR, RETURN)
                    every_change_counted = False
                    try:
                        query.run_item(con, sql)
                    except query.ScriptReturn:
                        break  # RETURN outside a procedure ends the action's script, as in BigQuery
                    continue
                if statements.SCHEMA_CHANGE in sql and sql.lstrip().lower().startswith("select"):
                    schema_changed = apply_schema_change(con, action.raw, target, sql)
                    continue
                if self.tracker is not None and not options.full_refresh and self.tracker.view_in_place(con, sql):
                    continue  # made by this very statement already, and DuckDB binds a view each time it is read
                cursor = query.run_item(con, sql, row_count=reads_row_count)
                fetched = cursor.fetchall() if cursor.description else []
                opening = sql.lstrip().lower()
                if kind == "assertion":
                    result.failing_rows = int(fetched[0][0] or 0) if fetched else 0
                elif fetched and opening.startswith(_DML_PREFIXES):
                    rows += int(fetched[0][0] or 0)
                    counted = True
                if not (opening.startswith("select") or (fetched and opening.startswith(_ROW_DML_PREFIXES))):
                    every_change_counted = False
            if counted:
                result.rows_affected = rows
            # An incremental write that added, changed and removed nothing leaves the table as it was; a
            # first or full-refresh build of no rows does not (it makes the table, or empties it).
            changed = not (incremental_write and counted and rows == 0 and not schema_changed)
            staged = False
            if iceberg and changed and not options.dry_run:
                # rows unique by key: marked for a snapshot of the files the write touched, committed after
                # this transaction (stage_changes), unless no row hashes are recorded to compare them with
                by_key = by_key and not schema_changed
                appended_after = None
                if by_key and every_change_counted:
                    appended_after = self.iceberg.appended_after(con, target, mark, rows)
                staged = by_key and self.iceberg.stage_changes(con, target, appended_after=appended_after)
                if not staged:
                    if by_key:
                        snapshot = self.iceberg.publish_changes(con, target)
                    else:
                        replace_schema = not incremental_write or schema_changed
                        snapshot = self.iceberg.publish(con, target, replace_schema=replace_schema)
                    changed = snapshot is not None
                    if snapshot is not None:
                        result.note = f"iceberg snapshot {snapshot.snapshot_id}"
            if iceberg and not changed:
                # Nothing to commit: keep the current snapshot and the table that mirrors it.
                con.execute("ROLLBACK")
                con.execute("BEGIN TRANSACTION")
            if decision is not None:
                self.tracker.record(
                    con,
                    action,
                    decision,
                    plan=plan,
                    changed=changed,
                    kind=action.kind,
                    result={"failing_rows": result.failing_rows},
                    run_id=self.run_id,
                )
            con.execute("COMMIT")
            committed = decision
            if staged:
                self._defer_publish(action, target, result)
            if (
                action.name in self.feeds_iceberg and not iceberg and changed and not options.dry_run
                and action.kind in ("table", "incremental")
                and con.execute(f"SELECT EXISTS (SELECT 1 FROM {quoted(target)})").fetchone()[0]
            ):  # fmt: skip
                # rows on their way to an Iceberg table downstream, which will likely be written: open its
                # catalog (about 1 s of imports) now, not when it commits; a run that brings nothing
                # (an empty batch) never pays for it; with a committer process (iceberg_committer), that
                # process does, and this one never imports pyiceberg
                if self._committer is None:
                    self.iceberg.warm()
                else:
                    self._committer.warm()
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            if any(not isinstance(sql, str) or "VARIABLE" in sql for _, sql in translated):
                self._reset_variables()
            if self.tracker is not None:
                self.tracker.invalidate(committed)
        if options.dry_run:
            # Run on the empty stand-in (dry_run.py): the statements bound; counts of its rows mean nothing.
            result.status, result.rows_affected, result.failing_rows = "planned", None, None

    def _defer_publish(self, action: Action, target: dict, result: records.ActionResult) -> None:
        """Commit the Iceberg snapshot of a write the warehouse committed (IcebergStore.stage_changes) in
        the background, while the actions that read the table run; `finish_publishing` waits for it."""
        with self._publishing_lock:
            if self._publisher is None:
                self._publisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lakehouse-iceberg-publish")
            self._publishing.append((self._publisher.submit(self._publish_staged, action, target), result))

    def _publish_staged(self, action: Action, target: dict) -> dict[str, str]:
        """Commit the snapshot; return the fields of the action's result it changes, set by
        finish_publishing (not here: whether the actions that read the table ran must not depend on
        timing; they read the warehouse table, committed whatever becomes of the snapshot)."""
        assert self._base_con is not None
        con = self._base_con.cursor()
        try:
            with self.gate():
                snapshot = self.iceberg.publish_staged(con, target, committer=self._committer)
        except Exception as error:  # noqa: BLE001 (pyiceberg's and SQLAlchemy's too: reported, repaired next run)
            return {
                "status": "failed",
                "error": f"{action.file_name}: action {action.name} wrote its warehouse table, but committing its "
                f"Iceberg snapshot failed: {error}. The rows are kept and marked; the next run commits them.",
            }
        finally:
            con.close()
        return {"note": f"iceberg snapshot {snapshot.snapshot_id} (committed after the warehouse)"} if snapshot else {}

    def publishing(self) -> bool:
        """Return whether an Iceberg snapshot is being committed in the background."""
        with self._publishing_lock:
            return any(not future.done() for future, _ in self._publishing)

    def finish_publishing(self) -> None:
        """Wait for the Iceberg snapshots committed in the background and give their actions' results
        what became of them."""
        with self._publishing_lock:
            publishing, self._publishing = self._publishing, []
            publisher, self._publisher = self._publisher, None
        for future, result in publishing:
            for name, value in future.result().items():
                setattr(result, name, value)
        if publisher is not None:
            publisher.shutdown()
        self.close_committer()

    @property
    def has_committer(self) -> bool:
        return self._committer is not None

    def start_committer(self, started: IcebergCommitter | None = None) -> None:
        """Fork the run's Iceberg committer process (IcebergCommitter.start; none where it is not used),
        or use the one `started` for the run."""
        self._committer = started or IcebergCommitter.start(self.home_dir)

    def close_committer(self) -> None:
        """End the committer process, if one was started (after the commits it was given)."""
        with self._publishing_lock:
            committer, self._committer = self._committer, None
        if committer is not None:
            committer.close()

    def _reset_variables(self) -> None:
        # BigQuery script variables live for one script (one action); DuckDB's live for the connection.
        names = [name for (name,) in self.con.execute("SELECT name FROM duckdb_variables()").fetchall()]
        if names:  # one call: each statement is a round trip through the GIL
            self.con.execute("; ".join('RESET VARIABLE "{}"'.format(name.replace('"', '""')) for name in names))


def apply_schema_change(con: duckdb.DuckDBPyConnection, table: dict, target: dict, select_sql: str) -> bool:
    """Apply the table's onSchemaChange before its incremental write, as Dataform's procedure does on
    BigQuery: compare the columns of `select_sql` (the incremental query) with the table's; FAIL raises
    on any difference, EXTEND adds the new columns (and raises on removed ones), SYNCHRONIZE adds the
    new and drops the removed (and raises when a removed one is in the unique key). Returns whether the
    table changed; raises ValueError naming the columns.
    """
    mode = statements.schema_change_mode(table)
    name = f'"{target["database"]}"."{target["schema"]}"."{target["name"]}"'
    wanted = [(row[0], row[1]) for row in con.execute(f"DESCRIBE {select_sql}").fetchall()]
    # DESCRIBE binds the one table; duckdb_columns() lists every column of every table first
    have = [row[0] for row in con.execute(f"DESCRIBE {name}").fetchall()]
    added = [(column, kind) for column, kind in wanted if column not in have]
    removed = [column for column in have if column not in {column for column, _ in wanted}]
    if mode == "FAIL" and (added or removed):
        raise ValueError(
            f"Schema mismatch defined by on_schema_change = 'FAIL'. Added columns: "
            f"{_bq_array([column for column, _ in added])}, removed columns: {_bq_array(removed)}"
        )
    if mode == "EXTEND" and removed:
        raise ValueError(
            f"Column removals are not allowed when on_schema_change = 'EXTEND'. Removed columns: {_bq_array(removed)}"
        )
    if mode == "SYNCHRONIZE":
        keyed = [column for column in removed if column in (table.get("uniqueKey") or [])]
        if keyed:
            raise ValueError(
                f"Cannot drop columns {_bq_array(keyed)} as they are part of the unique key for table {name}"
            )
    dropped = removed if mode == "SYNCHRONIZE" else []
    if added or dropped:
        # A rebuild, not ALTER TABLE: DuckDB refuses to commit an ALTER of a table the same
        # transaction already wrote (a batch table's pre-operation empties it first).
        keep = " EXCLUDE (" + ", ".join(f'"{column}"' for column in dropped) + ")" if dropped else ""
        new = "".join(f', CAST(NULL AS {kind}) AS "{column}"' for column, kind in added)
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT *{keep}{new} FROM {name}")
    return bool(added or dropped)


def _feeding_iceberg(graph: Graph) -> set[str]:
    """Return the Iceberg tables of the graph and every action they depend on, directly or not."""
    feeding: set[str] = set()
    stack = [
        name for name, action in graph.actions.items()
        if action.kind in ("table", "incremental") and is_iceberg(action.raw)
    ]  # fmt: skip
    while stack:
        name = stack.pop()
        if name in feeding or name not in graph.actions:
            continue
        feeding.add(name)
        stack.extend(graph.actions[name].dependencies)
    return feeding


def _projects(graph: Graph, default_project: str) -> list[str]:
    names = [default_project]
    for action in list(graph.actions.values()) + list(graph.declarations.values()):
        names.append(action.target.get("database") or default_project)
    return list(dict.fromkeys(names))


def run(
    project_dir: Path | str,
    *,
    options: RunOptions | None = None,
    home_dir: Path | None = None,
    on_progress: Callable[[str, records.ActionResult | None, int, int], None] | None = None,
    **kwargs,
) -> records.RunRecord:
    """Compile and run a Dataform project locally; return the run record.

    `options` (or the same fields as keyword arguments: tags, actions, include_deps,
    include_dependents, full_refresh, vars, dry_run, now) select what runs. `on_progress(name, result,
    done, total)` is called before (result None) and after each action.
    Raises RunError when the run cannot start; action failures are recorded, not raised.
    """
    options = options or RunOptions(**{k: (tuple(v) if k in ("tags", "actions") else v) for k, v in kwargs.items()})
    project_dir = Path(project_dir).resolve()
    home_dir = home_dir or paths.home(project_dir)
    from lakehouse.engine.compile import CompileError

    try:
        compiled = compile_project(project_dir, vars=options.vars or None, home_dir=home_dir)
    except CompileError as error:
        raise RunError(f"compilation failed:\n{error}") from error
    record = records.RunRecord(
        run_id=datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6],
        project_dir=str(project_dir),
        started_at=datetime.now(UTC),
        dry_run=options.dry_run,
        full_refresh=options.full_refresh,
        compile_cached=compiled.cached,
    )
    engine = Engine(compiled, home_dir, None)
    scripts.set_cache_dir(home_dir / "translate-cache")
    try:
        order = engine.graph.topological_order()
    except CycleError as error:
        raise RunError(f"{error}; break the cycle in the definitions named") from error
    try:
        selected = engine.graph.select(
            actions=options.actions,
            tags=options.tags,
            include_deps=options.include_deps,
            include_dependents=options.include_dependents,
        )
    except AmbiguousActionError as error:
        raise RunError(str(error)) from error
    if (options.actions or options.tags) and not selected:
        raise RunError("no action matches the given --actions/--tags")
    projects = query.projects_to_attach(
        home_dir,
        (text for name in selected for text in sql_texts(engine.graph.actions[name])),
        engine.default_project,
        _projects(engine.graph, engine.default_project),
    )
    locked_at = time.time()  # a reader asking for a read copy from now on asks this run
    if (
        not options.dry_run and not options.full_refresh
        and any(is_iceberg(engine.graph.actions[name].raw) for name in selected if name in engine.graph.actions)
        and engine.iceberg.lists_tables()
    ):  # fmt: skip
        # forked now, before the warehouse is open (iceberg_committer); a catalog with no table yet, or
        # none that can be read, is opened by this process, which creates or repairs it
        try:
            engine.start_committer(options.committer)
        except ValueError as error:
            raise RunError(str(error)) from error
    elif options.committer is not None:
        options.committer.close()  # nothing this run does commits to an Iceberg table
    try:
        if options.dry_run:
            engine.con = dry_run.stand_in(home_dir, projects)
        else:
            engine.con = warehouse.connect(home_dir, projects)
    except warehouse.WarehouseBusy as error:
        engine.close_committer()
        raise RunError(str(error)) from error
    except BaseException:
        engine.close_committer()
        raise
    try:
        if engine.has_committer:
            engine.iceberg.clear_staging()
        # a run whose SQL names no Python UDF leaves them (and DuckDB's numpy import) until a statement misses one
        engine.python_udfs = functions.calls_python_udfs(
            text for name in selected for text in sql_texts(engine.graph.actions[name])
        )
        functions.register_functions(engine.con, options.now, python=engine.python_udfs)
        if options.dry_run:
            _declare_keys(engine)
        else:
            _ensure_keys(engine, home_dir, options.full_refresh)
            if options.prepare is not None:
                try:
                    options.prepare(engine.con, compiled.graph.get("projectConfig") or {}, home_dir)
                except (OSError, duckdb.Error) as error:
                    raise RunError(f"preparing the run failed: {error}") from error
        plan = [name for name in order if name in selected]
        if not options.dry_run:
            # before the state is read: a partial run may have left catalog and warehouse apart
            iceberg_targets = [
                a.target for a in engine.graph.actions.values()
                if a.kind in ("table", "incremental") and is_iceberg(a.raw) and a.target["database"] in projects
            ]  # fmt: skip
            engine.iceberg.reconcile(engine.con, iceberg_targets)
        engine.load_state()
        if not options.dry_run:
            engine.run_id = record.run_id
            try:
                engine.tracker = unchanged.Tracker(
                    engine.con, engine.default_project, home_dir / "translate-cache", now=options.now
                )
            except duckdb.Error as error:  # the first read of table data: a file cut short fails here
                named = _NAMED_FILE.search(str(error))
                file = Path(named.group(1)) if named else paths.catalog_file(home_dir, engine.default_project)
                raise warehouse.unreadable(file, error) from error

        # Readers during the run read a copy of its last commit, made when one asks: a copy costs a
        # file copy of the warehouse (gigabytes at ten million events), which no run pays unasked.
        copies = None if options.dry_run else ReadCopies(engine.con, home_dir, asked_before=locked_at)
        try:
            results = _execute_plan(engine, plan, options, on_progress, gate=copies.action if copies else None)
        finally:
            if copies is not None:
                copies.stop()
        if engine.tracker is not None:
            engine.tracker.save(engine.con)
        record.actions.extend(results[name] for name in plan)
        record.finished_at = datetime.now(UTC)
        record.status = "success" if all(_ok(r) for r in record.actions) else "failed"
        if not options.dry_run:
            records.write_table(record, engine.con, engine.default_project)
            records.write_json(record, home_dir)
    except BaseException:
        engine.close_committer()
        engine.con.close()
        raise
    _close_reporting(engine.con, record, options.on_finished)
    if not options.dry_run:
        warehouse.record_closed_state(home_dir)
    return record


def _close_reporting(
    con: duckdb.DuckDBPyConnection, record: records.RunRecord, on_finished: Callable[[records.RunRecord], object] | None
) -> None:
    """Close the warehouse (DuckDB writes its checkpoint: 0.1-0.7 s at a million events) while
    `on_finished` reports the record; closed when this returns, and a close that fails is raised."""
    if on_finished is None:
        con.close()
        return
    failed: list[BaseException] = []

    def close() -> None:
        try:
            con.close()
        except BaseException as error:  # noqa: BLE001 (raised below, in the caller's thread)
            failed.append(error)

    closing = threading.Thread(target=close, name="lakehouse-close")
    closing.start()
    try:
        on_finished(record)
    finally:
        closing.join()
    if failed:
        raise failed[0]


def _bq_array(names: list[str]) -> str:
    """Return a list of names as BigQuery's FORMAT('%T') prints an ARRAY<STRING>, as Dataform's messages do."""
    return "[" + ", ".join(json.dumps(name) for name in names) + "]"


def _ensure_keys(engine: Engine, home_dir: Path, full_refresh: bool) -> None:
    """Create the local key table the graph declares (keys.pii_salt); raises RunError when it cannot."""
    for declared in engine.graph.declarations.values():
        target = declared.target
        if (target.get("schema"), target.get("name")) == (keys.SCHEMA, keys.TABLE):
            try:
                keys.ensure(engine.con, target.get("database") or engine.default_project, home_dir,
                            replace=full_refresh)  # fmt: skip
            except keys.SaltError as error:
                raise RunError(str(error)) from error


def _declare_keys(engine: Engine) -> None:
    """Give the dry run's stand-in the key table the graph declares, as _ensure_keys gives a run."""
    for declared in engine.graph.declarations.values():
        target = declared.target
        if (target.get("schema"), target.get("name")) == (keys.SCHEMA, keys.TABLE):
            dry_run.declare_keys(engine.con, target.get("database") or engine.default_project)


def _skipped_or_disabled(
    engine: Engine, action: Action, results: dict[str, records.ActionResult]
) -> records.ActionResult | None:
    """Return the result of an action that does not execute (disabled, or an upstream blocked it)."""
    if action.disabled:
        return records.ActionResult(action.name, action.kind, "disabled", action.file_name or "")
    blocked = [dep for dep in action.dependencies if dep in results and _blocks(results[dep])]
    if blocked:
        return records.ActionResult(
            action.name,
            action.kind,
            "skipped",
            action.file_name or "",
            severity=severity(action),
            error=f"skipped: upstream {', '.join(blocked)} did not succeed",
        )
    return None


def _execute_plan(
    engine: Engine,
    plan: list[str],
    options: RunOptions,
    on_progress: Callable[[str, records.ActionResult | None, int, int], None] | None,
    gate: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> dict[str, records.ActionResult]:
    """Execute `plan` (topologically ordered) with up to options.workers() actions at once, each
    as soon as every dependency in the plan has finished; returns the result of every action.
    Each action runs inside `gate()` (ReadCopies.action: no action runs while a read copy is made).

    Ctrl-C interrupts the running statements (their transactions roll back) and re-raises.
    """
    results: dict[str, records.ActionResult] = {}
    total = len(plan)
    planned = set(plan)
    waiting_on = {
        name: {dep for dep in engine.graph.actions[name].dependencies if dep in planned and dep != name}
        for name in plan
    }
    workers = 1 if options.dry_run else min(options.workers(), max(total, 1))
    connections: list[duckdb.DuckDBPyConnection] = []
    lock = threading.Lock()

    gate = engine.gate = gate or contextlib.nullcontext

    def work(action: Action) -> records.ActionResult:
        if workers > 1 and getattr(engine._local, "con", None) is None:
            with lock:
                connections.append(engine.bind_worker(options.now))
        with gate():
            return engine.execute(action, options)

    # Each action waits for a count of unfinished dependencies; one that reaches zero joins `ready`,
    # taken in plan order (rescanning every waiting action after each finished one held the GIL the
    # workers need: ~0.15 s of a 180-action run).
    unfinished = {name: len(deps) for name, deps in waiting_on.items()}
    dependents: dict[str, list[str]] = {}
    for name, deps in waiting_on.items():
        for dep in deps:
            dependents.setdefault(dep, []).append(name)
    position = {name: index for index, name in enumerate(plan)}
    ready = [(position[name], name) for name in plan if not unfinished[name]]
    threads = None if options.dry_run else _SharedThreads.of(engine)
    retried: dict[str, records.ActionResult] = {}  # action run again alone: the result of its first attempt
    # Once only assertions are left, the checkpoint of what the run wrote is made beside them (they
    # read, and a checkpoint waits for no reader), not when the warehouse closes after the run.
    writing = sum(engine.graph.actions[name].kind != "assertion" for name in plan)
    checkpoint = None if options.dry_run else _Checkpoint(engine, gate)

    def running_elsewhere() -> bool:  # statements not of an action: an Iceberg commit, the checkpoint
        return engine.publishing() or (checkpoint is not None and checkpoint.running)

    def finish(name: str, result: records.ActionResult) -> None:
        nonlocal writing
        results[name] = result
        writing -= engine.graph.actions[name].kind != "assertion"
        if not writing and checkpoint is not None:
            checkpoint.start()
        for dependent in dependents.get(name, ()):
            unfinished[dependent] -= 1
            if not unfinished[dependent]:
                heapq.heappush(ready, (position[dependent], dependent))
        if on_progress:
            on_progress(name, result, len(results), total)

    try:
        if workers == 1:
            for name in plan:
                action = engine.graph.actions[name]
                if on_progress:
                    on_progress(name, None, len(results), total)
                settled = _skipped_or_disabled(engine, action, results)
                if settled is None:
                    with gate():
                        settled = engine.execute(action, options)
                finish(name, settled)
            engine.finish_publishing()
            return results

        running: dict[Future, str] = {}
        # Actions that ran out of DuckDB's memory limit beside others: each runs again once, when no
        # other action runs (it is one transaction, rolled back, so the second attempt starts from the
        # same state); no new action starts while one waits.
        alone: list[tuple[str, records.ActionResult]] = []
        crowded: set[str] = set()  # actions that ran while another one ran
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lakehouse-action") as pool:

            def start(name: str, action: Action) -> None:
                if running:
                    crowded.update(running.values(), (name,))
                if on_progress:
                    on_progress(name, None, len(results), total)
                running[pool.submit(work, action)] = name

            try:
                while ready or running or alone:
                    if alone and not running:
                        name, retried[name] = alone.pop(0)
                        if threads is not None:
                            threads.share(0, 1, running_elsewhere)
                        start(name, engine.graph.actions[name])
                    # nothing starts beside an action waiting to run again alone, or running again alone
                    shared = not alone and not any(name in retried for name in running.values())
                    if threads is not None and shared:
                        threads.share(len(running), min(len(ready), workers - len(running)), running_elsewhere)
                    while ready and len(running) < workers and shared:
                        _, name = heapq.heappop(ready)
                        action = engine.graph.actions[name]
                        settled = _skipped_or_disabled(engine, action, results)
                        if settled is not None:
                            finish(name, settled)
                            continue
                        start(name, action)
                    if not running:
                        continue
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        name, result = running.pop(future), future.result()
                        if name in retried:
                            result = _after_retry(result, retried[name])
                        elif (
                            name in engine.out_of_memory
                            and name in crowded
                            # an Iceberg table's snapshot may be written before its transaction fails: the
                            # next run's reconcile repairs that, not a second attempt now
                            and not is_iceberg(engine.graph.actions[name].raw)
                        ):
                            alone.append((name, result))
                            continue
                        finish(name, result)
            except BaseException:
                for con in connections:
                    con.interrupt()
                raise
            finally:
                for future in running:
                    future.cancel()
        engine.finish_publishing()
        for con in connections:
            con.close()
        return results
    finally:
        if checkpoint is not None:
            checkpoint.join()


def _after_retry(result: records.ActionResult, first: records.ActionResult) -> records.ActionResult:
    """The result of an action run again alone after it ran out of memory beside others: its time is
    both attempts', and its note says why it ran twice."""
    result.duration_s += first.duration_s
    why = f"ran again alone after running out of memory beside other actions ({first.duration_s:.1f} s)"
    result.note = f"{why}; {result.note}" if result.note else why
    return result


class _SharedThreads:
    """DuckDB's threads shared among the actions running at once: the thread that runs an action
    executes its query too, so with as many actions at once as CPUs, DuckDB's own worker threads only
    compete with them for the same cores (docs/engine.md "Memory, threads and spilling"). The count
    goes up at once when fewer actions run; it goes down only when no statement runs, since DuckDB
    takes threads away by waiting for the ones running (a running query's pipelines keep the count they
    were scheduled with)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, cpus: int):
        self._con = con
        self._cpus = cpus
        self.current = int(con.execute("SELECT current_setting('threads')").fetchone()[0])

    @classmethod
    def of(cls, engine: Engine) -> _SharedThreads | None:
        """None when $LAKEHOUSE_THREADS sets the threads (then every action has them all)."""
        cpus = warehouse.run_threads()
        return None if cpus is None else cls(engine.con, cpus)

    def share(self, running: int, starting: int, running_elsewhere: Callable[[], bool]) -> None:
        """Set the threads for `starting` more actions beside `running` ones."""
        wanted = max(1, self._cpus // max(1, running + starting))
        if wanted > self.current or (wanted < self.current and not running and not running_elsewhere()):
            self._con.execute(f"SET threads = {wanted}")
            self.current = wanted


class _Checkpoint:
    """DuckDB's checkpoint of a run's writes, made on a thread of its own while the run's last actions
    (assertions, which read) go on: the checkpoint that closing the warehouse makes then has only the
    run's bookkeeping left (on a 1M-event hourly run, 0.5-0.8 s less after the last action). One that
    finds a write in progress (an assertion's view made anew, a background Iceberg commit) fails and
    is tried again by the next `start`; whatever is left is written when the warehouse closes."""

    def __init__(self, engine: Engine, gate: Callable[[], contextlib.AbstractContextManager]):
        self._engine = engine
        self._gate = gate
        self._thread: threading.Thread | None = None
        self._done = False

    def start(self) -> None:
        if self._done or (self._thread is not None and self._thread.is_alive()):
            return
        self._thread = threading.Thread(target=self._run, name="lakehouse-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._engine._base_con is not None
        con = self._engine._base_con.cursor()
        try:
            with self._gate():  # a read copy (ReadCopies) is never made of a file being written
                warehouse.checkpoint(con)
            self._done = True
        except duckdb.Error:
            pass  # "other write transactions active": tried again after the next action, or at close
        finally:
            con.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()


class ReadCopies:
    """Publishes the run's read copy (warehouse.publish_read_copy) when a reader asks for one
    (warehouse.request_read_copy), at a moment no action runs: the copy is then exactly the state of
    the run's last committed action. While a copy is wanted no new action starts, so a reader waits
    at most for the actions running when it asked. A run nobody reads during copies nothing."""

    def __init__(self, con: duckdb.DuckDBPyConnection, home_dir: Path, *, asked_before: float, poll: float = 0.1):
        self._con = con.cursor()
        self._home = home_dir
        self._answered = asked_before  # requests up to this time are answered (or were to another run)
        self._poll = poll
        self._cond = threading.Condition()
        self._running = 0
        self._wanted = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="lakehouse-read-copy", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def action(self):
        """Hold off read copies while the action inside runs; wait for one being made first."""
        with self._cond:
            while self._wanted:
                self._cond.wait()
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    def _serve(self) -> None:
        while not self._stopped.wait(self._poll):
            asked = warehouse.read_copy_requested(self._home)
            if asked <= self._answered:
                continue
            with self._cond:
                self._wanted = True
                while self._running and not self._stopped.is_set():
                    self._cond.wait(self._poll)
            try:
                if not self._stopped.is_set():
                    warehouse.publish_read_copy(self._con, self._home)
                    self._answered = asked
            except (OSError, duckdb.Error) as error:
                # the reader waits, then reads an older copy or is told the warehouse is busy
                logging.getLogger(__name__).warning("could not publish a read copy: %s", error)
                self._answered = asked
            finally:
                with self._cond:
                    self._wanted = False
                    self._cond.notify_all()

    def stop(self) -> None:
        """Stop answering (the run's actions are done); wait for a copy being made."""
        self._stopped.set()
        self._thread.join()
        self._con.close()


def _blocks(result: records.ActionResult) -> bool:
    """A dependency blocks its dependents when it failed or was skipped; warn assertions never block."""
    if result.status in ("success", "disabled", "planned"):
        return False
    return not (result.type == "assertion" and result.severity == "warn" and result.status == "failed")


def _ok(result: records.ActionResult) -> bool:
    if result.status in ("success", "disabled", "planned"):
        return True
    if result.note == NOT_LOCAL_NOTE:
        return True  # an action kind with no local stand-in does not fail the run; its dependents do
    return result.type == "assertion" and result.severity == "warn" and result.status == "failed"
