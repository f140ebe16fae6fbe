"""BigQuery scripts as the engine runs them, without parsing them again: translations cached on disk,
the control-flow Blocks of procedural scripts, and external tables rendered against the local files.

lakehouse.engine.translate makes the translations (sqlglot and the rewrite layer of docs/parity.md); this
module is what a run needs once they are cached, so a `lakehouse run` whose scripts are all in the cache
never imports sqlglot (0.1–0.2 s of each run's start: docs/parity.md, "Cost of translating"). translate
re-exports every name here.
"""

from __future__ import annotations

import codecs
import dataclasses
import functools
import glob
import hashlib
import importlib.metadata
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import orjson

from lakehouse import paths
from lakehouse.engine import functions

__all__ = [
    "Block",
    "TranslationError",
    "UnsupportedConstruct",
    "execute_with_array_paths",
    "referenced_projects",
    "referenced_tables",
    "set_cache_dir",
    "translate_script",
]

log = logging.getLogger(__name__)

READ = "bigquery"
WRITE = "duckdb"
CACHE_SIZE = 4096
# Local stand-in for the BigQuery pseudo-column of external tables.
FILE_NAME_COLUMN = "_FILE_NAME"
_FILE_COLUMN = "__lakehouse_file"
ERROR_MESSAGE_VARIABLE = "__lakehouse_error_message"  # @@error.message in an EXCEPTION handler
ROW_COUNT_VARIABLE = "__lakehouse_row_count"
ERROR_STATEMENT_VARIABLE = "__lakehouse_error_statement"  # @@error.statement_text
WILDCARD_SUFFIX_COLUMN = "_TABLE_SUFFIX"  # what a wildcard table's rows say of the table they came from
_PROCEDURE_PREFIX = "__lakehouse_procedure_"  # the macro a CREATE PROCEDURE becomes
_CALL_ARGUMENT = "__lakehouse_call_argument_{}"  # a CALL's arguments, by position
_MAX_PATH_REWRITES = 8  # rewrites of one refused statement (execute_with_array_paths)


class UnsupportedConstruct(Exception):
    """A BigQuery construct the local engine does not run; `hint` says what to do instead."""

    def __init__(self, construct: str, hint: str):
        self.construct = construct
        self.hint = hint
        super().__init__(f"{construct} is not supported by the local engine: {hint}")


class TranslationError(Exception):
    """SQL that cannot be parsed as BigQuery SQL; the message names the construct and position."""


@dataclass(frozen=True)
class Block:
    """A control-flow step of a procedural script, run by lakehouse.engine.query.run_item.

    kind: "if" (condition chosen among `branches`), "loop" (repeat `body` while `condition` holds; a
    REPEAT checks `until` after the body), "for" (`body` once per row of `rows`, bound to `variable`),
    "break" / "continue" / "return", "try" (`body`, then on an error the handler `branches[0][1]`),
    "reraise" (a bare RAISE in a handler), "call" (`variable` the procedure's macro, `body` the statements
    that compute its arguments, `using` the caller's variable for each argument or ""). Conditions and rows
    are DuckDB SELECTs of one value.
    """

    kind: str
    branches: tuple = ()  # if: ((condition select or "", body), ...)
    condition: str = ""
    until: str = ""
    rows: str = ""
    variable: str = ""
    body: tuple = ()
    # execute: `condition` selects the SQL text then the USING values; `variable` holds the INTO names
    # (comma-separated); `using` the USING names ("" for positional ?); `project` the default project.
    using: tuple = ()
    project: str = ""
    # js_function: `variable` is the name, `code` the body, `params` (name, DuckDB type) pairs, `returns` the
    # DuckDB return type, `libraries` the gs:// URIs and, once rendered, their local paths.
    code: str = ""
    params: tuple = ()
    returns: str = ""
    libraries: tuple = ()
    # js_function: for a persistent function (CREATE FUNCTION ds.f), the DuckDB verb for its macro
    # ("CREATE MACRO", "CREATE OR REPLACE MACRO", "CREATE MACRO IF NOT EXISTS") and `variable` "project.dataset.f".
    persistent: str = ""

    def __str__(self) -> str:
        return f"-- {self.kind} block"


class _Compiled(NamedTuple):
    items: tuple  # DuckDB statements (str) and _ExternalTable to render against local files
    tables: frozenset[tuple[str, str, str]]  # (project, dataset, table) read or written


def execute_with_array_paths(con, sql: str):
    """Run one DuckDB statement on con; where DuckDB refuses a BigQuery array elements path
    (`UNNEST(t.arr.field)`), rewrite it with the array's type from a DESCRIBE probe and run it again; where
    it misses the V8 body of a persistent JavaScript function, register it from the warehouse and run again.

    Returns the cursor; raises the DuckDB error when the statement fails for any other reason. A binder
    error leaves the transaction usable, so the retry costs nothing when no such path is there.
    """

    def describe(probe: str) -> str | None:
        try:
            rows = con.execute(f"DESCRIBE {probe}").fetchall()
        except Exception:  # noqa: BLE001 - a probe that does not bind says "not in this scope"
            return None
        return rows[0][1] if rows else None

    for _ in range(_MAX_PATH_REWRITES):
        try:
            return con.execute(sql)
        except Exception as error:
            message = str(error)
            if functions.register_stored_js_function(con, message) or functions.register_missing_udf(con, message):
                continue
            from lakehouse.engine import translate  # the rewrites parse the statement: only when it failed

            rewritten = (
                translate.flatten_array_paths(sql, message, describe)
                or translate.read_value_table_fields(sql, message, describe)
                or translate.left_join_unnest_as_filter(sql, message)
                or translate.join_using_value_table_fields(sql, message, describe)
                or translate.date_plus_days(sql, message, describe)
            )
            if rewritten is None or rewritten == sql:
                raise
            sql = rewritten
    return con.execute(sql)


@dataclass(frozen=True)
class _ExternalTable:
    """A CREATE EXTERNAL TABLE, rendered against the local files when the script is run."""

    replace: bool
    if_not_exists: bool
    target: str
    columns: tuple[tuple[str, str], ...]
    partition_columns: tuple[tuple[str, str], ...] | None
    options: tuple[tuple[str, object], ...]
    position: str


def _sql_string(value: str) -> str:
    if value and all(ord(c) < 32 for c in value) and len(value) == 1:
        return f"chr({ord(value)})"
    return "'" + value.replace("'", "''") + "'"


def _struct_literal(pairs: list[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"{_sql_string(k)}: {_sql_string(v)}" for k, v in pairs) + "}"


def _local_patterns(uri: str, gcs_resolver: Callable[[str], str]) -> list[str]:
    """Return the local globs for a gs:// URI: BigQuery's one '*' also matches '/' (object names are
    flat), so 'gs://b/p/*.json' covers p/x/y.json too."""
    local = str(gcs_resolver(uri))
    if "*" not in local:
        return [local]
    head, _, tail = local.partition("*")
    if "/" in tail:
        return [local]
    if head.endswith("/"):
        return [f"{head}**/*{tail}"]
    return [f"{head}*{tail}", f"{head}*/**/*{tail}"]


def _file_name_expression(
    uris: list[str],
    gcs_resolver: Callable[[str], str],
    copy_roots: dict[str, str] | None = None,
    column: str = _FILE_COLUMN,
) -> str:
    """Return SQL mapping the local file path in `column` (or UTF-8 copy, under a key of `copy_roots`)
    back to its gs:// URI (BigQuery's _FILE_NAME)."""
    cases = [
        f"WHEN starts_with({column}, {_sql_string(root)}) "
        f"THEN {_sql_string(bucket_uri)} || substr({column}, {len(root) + 1})"
        for root, bucket_uri in (copy_roots or {}).items()
    ]
    for uri in dict.fromkeys(uris):
        object_name = uri[len("gs://") :].split("/", 1)[1] if "/" in uri[len("gs://") :] else ""
        resolved = str(gcs_resolver(uri))
        if not object_name or not resolved.endswith(object_name):
            continue
        local_root = resolved[: len(resolved) - len(object_name)]
        bucket_uri = uri[: len(uri) - len(object_name)]
        cases.append(
            f"WHEN starts_with({column}, {_sql_string(local_root)}) "
            f"THEN {_sql_string(bucket_uri)} || substr({column}, {len(local_root) + 1})"
        )
    return f"CASE {' '.join(cases)} ELSE {column} END" if cases else column


# Local copies, in UTF-8, of files behind CSV external tables that are not UTF-8: beside the directory
# of local buckets (so no bucket lists them), in the same object layout (so hive partitions hold).
UTF8_COPIES_DIR = "external-utf8"
_CHUNK_BYTES = 1 << 20
# path -> (size, mtime_ns, is UTF-8): landing files never change, so each is read once per process.
_utf8_seen: dict[str, tuple[int, int, bool]] = {}
_utf8_records: set[str] = set()  # verdict files already read by this process


def _is_utf8(path: str) -> bool:
    """Return whether the file at `path` is valid UTF-8 throughout (read in chunks, cached by size and mtime)."""
    stat = os.stat(path)
    seen = _utf8_seen.get(path)
    if seen is not None and seen[:2] == (stat.st_size, stat.st_mtime_ns):
        return seen[2]
    decoder = codecs.getincrementaldecoder("utf-8")()
    ok = True
    with open(path, "rb") as handle:
        try:
            while chunk := handle.read(_CHUNK_BYTES):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            ok = False
    _utf8_seen[path] = (stat.st_size, stat.st_mtime_ns, ok)
    return ok


def _utf8_copy(path: str, copy: Path) -> str:
    """Return the path of `copy`, written (again when `path` is newer) as `path` decoded from UTF-8 with
    each invalid byte sequence replaced by U+FFFD, which is what BigQuery reads from such a file."""
    if not copy.exists() or copy.stat().st_mtime_ns < os.stat(path).st_mtime_ns:
        copy.parent.mkdir(parents=True, exist_ok=True)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        temp = copy.with_name(f".{copy.name}.{os.getpid()}.tmp")
        with open(path, "rb") as source, open(temp, "w", encoding="utf-8", newline="") as target:
            while chunk := source.read(_CHUNK_BYTES):
                target.write(decoder.decode(chunk))
            target.write(decoder.decode(b"", final=True))
        os.replace(temp, copy)
    return str(copy)


def _bucket_roots(uris: list[str], gcs_resolver: Callable[[str], str]) -> dict[str, tuple[str, str]]:
    """Return {bucket: (local bucket directory, local directory of its UTF-8 copies)} for the URIs' buckets."""
    roots = {}
    for uri in uris:
        bucket = uri[len("gs://") :].split("/", 1)[0]
        local = Path(gcs_resolver(f"gs://{bucket}/x")).parent
        roots[bucket] = (str(local), str(local.parent.parent / UTF8_COPIES_DIR / bucket))
    return roots


def _load_checked(record: Path) -> None:
    """Add the verdicts recorded in `record` (path under the home -> [size, mtime_ns, is UTF-8]) to
    _utf8_seen. Paths are recorded relative to the home (the record's grandparent), so a home that was
    moved or copied keeps them; an absolute path, as records before that held, is taken as it is."""
    if str(record) in _utf8_records:
        return
    _utf8_records.add(str(record))
    home = record.parent.parent
    try:
        for path, (size, mtime, ok) in orjson.loads(record.read_bytes()).items():
            _utf8_seen.setdefault(os.path.join(home, path), (size, mtime, ok))
    except (OSError, ValueError, TypeError):
        pass  # no record yet, or a damaged one: files are read again


def _save_checked(record: Path, files: list[str]) -> None:
    home = record.parent.parent
    try:
        known = orjson.loads(record.read_bytes()) if record.exists() else {}
    except (OSError, ValueError):
        known = {}
    # absolute paths (older records, or a home since moved) become relative, or go when not under it
    known = {
        os.path.relpath(path, home) if os.path.isabs(path) else path: verdict
        for path, verdict in known.items()
        if not os.path.isabs(path) or Path(path).is_relative_to(home)
    }
    known.update({os.path.relpath(f, home): list(_utf8_seen[f]) for f in files if f in _utf8_seen})
    paths.write_cache_file(record, orjson.dumps(known))


def _utf8_files(patterns: list[str], roots: dict[str, tuple[str, str]]) -> tuple[list[str], dict[str, str]] | None:
    """Return None when every file the patterns match is UTF-8; else (files to read, {copies root:
    gs://bucket/}) with each non-UTF-8 file replaced by its UTF-8 copy.

    Landed objects do not change, so each file's verdict is recorded beside the copies (by size and
    mtime) and a file is read once, not once per run: a run reads only what landed since.
    """
    files = sorted({f for p in patterns for f in glob.glob(p, recursive=True) if os.path.isfile(f)})
    records = {Path(copies).parent / "utf8-checked.json" for _, copies in roots.values()}
    for record in records:
        _load_checked(record)
    unseen = [f for f in files if f not in _utf8_seen]
    bad = [f for f in files if not _is_utf8(f)]
    if unseen:
        for record in records:
            _save_checked(record, unseen)
    if not bad:
        return None
    bad_set = set(bad)
    out = [f for f in files if f not in bad_set]
    copy_roots = {}
    for path in bad:
        for bucket, (local, copies) in roots.items():
            if path.startswith(local + os.sep):
                log.warning("%s is not UTF-8: read with U+FFFD for each invalid byte sequence, as BigQuery does", path)
                out.append(_utf8_copy(path, Path(copies) / os.path.relpath(path, local)))
                copy_roots[copies + os.sep] = f"gs://{bucket}/"
                break
        else:
            out.append(path)
    return out, copy_roots


def _render_external(table: _ExternalTable, gcs_resolver: Callable[[str], str] | None) -> str:
    """Return CREATE VIEW SQL over read_csv/read_json of the local files behind the external table."""
    if gcs_resolver is None:
        raise UnsupportedConstruct(
            "CREATE EXTERNAL TABLE", "external tables need local GCS storage; run through `lakehouse run`"
        )
    options = dict(table.options)
    fmt = str(options.get("format", "")).upper()
    uris = options.get("uris")
    if isinstance(uris, str):
        uris = (uris,)
    if not uris:
        raise UnsupportedConstruct("CREATE EXTERNAL TABLE without uris", "add OPTIONS(uris=['gs://...'])")
    for uri in uris:
        if not str(uri).startswith("gs://"):
            raise UnsupportedConstruct(f"external table URI {uri}", "only gs:// URIs are served locally")
    # DuckDB fails on a pattern that matches no file: keep the ones with files now (each run of the
    # operation re-creates the view, so later files under a new pattern are picked up then). Folders
    # alone (left empty when their files were deleted) are no match.
    candidates = [p for uri in uris for p in _local_patterns(str(uri), gcs_resolver)]
    patterns = [
        p for p in dict.fromkeys(candidates) if any(os.path.isfile(m) for m in glob.iglob(p, recursive=True))
    ]
    any_file = bool(patterns)
    partition_types = list(table.partition_columns or ())
    prefix = str(options.get("hive_partition_uri_prefix", ""))
    for key, kind in re.findall(r"\{(\w+):(\w+)\}", prefix):
        from sqlglot import exp  # a typed partition key in the prefix is rare: its type is read then

        partition_types.append((key, exp.DataType.build(kind, dialect=READ).sql(WRITE)))
    hive = table.partition_columns is not None or bool(partition_types)
    create = "CREATE OR REPLACE VIEW" if table.replace else "CREATE VIEW"
    if table.if_not_exists:
        create = "CREATE VIEW IF NOT EXISTS"
    if not any_file:
        log.info("external table %s: no local file matches %s yet; the view is empty", table.target, candidates)
        columns = [*table.columns, *partition_types, (FILE_NAME_COLUMN, "VARCHAR")]
        select = ", ".join(f'CAST(NULL AS {kind}) AS "{name}"' for name, kind in columns)
        return f"{create} {table.target} AS SELECT {select} WHERE false"
    args = ["[" + ", ".join(_sql_string(p) for p in patterns) + "]"]
    copy_roots = None
    if fmt == "CSV":
        # DuckDB stops the whole read at the first byte sequence that is not UTF-8; BigQuery reads
        # such a file with U+FFFD in its place. A file someone else put there must not stop bronze.
        utf8 = _utf8_files(patterns, _bucket_roots([str(u) for u in uris], gcs_resolver))
        if utf8 is not None:
            files, copy_roots = utf8
            args = ["[" + ", ".join(_sql_string(f) for f in files) + "]"]
        delimiter = str(options.get("field_delimiter", ","))
        quote = str(options.get("quote", '"'))
        skip = int(options.get("skip_leading_rows", 0) or 0)
        args += [f"delim={_sql_string(delimiter)}", f"quote={_sql_string(quote)}"]
        args.append(f"escape={_sql_string(quote)}")
        if not quote:
            # Without quoting BigQuery reads any bytes between line ends; DuckDB's strict mode would
            # stop the whole query at a lone CR (`state machine reached an invalid state`).
            args.append("strict_mode=false")
        # BigQuery reads CSV rows up to 100 MB; DuckDB's default limit is 2 MB. DuckDB 1.5 sizes its
        # read buffer from max_line_size (a 1.5 GiB block at 100 MB) unless told, and each reading thread
        # holds one: 16 MB rows in 16 MB buffers fit the engine's smallest memory limit (256 MiB). The
        # landing function lands lines of at most 64 KiB; a longer foreign line fails naming its file.
        args.append(f"max_line_size={16 * 1024 * 1024}")
        args.append(f"buffer_size={16 * 1024 * 1024}")
        if table.columns:
            args += [f"columns={_struct_literal(list(table.columns))}", "auto_detect=false", "header=false"]
            if skip:
                args.append(f"skip={skip}")
        else:
            args += ["auto_detect=true", f"header={'true' if skip else 'false'}"]
            if skip > 1:
                args.append(f"skip={skip - 1}")
        if "null_marker" in options:
            args.append(f"nullstr={_sql_string(str(options['null_marker']))}")
        if options.get("allow_jagged_rows"):
            args.append("null_padding=true")
        reader = "read_csv"
    elif fmt == "NEWLINE_DELIMITED_JSON":
        args.append("format='newline_delimited'")
        if table.columns:
            args.append(f"columns={_struct_literal(list(table.columns))}")
        reader = "read_json"
    else:
        raise UnsupportedConstruct(
            f"external table format {fmt or '(none)'}", "use format='CSV' or 'NEWLINE_DELIMITED_JSON' locally"
        )
    if int(options.get("max_bad_records", 0) or 0) > 0 or options.get("ignore_unknown_values"):
        args.append("ignore_errors=true")
    # DuckDB 1.5 skips files on a filter of the file-name column only under its default name
    # (`filename`), as BigQuery skips them on _FILE_NAME: that name unless a column of the table has it
    # (or the columns are read from the files, which may have one).
    named = {name.lower() for name, _ in [*table.columns, *partition_types]}
    file_column = "filename" if table.columns and "filename" not in named else _FILE_COLUMN
    args.append("filename=true" if file_column == "filename" else f"filename={_sql_string(file_column)}")
    args.append(f"hive_partitioning={'true' if hive else 'false'}")
    if partition_types:
        args.append(f"hive_types={_struct_literal(partition_types)}")
    # _FILE_NAME is the gs:// URI, as in BigQuery: map the local bucket directory back.
    file_name = _file_name_expression([str(u) for u in uris], gcs_resolver, copy_roots, file_column)
    return (
        f'{create} {table.target} AS SELECT * EXCLUDE ({file_column}), {file_name} AS "{FILE_NAME_COLUMN}" '
        f"FROM {reader}({', '.join(args)})"
    )


# Translations on disk: a new process (each `lakehouse run`) reads an unchanged script's translation
# instead of parsing it again. Keyed by the translator's own source and sqlglot's version too (read from
# its installed metadata, not by importing it), so a code change never serves a stale translation.
# Writes are atomic (temp file + rename).
_cache_dir: Path | None = None
_TRANSLATOR_FILES = ("translate.py", "scripts.py", "functions.py", "layout.py")
_VERSION = hashlib.sha256(
    b"".join(Path(__file__).with_name(n).read_bytes() for n in _TRANSLATOR_FILES)
    + importlib.metadata.version("sqlglot").encode()
).hexdigest()[:16]
# What translations are made by: the runner's record of an action is only reused under the same.
VERSION = _VERSION


# Dataform names temporary objects with a random id per run (INSERT_OVERWRITE staging tables,
# onSchemaChange procedures): such scripts never repeat, so they are not written to disk.
_ONE_OFF = re.compile(r"staging_table_temp_|_df_temp_|df_osc_")


def set_cache_dir(path: Path | str | None) -> None:
    """Keep translations under `path` on disk (None: only $LAKEHOUSE_HOME/translate-cache, if set)."""
    global _cache_dir
    _cache_dir = Path(path) if path is not None else None
    _compile.cache_clear()


def _disk_dir() -> Path | None:
    if _cache_dir is not None:
        return _cache_dir
    home = os.environ.get("LAKEHOUSE_HOME")
    return Path(home) / "translate-cache" if home else None


def _encode(compiled: _Compiled) -> bytes:
    items = [{"external": dataclasses.asdict(i)} if isinstance(i, _ExternalTable) else i for i in compiled.items]
    return orjson.dumps({"items": items, "tables": sorted(compiled.tables)})


def _decode(data: bytes) -> _Compiled:
    def tuples(value):
        return tuple(tuples(v) for v in value) if isinstance(value, list) else value

    loaded = orjson.loads(data)
    items = []
    for item in loaded["items"]:
        if isinstance(item, dict):
            items.append(_ExternalTable(**{k: tuples(v) for k, v in item["external"].items()}))
        else:
            items.append(item)
    return _Compiled(tuple(items), frozenset(tuple(t) for t in loaded["tables"]))


def _compile_script(sql: str, default_project: str) -> _Compiled:
    """Translate a script (a cache miss): the one place this module imports the translator."""
    from lakehouse.engine import translate

    return translate._compile_script(sql, default_project)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _compile(sql: str, default_project: str) -> _Compiled:
    directory = _disk_dir()
    if directory is None or _ONE_OFF.search(sql):
        return _compile_script(sql, default_project)
    key = hashlib.sha256(f"{_VERSION}\0{default_project}\0{sql}".encode()).hexdigest()
    path = directory / key[:2] / f"{key}.json"
    try:
        return _decode(path.read_bytes())
    except (OSError, ValueError, TypeError, KeyError):
        pass
    items = _compile_script(sql, default_project)
    if any(isinstance(item, Block) for item in items.items):
        return items  # procedural scripts are rare; their Blocks are not serialised
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_bytes(_encode(items))
        os.replace(temporary, path)
    except OSError as error:
        log.debug("translation cache not written (%s)", error)
    return items


def _library_path(uri: str, gcs_resolver: Callable[[str], str] | None) -> str:
    """Return the local file standing in for a JavaScript library URI (gs:// or storage.googleapis.com)."""
    for prefix in ("https://storage.googleapis.com/", "http://storage.googleapis.com/"):
        if uri.startswith(prefix):
            uri = "gs://" + uri[len(prefix) :]
    if uri.startswith("gs://") and gcs_resolver is not None:
        return gcs_resolver(uri)
    return uri


def translate_script(sql: str, *, default_project: str, gcs_resolver: Callable[[str], str] | None = None) -> list[str]:
    """Return the DuckDB statements that run a BigQuery script (one or more ';'-separated statements).

    A procedural script (loops, BREAK/CONTINUE) returns Blocks among the statements: run every item with
    lakehouse.engine.query.run_item.

    Run them in order on one connection prepared with functions.register_functions() and SET TimeZone='UTC'.
    Translations are cached by (sql, default_project) in memory and on disk (set_cache_dir, or
    $LAKEHOUSE_HOME/translate-cache); external tables are re-rendered each call because they depend
    on which local files exist.
    Raises UnsupportedConstruct (construct and hint) and TranslationError (unparsable SQL).
    """
    out = []
    for item in _compile(sql, default_project).items:
        if isinstance(item, _ExternalTable):
            item = _render_external(item, gcs_resolver)
        elif isinstance(item, Block) and item.libraries:
            item = dataclasses.replace(
                item, libraries=tuple((uri, _library_path(uri, gcs_resolver)) for uri in item.libraries)
            )
        out.append(item)
    return out


def referenced_tables(sql: str, *, default_project: str) -> set[tuple[str, str, str]]:
    """Return (project, dataset, table) of every table the script reads or writes, CTE names excluded.

    Two-part names get `default_project`; one-part names (CTEs, temp tables) are not returned.
    Served from the translation cache; a script that does not translate (an unsupported construct)
    is read statement by statement, skipping what cannot be read.
    Raises TranslationError for SQL that cannot be parsed.
    """
    try:
        return set(_compile(sql, default_project).tables)
    except UnsupportedConstruct:
        from lakehouse.engine import translate

        return set(translate._referenced(sql, default_project))


# A dotted name of three parts, backticked whole or per part, or bare: a candidate `project.dataset.table`.
# matched from the start of a name only (the look-behind): tried at every character, it cost 90 ms a run on the kit
_THREE_PARTS = re.compile(r"(?<![\w-])`?([A-Za-z][\w-]*)`?\s*\.\s*`?[\w-]+`?\s*\.\s*`?[\w$*-]+`?")


def referenced_projects(sqls: Iterable[str], *, default_project: str, known: Iterable[str] = ()) -> set[str]:
    """Return the projects (catalogs) the scripts name, beyond `default_project` and `known`.

    A script is parsed only when it holds a three-part name whose first part is not a known project
    (a struct field path `t.a.b` can look like one), so the common case costs a regular-expression scan.
    Scripts that do not parse are skipped: they fail later, where their own error is reported.
    """
    seen = {default_project, *known}
    found: set[str] = set()
    for sql in sqls:
        candidates = {m.group(1) for m in _THREE_PARTS.finditer(sql.replace("`.`", "."))}
        if not candidates - seen - found:
            continue
        try:
            tables = referenced_tables(sql, default_project=default_project)
        except TranslationError:
            continue
        found.update(project for project, _, _ in tables if project not in seen)
    return found
