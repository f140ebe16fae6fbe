"""Skip an action whose statements and inputs are what they were when it last ran: state-aware runs."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb

from lakehouse import paths, warehouse

if TYPE_CHECKING:
    from sqlglot import exp

# Kept in each project's warehouse file, beside the tables it describes, so that an action's state
# is written in the same transaction as the action's own writes (DuckDB writes one file per
# transaction): a crash leaves both or neither.
SCHEMA = "_lakehouse"
ACTIONS = "action_state"
VERSIONS = "relation_versions"

Relation = tuple[str, str, str]  # (database, schema, name), lower case as DuckDB compares them

# Functions whose result is not a function of the data: an action calling one always runs.
# (lakehouse_now is what CURRENT_TIMESTAMP and friends translate to; the others are DuckDB's own.) The
# CURRENT_* and LOCAL* ones may be written without parentheses; the others count only as calls, and
# only outside comments, string literals and quoted names ("the rows silver holds now" is no clock).
_VOLATILE = re.compile(
    r"\b(?:current_timestamp|current_date|current_time|current_datetime|current_localtimestamp|localtimestamp|"
    r"localtime)\b|\b(?:lakehouse_now|now|today|get_current_time|get_current_timestamp|transaction_timestamp|"
    r"random|rand|uuid|gen_random_uuid|uuidv4|uuidv7|setseed|nextval|currval|getenv)\s*\(",
    re.IGNORECASE,
)
# CURRENT_DATE as translate._injected_clock writes it (BQ_CAST_DATE where the cast rules rewrite the
# CAST): a statement whose only clock read is this reads the date in that zone, the same all day.
_DATE_READ = re.compile(
    r"(?:CAST|BQ_CAST_DATE)\(TIMEZONE\('((?:[^']|'')*)', LAKEHOUSE_NOW\(\)\)(?: AS DATE\)|\))", re.IGNORECASE
)
# Relations named (CLOCK, "current_date", zone) are the date in that zone: an input whose version is
# the date, so an action that reads CURRENT_DATE is skipped until the date changes.
CLOCK = "*clock"
_NOT_CODE = re.compile(r"/\*.*?\*/|--[^\n]*|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"", re.DOTALL)
# Table functions that read files: the files they name are inputs, by name, size and modification time.
_FILE_READER = re.compile(
    r"\b(?:read_csv|read_csv_auto|read_json|read_json_auto|read_ndjson|read_ndjson_auto|read_json_objects|"
    r"read_parquet|parquet_scan|read_text|read_blob|glob|iceberg_scan|sniff_csv)\s*\(",
    re.IGNORECASE,
)
_MERGE_ERROR = re.compile(r"\bTHEN\s+ERROR\s+'(?:[^']|'')*'", re.IGNORECASE)
_STRING = re.compile(r"'((?:[^']|'')*)'")


@dataclass(frozen=True)
class Analysis:
    """What a statement reads and writes, as far as a parse can tell."""

    reads: frozenset[Relation]
    writes: frozenset[Relation]
    files: tuple[str, ...]
    opaque: bool  # could not be parsed, or names a table it cannot place: never skipped
    view: Relation | None = None  # the view a CREATE VIEW statement defines
    blind: bool = False  # what it writes is not known (not parsed, or a target it cannot place)
    clears: frozenset[Relation] = frozenset()  # tables a statement deletes every row of


def _relation(table: exp.Table, default_database: str) -> Relation | None:
    from sqlglot import exp

    if not isinstance(table.this, exp.Identifier) or not table.db:
        return None
    return ((table.catalog or default_database).lower(), table.db.lower(), table.name.lower())


def analyse(sql: str, default_database: str) -> Analysis:
    """Return the relations and files one DuckDB statement reads and the relations it writes."""
    # sqlglot is imported on a statement's first analysis, not with the module: a run whose statements
    # all have their analysis cached never loads it
    import sqlglot
    from sqlglot import exp

    files = tuple(_file_patterns(sql))
    # DuckDB's MERGE ... THEN ERROR 'message' (what BigQuery's one-match rule translates to) is not
    # in sqlglot's grammar; for what the statement reads and writes it is a DELETE.
    sql = _MERGE_ERROR.sub("THEN DELETE", sql)
    try:
        trees = [tree for tree in sqlglot.parse(sql, read="duckdb") if tree is not None]
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError, ValueError, RecursionError):
        return Analysis(frozenset(), frozenset(), files, True, None, True)
    reads: set[Relation] = set()
    writes: set[Relation] = set()
    clears: set[Relation] = set()
    opaque = blind = False
    view = None
    for tree in trees:
        if isinstance(tree, exp.TruncateTable):
            for table in tree.expressions:
                cleared = _relation(table, default_database) if isinstance(table, exp.Table) else None
                if cleared is None:
                    opaque = blind = True
                else:
                    writes.add(cleared)
                    clears.add(cleared)
            continue
        if isinstance(tree, exp.Command):  # sqlglot kept it as text: nothing is known about it
            if tree.name.upper() in ("SET", "RESET", "BEGIN", "COMMIT"):
                continue
            opaque = blind = True
            continue
        ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
        target = None
        if isinstance(tree, (exp.Insert, exp.Delete, exp.Update, exp.Merge, exp.Create, exp.Drop, exp.Alter)):
            node = tree.this
            target = node if isinstance(node, exp.Table) else (node.find(exp.Table) if node is not None else None)
            if target is not None:
                written = _relation(target, default_database)
                if written is None:
                    opaque = blind = True
                # CREATE ... IF NOT EXISTS changes nothing once it has run once.
                elif not (isinstance(tree, exp.Create) and tree.args.get("exists")):
                    writes.add(written)
                if isinstance(tree, exp.Create) and str(tree.args.get("kind") or "").upper() == "VIEW":
                    view = written
                where = tree.args.get("where") if isinstance(tree, exp.Delete) else None
                if isinstance(tree, exp.Delete) and written and (where is None or where.this == exp.true()):
                    clears.add(written)
        for table in tree.find_all(exp.Table):
            if table is target:
                continue
            if not isinstance(table.this, exp.Identifier):
                continue  # a table function (read_csv(...)): its files are counted above
            if not table.db and table.name.lower() in ctes:
                continue
            relation = _relation(table, default_database)
            # a wildcard table (dataset.events_*) reads whichever tables match when it runs
            if relation is None or "*" in relation[2]:
                opaque = True
            else:
                reads.add(relation)
    view = view if len(trees) == 1 else None
    return Analysis(frozenset(reads), frozenset(writes), files, opaque, view, blind, frozenset(clears))


def _file_patterns(sql: str) -> list[str]:
    """Return the string literals passed to file-reading table functions in `sql`."""
    patterns = []
    for match in _FILE_READER.finditer(sql):
        depth, position = 1, match.end()
        while depth and position < len(sql):
            char = sql[position]
            if char == "'":
                literal = _STRING.match(sql, position)
                if literal is None:
                    break
                value = literal.group(1).replace("''", "'")
                if "/" in value or "*" in value:
                    patterns.append(value)
                position = literal.end()
                continue
            depth += {"(": 1, ")": -1}.get(char, 0)
            position += 1
    return patterns


def file_listing(patterns: tuple[str, ...]) -> list[tuple[str, int, int]]:
    """Return (path, size, mtime_ns) of every file the patterns match, directories walked whole."""
    found: dict[str, tuple[int, int]] = {}

    def add(path: str) -> None:
        try:
            stat = os.stat(path)
        except OSError:
            return
        found[path] = (stat.st_size, stat.st_mtime_ns)

    for pattern in patterns:
        for path in glob.glob(pattern, recursive=True) if glob.has_magic(pattern) else [pattern]:
            if os.path.isdir(path):
                for folder, _, names in os.walk(path):
                    for name in names:
                        add(os.path.join(folder, name))
            else:
                add(path)
    return sorted((path, size, mtime) for path, (size, mtime) in found.items())


@dataclass(frozen=True)
class Stored:
    """What the last successful run of an action left: enough to decide, without compiling its
    statements, that nothing it depends on has changed."""

    plan: str  # hash of the compiled action, project config and core version
    inputs: tuple[Relation, ...]
    files: tuple[str, ...]
    fingerprint: str
    fixpoint: bool
    result: str
    run_id: str


@dataclass
class Decision:
    """Whether an action may be skipped, and what its fingerprint is made of."""

    target: Relation
    skippable: bool = False
    inputs: tuple[Relation, ...] = ()
    writes: frozenset[Relation] = frozenset()
    files: tuple[str, ...] = ()
    views: tuple[tuple[Relation, str], ...] = ()  # views its statements define, with their analysis keys
    opaque: bool = False  # what it reads is not known: it always runs
    blind: bool = False  # what it writes is not known: every fingerprint changes when it runs
    reason: str = ""  # why a later run may not skip it
    # it empties its table before it writes and never reads its rows: its table is a function of its
    # other inputs, so one run reaches the fixed point (a batch table refilled each run)
    replaces: bool = False
    # every statement that writes defines a view: once they ran, what it wrote is those views
    only_views: bool = False
    # the catalog as its transaction left it, read when its state was recorded (None when it was not)
    catalog: tuple[dict, dict] | None = field(default=None, repr=False, compare=False)
    # its stored state (warehouse prefix, action, row of action_state), saved once it committed
    state: tuple[str, str, list] | None = field(default=None, repr=False, compare=False)
    # when it was decided, before its statements ran: the time its CURRENT_DATE inputs are taken at
    decided_at: datetime | None = field(default=None, repr=False, compare=False)


# Relations named "*<action>" (no table has such a name) are epochs: an action that may have written
# what a parse cannot see changes its epoch, and every fingerprint includes every epoch. One per
# action, so actions running at once never update the same row.
EPOCH = "*"
# Part of every analysis cache key: a change to what `analyse` returns must bump it.
_ANALYSIS_VERSION = 5
_RECIPE = "statement:"
# Tables no action writes are fingerprinted by content up to this many rows (by row estimate above).
_CONTENT_ROWS = 100_000  # the version of a view the runner made: the analysis key of its CREATE VIEW


class Tracker:
    """Fingerprints of actions and versions of relations for one run.

    An action is skipped when its translated statements and the versions of everything it reads
    (and of its own target) are what they were right after it last ran, and, for an incremental
    action, its last run changed nothing (it had reached its fixed point). A relation's version is:
    for a base table an action wrote, the version the runner gave it when an action last changed it;
    for any other base table (written by ingest or by hand), DuckDB's row estimate, which changes
    when rows are appended or the table is replaced; for a view, its
    SQL with the versions of what it reads, and the files it reads by name, size and modification time.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        default_database: str,
        cache_dir: Path | None = None,
        now: datetime | None = None,
    ):
        self.default_database = default_database
        self.now = now  # the run's fixed clock (`lakehouse run --now`), else the time of each decision
        self.cache_dir = cache_dir
        self._lock = threading.Lock()
        self._analyses: dict[str, Analysis] = {}
        self._catalog: tuple[dict, dict] | None = None
        self._memo: tuple[tuple[dict, dict] | None, dict] = (None, {})
        self._generation = 0
        self.actions: dict[str, Stored] = {}
        self._unsaved: dict[str, dict[str, list]] = {}  # prefix -> action -> its row of action_state
        self.versions: dict[Relation, str] = {}
        self._prepared: set[str] = set()
        self._prepare(con)
        self._load(con)

    # -- stored state ----------------------------------------------------------------------------
    def _load(self, con: duckdb.DuckDBPyConnection) -> None:
        databases = [
            row[0]
            for row in con.execute(
                "SELECT DISTINCT database_name FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?",
                [SCHEMA, ACTIONS],
            ).fetchall()
        ]
        for database in databases:
            prefix = f'"{database}"."{SCHEMA}"'
            for name, plan, inputs, files, fingerprint, fixpoint, result, run_id in con.execute(
                f"SELECT action, plan, inputs, files, fingerprint, fixpoint, result, run_id FROM {prefix}.{ACTIONS}"
            ).fetchall():
                try:
                    self.actions[name] = Stored(
                        plan,
                        tuple(tuple(r) for r in json.loads(inputs)),
                        tuple(json.loads(files)),
                        fingerprint,
                        bool(fixpoint),
                        result,
                        run_id,
                    )
                except (TypeError, ValueError):
                    continue  # a damaged row: the action runs
            for database_name, schema, name, version in con.execute(
                f"SELECT database_name, schema_name, table_name, version FROM {prefix}.{VERSIONS}"
            ).fetchall():
                self.versions[(database_name, schema, name)] = version

    def _prepare(self, con: duckdb.DuckDBPyConnection) -> None:
        # Made before any action starts: a table made inside one action's transaction would not exist
        # for the actions running beside it.
        for database, _ in warehouse.attached_files(con):
            prefix = f'"{database}"."{SCHEMA}"'
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {prefix}")
            con.execute(
                f"CREATE TABLE IF NOT EXISTS {prefix}.{ACTIONS} (action VARCHAR PRIMARY KEY, plan VARCHAR, "
                "inputs VARCHAR, files VARCHAR, fingerprint VARCHAR, fixpoint BOOLEAN, result VARCHAR, run_id VARCHAR)"
            )
            con.execute(
                f"CREATE TABLE IF NOT EXISTS {prefix}.{VERSIONS} (database_name VARCHAR, schema_name VARCHAR, "
                "table_name VARCHAR, version VARCHAR, PRIMARY KEY (database_name, schema_name, table_name))"
            )
            self._prepared.add(database.lower())

    def _prefix(self, database: str) -> str | None:
        """Return the state schema of `database`, None when it has none (attached read-only)."""
        for prepared in self._prepared:
            if prepared == database.lower():
                return f'"{database}"."{SCHEMA}"'
        return None

    # -- analysis ----------------------------------------------------------------------------------
    def digest(self, sql: str) -> str:
        """Return the key under which the analysis of `sql` is cached."""
        return hashlib.sha1(f"{_ANALYSIS_VERSION}\n{self.default_database}\n{sql}".encode()).hexdigest()

    def analysis(self, sql: str | None = None, *, digest: str | None = None) -> Analysis | None:
        """Return the analysis of `sql` (or of the statement cached under `digest`: None if it is not)."""
        if digest is None:
            digest = self.digest(sql)
        with self._lock:
            cached = self._analyses.get(digest)
        if cached is not None:
            return cached
        path = self.cache_dir / f"{digest}.json" if self.cache_dir is not None else None
        result = None
        if path is not None:
            try:
                data = json.loads(path.read_text())
                result = Analysis(
                    frozenset(tuple(r) for r in data["reads"]),
                    frozenset(tuple(r) for r in data["writes"]),
                    tuple(data["files"]),
                    bool(data["opaque"]),
                    tuple(data["view"]) if data.get("view") else None,
                    bool(data.get("blind")),
                    frozenset(tuple(r) for r in data.get("clears", [])),
                )
            except (OSError, ValueError, KeyError, TypeError):
                result = None  # a missing or damaged entry is a cache miss
        if result is None and sql is None:
            return None
        if result is None:
            result = analyse(sql, self.default_database)
            if path is not None:
                data = {
                    "reads": sorted(result.reads),
                    "writes": sorted(result.writes),
                    "files": list(result.files),
                    "opaque": result.opaque,
                    "view": list(result.view) if result.view else None,
                    "blind": result.blind,
                    "clears": sorted(result.clears),
                }
                paths.write_cache_file(path, json.dumps(data).encode())
        with self._lock:
            self._analyses[digest] = result
        return result

    # -- versions -----------------------------------------------------------------------------------
    def invalidate(self, committed: Decision | None = None) -> None:
        """Forget what an action may have changed of the catalog read so far (call after it ended).

        With the `committed` decision of an action whose state was recorded, only the relations it
        wrote are taken anew, from the catalog its transaction read: nothing else writes the warehouse
        while a run holds it, and reading the whole catalog again after every action costs 2 ms each.
        Otherwise (it failed, or what it writes is not known) the whole catalog is read again.
        """
        with self._lock:
            self._generation += 1
            if committed is not None and committed.state is not None:
                prefix, name, row = committed.state
                self._unsaved.setdefault(prefix, {})[name] = row
            after = committed.catalog if committed is not None else None
            if self._catalog is None or after is None or committed.blind:
                self._catalog = None
                return
            self._catalog = _replaced(self._catalog, committed.writes | {committed.target}, after)

    def _with_views(self, decision: Decision) -> tuple[dict, dict] | None:
        """Return the catalog read since the last commit with the views `decision` defined (what its
        transaction holds when it wrote nothing else: an assertion, a view), None when none is read."""
        defined = {relation: None for relation, _ in decision.views}
        with self._lock:
            if self._catalog is None or not decision.only_views:
                return None
            return _replaced(self._catalog, defined, ({}, defined))

    def _with_table(self, decision: Decision) -> tuple[dict, dict] | None:
        """Return the catalog read since the last commit with the table `decision` wrote (a recorded
        table or incremental action writes its own table only), as its transaction holds it, without
        reading every table and view again (5 ms an action); None when it cannot be told so.

        What a fingerprint takes of a table it is given: the version its writer gave it, or (never
        written by an action) its row estimate, which a write that changed nothing leaves as it was."""
        if decision.writes - {decision.target} or decision.views:
            return None
        with self._lock:
            if self._catalog is None:
                return None
            size = self._catalog[0].get(decision.target)
            if size is None and decision.target not in self.versions:
                return None
            return _replaced(self._catalog, {decision.target}, ({decision.target: size or "0"}, {}))

    def _read_catalog(self, con: duckdb.DuckDBPyConnection) -> tuple[dict, dict]:
        # DuckDB numbers catalog entries anew each time a file is opened, so a table's id says nothing
        # across runs; its row estimate changes when another tool appends to it or replaces it.
        tables = {
            (d.lower(), s.lower(), n.lower()): str(size)
            for d, s, n, size in con.execute(
                "SELECT database_name, schema_name, table_name, estimated_size FROM duckdb_tables() WHERE NOT temporary"
            ).fetchall()
        }
        # A view's text is read only when needed (rendering every view's SQL costs tens of ms, and the
        # views the runner made are described by the statement that made them).
        views: dict = {
            (d.lower(), s.lower(), n.lower()): None
            for d, s, n in con.execute(
                "SELECT database_name, schema_name, view_name FROM duckdb_views() WHERE NOT internal "
                "AND NOT temporary"
            ).fetchall()
        }
        return tables, views

    def _view_text(self, con: duckdb.DuckDBPyConnection, views: dict, relation: Relation) -> str:
        with self._lock:
            text = views.get(relation)
        if text is None:
            texts = {
                (d.lower(), s.lower(), n.lower()): sql
                for d, s, n, sql in con.execute(
                    "SELECT database_name, schema_name, view_name, sql FROM duckdb_views() WHERE NOT internal "
                    "AND NOT temporary"
                ).fetchall()
            }
            with self._lock:
                for key in views:
                    views[key] = texts.get(key, "")
                text = views.get(relation) or ""
        return text

    def _memo_for(self, catalog: tuple[dict, dict]) -> dict:
        with self._lock:
            if self._memo[0] is not catalog:
                self._memo = (catalog, {})
            return self._memo[1]

    def _catalog_for(self, con: duckdb.DuckDBPyConnection) -> tuple[dict, dict]:
        with self._lock:
            catalog, generation = self._catalog, self._generation
        if catalog is None:
            catalog = self._read_catalog(con)
            with self._lock:
                if generation == self._generation:  # no action committed while it was read
                    self._catalog = catalog
        return catalog

    def _version(self, con, relation: Relation, catalog: tuple[dict, dict], memo: dict, depth: int = 0) -> str:
        if relation in memo:
            return memo[relation]
        tables, views = catalog
        if relation in tables:
            with self._lock:
                bumped = self.versions.get(relation)
            # A table an action wrote has the version that action gave it (a row estimate read inside
            # the writing transaction is not the one read after it). Any other is written by ingest, deploy
            # or hand: a small one (a key table, a loaded sample) by its content, which an in-place update
            # changes; a large one (a Pub/Sub raw table, appended to) by its row estimate.
            if bumped:
                version = f"table:{bumped}"
            elif int(tables[relation] or 0) <= _CONTENT_ROWS:
                version = "table:content:" + str(
                    con.execute(f"SELECT count(*), bit_xor(hash(t)) FROM {_quoted(relation)} AS t").fetchone()
                )
            else:
                version = f"table:rows:{tables[relation]}"
        elif relation in views:
            with self._lock:
                recorded = self.versions.get(relation, "")
            # A view the runner made is described by the statement that made it (DuckDB's own text of
            # a view is not always parseable); any other view by its text.
            analysis = None
            if recorded.startswith(_RECIPE):
                analysis = self.analysis(digest=recorded[len(_RECIPE) :])
            text = recorded if analysis is not None else self._view_text(con, views, relation)
            if analysis is None and not recorded.startswith(_RECIPE):
                analysis = self.analysis(text)
            if analysis is None or analysis.opaque or depth > 20:
                version = "view:unknown:" + os.urandom(8).hex()  # never equal: its readers always run
            else:
                parts = [text]
                parts.extend(f"{r}={self._version(con, r, catalog, memo, depth + 1)}" for r in sorted(analysis.reads))
                parts.extend(map(str, file_listing(analysis.files)))
                version = "view:" + hashlib.sha1("\n".join(parts).encode()).hexdigest()
        else:
            version = "absent"
        memo[relation] = version
        return version

    def _shape(self, con: duckdb.DuckDBPyConnection, relation: Relation, catalog: tuple[dict, dict]) -> str:
        """Return what a view defined over `relation` binds to: a table's columns and types, a view's
        definition (not the data either holds)."""
        tables, views = catalog
        if relation in tables:
            # DESCRIBE binds one table; duckdb_columns() lists every column of every table first (8x slower)
            described = con.execute(f"DESCRIBE {_quoted(relation)}").fetchall()
            columns = ", ".join(f"{column} {kind}" for column, kind, *_ in described)
            return f"columns:{columns}"
        if relation in views:
            with self._lock:
                recorded = self.versions.get(relation, "")
            return recorded if recorded.startswith(_RECIPE) else "view:" + self._view_text(con, views, relation)
        return "absent"

    def fingerprint(
        self,
        con: duckdb.DuckDBPyConnection,
        plan: str,
        inputs: tuple[Relation, ...],
        files: tuple[str, ...],
        *,
        catalog: tuple[dict, dict] | None = None,
        shapes: bool = False,
        at: datetime | None = None,
    ) -> str:
        """Return the fingerprint of a compiled action and the current versions of its inputs (with
        `shapes`, of their columns and definitions: all a view's CREATE depends on). A `catalog` read
        inside a transaction is used as it is; without one, the one read since the last commit. A
        CLOCK input is the date, in its zone, at `at` (default: now)."""
        # Versions hold until an action commits (invalidate); a catalog passed in is inside a transaction.
        if catalog is None:
            catalog = self._catalog_for(con)
            memo = self._memo_for(catalog)
        else:
            memo = {}
        with self._lock:
            epochs = sorted(r for r in self.versions if r[2].startswith(EPOCH))
        parts = [plan]
        clock = tuple(r for r in inputs if r[0] == CLOCK)
        parts.extend(f"{r}={self._today(r[2], at)}" for r in clock)
        inputs = tuple(r for r in inputs if r[0] != CLOCK)
        if shapes:
            parts.extend(f"{r}={self._shape(con, r, catalog)}" for r in inputs)
            parts.extend(f"{r}={self._version(con, r, catalog, memo)}" for r in epochs)
        else:
            parts.extend(f"{r}={self._version(con, r, catalog, memo)}" for r in inputs + tuple(epochs))
        parts.extend(map(str, file_listing(files)))
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def _today(self, zone: str, at: datetime | None) -> str:
        """Return the date in `zone` at `at`, else at the run's clock."""
        moment = at or self.now or datetime.now(UTC)
        return moment.astimezone(_zone(zone)).date().isoformat()

    def plan_hash(self, action, project_config: dict, core_version: str) -> str:
        """Return the hash of what the action's statements are compiled from."""
        text = json.dumps([action.raw, project_config, core_version, _ANALYSIS_VERSION], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def unchanged(self, con: duckdb.DuckDBPyConnection, action, plan: str) -> tuple[dict | None, str]:
        """Return (the result it had, "") when the action may be skipped: compiled the same, and its
        inputs, its own table included, as it left them; else (None, why it runs)."""
        with self._lock:
            stored = self.actions.get(action.name)
        if stored is None:
            return None, "never ran, or always runs"
        if stored.plan != plan:
            return None, "its definition changed"
        if not stored.fixpoint:
            return None, "its last run changed its table"
        # A view holds no data: its CREATE gives the same view until what it reads changes shape.
        if stored.fingerprint != self.fingerprint(con, plan, stored.inputs, stored.files, shapes=action.kind == "view"):
            return None, "inputs changed"
        try:
            return dict(json.loads(stored.result or "{}"), run_id=stored.run_id), ""
        except ValueError:
            return None, "its stored result is damaged"

    # -- decisions ----------------------------------------------------------------------------------
    def relation(self, target: dict) -> Relation:
        """Return the relation key of an action's target."""
        database = target.get("database") or self.default_database
        return (database.lower(), target["schema"].lower(), target["name"].lower())

    def decide(self, action, statements: list, kind: str) -> Decision:
        """Return what `action` (its translated `statements`) reads and writes, and whether a later run
        may skip it (never when it may have effects its inputs do not determine)."""
        decision = Decision(self.relation(action.target), decided_at=self.now or datetime.now(UTC))
        if any(not isinstance(sql, str) for sql in statements):
            decision.opaque = decision.blind = True
            decision.reason = "a procedural block always runs"
            return decision
        reads: set[Relation] = {decision.target}
        writes: set[Relation] = set()
        files: list[str] = []
        views: list[tuple[Relation, str]] = []
        read_before = cleared = False
        only_views = True
        for sql in statements:
            analysis = self.analysis(sql)
            only_views = only_views and (not analysis.writes or analysis.writes == {analysis.view})
            # the table is a function of the other inputs when it is emptied before any statement reads
            # its rows (what later statements read of it, this run wrote)
            read_before = read_before or (not cleared and decision.target in analysis.reads)
            cleared = cleared or (decision.target in analysis.clears and not read_before)
            if analysis.view is not None:
                views.append((analysis.view, self.digest(sql)))
            decision.opaque = decision.opaque or analysis.opaque
            decision.blind = decision.blind or analysis.blind
            reads |= analysis.reads
            writes |= analysis.writes
            files.extend(analysis.files)
        decision.writes = frozenset(writes)
        decision.views = tuple(views)
        decision.replaces = cleared
        decision.only_views = only_views and bool(views)
        text = "\n;\n".join(statements)
        if kind not in ("table", "view", "incremental", "assertion"):
            decision.reason = "an operation always runs"
        elif decision.opaque:
            decision.reason = "a statement could not be analysed"
        elif writes - {decision.target}:
            decision.reason = "writes another table"
        elif _VOLATILE.search(_NOT_CODE.sub(" ", _DATE_READ.sub(" ", text))):
            decision.reason = "reads the clock or a random source"
        elif (zones := _date_zones(text)) is None:
            decision.reason = "reads the date in a time zone this machine does not know"
        else:
            decision.skippable = True
            reads |= {(CLOCK, "current_date", zone) for zone in zones}
        if decision.skippable:
            decision.inputs = tuple(sorted(reads))
            decision.files = tuple(dict.fromkeys(files))
        return decision

    def view_in_place(self, con: duckdb.DuckDBPyConnection, sql: str) -> bool:
        """Return True when `sql` only makes a view that this runner made with this very statement and
        that still exists. DuckDB binds a view again each time it is read, so the view it would make is
        the one there; replacing it binds its query and writes the catalog for nothing."""
        analysis = self.analysis(sql)
        if analysis is None or analysis.view is None or analysis.opaque or analysis.writes != {analysis.view}:
            return False
        with self._lock:
            recorded = self.versions.get(analysis.view)
        return recorded == _RECIPE + self.digest(sql) and analysis.view in self._catalog_for(con)[1]

    def _bump(self, con: duckdb.DuckDBPyConnection, relation: Relation, version: str) -> None:
        prefix = self._prefix(relation[0])
        if prefix is None:
            return
        with self._lock:
            if self.versions.get(relation) == version:
                return  # a view made again by the same statement: its recorded version holds
        # DELETE + INSERT: a third cheaper than INSERT OR REPLACE, which this runs for every action
        database, schema, name = map(_literal, relation)
        con.execute(
            f"DELETE FROM {prefix}.{VERSIONS} WHERE database_name = {database} AND schema_name = {schema} "
            f"AND table_name = {name}; INSERT INTO {prefix}.{VERSIONS} VALUES ({database}, {schema}, {name}, "
            f"{_literal(version)})"
        )
        with self._lock:
            self.versions[relation] = version

    def record(
        self,
        con: duckdb.DuckDBPyConnection,
        action,
        decision: Decision,
        *,
        plan: str,
        changed: bool,
        kind: str,
        result: dict,
        run_id: str,
    ) -> None:
        """After `action` ran, in its transaction: give what it changed new versions, and compute its
        fingerprint as its inputs are now (when it may be skipped later), stored by `save` once the
        transaction committed (invalidate)."""
        version = f"{run_id}/{action.name}"
        if decision.blind:
            self._bump(con, (decision.target[0], SCHEMA, EPOCH + action.name.lower()), version)
        defined = dict(decision.views)
        for relation in decision.writes:
            if relation in defined:
                self._bump(con, relation, _RECIPE + defined[relation])
            elif relation != decision.target or changed:
                self._bump(con, relation, version)
        if not decision.skippable:
            return
        prefix = self._prefix(decision.target[0])
        if prefix is None:
            return
        decision.catalog = self._with_views(decision) or self._with_table(decision) or self._read_catalog(con)
        fingerprint = self.fingerprint(
            con, plan, decision.inputs, decision.files, catalog=decision.catalog, shapes=kind == "view",
            at=decision.decided_at,
        )
        fixpoint = kind != "incremental" or not changed or decision.replaces
        stored = Stored(plan, decision.inputs, decision.files, fingerprint, fixpoint, json.dumps(result), run_id)
        values = [action.name, plan, json.dumps(stored.inputs), json.dumps(stored.files), fingerprint,
                  stored.fixpoint, stored.result, run_id]  # fmt: skip
        # Written by `save` with every other action's at the end of the run (a DELETE and an INSERT per
        # action were about a third of this method): a state that is lost, in a run stopped before the
        # end, leaves the one before, which never skips the action (its fingerprint was of the inputs as
        # they were then; the versions of what it wrote were bumped above, in its transaction).
        decision.state = (prefix, action.name, values)
        with self._lock:
            self.actions[action.name] = stored

    def save(self, con: duckdb.DuckDBPyConnection) -> None:
        """Write the states of the actions that committed since the last save, one transaction per warehouse."""
        with self._lock:
            unsaved, self._unsaved = self._unsaved, {}
        for prefix, rows in unsaved.items():
            names = ", ".join(_literal(name) for name in rows)
            values = ", ".join("(" + ", ".join(map(_literal, row)) + ")" for row in rows.values())
            with warehouse.transaction(con):
                con.execute(f"DELETE FROM {prefix}.{ACTIONS} WHERE action IN ({names})")
                con.execute(f"INSERT INTO {prefix}.{ACTIONS} VALUES {values}")


def _date_zones(text: str) -> set[str] | None:
    """Return the zones of the CURRENT_DATE reads in translated `text`; None when one is not a zone
    Python knows (its date could not be told)."""
    zones = {zone.replace("''", "'") for zone in _DATE_READ.findall(text)}
    try:
        for zone in zones:
            _zone(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return zones


def _zone(name: str):
    """Return the time zone `name` (UTC without the zone database, which a machine may lack)."""
    return UTC if name.upper() == "UTC" else ZoneInfo(name)


def _replaced(catalog: tuple[dict, dict], relations, after: tuple[dict, dict]) -> tuple[dict, dict]:
    """Return a copy of `catalog` (tables, views) in which each of `relations` is what `after` holds."""
    tables, views = dict(catalog[0]), dict(catalog[1])
    for relation in relations:
        tables.pop(relation, None)
        views.pop(relation, None)
        if relation in after[0]:
            tables[relation] = after[0][relation]
        elif relation in after[1]:
            views[relation] = None  # its text is read when asked
    return tables, views


def _quoted(relation: Relation) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in relation)


def _literal(value: str | bool) -> str:
    """Return `value` as a DuckDB literal. The state is written as literals, not bound parameters: two
    statements of one call cost half of two prepared and bound ones (4 ms an action, on every action)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "'" + value.replace("'", "''").replace("\0", "' || chr(0) || '") + "'"


_READ_ONLY = re.compile(r"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*\(*\s*(?:select|with|values|show|describe|explain)\b",
                        re.IGNORECASE | re.DOTALL)  # fmt: skip


def reads_only(sql: str) -> bool:
    """Return True when BigQuery `sql` is a single query (SELECT/WITH/...), which writes nothing."""
    return bool(_READ_ONLY.match(sql)) and ";" not in sql.strip().rstrip(";")


def forget(con: duckdb.DuckDBPyConnection) -> None:
    """Forget every stored action state on `con`'s attached warehouses: the next run runs everything.

    For writes the runner cannot see (a statement run by hand with `lakehouse query`).
    """
    for (database,) in con.execute(
        "SELECT DISTINCT t.database_name FROM duckdb_tables() t JOIN duckdb_databases() d USING (database_name) "
        "WHERE t.schema_name = ? AND t.table_name = ? AND NOT d.readonly",
        [SCHEMA, ACTIONS],
    ).fetchall():
        con.execute(f'DELETE FROM "{database}"."{SCHEMA}"."{ACTIONS}"')
