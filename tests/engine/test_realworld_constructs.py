"""Constructs real Dataform projects use, run on real DuckDB with BigQuery's documented results."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from lakehouse.engine import query
from lakehouse.engine.translate import UnsupportedConstruct, register_functions, translate_script

PROJECT = "acme-analytics"
NOW = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)


@pytest.fixture
def con():
    connection = duckdb.connect(":memory:")
    connection.execute("SET TimeZone = 'UTC'")
    register_functions(connection, NOW)
    connection.execute(f"ATTACH ':memory:' AS \"{PROJECT}\"")
    connection.execute(f'CREATE SCHEMA "{PROJECT}".web')
    yield connection
    connection.close()


def run(con, sql: str):
    """Translate a BigQuery script, execute every statement, return the last statement's rows."""
    rows = None
    for statement in translate_script(sql, default_project=PROJECT):
        rows = con.execute(statement).fetchall()
    return rows


# -- system variables ----------------------------------------------------------------------------------


def test_system_variables_read_as_a_bigquery_job_with_no_default_dataset(con):
    rows = run(
        con,
        """
        select @@project_id, @@dataset_project_id, @@dataset_id, @@time_zone,
               @@script.creation_time, @@script.bytes_billed + @@script.num_child_jobs,
               length(@@script.job_id) > 0, @@session_id is null
        """,
    )

    assert rows == [(PROJECT, PROJECT, None, "UTC", NOW, 0, True, True)]


def test_set_query_label_is_a_no_op_and_the_script_goes_on(con):
    rows = run(con, "SET @@query_label = 'team:growth,job:daily'; select 1 as one")

    assert rows == [(1,)]


def test_set_reservation_is_a_no_op_too(con):
    rows = run(con, "SET @@reservation = 'none'; select 1 as one")

    assert rows == [(1,)]


def test_set_query_label_inside_if_is_a_no_op_too(con):
    rows = run(con, "declare n int64 default 1; if n = 1 then set @@query_label = 'a:b'; end if; select n")

    assert rows == [(1,)]


@pytest.mark.parametrize(
    ("sql", "construct"),
    [("SET @@dataset_id = 'web'", "SET @@dataset_id"), ("select @@last_job_id", "@@last_job_id")],
)
def test_system_variables_without_a_local_meaning_are_named(sql, construct):
    with pytest.raises(UnsupportedConstruct) as caught:
        translate_script(sql, default_project=PROJECT)

    assert caught.value.construct == construct


# -- arrays of structs (GA4 export shape) --------------------------------------------------------------

EVENTS = """
create table web.events as
select 'page_view' as event_name, 1 as user_id,
  [struct('page' as key, struct(cast(null as string) as string_value, 7 as int_value) as value),
   struct('title' as key, struct('Home' as string_value, cast(null as int64) as int_value) as value)] as event_params,
  struct([struct('sku1' as item_id, 2 as quantity), struct('sku2' as item_id, 3 as quantity)] as items) as ecommerce
union all
select 'scroll', 2, [struct('percent' as key, struct(cast(null as string) as string_value, 90 as int_value) as value)],
  struct(cast([] as array<struct<item_id string, quantity int64>>) as items)
"""


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # Unaliased UNNEST: the struct's fields are columns; nested struct `value` stays a struct.
        (
            "select event_name, (select value.int_value from unnest(event_params) where key = 'page') as page "
            "from web.events order by event_name",
            [("page_view", 7), ("scroll", None)],
        ),
        (
            "select e.user_id, (select value.string_value from unnest(e.event_params) where key = 'title') "
            "from web.events as e order by 1",
            [(1, "Home"), (2, None)],
        ),
        # A nested repeated record, flattened with a comma join (lateral) and summed in a subquery.
        ("select item_id from web.events as e, unnest(e.ecommerce.items) order by item_id", [("sku1",), ("sku2",)]),
        (
            "select user_id, (select sum(quantity) from unnest(ecommerce.items)) from web.events order by 1",
            [(1, 5), (2, None)],
        ),
        (
            "select key from web.events cross join unnest(event_params) order by key",
            [("page",), ("percent",), ("title",)],
        ),
        # Aliased UNNEST WITH OFFSET counts from 0.
        (
            "select p.key, n from web.events, unnest(event_params) as p with offset as n where user_id = 1 order by n",
            [("page", 0), ("title", 1)],
        ),
        # ARRAY(SELECT AS STRUCT ...) builds an array of structs; STRUCT equality compares field by field.
        (
            "select array(select as struct key, value.int_value from unnest(event_params) order by key) "
            "from web.events where user_id = 1",
            [([{"key": "page", "int_value": 7}, {"key": "title", "int_value": None}],)],
        ),
        (
            "select struct(1 as a, 'x' as b) = struct(1 as a, 'x' as b), struct(1 as a, 'x' as b) = struct(1, 'y')",
            [(True, False)],
        ),
    ],
)
def test_arrays_of_structs_read_as_in_bigquery(con, sql, expected):
    run(con, EVENTS)

    assert run(con, sql) == expected


SALES = """
create table web.sales as
select 1 as id, [struct([struct([25.0, 75.0] as prices), struct([30.0] as prices),
                        struct(cast([] as array<float64>) as prices), struct(cast(null as array<float64>) as prices)]
                       as sales)] as my_array
union all select 2, cast([] as array<struct<sales array<struct<prices array<float64>>>>>)
union all select 3, cast(null as array<struct<sales array<struct<prices array<float64>>>>>)
"""


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # The documented example: FLATTEN concatenates every `prices` array; an empty or NULL one adds nothing.
        (
            "select id, flatten(my_array.sales.prices) from web.sales order by id",
            [(1, [25.0, 75.0, 30.0]), (2, []), (3, None)],
        ),
        (
            "select id, p from web.sales as t, unnest(t.my_array.sales.prices) as p order by id, p",
            [(1, 25.0), (1, 30.0), (1, 75.0)],
        ),
        # The correlated join with a path: an implicit UNNEST and FLATTEN.
        ("select p from web.sales as t, t.my_array.sales.prices as p order by p", [(25.0,), (30.0,), (75.0,)]),
        # A scalar field of each element (GA4's event_params.key); the NULL int_value is kept, as BigQuery does.
        (
            "select e.user_id, k from web.events as e, unnest(e.event_params.key) as k order by 1, 2",
            [(1, "page"), (1, "title"), (2, "percent")],
        ),
        (
            "select user_id, array_length(flatten(event_params.value.int_value)) from web.events order by 1",
            [(1, 2), (2, 1)],
        ),
        # IN UNNEST(path), which sqlglot writes as a list search.
        (
            "select user_id, 'title' in unnest(event_params.key), 7 in unnest(e.event_params.value.int_value) "
            "from web.events as e order by 1",
            [(1, True, True), (2, False, False)],
        ),
        # In a correlated subquery (the path belongs to the outer query), unaliased, and through a struct.
        (
            "select user_id, (select count(*) from unnest(event_params.key)), "
            "(select sum(q) from unnest(ecommerce.items.quantity) as q) from web.events order by 1",
            [(1, 2, 5), (2, 1, None)],
        ),
        (
            "with e as (select * from web.events) "
            "select string_agg(k, ',' order by k) from e, unnest(e.event_params.key) k",
            [("page,percent,title",)],
        ),
    ],
)
def test_a_path_through_an_array_is_flattened_as_bigquery_does(con, sql, expected):
    execute(con, EVENTS + ";" + SALES)

    assert execute(con, sql) == expected


def test_a_field_of_an_array_outside_unnest_and_flatten_fails_as_in_bigquery(con):
    execute(con, EVENTS)

    with pytest.raises(duckdb.BinderException, match="Cannot extract field 'key'"):
        execute(con, "select event_params.key from web.events")


VISITS = """
create table web.visits as
select 1 as id, 'x' as user_id,
  [struct('/a' as page_path, 'u1' as next_user_id, 10 as n), struct('/b' as page_path, cast(null as string), 20)]
  as following_pages
union all select 2, 'y', cast([] as array<struct<page_path string, next_user_id string, n int64>>)
union all select 3, 'z', [struct(cast(null as string) as page_path, 'u3' as next_user_id, 5 as n)]
"""


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # Unqualified fields of the aliased UNNEST, beside `fp.field` and `fp` as the whole struct.
        (
            "select id, page_path, fp.n, fp from web.visits as t, unnest(t.following_pages) as fp order by id, n",
            [
                (1, "/a", 10, {"page_path": "/a", "next_user_id": "u1", "n": 10}),
                (1, "/b", 20, {"page_path": "/b", "next_user_id": None, "n": 20}),
                (3, None, 5, {"page_path": None, "next_user_id": "u3", "n": 5}),
            ],
        ),
        # DFE's session_details: a correlated scalar subquery over the value table; no rows gives NULL.
        (
            "select id, (select min_by(page_path, n) from unnest(following_pages) as fp "
            "where fp.next_user_id is not null) from web.visits order by id",
            [(1, "/a"), (2, None), (3, None)],
        ),
        # A column of the table keeps its meaning (user_id is not a field); WITH OFFSET counts from 0.
        (
            "select user_id, page_path, i from web.visits, unnest(following_pages) as fp with offset as i "
            "where next_user_id is not null order by user_id",
            [("x", "/a", 0), ("z", None, 0)],
        ),
        # An unaliased UNNEST in a subquery reads its own `n`, not the outer value table's.
        (
            "select page_path, (select count(*) from unnest(following_pages) where n > 15) "
            "from web.visits, unnest(following_pages) as fp where id = 1 order by 1",
            [("/a", 1), ("/b", 1)],
        ),
        # An inner value table's field hides the outer one's of the same name.
        (
            "select page_path, (select max(n) from unnest(following_pages) as q) "
            "from web.visits, unnest(following_pages) as fp where id = 1 order by 1",
            [("/a", 20), ("/b", 20)],
        ),
    ],
)
def test_fields_of_an_aliased_unnest_are_read_unqualified_as_a_value_table(con, sql, expected):
    execute(con, VISITS)

    assert execute(con, sql) == expected


def test_a_select_as_struct_in_from_is_a_value_table_of_its_fields(con):
    """DFE's flattened_entity_version pivots the rows of a `FROM (SELECT AS STRUCT key, … GROUP BY key)`."""
    execute(con, VISITS)

    assert execute(con, "select * from (select as struct 1 as x, 'a' as y)") == [(1, "a")]
    assert execute(
        con,
        "select id, (select as struct any_value(if(page_path = '/a', n, null)) as a, count(*) as pages "
        "from (select as struct fp.page_path, sum(fp.n) as n from unnest(following_pages) as fp "
        "group by fp.page_path)) from web.visits order by id",
    ) == [(1, {"a": 10, "pages": 2}), (2, {"a": None, "pages": 0}), (3, {"a": None, "pages": 1})]


def test_join_using_a_field_of_two_value_tables(con):
    """DFE's flattened_entity_version: the fields of `data` and `hidden_data`, joined USING (key); the key
    of the LEFT JOIN is the left side's, so an unmatched `a` keeps its key."""
    execute(
        con,
        "create table web.entity as "
        "select 1 as id, [struct('a' as key, ['1'] as value), struct('b' as key, ['2', '3'] as value)] as data, "
        "[struct('b' as key, ['9'] as value)] as hidden_data "
        "union all select 2, [struct('c' as key, ['4'] as value)], "
        "cast([] as array<struct<key string, value array<string>>>)",
    )

    rows = execute(
        con,
        "select id, array(select as struct key, array_length(array_concat_agg(data_combined.value)) as n, "
        "logical_or(hidden_data.value is not null) as hidden "
        "from unnest(array_concat(data, hidden_data)) as data_combined "
        "left join unnest(hidden_data) as hidden_data using (key) group by key order by key) "
        "from web.entity order by id",
    )

    assert rows == [
        (1, [{"key": "a", "n": 1, "hidden": False}, {"key": "b", "n": 3, "hidden": True}]),
        (2, [{"key": "c", "n": 1, "hidden": False}]),
    ]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # DFE's register_entity_version: the ON compares the left side only; an element joins where it holds.
        (
            "select t.id, fp.n, v from web.visits as t left join unnest(t.following_pages) as fp "
            "left join unnest([fp.n, fp.n + 1]) as v on fp.page_path = '/a' order by 1, 2, 3",
            [(1, 10, 10), (1, 10, 11), (1, 20, None), (2, None, None), (3, 5, None)],
        ),
        # The ON reads the element and the left row; a left row with no match keeps one row of NULLs.
        (
            "select t.id, fp.n from web.visits as t left join unnest(t.following_pages) as fp "
            "on fp.n > 15 or t.user_id = 'z' order by 1",
            [(1, 20), (2, None), (3, 5)],
        ),
        # Unaliased: the struct fields are columns of the filtered side too.
        (
            "select t.id, count(n) from web.visits as t left join unnest(t.following_pages) "
            "on next_user_id is not null group by t.id order by 1",
            [(1, 1), (2, 0), (3, 1)],
        ),
    ],
)
def test_left_join_unnest_on_any_condition_keeps_unmatched_rows(con, sql, expected):
    execute(con, VISITS)

    assert execute(con, sql) == expected


# -- procedural BigQuery -----------------------------------------------------------------------------------


def execute(con, sql):
    return query.execute(con, sql, default_project=PROJECT).rows


def test_while_with_continue_and_break(con):
    rows = execute(
        con,
        """
        declare i int64 default 0;
        declare total int64 default 0;
        while i < 10 do
          set i = i + 1;
          if i = 2 then continue; end if;
          if i = 4 then break; end if;
          set total = total + i;
        end while;
        select i, total
        """,
    )

    assert rows == [(4, 4)]  # 1 + 3: 2 was skipped, the loop left at 4


def test_fields_of_a_declared_struct_variable_are_read_in_queries_and_dml(con):
    rows = execute(
        con,
        """
        create table web.log (id int64, added int64, days array<date>);
        insert into web.log values (1, null, null);
        begin
          declare meta struct<records_added int64, days array<date>>;
          set meta = (select as struct 3 as records_added, [date '2025-12-30'] as days);
          update web.log set added = meta.records_added, days = meta.days where id = 1;
        exception when error then
          raise using message = @@error.message;
        end;
        select added, days from web.log
        """,
    )

    assert rows == [(3, [dt.date(2025, 12, 30)])]


def test_row_count_is_the_rows_the_last_dml_statement_changed(con):
    rows = execute(
        con,
        """
        declare before_any int64 default @@row_count;
        declare inserted int64;
        create table web.items (id int64, qty int64);
        insert into web.items values (1, 0), (2, 0), (3, 5);
        set inserted = @@row_count;
        update web.items set qty = qty + 1 where qty = 0;
        select before_any, inserted, @@row_count
        """,
    )

    assert rows == [(None, 3, 2)]


def test_a_loop_waiting_for_the_clock_ends_with_an_injected_clock(con):
    # The wait() helper of DFE-Digital/dfe-analytics-dataform: a busy loop until CURRENT_DATETIME passes a
    # deadline. Outside loops the clock stays at the injected time; inside one, time passes as in BigQuery.
    assert execute(con, "select current_timestamp()") == [(NOW,)]

    rows = execute(
        con,
        """
        declare waiting string default 'TRUE';
        declare deadline datetime default datetime_add(current_datetime, interval 20 millisecond);
        while waiting = 'TRUE' do
          if (deadline < current_datetime) then
            set waiting = 'FALSE';
          end if;
        end while;
        select waiting, current_datetime > deadline
        """,
    )

    assert rows == [("FALSE", True)]
    # Time does not go back after the loop (the runner starts the next action at the injected time again).
    later = f"select current_timestamp() >= timestamp_add(timestamp '{NOW.isoformat()}', interval 20 millisecond)"
    assert execute(con, later) == [(True,)]


def test_loop_with_leave_and_repeat_until(con):
    assert execute(
        con, "declare n int64 default 0; loop set n = n + 1; if n >= 3 then leave; end if; end loop; select n"
    ) == [(3,)]
    # REPEAT runs its body before testing UNTIL: 10, 7, 4, 1, -2.
    assert execute(con, "declare n int64 default 10; repeat set n = n - 3; until n < 0 end repeat; select n") == [(-2,)]


def test_for_in_query_binds_each_row_as_a_struct(con):
    rows = execute(
        con,
        """
        create table web.pages as select 1 as page_id, 'home' as slug union all select 2, 'about';
        create table web.audit (page_id int64, label string);
        for page in (select page_id, slug from web.pages order by page_id) do
          insert into web.audit values (page.page_id * 10, upper(page.slug));
        end for;
        select * from web.audit order by page_id
        """,
    )

    assert rows == [(10, "HOME"), (20, "ABOUT")]


def test_ddl_inside_a_loop_and_inside_if_runs(con):
    rows = execute(
        con,
        """
        declare day date default date '2024-02-27';
        declare made int64 default 0;
        create table web.calendar (day date);
        while day <= date '2024-03-01' do
          create or replace table web.one_day as select day as calendar_day;
          insert into web.calendar select calendar_day from web.one_day;
          set day = date_add(day, interval 1 day);
        end while;
        if (select count(*) from web.calendar) = 4 then
          create table web.done as select 'leap' as note;
          set made = 1;
        end if;
        select count(*), max(c.day), made, (select note from web.done) from web.calendar as c
        """,
    )

    assert rows == [(4, dt.date(2024, 3, 1), 1, "leap")]  # 2024 is a leap year: 27, 28, 29 Feb, 1 Mar


def test_a_loop_that_never_ends_is_stopped(con, monkeypatch):
    monkeypatch.setattr(query, "MAX_ITERATIONS", 50)

    with pytest.raises(RuntimeError, match="a loop ran 50 times"):
        execute(con, "declare n int64 default 0; loop set n = n + 1; end loop")


def test_execute_immediate_into_using_positional_and_named_parameters(con):
    rows = execute(
        con,
        """
        declare above int64;
        declare top_plus string;
        declare source string default 'web.scores';
        create table web.scores as select 1 as score union all select 5 union all select 9;
        execute immediate 'select count(*) from web.scores where score > ?' into above using 2;
        execute immediate format("select cast(max(score) + @bonus as string) from %s", source)
          into top_plus using 100 as bonus;
        execute immediate 'create table web.made_by_dynamic_sql as select 42 as answer';
        select above, top_plus, (select answer from web.made_by_dynamic_sql)
        """,
    )

    assert rows == [(2, "109", 42)]


# -- JavaScript UDFs -----------------------------------------------------------------------------------

PARSE_AGENT = '''
CREATE TEMP FUNCTION parse_agent(agent STRING, weight INT64)
RETURNS STRUCT<browser STRING, weight INT64, tags ARRAY<STRING>>
LANGUAGE js
AS r"""
  if (agent === null) return null;
  return {browser: agent.split("/")[0], weight: weight * 2, tags: agent.split(" ").slice(1)};
""";
'''


def test_a_javascript_udf_runs_in_v8_with_bigquery_types(con):
    rows = execute(
        con,
        PARSE_AGENT + "select parse_agent('Mozilla/5.0 (X11) Gecko', 21), parse_agent(null, 1), "
        "parse_agent('curl/8', null).weight",
    )

    # A NULL argument is JavaScript null, and null * 2 is 0 in JavaScript (so in BigQuery too).
    assert rows == [({"browser": "Mozilla", "weight": 42, "tags": ["(X11)", "Gecko"]}, None, 0)]


INITIALS = '''
create or replace function web.initials(name string, n int64) returns string language js as r"""
  if (name === null) return null;
  return name.split(" ").map(w => w[0]).join("").slice(0, n);
""";
'''


def warehouse(path):
    """A connection with the project's warehouse file attached and in use, as a `lakehouse run` opens it."""
    connection = duckdb.connect(":memory:")
    register_functions(connection, NOW)
    connection.execute(f"ATTACH '{path}' AS \"{PROJECT}\"")
    connection.execute(f'USE "{PROJECT}"')
    connection.execute("CREATE SCHEMA IF NOT EXISTS web")
    return connection


def test_a_persistent_javascript_function_is_called_by_later_actions_and_runs(tmp_path):
    first_run = warehouse(tmp_path / "w.duckdb")
    assert execute(first_run, INITIALS + "select web.initials('Ada Lovelace', 2)") == [("AL",)]
    # Another action of the same run, on another cursor (a worker thread), with the function registered nowhere.
    worker = first_run.cursor()
    worker.execute(f'USE "{PROJECT}"')
    assert execute(worker, "select `acme-analytics.web.initials`('Alan Turing', 1)") == [("A",)]
    first_run.close()

    next_run = warehouse(tmp_path / "w.duckdb")
    rows = execute(
        next_run,
        "select web.initials('Grace Brewster Hopper', 3), `acme-analytics`.web.initials(null, 1), "
        "`acme-analytics.web.initials`('Edsger Dijkstra', 9)",
    )

    assert rows == [("GBH", None, "ED")]


def test_create_function_meets_an_existing_function_as_bigquery_does(tmp_path):
    con = warehouse(tmp_path / "w.duckdb")
    execute(con, INITIALS)
    plain = INITIALS.replace("create or replace function", "create function")

    with pytest.raises(duckdb.CatalogException, match="Already Exists: Function acme-analytics.web.initials"):
        execute(con, plain)
    # IF NOT EXISTS keeps the first body; OR REPLACE replaces it.
    execute(con, plain.replace("function web", "function if not exists web").replace("w[0]", "w"))
    assert execute(con, "select web.initials('Ada Lovelace', 9)") == [("AL",)]
    execute(con, INITIALS.replace("w[0]", "w[1]"))
    assert execute(con, "select web.initials('Ada Lovelace', 9)") == [("do",)]


def test_a_javascript_udf_library_is_read_from_the_local_bucket(con, tmp_path):
    library = tmp_path / "gcs" / "scripts" / "greeter.js"
    library.parent.mkdir(parents=True)
    library.write_text("var greeter = { hello: function (name) { return 'hello ' + name; } };\n")

    def resolve(uri):
        return str(tmp_path / "gcs" / uri[len("gs://") :])

    sql = (
        "CREATE TEMP FUNCTION greet(name STRING) RETURNS STRING LANGUAGE js "
        "OPTIONS(library=['https://storage.googleapis.com/scripts/greeter.js']) AS 'return greeter.hello(name);'; "
        "select greet('ada')"
    )

    assert query.execute(con, sql, default_project=PROJECT, gcs_resolver=resolve).rows == [("hello ada",)]
    library.unlink()
    with pytest.raises(FileNotFoundError) as caught:
        query.execute(con, sql, default_project=PROJECT, gcs_resolver=resolve)
    assert str(caught.value) == (
        "JavaScript library https://storage.googleapis.com/scripts/greeter.js of function greet has no local copy "
        f"at {library}; copy the file there"
    )


def test_information_schema_table_constraints_and_key_columns(con):
    run(con, "create table web.accounts (account_id int64, region string, primary key (account_id) not enforced)")
    run(con, "insert into web.accounts values (1, 'emea'), (1, 'apac')")  # NOT ENFORCED: duplicates are kept
    con.execute(f'CREATE TABLE "{PROJECT}".web.local_keys (k BIGINT PRIMARY KEY, v VARCHAR UNIQUE)')

    constraints = run(
        con,
        "select table_name, constraint_type from web.INFORMATION_SCHEMA.TABLE_CONSTRAINTS order by table_name",
    )
    keys = run(
        con,
        f"select table_name, column_name, ordinal_position from `{PROJECT}.web.INFORMATION_SCHEMA.KEY_COLUMN_USAGE`",
    )

    assert run(con, "select count(*) from web.accounts") == [(2,)]
    assert constraints == [("local_keys", "PRIMARY KEY")]  # UNIQUE is not a BigQuery constraint type
    assert keys == [("local_keys", "k", 1)]


def test_create_table_with_a_column_list_as_select(con):
    run(
        con,
        """
        create table if not exists web.regions (
          region string options(description = "GCP region"),
          country string,
          weight int64
        )
        as
        select region, country, weight
        from unnest([
          struct<region string, country string, weight int64>('europe-west1', 'Belgium', 2),
          ('us-east1', 'USA', 1)
        ])
        """,
    )

    assert run(con, "select * from web.regions order by weight") == [
        ("us-east1", "USA", 1),
        ("europe-west1", "Belgium", 2),
    ]
    assert run(
        con, "select column_name, data_type from web.INFORMATION_SCHEMA.COLUMNS where table_name = 'regions'"
    ) == [("region", "STRING"), ("country", "STRING"), ("weight", "INT64")]


def test_alter_table_key_constraints_are_no_ops_as_they_are_never_enforced(con):
    rows = run(
        con,
        """
        create table web.trainees (trainee_id int64, name string);
        alter table web.trainees drop primary key if exists;
        alter table web.trainees add primary key (trainee_id) not enforced;
        alter table web.trainees drop constraint if exists trainees_fk;
        alter table web.trainees add column cohort string;
        insert into web.trainees values (1, 'ada', '2025'), (1, 'ada again', '2026');
        select count(*), count(distinct trainee_id), max(cohort) from web.trainees
        """,
    )

    assert rows == [(2, 1, "2026")]


def test_information_schema_field_paths_partitions_and_region_level_views(con):
    execute(con, f'CREATE SCHEMA "{PROJECT}".shop')
    execute(con, "create table web.hits as select 1 as k, struct(2 as a) as rec union all select 3, struct(4 as a)")
    execute(con, "create table shop.orders as select 'o1' as order_id")
    assert execute(
        con, "select column_name, field_path, data_type from web.INFORMATION_SCHEMA.COLUMN_FIELD_PATHS order by 1"
    ) == [("k", "k", "INT64"), ("rec", "rec", "STRUCT<a INT64>"), ("rec", "rec.a", "INT64")]
    assert execute(
        con, f"select table_name, partition_id, total_rows from `{PROJECT}.web.INFORMATION_SCHEMA.PARTITIONS`"
    ) == [("hits", None, 2)]
    # Region level: every dataset of the project (the default one, or the one named before the region).
    assert execute(con, "select schema_name from `region-us.INFORMATION_SCHEMA.SCHEMATA` order by 1") == [
        ("shop",),
        ("web",),
    ]
    assert execute(
        con, f"select table_schema, table_name from `{PROJECT}.region-eu.INFORMATION_SCHEMA.TABLES` order by 1"
    ) == [("shop", "orders"), ("web", "hits")]
    assert execute(
        con, "select table_name, column_name, data_type from `region-us`.INFORMATION_SCHEMA.COLUMNS order by 1, 2"
    ) == [("hits", "k", "INT64"), ("hits", "rec", "STRUCT(a INTEGER)"), ("orders", "order_id", "STRING")]


def test_column_field_paths_lists_every_nested_field_with_bigquery_type_names(con):
    execute(
        con,
        "create table web.ga4 as select 'page_view' as event_name, "
        "[struct('page' as key, struct(cast(null as string) as string_value, cast(1.5 as float64) as double_value) "
        "as value)] as event_params, struct(['a'] as tags, cast(2 as numeric) as amount) as device",
    )

    rows = execute(
        con,
        "select field_path, data_type from web.INFORMATION_SCHEMA.COLUMN_FIELD_PATHS where table_name = 'ga4'",
    )

    # Through ARRAYs too, fields in their declared order, as BigQuery lists them.
    assert rows == [
        ("event_name", "STRING"),
        ("event_params", "ARRAY<STRUCT<key STRING, value STRUCT<string_value STRING, double_value FLOAT64>>>"),
        ("event_params.key", "STRING"),
        ("event_params.value", "STRUCT<string_value STRING, double_value FLOAT64>"),
        ("event_params.value.string_value", "STRING"),
        ("event_params.value.double_value", "FLOAT64"),
        ("device", "STRUCT<tags ARRAY<STRING>, amount NUMERIC>"),
        ("device.tags", "ARRAY<STRING>"),
        ("device.amount", "NUMERIC"),
    ]


# -- wildcard tables -----------------------------------------------------------------------------------

SHARDS = """
create table web.events_20240101 as select 1 as id, 'a' as name;
create table web.events_20240102 as select 2 as id, 'b' as name, 3.5 as score;
create table web.events_20240103 as select 3 as id, 'c' as name;
create table web.eventsummary as select 9 as id;
"""


def bq(con, sql: str) -> query.QueryResult:
    return query.execute(con, sql, default_project=PROJECT)


def test_a_wildcard_table_is_the_union_of_the_matching_tables_with_the_suffix_as_a_pseudo_column(con):
    bq(con, SHARDS)

    everything = bq(con, "select * from `acme-analytics.web.events_*` order by id")
    suffixes = bq(
        con,
        "select e.id, _TABLE_SUFFIX as day from `web.events_2024*` as e "
        "where _table_suffix between '0102' and '0103' order by id",
    )

    # `_TABLE_SUFFIX` is not in `SELECT *`; `eventsummary` does not start with `events_`.
    assert everything.columns == ["id", "name", "score"]
    assert everything.rows == [(1, "a", None), (2, "b", 3.5), (3, "c", None)]
    assert (suffixes.columns, suffixes.rows) == (["id", "day"], [(2, "0102"), (3, "0103")])


def test_a_filter_on_table_suffix_prunes_the_tables_read(con):
    bq(con, SHARDS)
    sql = "select count(*) from `web.events_*` where _TABLE_SUFFIX >= '20240102'"
    expanded = query.expand_wildcard_tables(con, translate_script(sql, default_project=PROJECT)[0])

    plan = con.execute(f"EXPLAIN {expanded}").fetchall()[0][1]

    assert bq(con, sql).rows == [(2,)]
    assert "events_20240101" not in plan
    assert "events_20240102" in plan and "events_20240103" in plan


def test_a_wildcard_table_matching_no_table_fails_with_bigquerys_message(con):
    with pytest.raises(duckdb.CatalogException) as caught:
        bq(con, "select * from `web.sessions_*`")

    assert str(caught.value) == "Not found: Table acme-analytics:web.sessions_* was not found"


def test_a_wildcard_table_matching_a_view_fails_as_in_bigquery(con):
    bq(con, SHARDS + "create view web.events_latest as select 3 as id;")

    with pytest.raises(duckdb.CatalogException) as caught:
        bq(con, "select count(*) from `web.events_*` where _TABLE_SUFFIX = '20240101'")

    assert str(caught.value) == "Views cannot be queried through prefix. First view acme-analytics:web.events_latest."


def test_a_wildcard_table_in_a_for_loop_and_a_joined_table_star(con):
    bq(con, SHARDS + "create table web.names as select 1 as id, 'one' as label;")

    joined = bq(con, "select n.*, e.name from `web.events_*` as e join web.names as n using (id)")
    total = bq(
        con,
        "declare n int64 default 0; "
        "for row in (select id from `web.events_*` where _TABLE_SUFFIX < '20240103') do "
        "set n = n + row.id; end for; select n",
    )

    assert (joined.columns, joined.rows) == (["id", "label", "name"], [(1, "one", "a")])
    assert total.rows == [(3,)]


# -- table functions ----------------------------------------------------------------------------------

VERSIONS_AT = """
create table web.versions as
select 1 as id, 'a' as name, timestamp '2024-01-01' as valid_from, timestamp '2024-02-01' as valid_to
union all select 1, 'b', timestamp '2024-02-01', null
union all select 2, 'c', timestamp '2024-03-01', null;
create table web.labels as select 1 as id, 'one' as label union all select 2, 'two';
create or replace table function `acme-analytics.web.versions_at`(timestamp_at timestamp)
as
select * except (valid_from, valid_to), timestamp_at as seen_at
from web.versions
where (valid_to is null or valid_to > timestamp_at) and valid_from <= timestamp_at;
create table function web.labels_from(first_id int64) as (select label from web.labels where id >= first_id);
"""


def test_a_table_function_is_kept_in_the_warehouse_and_called_by_later_runs(tmp_path):
    first_run = warehouse(tmp_path / "w.duckdb")
    execute(first_run, VERSIONS_AT)
    first_run.close()

    next_run = warehouse(tmp_path / "w.duckdb")
    january = execute(next_run, "select id, name, seen_at from web.versions_at(timestamp '2024-01-15') order by id")
    # The STRING argument becomes the declared TIMESTAMP, as BigQuery coerces a literal argument.
    march = execute(next_run, "select id, name from `acme-analytics.web.versions_at`('2024-03-02') order by id")
    joined = execute(
        next_run,
        "select v.name, l.label from `acme-analytics`.web.versions_at(timestamp '2024-02-01') as v "
        "join web.labels as l using (id)",
    )
    labels = execute(next_run, "select * from web.labels_from(2)")

    assert january == [(1, "a", dt.datetime(2024, 1, 15, tzinfo=dt.UTC))]
    assert march == [(1, "b"), (2, "c")]
    assert joined == [("b", "one")]
    assert labels == [("two",)]


def test_create_table_function_meets_an_existing_one_as_bigquery_does(tmp_path):
    con = warehouse(tmp_path / "w.duckdb")
    execute(con, VERSIONS_AT)

    with pytest.raises(duckdb.CatalogException, match="already exists"):
        execute(con, "create table function web.labels_from(first_id int64) as select 1 as label")
    execute(con, "create table function if not exists web.labels_from(first_id int64) as select 'kept' as label")
    assert execute(con, "select * from web.labels_from(2)") == [("two",)]
    execute(con, "create or replace table function web.labels_from(first_id int64) as select first_id + 1 as label")
    assert execute(con, "select * from web.labels_from(2)") == [(3,)]


# -- DATE ± INT64 ---------------------------------------------------------------------------------------


def test_date_plus_and_minus_int64_days_is_a_date_and_other_arithmetic_is_unchanged(con):
    bq(
        con,
        "create table web.expiry as select date '2024-03-01' as d, 30 as n "
        "union all select date '2024-02-28', 1 union all select null, 5",
    )

    result = bq(
        con,
        "select d - n as minus, d + n as plus, n + d as plus_first, d - 1 as minus_literal, n - 1 as whole, "
        "current_date - n as expiry from web.expiry order by n",
    )
    filtered = bq(con, "with e as (select * from web.expiry) select n from e where d - n < date '2024-02-01'")

    assert result.rows == [
        (
            dt.date(2024, 2, 27),
            dt.date(2024, 2, 29),
            dt.date(2024, 2, 29),
            dt.date(2024, 2, 27),
            0,
            dt.date(2026, 3, 3),
        ),
        (None, None, None, None, 4, dt.date(2026, 2, 27)),
        (
            dt.date(2024, 1, 31),
            dt.date(2024, 3, 31),
            dt.date(2024, 3, 31),
            dt.date(2024, 2, 29),
            29,
            dt.date(2026, 2, 2),
        ),
    ]
    assert all(type(value) is dt.date for row in result.rows for value in row[:4] + row[5:] if value is not None)
    assert filtered.rows == [(30,)]


def test_a_variable_selected_bare_is_a_column_named_like_it(con):
    result = query.execute(
        con,
        "DECLARE a INT64 DEFAULT 1; DECLARE s STRUCT<x INT64> DEFAULT STRUCT(5 AS x); "
        "CREATE TEMP TABLE q AS SELECT a, s.x, a + 1 AS b; SELECT * FROM q",
        default_project=PROJECT,
    )

    assert (result.columns, result.rows) == (["a", "x", "b"], [(1, 5, 2)])
