"""The JSON parse-once rewrite: one parse per column shared by its extractions, with the very same results."""

from __future__ import annotations

import duckdb
import pytest

from lakehouse.engine import translate
from lakehouse.engine.translate import register_functions, translate_script

PROJECT = "lakehouse-dev"

# Lines as they reach a batch: objects, a duplicate key, keys that need quoting or escapes, nested and
# array values, JSON that is not an object, JSON null, text that is not JSON, an empty line and NULL.
LINES = [
    '{"a":"x","b":2,"c d":"quoted key","n":[10,{"m":"deep"}],"e":null,"s":["x","y"]}',
    '{"a":1,"a":2}',
    '{"a":{"k":1},"b":[1,2],"c d":true}',
    '{"a":"\\u0000z\\ud83d\\ude00","b":12345678901234567890123,"\\u0061x":"escaped key"}',
    '{"a":1e400,"b":-0.0,"n":[]}',
    '{"c\\"q":"inner quote","a":"tab\\tand\\nline"}',
    '["a","b"]',
    '"a"',
    "null",
    "42",
    "not json",
    '{"a":"cut',
    "",
    None,
]

# One guarded and one unguarded projection of each form: JSON_VALUE, JSON_QUERY, JSON_EXTRACT,
# JSON_EXTRACT_SCALAR, the ARRAY forms, a subscript path and quoted names.
GUARDED = """
select
  r,
  if(ok, json_value(r, '$.a'), null) as a_text,
  if(ok, json_query(r, '$.a'), null) as a_json,
  if(ok, json_extract_scalar(r, '$.b'), null) as b_text,
  if(ok, json_extract(r, '$.b'), null) as b_json,
  if(ok, json_value(r, '$."c d"'), null) as cd_text,
  if(ok, json_query(r, '$.n[1].m'), null) as deep,
  if(ok, json_value(r, '$.n[0]'), null) as first,
  if(ok, json_value(r, '$.ax'), null) as escaped_key,
  if(ok, json_value(r, '$."c\\\\"q"'), null) as quoted_quote,
  if(ok, json_query_array(r, '$.n'), null) as n_items,
  if(ok, json_value_array(r, '$.s'), null) as s_values,
  if(ok, json_value(r, '$.e'), 'no') as e_text,
  if(ok, json_query(r, '$.e'), null) as e_json,
from (select r, safe.parse_json(r) is not null as ok from lines)
"""


def connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    register_functions(con)
    con.execute(f"ATTACH ':memory:' AS \"{PROJECT}\"")
    con.execute("CREATE TABLE lines (r VARCHAR)")
    con.executemany("INSERT INTO lines VALUES (?)", [[line] for line in LINES])
    return con


@pytest.fixture
def con():
    connection = connect()
    yield connection
    connection.close()


def translated(sql: str, *, parse_once: bool, monkeypatch) -> str:
    """Return the one DuckDB statement of `sql`, translated with or without the rewrite (no cache)."""
    rewrites = [r for r in translate._EXPRESSION_REWRITES if parse_once or r is not translate._parse_json_once]
    with monkeypatch.context() as patch:
        patch.delenv("LAKEHOUSE_HOME", raising=False)
        patch.setattr(translate, "_EXPRESSION_REWRITES", rewrites)
        translate.set_cache_dir(None)
        try:
            [statement] = translate_script(sql, default_project=PROJECT)
        finally:
            translate._compile.cache_clear()
    return statement


def both_ways(con, sql: str, monkeypatch) -> tuple[list, list, str]:
    """Return the rows of `sql` without and with the rewrite, and the rewritten statement."""
    plain = translated(sql, parse_once=False, monkeypatch=monkeypatch)
    once = translated(sql, parse_once=True, monkeypatch=monkeypatch)
    return con.execute(plain).fetchall(), con.execute(once).fetchall(), once


def test_guarded_extractions_parse_once_and_return_the_same_rows(con, monkeypatch):
    plain, once, statement = both_ways(con, GUARDED, monkeypatch)
    assert once == plain
    # one parse of r for the thirteen extractions: the guard's own JSON(r), and one json_extract of a list
    assert statement.count("TRY(JSON_EXTRACT(r, [") == 1
    assert statement.count("JSON_EXTRACT(") == 1
    rows = {row[0]: row[1:] for row in once}
    assert rows['{"a":1,"a":2}'][:2] == ("1", "1")  # the first of duplicate keys, as without the rewrite
    assert rows[LINES[0]][4] == "quoted key"
    assert rows[LINES[0]][5:7] == ('"deep"', "10")
    assert rows[LINES[0]][11:] == (None, "null")  # JSON null: NULL text, the JSON token null
    assert rows[LINES[3]][0] == "\x00z\U0001f600"
    assert rows[LINES[3]][7] == "escaped key"
    assert rows[LINES[5]][8] == "inner quote"
    assert rows[LINES[2]][0:2] == (None, '{"k":1}')  # JSON_VALUE of an object is NULL
    assert rows[LINES[0]][9:11] == (["10", '{"m":"deep"}'], ["x", "y"])
    assert rows[LINES[4]][9:11] == ([], None)
    for line in ("not json", '{"a":"cut', "", '["a","b"]', '"a"', "null", "42", None):
        assert rows[line][:10] == (None,) * 10, line
        assert rows[line][11] == ("no" if line in ("not json", '{"a":"cut', "", None) else None)


def test_unguarded_extraction_of_text_that_is_not_json_still_raises(con, monkeypatch):
    sql = "select json_value(r, '$.a') as a, json_query(r, '$.b') as b from lines"
    for parse_once in (False, True):
        with pytest.raises(duckdb.InvalidInputException, match="Malformed JSON"):
            con.execute(translated(sql, parse_once=parse_once, monkeypatch=monkeypatch)).fetchall()
    valid = "select json_value(r, '$.a') as a, json_query(r, '$.b') as b from lines where r like '{\"a\":%}'"
    plain, once, statement = both_ways(con, valid, monkeypatch)
    assert once == plain and len(once) == 5
    assert "__lakehouse_json_0" in statement


def test_stars_do_not_show_the_parsed_column(con, monkeypatch):
    sql = """
    select *, l.*, json_value(r, '$.a') as a, json_query(l.r, '$.b') as b
    from (select r, length(r) as size from lines) as l
    where r like '{%}'
    """
    plain = translated(sql, parse_once=False, monkeypatch=monkeypatch)
    once = translated(sql, parse_once=True, monkeypatch=monkeypatch)
    assert "__lakehouse_json_0" in once
    assert [d[0] for d in con.execute(once).description] == [d[0] for d in con.execute(plain).description]
    assert con.execute(once).fetchall() == con.execute(plain).fetchall()


@pytest.mark.parametrize(
    "sql",
    [
        # one extraction: nothing to share
        "select json_value(r, '$.a'), r from lines",
        # a path that is not a constant
        "select json_value(r, concat('$.', 'a')), json_value(r, concat('$.', 'b')) from lines",
        # GROUP BY repeats the extractions
        "select json_value(r, '$.a'), json_value(r, '$.b'), count(*) from lines where r like '{%}' group by 1, 2",
        # a join: which side a column is from is not known
        "select json_value(l.r, '$.a'), json_value(l.r, '$.b') from lines as l cross join lines as m",
        # a subquery of an expression may read the outer query's columns
        "select (select json_value(r, '$.a') || json_value(r, '$.b') from lines limit 1) from lines",
    ],
)
def test_a_parse_that_cannot_be_shared_is_left_alone(sql, monkeypatch):
    assert translated(sql, parse_once=True, monkeypatch=monkeypatch) == translated(
        sql, parse_once=False, monkeypatch=monkeypatch
    )


def test_each_column_gets_its_own_parse(con, monkeypatch):
    sql = """
    select json_value(r, '$.a') as a, json_query(r, '$.n') as n, json_value(s, '$.k') as k, json_value(s, '$.v') as v
    from (select r, '{"k":"key","v":[1]}' as s from lines where r like '{%}')
    """
    plain, once, statement = both_ways(con, sql, monkeypatch)
    assert once == plain
    assert statement.count("TRY(JSON_EXTRACT(") == 2
    assert {row[2:] for row in once} == {("key", None)}
