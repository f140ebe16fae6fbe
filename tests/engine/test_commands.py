"""The engine's CLI commands as a user calls them: run, test, query, load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lakehouse.cli import main
from lakehouse.engine.unit_tests import compare

PROJECT = {
    "definitions/orders.sqlx": """
        config { type: "table", assertions: { nonNull: ["order_id"] } }
        select 1 as order_id, date '2026-01-02' as order_date, timestamp '2026-01-02 03:04:05+00' as placed_at,
               cast(null as string) as note, 2.5 as price
    """,
    "definitions/orders_test.sqlx": """
        config { type: "test", dataset: "orders" }
        select 1 as order_id, date '2026-01-02' as order_date,
               timestamp '2026-01-02 03:04:05+00' as placed_at, cast(null as string) as note, 2.5 as price
    """,
}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_run_then_query_json_formats_dates_timestamps_and_nulls(make_project):
    project = make_project(PROJECT)
    assert invoke("run", "--project-dir", project).exit_code == 0

    result = invoke("query", "select * from silver.orders", "--project-dir", project, "--format", "json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [
        {
            "order_id": 1,
            "order_date": "2026-01-02",
            "placed_at": "2026-01-02T03:04:05+00:00",
            "note": None,
            "price": 2.5,
        }
    ]


def test_query_csv_and_a_script_of_several_statements(make_project):
    project = make_project(PROJECT)

    result = invoke(
        "query",
        "declare n int64 default 3; select n * 2 as six, 'a,b' as text",
        "--project-dir",
        project,
        "--format",
        "csv",
    )

    assert result.exit_code == 0, result.output
    assert result.output == 'six,text\n6,"a,b"\n'


def test_query_accepts_sql_that_begins_with_a_comment(make_project):
    project = make_project(PROJECT)

    result = invoke("query", "-- how many = ?\nselect 2 as n -- trailing", "--project-dir", project, "--format", "csv")

    assert result.exit_code == 0, result.output
    assert result.output == "n\n2\n"


def test_query_with_a_misspelt_option_still_fails(make_project):
    project = make_project(PROJECT)

    result = invoke("query", "select 1", "--formt", "json", "--project-dir", project)

    assert result.exit_code == 2
    assert "unexpected extra argument" in result.output


def test_query_error_is_one_clear_line(make_project):
    project = make_project(PROJECT)

    result = invoke("query", "select * from silver.nope", "--project-dir", project)

    assert result.exit_code == 1
    assert "nope" in result.output
    assert "Traceback" not in result.output


def test_run_exit_status_is_1_when_an_assertion_fails(make_project):
    files = dict(PROJECT)
    files["definitions/orders.sqlx"] = """
        config { type: "table", assertions: { nonNull: ["order_id"] } }
        select cast(null as int64) as order_id
    """
    project = make_project(files)

    result = invoke("run", "--project-dir", project)

    assert result.exit_code == 1
    assert "failed" in result.output
    assert "silver_orders_assertions_rowConditions" in result.output


def test_an_actions_or_tags_option_that_names_nothing_runs_nothing(make_project, lakehouse_home):
    # `--actions "$SELECTED"` with an empty variable: a run of the whole graph would be a surprise
    project = make_project(PROJECT)

    for option, value in (("--actions", " , "), ("--tags", "")):
        result = invoke("run", "--project-dir", project, option, value)

        assert result.exit_code == 2, result.output
        assert result.output.strip() == f"error: {option} was given but names nothing; leave it out to run every action"
    assert not (lakehouse_home / "warehouse").exists()


def test_dry_run_says_what_will_run_and_creates_nothing(make_project, lakehouse_home):
    project = make_project(PROJECT)

    result = invoke("run", "--project-dir", project, "--dry-run")

    assert result.exit_code == 0, result.output
    assert "will run" in result.output
    assert not (lakehouse_home / "warehouse" / "test-local.duckdb").exists()


def test_lakehouse_test_passes_and_reports_differences_as_the_cli(make_project):
    project = make_project(PROJECT)
    passed = invoke("test", "--project-dir", project)
    assert passed.exit_code == 0
    assert passed.output.startswith("passed orders_test") and "[green]" not in passed.output

    (project / "definitions/orders_test.sqlx").write_text(
        'config { type: "test", dataset: "orders" }\n'
        "select 2 as order_id, date '2026-01-02' as order_date, timestamp '2026-01-02 03:04:05+00' as placed_at,"
        " cast(null as string) as note, 2.5 as price\n"
    )
    result = invoke("test", "--project-dir", project)

    assert result.exit_code == 1
    assert 'For row 0 and column "order_id": expected "2", but saw "1".' in result.output
    assert "0 passed, 1 failed" in result.output


def test_compare_follows_the_cli_order_of_checks():
    assert compare("t", [{"a": 1.0}], [{"a": 1.0}, {"a": 2.0}]) == ["Expected 2 rows, but saw 1 rows."]
    assert compare("t", [{"a": 1.0}], [{"b": 1.0}]) == ['Expected columns "b", but saw "a".']
    assert compare("t", [{"A": 1.0}], [{"a": 1.0}]) == []
    assert compare("t", [{"a": None}], [{"a": 1.0}]) == ['For row 0 and column "a": expected "1", but saw null.']
    assert compare("t", [{"a": "1"}], [{"a": 1.0}]) == [
        'For row 0 and column "a": expected type "number", but saw type "string".'
    ]


def test_load_makes_a_public_data_source_available(make_project, tmp_path):
    project = make_project(
        {
            "definitions/shakespeare.sqlx": """
                config { type: "declaration", database: "bigquery-public-data", schema: "samples", name: "shakespeare" }
            """,
            "definitions/words.sqlx": """
                config { type: "table" }
                select word, sum(word_count) as n from ${ref("shakespeare")} group by word
            """,
        }
    )
    csv_file = tmp_path / "shakespeare.csv"
    csv_file.write_text("word,word_count\nto,3\nbe,2\nto,1\n")

    loaded = invoke("load", "bigquery-public-data.samples.shakespeare", csv_file, "--project-dir", project)
    assert loaded.exit_code == 0, loaded.output
    assert "3 rows" in loaded.output
    assert invoke("run", "--project-dir", project).exit_code == 0

    result = invoke("query", "select * from silver.words order by word", "--project-dir", project, "--format", "json")
    assert json.loads(result.output) == [{"word": "be", "n": 2}, {"word": "to", "n": 4}]


def test_load_of_a_file_it_already_appended_appends_nothing(make_project, tmp_path):
    """A load killed after its commit, before it printed, is run again: the table must not double."""
    project = make_project(PROJECT)
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_text("id,v\n1,a\n2,b\n")
    second.write_text("id,v\n3,c\n")
    count = ("query", "select count(*) as n from ds.t", "--project-dir", project, "--format", "csv")

    assert invoke("load", "ds.t", first, "--project-dir", project).exit_code == 0
    again = invoke("load", "ds.t", first, second, "--project-dir", project)
    assert invoke(*count).output == "n\n3\n"
    assert "skipped, already loaded into" in " ".join(again.output.split())
    assert str(first) in again.output.replace("\n", "")
    first.write_text("id,v\n1,a\n2,b\n4,d\n")  # changed since: loaded again
    assert invoke("load", "ds.t", first, "--project-dir", project).exit_code == 0
    assert invoke(*count).output == "n\n6\n"
    assert invoke("load", "ds.t", second, "--replace", "--project-dir", project).exit_code == 0
    assert invoke(*count).output == "n\n1\n"


def test_help_lists_the_engine_commands():
    result = invoke("--help")

    for command in ("compile", "run", "test", "query", "load"):
        assert f"  {command} " in result.output


def test_an_error_message_with_brackets_prints_them_not_a_markup_traceback(make_project, tmp_path):
    """Errors are printed with rich; text the user gave (or SQL) may hold `[/bold]`, which is not markup."""
    project = make_project(PROJECT)
    sample = tmp_path / "sample.csv"
    sample.write_text("a\n1\n")

    result = invoke("load", "a[/bold]", sample, "--project-dir", project)

    assert result.exit_code == 2
    assert result.output.startswith("error: 'a[/bold]' is not dataset.table or project.dataset.table")


def test_a_run_prints_an_action_named_with_brackets_as_it_is(make_project):
    project = make_project({
        "definitions/odd.js": 'publish("odd[/bold]", { type: "table" }).query("select 1 as n");',
        "definitions/check.js": 'assert("check[/red]").query("select 1 as n");',
    })  # fmt: skip

    result = invoke("run", "--project-dir", project)

    assert "Traceback" not in result.output
    assert result.exit_code == 1, result.output
    assert "check[/red]: assertion" in " ".join(result.output.split())


def test_an_empty_query_says_so(make_project):
    project = make_project(PROJECT)

    for sql in ("", "  ", "-- only a comment", "/* a */ ;"):
        result = invoke("query", sql, "--project-dir", project)

        assert result.exit_code == 2, (sql, result.output)
        assert result.output == "error: no SQL to run: the query is empty or only comments\n"
    unreadable = invoke("query", "select 'abc", "--project-dir", project)
    assert unreadable.exit_code == 1 and unreadable.output.startswith("error: cannot read the SQL: ")


def test_load_takes_the_names_bigquery_takes_and_names_the_part_it_does_not(make_project, tmp_path):
    project = make_project(PROJECT)
    (tmp_path / "a.csv").write_text("a\n1\n")

    quote = invoke("load", 'raw.x"y', tmp_path / "a.csv", "--project-dir", project)
    dash = invoke("load", "raw-data.t", tmp_path / "a.csv", "--project-dir", project)
    spaced = invoke("load", "raw.daily sales-2026 ü", tmp_path / "a.csv", "--project-dir", project)

    assert quote.exit_code == dash.exit_code == 2
    assert " ".join(quote.output.split()) == (
        "error: 'x\"y' is not a BigQuery table name: letters, marks, digits, underscores, dashes and spaces only"
    )
    assert " ".join(dash.output.split()) == (
        "error: 'raw-data' is not a BigQuery dataset name: letters, digits and underscores only"
    )
    assert spaced.exit_code == 0, spaced.output
    assert invoke("query", "select a from raw.`daily sales-2026 ü`", "--project-dir", project).exit_code == 0


@pytest.mark.parametrize(
    ("lines", "named"),
    [
        # DuckDB's sniffer took the first lines for a preamble to skip, or read every line as one column
        (["a,b,c", "1,2,3", "4,5", "6,7,8,9"], "line 3 has 2 field(s) where line 1 has 3"),
        (["a,b,c", *(f"{i},{i},{i}" for i in range(50)), "4,5,6,7"], "line 52 has 4 field(s) where line 1 has 3"),
        # past the lines the sniffer reads: DuckDB's own line number
        (["a,b,c", *(f"{i},{i},{i}" for i in range(30000)), "4,5", "7,8,9"], "line 30002 has 2 field(s)"),
    ],
    ids=["early", "after-50-lines", "after-30000-lines"],
)
def test_load_of_a_csv_whose_lines_differ_names_the_line_and_loads_nothing(make_project, tmp_path, lines, named):
    project = make_project(PROJECT)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("\n".join(lines) + "\n")

    result = invoke("load", "raw.t", ragged, "--project-dir", project)

    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert f"could not load {ragged} into" in message
    assert f"{ragged} {named}" in message
    assert "every line of a CSV needs the same fields" in message
    tables = invoke("query", "select table_name from `region-us`.INFORMATION_SCHEMA.TABLES",
                    "--project-dir", project, "--format", "csv")  # fmt: skip
    assert tables.exit_code == 0, tables.output
    assert "\nt\n" not in tables.output


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (b'a,b\n"unterminated,2\n3,4\n', "line 2: a quoted field is not closed before the end of the file"),
        (b"a,b\n\xff\xfe,1\n", "line 2: Invalid unicode"),
        (b'a,b\n"two\nlines",2\n3,4,5\n', "line 4 has 3 field(s) where line 1 has 2"),
    ],
    ids=["unclosed-quote", "not-utf8", "ragged-after-a-quoted-newline"],
)
def test_load_of_a_malformed_csv_names_the_line_and_why(make_project, tmp_path, content, named):
    project = make_project(PROJECT)
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)

    result = invoke("load", "raw.t", bad, "--project-dir", project)

    assert result.exit_code == 1
    assert f"{bad} {named}" in " ".join(result.output.split())


def test_load_names_the_file_it_cannot_read_by_its_extension(make_project, tmp_path):
    project = make_project(PROJECT)
    (tmp_path / "notes").write_text("a\n1\n")
    (tmp_path / "a.csv").write_text("a\n1\n")
    (tmp_path / "b.jsonl").write_text('{"a": 1}\n')

    bare = invoke("load", "raw.t", tmp_path / "notes", "--project-dir", project)
    mixed = invoke("load", "raw.t", tmp_path / "a.csv", tmp_path / "b.jsonl", "--project-dir", project)

    assert bare.exit_code == mixed.exit_code == 2
    assert "notes (no extension)" in " ".join(bare.output.split())
    assert "got .csv, .jsonl together" in " ".join(mixed.output.split())


LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")


def test_the_console_script_keeps_output_and_exit_codes(tmp_path, make_project):
    # the script ends with os._exit (no interpreter teardown): what it printed must still arrive, codes kept
    shown = subprocess.run([LAKEHOUSE, "--help"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.rstrip().endswith("stop cleanly.")  # the last line of the command list

    env = {**os.environ, "LAKEHOUSE_HOME": str(tmp_path / "home")}
    empty = subprocess.run([LAKEHOUSE, "query", ""], capture_output=True, text=True, timeout=120, env=env)
    assert (empty.returncode, empty.stderr.strip()) == (2, "error: no SQL to run: the query is empty or only comments")

    unknown = subprocess.run([LAKEHOUSE, "nosuch"], capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2
    assert "No such command 'nosuch'" in unknown.stderr

    # a run leaves worker threads behind: they are joined, and the script still ends
    project = make_project(PROJECT)
    ran = subprocess.run([LAKEHOUSE, "run", "--project-dir", str(project)], capture_output=True, text=True,
                         timeout=300, env=env)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert [line for line in ran.stdout.splitlines() if line.startswith("success:")] == ["success: 2 success"]


@pytest.mark.parametrize(("given", "seen"), [(None, "1"), ("4", "4")])
def test_the_cli_keeps_openblas_to_one_thread_unless_told_otherwise(given, seen):
    # numpy's OpenBLAS threads spin after the import, CPU the actions need on a small machine
    env = {key: value for key, value in os.environ.items() if key != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    code = "import os, lakehouse.cli; print(os.environ['OPENBLAS_NUM_THREADS'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == seen


@pytest.mark.parametrize("width", [80, 200])
def test_the_run_summary_fits_the_console_and_folds_only_long_action_names(monkeypatch, width):
    from datetime import UTC, datetime

    from rich.console import Console

    from lakehouse import commands
    from lakehouse.engine.records import ActionResult, RunRecord

    long_name = "lakehouse-dev.assertions.silver_restricted_user_activity_quarantine_assertions_rowConditions"
    record = RunRecord(run_id="r1", project_dir=".", started_at=datetime.now(UTC), status="failed", actions=[
        ActionResult(name="lakehouse-dev.silver.orders", type="incremental", status="success", duration_s=1.5,
                     rows_affected=1234567),
        ActionResult(name=long_name, type="assertion", status="failed", severity="warn", failing_rows=3,
                     error="3 failing row(s)"),
        ActionResult(name="lakehouse-dev.gold.kept", type="table", status="success", note="unchanged since run r0"),
    ])  # fmt: skip
    console = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    monkeypatch.setattr(commands, "console", console)

    commands._print_summary(record, "lakehouse-dev")

    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= width
    rows = [line for line in lines if line.startswith("│")]
    assert "silver.orders" in rows[0] and "incremental" in rows[0] and "1,234,567" in rows[0]
    assert "warn" in rows[1] and rows[1].rstrip(" │").endswith("3")
    # the long name is all there, folded over rows of its own column only when the console is narrow
    folded = "".join(row.split("│")[1].strip() for row in rows[1:])
    assert folded == long_name.removeprefix("lakehouse-dev.")
    assert (len(rows) > 2) == (width < 120)
    assert "gold.kept" not in "\n".join(rows)
    assert "1 action(s) unchanged" in " ".join(lines)
    assert "warn assertions.silver_restricted_user" in " ".join(" ".join(lines).split())
    assert " ".join(lines).replace(" ", "").endswith("3failingrow(s)failed:1failed,2success")
