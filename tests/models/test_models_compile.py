"""The Dataform project compiles, and every source contract yields its bronze, silver and checks."""

from __future__ import annotations

import json

import pytest

from lakehouse.engine.compile import CompileError, compile_project
from models.project import KIT_VARS, REPO, contract_names, load_contract, targets

GOLD_TABLES = {
    "daily_sales",
    "daily_product_summary",
    "customers",
    "products",
    "conversion_funnel",
    "ad_attribution",
    "inventory_levels",
    "customer_360",
}
OPS_VIEWS = {
    "source_quality",
    "quarantine_rules",
    "source_quality_dimensions",
    "source_quality_daily",
    "dead_letter_reasons",
    "quarantine_failures",
    "source_quality_run",
    "quarantine_rules_run",
    "source_quality_runs",
    "ad_attribution_reference",
}


def test_compiles_without_graph_errors(graph):
    assert graph.get("graphErrors", {}).get("compilationErrors", []) == []


def test_action_counts(graph):
    sources = len(contract_names())
    accepted = sum(1 for name in contract_names() if any("accepted_values" in f for f in load_contract(name)["fields"]))
    with_thresholds = sum(1 for name in contract_names() if load_contract(name).get("quality"))
    # per source: its landing table; plus ops.dead_letters
    assert len(graph["operations"]) == sources + 1
    # per source: its Pub/Sub table; plus the PII key table and the file-arrival audit table
    assert len(graph["declarations"]) == sources + 2
    # per source: staging view, batch, quarantine, duplicates, silver table, intake ledger; plus gold,
    # the ops views and ops.schema_drift
    assert len(graph["tables"]) == 6 * sources + len(GOLD_TABLES) + len(OPS_VIEWS) + 1
    manual = [a for a in graph["assertions"] if not a.get("parentAction")]
    # per source: conservation, ledger, all taken, freshness, volume (+ accepted values, + quality
    # thresholds), and uniqueKey and rowConditions of silver, quarantine and duplicates, hourly and
    # daily; plus reconcile, integrity, schema_drift_new_fields and ad_attribution_matches_reference
    assert len(manual) == 5 * sources + 3 * 2 * 2 * sources + accepted + with_thresholds + 4
    # hand-written tests, plus one generated per contract
    assert len(graph["tests"]) == 5 + sources


@pytest.mark.parametrize("source", contract_names())
def test_every_source_has_bronze_silver_and_checks(graph, source):
    operations, declarations = targets(graph, "operations"), targets(graph, "declarations")
    tables, assertions = targets(graph, "tables"), targets(graph, "assertions")
    landing = operations[f"bronze.{source}_landing"]
    assert landing["hasOutput"] is True
    ddl = landing["queries"][0]
    assert ddl.startswith(f"create or replace external table `lakehouse-dev.bronze.{source}_landing`")
    assert f"uris = ['gs://{KIT_VARS['landing_bucket']}/source={source}/*']" in ddl
    assert "with partition columns" in ddl and "quote = ''" in ddl
    assert f"bronze.{source}_raw" in declarations
    assert tables[f"silver_restricted.{source}_staged"]["type"] == "view"
    assert tables[f"silver_restricted.{source}_batch"]["type"] == "incremental"
    incremental = [f"silver.{source}{suffix}" for suffix in ("_duplicates", "")]
    incremental.append(f"silver_restricted.{source}_quarantine")
    incremental.append(f"ops.{source}_intake")
    for name in incremental:
        assert tables[name]["type"] == "incremental", name
    contract = load_contract(source)
    assert tables[f"silver.{source}"]["uniqueKey"] == contract["key"]
    silver = tables[f"silver.{source}"]["bigquery"]
    # BigLake Iceberg partitioning is in Preview: opt-in var iceberg_partitioning (docs/deploy.md).
    assert silver.get("partitionBy") == (None if silver.get("tableFormat") == "ICEBERG" else "event_date")
    assert tables[f"silver_restricted.{source}_quarantine"]["uniqueKey"] == ["record_id"]
    for check in ("conservation", "ledger", "all_taken", "freshness", "volume"):
        assert f"assertions.{source}_{check}" in assertions


def test_only_the_restricted_dataset_holds_raw_records(graph):
    """Staging, batch and quarantine carry raw_record and PII in clear: silver_restricted, never silver."""
    restricted = {
        name
        for kind in ("tables", "operations")
        for name in targets(graph, kind)
        if name.startswith("silver_restricted.")
    }
    assert restricted == {
        f"silver_restricted.{source}_{kind}"
        for source in contract_names()
        for kind in ("staged", "batch", "quarantine")
    }
    for name, table in targets(graph, "tables").items():
        if name.split(".")[0] in ("silver", "gold", "ops"):
            assert "raw_record" not in table["query"], name


def test_every_silver_and_gold_table_has_unique_key_and_row_condition_checks(graph):
    """Built-in ones where a run rewrites or adds only its own rows (batch, gold); hourly ones over the
    batch's rows and daily ones over the whole table where the table grows (silver, quarantine, duplicates)."""
    parents = {}
    for assertion in graph["assertions"]:
        parent = assertion.get("parentAction")
        if parent:
            kind = assertion["target"]["name"].rsplit("_assertions_", 1)[1]
            parents.setdefault(f"{parent['schema']}.{parent['name']}", set()).add(kind.split("_")[0])
    tags = {a["target"]["name"]: a.get("tags") for a in graph["assertions"] if not a.get("parentAction")}
    growing = {
        f"{schema}.{source}{suffix}"
        for source in contract_names()
        for schema, suffix in (("silver", ""), ("silver_restricted", "_quarantine"), ("silver", "_duplicates"))
    }
    # The staging view parses all of bronze for people and unit tests; the batch carries its checks.
    checked = [
        name
        for name, table in targets(graph, "tables").items()
        if name.split(".")[0] in ("silver", "silver_restricted", "gold") and not name.endswith("_staged")
    ]
    assert {name.split(".")[1] for name in checked if name.startswith("gold.")} == GOLD_TABLES
    assert growing <= set(checked)
    for name in checked:
        if name in growing:
            assert name not in parents, name
            base = name.replace(".", "_") + "_assertions_"
            for kind in ("uniqueKey_0", "rowConditions"):
                assert "hourly" in tags[base + kind] and "daily" not in tags[base + kind], name
                assert "daily" in tags[base + kind + "_whole_table"], name
                assert "hourly" not in tags[base + kind + "_whole_table"], name
        else:
            # nonNull is folded into the rowConditions assertion by Dataform
            assert parents.get(name) == {"uniqueKey", "rowConditions"}, name


def test_severity_convention(graph):
    manual = {a["target"]["name"]: a for a in graph["assertions"] if not a.get("parentAction")}
    warn = sorted(name for name, a in manual.items() if "warn" in (a.get("tags") or []))
    thresholds = [
        f"{source}_quality_thresholds"
        for source in contract_names()
        if (load_contract(source).get("quality") or {}).get("severity") == "warn"
    ]
    volume = [f"{source}_volume" for source in contract_names()]
    assert warn == sorted([*volume, *thresholds, "schema_drift_new_fields"])


def test_generated_incremental_tables_extend_their_schema_on_a_contract_change(graph):
    tables = targets(graph, "tables")
    for source in contract_names():
        assert tables[f"silver_restricted.{source}_batch"]["onSchemaChange"] == "EXTEND"
        assert tables[f"silver.{source}"]["onSchemaChange"] == "EXTEND"
        assert tables[f"silver.{source}"]["query"].count("extra") >= 1
    assert tables["ops.schema_drift"]["uniqueKey"] == ["source_name", "field_name", "json_type"]


def test_orders_silver_is_an_iceberg_table_with_total_price(graph):
    orders = targets(graph, "tables")["silver.orders"]
    assert orders["bigquery"]["tableFormat"] == "ICEBERG"
    assert orders["bigquery"]["fileFormat"] == "PARQUET"
    assert orders["bigquery"]["storageUri"] == f"gs://{KIT_VARS['iceberg_bucket']}/silver/orders"
    assert "quantity * price as total_price" in orders["query"]
    checks = {a["target"]["name"]: a["query"] for a in graph["assertions"]}
    for name in ("silver_orders_assertions_rowConditions", "silver_orders_assertions_rowConditions_whole_table"):
        assert "where not (total_price = quantity * price)" in checks[name]
        assert "where not (total_price is not null)" in checks[name]


def test_pii_is_hashed_with_the_salt_read_from_the_key_table(graph):
    assert targets(graph, "declarations")["keys.pii_salt"]["target"]["database"] == "lakehouse-dev"
    salt = "coalesce((select salt from `lakehouse-dev.keys.pii_salt`), error('keys.pii_salt is empty'))"
    tables = targets(graph, "tables")
    for source in contract_names():
        pii = [f["name"] for f in load_contract(source)["fields"] if f.get("pii")]
        query = " ".join(tables[f"silver.{source}"]["query"].split())
        for field in pii:
            assert f"to_hex(sha256(concat( {salt}, {field} ))) as {field}_hash" in query


def test_no_salt_in_compiled_sql_or_vars(graph):
    # The salt used to be the var pii_salt, compiled into every silver query and kept in the release
    # config and every compilation result; neither the var nor its old default may come back.
    text = json.dumps(graph)
    assert "pii_salt" not in graph["projectConfig"].get("vars", {})
    assert "local-dev-salt-change-me" not in text
    for action in graph["tables"] + graph["operations"] + graph["assertions"]:
        for sql in [action.get("query", "")] + list(action.get("queries", [])) + list(action.get("preOps", [])):
            flat = " ".join(sql.split())
            for hashed in flat.split("to_hex(sha256(concat(")[1:]:
                if hashed.split(")))", 1)[1].lstrip().startswith("as ") and "_hash" in hashed.split(",", 2)[-1]:
                    assert hashed.startswith(" coalesce((select salt from `lakehouse-dev.keys.pii_salt`)"), flat


def test_a_pii_salt_var_refuses_to_compile(tmp_path):
    with pytest.raises(CompileError, match="var pii_salt is no longer read; the salt lives in table keys.pii_salt"):
        compile_project(REPO, vars={"pii_salt": "pepper"}, home_dir=tmp_path, use_cache=False)


@pytest.mark.parametrize("days", ["90", "120"])
def test_lookback_reaching_the_nearline_age_refuses_to_compile(tmp_path, days):
    with pytest.raises(CompileError, match=f'var lookback_days="{days}" must be an integer from 0 to 89'):
        compile_project(REPO, vars={"lookback_days": days}, home_dir=tmp_path, use_cache=False)


def test_hourly_landing_scans_are_pruned_by_scripting_variables(graph):
    # An hourly run reads only the landing files that arrived and no run took: the batch's
    # pre-operations list them from the file-arrival audit (ops.file_arrivals, read on its partition
    # column arrived_at from a variable) less the intake ledger (its cluster column source_kind), and the
    # batch filters the landing table on _FILE_NAME and on its hive partition column ingest_date with
    # those variables, which BigQuery prunes on; the raw Pub/Sub table likewise by publish_time
    # (docs/deploy.md).
    tables = targets(graph, "tables")
    for source in contract_names():
        batch = tables[f"silver_restricted.{source}_batch"]
        pre = "\n".join(batch["incrementalPreOps"])
        assert pre.startswith(
            "declare arrivals_from timestamp;\ndeclare landing_files array<string>;\n"
            "declare landing_first date;\ndeclare landing_last date;\ndeclare pubsub_from timestamp;"
        )
        assert "interval 3 day" in pre
        arrivals = pre[pre.index("from `lakehouse-dev.ops.file_arrivals`") :]
        assert arrivals.splitlines()[1:5] == [
            "    where",
            "      arrived_at >= arrivals_from",
            "      and bucket = 'lakehouse-landing.localhost'",
            f"      and starts_with(object_name, 'source={source}/')",
        ]
        assert "  where uri not in (select origin from taken)\n);" in pre
        query = batch["incrementalQuery"]
        landing = query[query.index(f"`lakehouse-dev.bronze.{source}_landing`") :]
        assert [line.strip() for line in landing.split("unnest(", 1)[0].splitlines()[1:3]] == [
            "where ingest_date between landing_first and landing_last",
            "and _file_name in",
        ]
        assert landing.split("unnest(", 1)[1].startswith("landing_files)")
        assert f"from `lakehouse-dev.bronze.{source}_raw` as this_copy\n  where publish_time >= pubsub_from" in query
        # the earlier copy of a line published again is looked for in the same window
        assert f"from `lakehouse-dev.bronze.{source}_raw` as earlier_copy" in query
        assert "and earlier_copy.publish_time >= pubsub_from" in query
        # a first run reads everything; every other read of the landing table is a daily action
        assert "landing_files" not in batch["query"]
        assert {"schema": "ops", "name": "file_arrivals", "database": "lakehouse-dev"} in batch["dependencyTargets"]
    hourly_readers = [
        a
        for a in graph["tables"] + graph["assertions"]
        if "hourly" in a.get("tags", [])
        and "_landing`" in (a.get("incrementalQuery") or a.get("query", ""))
        and a["type"] != "view"
    ]
    for action in hourly_readers:
        text = action.get("incrementalQuery") or action["query"]
        assert "where ingest_date between landing_first and landing_last" in text, action["target"]


def test_tags_select_schedules(graph):
    for kind in ("tables", "operations"):
        for action in graph[kind]:
            assert "hourly" in action["tags"], action["target"]


def test_hourly_runs_parse_bronze_once(graph):
    """Only <source>_batch reads bronze (and the daily checks); nothing hourly reads the staging view."""
    bronze = {f"{source}_{kind}" for source in contract_names() for kind in ("landing", "raw", "staged")}
    readers = {}
    for kind in ("tables", "assertions", "operations"):
        for action in graph[kind]:
            # a view's definition reads nothing when the run (re)creates it
            if "hourly" not in (action.get("tags") or []) or action.get("type") == "view":
                continue
            read = {dep["name"] for dep in action.get("dependencyTargets", [])} & bronze
            if read:
                readers[action["target"]["name"]] = read
    assert readers == {f"{source}_batch": {f"{source}_landing", f"{source}_raw"} for source in contract_names()}


@pytest.mark.parametrize("source", contract_names())
def test_batch_filters_bronze_partitions_by_scripting_variables(graph, source):
    """BigQuery prunes hive partitions and publish_time partitions only on constants or variables."""
    batch = targets(graph, "tables")[f"silver_restricted.{source}_batch"]
    pre = "\n".join(batch["incrementalPreOps"])
    assert pre.startswith("declare arrivals_from timestamp;\ndeclare landing_files array<string>;\n")
    assert f"create table if not exists `lakehouse-dev.ops.{source}_intake`" in pre
    assert f"delete from `lakehouse-dev.silver_restricted.{source}_batch`\nwhere true;" in pre
    for variable in ("arrivals_from", "landing_files", "landing_first", "landing_last", "pubsub_from"):
        assert f"set {variable} = (" in pre
    assert "landing_files" not in batch["query"] and "".join(batch.get("preOps", [])) == ""
    query = batch["incrementalQuery"]
    landing = f"from `lakehouse-dev.bronze.{source}_landing`\n"
    assert f"{landing}  where ingest_date between landing_first and landing_last\n" in query
    assert f"from `lakehouse-dev.bronze.{source}_raw` as this_copy\n  where publish_time >= pubsub_from\n" in query


def test_gold_date_aggregates_of_a_batch_finish_before_its_watermark_moves(graph):
    """A table that rebuilds the dates a batch touched must run before that source's intake ledger."""
    tables = targets(graph, "tables")
    for source in contract_names():
        readers = {
            name.split(".")[1]
            for name, table in tables.items()
            if f"silver_restricted.{source}_batch`" in "\n".join(table.get("incrementalPreOps", []))
            and name.startswith("gold.")
        }
        intake_deps = {dep["name"] for dep in tables[f"ops.{source}_intake"]["dependencyTargets"]}
        assert readers <= intake_deps, (source, readers - intake_deps)
    assert {"daily_sales", "daily_product_summary"} <= {
        dep["name"] for dep in tables["ops.orders_intake"]["dependencyTargets"]
    }
