// SQL pieces built from a source contract: typing, quality rules, PII hashing and the dedup order.
// definitions/silver/*.js assemble them into the per-source actions; hand-written models call the
// same helpers so every source is cleansed the same way.

const RECORD_FIELDS = ["source", "event_id"];

// The dataset of the actions that hold raw records and PII in clear (<source>_staged, _batch,
// _quarantine): granted to the pipeline's identities only, never to analysts (definitions/silver/contracts.js).
const RESTRICTED_SCHEMA = "silver_restricted";

const NUMBER = "^-?[0-9]+(\\.[0-9]+)?([eE][+-]?[0-9]+)?$";
const INTEGER = "^-?[0-9]+$";

function isRequired(contract, field) {
  return Boolean(field.required) || contract.key.includes(field.name) || contract.event_time === field.name;
}

function literal(value) {
  return typeof value === "number" ? String(value) : params.sqlString(value);
}

// The JSON text of the field (NULL when absent) and its scalar value as a string.
function tokenColumn(field) {
  return `${field.name}__json`;
}

function textColumn(field) {
  return `${field.name}__text`;
}

// Returns [check, value] of `field`: the typed value is `value` when `check` holds, else NULL.
// The JSON token is checked, not only the cast: "3" (a JSON string) is not an INT64.
function typedParts(field) {
  const token = tokenColumn(field);
  const text = textColumn(field);
  switch (field.type) {
    case "STRING":
      return [`starts_with(${token}, '"')`, text];
    case "INT64":
      return [`regexp_contains(${token}, r'${INTEGER}')`, `safe_cast(${text} as int64)`];
    case "NUMERIC":
    case "FLOAT64":
      return [`regexp_contains(${token}, r'${NUMBER}')`, `safe_cast(${text} as ${field.type.toLowerCase()})`];
    case "BOOL":
      return [`${token} in ('true', 'false')`, `${token} = 'true'`];
    case "TIMESTAMP":
    case "DATE":
      return [`starts_with(${token}, '"')`, `safe_cast(${text} as ${field.type.toLowerCase()})`];
    default:
      throw new Error(`unknown type ${field.type} of field ${field.name}`);
  }
}

// Returns [{rule, condition}] for `field`: the condition is true when the record fails the rule.
function fieldRules(contract, field) {
  const name = field.name;
  const token = tokenColumn(field);
  const present = `coalesce(${token}, 'null') != 'null'`;
  const rules = [];
  if (isRequired(contract, field)) {
    rules.push({ rule: `${name}_required`, condition: `is_json and coalesce(${token}, 'null') = 'null'` });
  }
  rules.push({ rule: `${name}_type`, condition: `is_json and ${present} and ${name} is null` });
  if (field.pattern !== undefined) {
    rules.push({
      rule: `${name}_pattern`,
      condition: `${name} is not null and not regexp_contains(${name}, ${params.sqlString(field.pattern)})`,
    });
  }
  if (field.min !== undefined) {
    rules.push({ rule: `${name}_min`, condition: `${name} < ${literal(field.min)}` });
  }
  if (field.min_exclusive !== undefined) {
    rules.push({ rule: `${name}_min_exclusive`, condition: `${name} <= ${literal(field.min_exclusive)}` });
  }
  if (field.accepted_values !== undefined) {
    const values = field.accepted_values.map(literal);
    const one = `${name} not in (${values.join(", ")})`;
    const condition = one.length <= 90 ? one : [`${name} not in (`].concat(wrap(values, 2, 90), [")"]).join("\n");
    rules.push({ rule: `${name}_accepted_values`, condition });
  }
  return rules;
}

// Returns the payload keys the contract names: the envelope, then its fields.
function knownFields(contract) {
  return RECORD_FIELDS.concat(contract.fields.map((field) => field.name));
}

// Returns [{rule, condition}] of the whole record, then of every field, in contract order.
function rules(contract) {
  const known = knownFields(contract);
  const record = [
    { rule: "record_not_json", condition: "not is_json" },
    // U+FFFD is what BigQuery (and the local reader) put where a landed file was not UTF-8
    { rule: "record_not_utf8", condition: "strpos(raw_record, '\\uFFFD') > 0" },
    { rule: "record_oversized", condition: `byte_length(raw_record) > ${params.maxRecordBytes()}` },
    {
      rule: "record_source_mismatch",
      condition: `is_json and coalesce(payload_source != ${params.sqlString(contract.name)}, true)`,
    },
    // a landing file in an hour= folder that is not an hour of the day (bronzeSelects)
    { rule: "record_landing_path", condition: "ingested_at is null" },
  ];
  // Under unknown_fields "keep" (the default) an unknown key is kept in `extra`, not a failure.
  if (sources.unknownFields(contract) === "quarantine") {
    record.push({
      rule: "record_unexpected_field",
      condition: [
        "exists (",
        "  select 1 from unnest(payload_keys) as payload_key",
        "  where payload_key not in (",
      ].concat(wrap(known.map(literal), 6, 90)).concat(["    )", ")"]).join("\n"),
    });
  }
  return contract.fields.reduce((all, field) => all.concat(fieldRules(contract, field)), record);
}

// Returns `items` joined with ", " in lines of at most `width` characters, indented by `spaces`.
function wrap(items, spaces, width) {
  const lines = [];
  let line = "";
  items.forEach((item, index) => {
    const piece = item + (index < items.length - 1 ? "," : "");
    if (line && line.length + 1 + piece.length > width) {
      lines.push(line);
      line = piece;
    } else {
      line = line ? `${line} ${piece}` : piece;
    }
  });
  if (line) {
    lines.push(line);
  }
  return lines.map((text) => " ".repeat(spaces) + text);
}

// Returns the names of every rule of the contract, in evaluation order.
function ruleNames(contract) {
  return rules(contract).map((item) => item.rule);
}

function indent(lines, spaces) {
  const pad = " ".repeat(spaces);
  return lines.map((line) => pad + line).join("\n");
}

// Select-list lines extracting each field's JSON token and text (guarded: only valid JSON is read).
function extractColumns(contract) {
  const lines = [
    "if(is_json, json_value(raw_record, '$.event_id'), null) as event_id,",
    "if(is_json, json_value(raw_record, '$.source'), null) as payload_source,",
    // Object keys at any depth: a key is a quoted name after { or , and before a colon, as written
    // (escapes included: extraCtes reads "coup\u006fn" as coupon).
    "if(is_json, regexp_extract_all(raw_record, r'[{,]\\s*\"((?:[^\"\\\\]|\\\\.)*)\"\\s*:'), [])",
    "  as payload_keys,",
  ];
  contract.fields.forEach((field) => {
    lines.push(`if(is_json, json_query(raw_record, '$.${field.name}'), null) as ${tokenColumn(field)},`);
    lines.push(`if(is_json, json_value(raw_record, '$.${field.name}'), null) as ${textColumn(field)},`);
  });
  return indent(lines, 4);
}

// Returns the CTEs of the payload keys the contract does not name: one row per record that has
// any, with the sorted keys (extra_fields) and a JSON object of them with their values (extra).
// Only top-level keys count (a key nested in an unknown object is part of its value). A join, not a
// correlated ARRAY subquery per row: DuckDB plans the latter with a 1.5 GiB allocation.
// With `pending`, a field the batch table has no column for yet (PENDING_FIELDS, declared by
// batchPreOps) is kept there too: the run whose onSchemaChange adds the column writes only the columns
// the table had when it started (as Dataform's executor does), so its values would be lost otherwise.
// Without pending fields (a first or full-refresh run, which reads every landed line), the records
// with a key the contract does not name are found first, one test per record (a list filter locally),
// so that only they are unnested: unnesting every record's keys cost a quarter of the batch at 1M lines.
function extraCtes(contract, pending) {
  const names = wrap(knownFields(contract).map(literal), 6, 90).join("\n");
  const known = `payload_key not in (
${names}
    )`;
  const listed = pending ? "" : `records_with_unknown_keys as (
  select
    record_id,
    raw_record,
    payload_keys,
  from extracted
  where exists (
      select 1 from unnest(payload_keys) as listed_key
      where listed_key not in (
${names.replace(/^ {6}/gm, "          ")}
        )
    )
),

`;
  // A key written with JSON escapes ("coup\u006fn") is read as JSON reads it.
  return `${listed}unknown_keys as (
  select distinct
    record_id,
    raw_record,
    payload_key,
  from (
    select
      record_id,
      raw_record,
      if(strpos(written_key, '\\\\') > 0, json_value(concat('"', written_key, '"'), '$'), written_key) as payload_key,
    from ${pending ? "extracted" : "records_with_unknown_keys"}, unnest(payload_keys) as written_key
  ) as keys_as_read
  -- a value is parsed only for a key outside the contract (IF, not AND: DuckDB would test the value of
  -- every key of every record first, 20x the cost of the whole filter)
  where
    if(
      ${known.replace(/\n/g, "\n  ")}${pending ? `\n      or payload_key in unnest(${PENDING_FIELDS})` : ""},
      parse_json(raw_record)[payload_key] is not null,
      false
    )
),

extra_values as (
  select
    record_id,
    array_agg(payload_key order by payload_key) as extra_fields,
    parse_json(concat('{', string_agg(
      concat(to_json_string(payload_key), ':', to_json_string(parse_json(raw_record)[payload_key])),
      ',' order by payload_key
    ), '}')) as extra,
  from unknown_keys
  group by record_id
),`;
}

function typedColumns(contract) {
  const lines = [];
  contract.fields.forEach((field) => {
    const [check, value] = typedParts(field);
    const one = `if(${check}, ${value}, null) as ${field.name},`;
    if (one.length <= 100) {
      lines.push(one);
    } else {
      lines.push("if(", `  ${check},`, `  ${value},`, "  null", `) as ${field.name},`);
    }
  });
  return indent(lines, 4);
}

function failedRulesColumn(contract) {
  const parts = rules(contract).map((item, index, all) => {
    const condition = item.condition.split("\n");
    return ["if("]
      .concat(condition.map((line, i) => `  ${line}${i === condition.length - 1 ? "," : ""}`))
      .concat([`  ['${item.rule}'], []`, `)${index < all.length - 1 ? "," : ""}`]);
  });
  const lines = parts.reduce((all, part) => all.concat(part), []);
  return `array_concat(\n${indent(lines, 6)}\n    ) as failed_rules,`;
}

// Returns the condition that a row of the raw table `raw` (aliased `this_copy`) is the first copy of
// its `record_key` attribute. The publisher gives every line a deterministic key; a line published
// again (a `generate` killed and rerun) arrives on GCP as a second row with another message_id,
// which the BigQuery subscription writes as it does any message. Only the first copy (publish time,
// then message id) is a record; the others are dropped (docs/runbook.md counts them).
// With `from` (a scripting variable), earlier copies are looked for only from then on, so BigQuery
// prunes the raw table's partitions; a copy of a line first published before it is taken like a
// redelivery (silver records it as a duplicate, or quarantines it again).
function pubsubFirstCopy(raw, from) {
  return [
    "not exists (",
    "  select 1",
    `  from ${raw} as earlier_copy`,
    "  where",
    "    json_value(earlier_copy.attributes, '$.record_key')",
    "    = json_value(this_copy.attributes, '$.record_key')",
  ].concat(from ? [`    and earlier_copy.publish_time >= ${from}`] : []).concat([
    "    and (",
    "      earlier_copy.publish_time < this_copy.publish_time",
    "      or (",
    "        earlier_copy.publish_time = this_copy.publish_time",
    "        and earlier_copy.message_id < this_copy.message_id",
    "      )",
    "    )",
    ")",
  ]).join("\n");
}

// The columns of a bronze record before parsing: where it came from and its raw text.
function bronzeSelects(contract, ctx, scope) {
  const landingWhere = scope ? `\n  ${scope.landing}` : "";
  const raw = ctx.ref(`${contract.name}_raw`);
  const firstCopy = pubsubFirstCopy(raw, scope ? "pubsub_from" : undefined);
  const pubsubWhere = scope
    ? `\n  ${scope.pubsub}\n    and ${firstCopy.replace(/\n/g, "\n    ")}`
    : `\n  where\n    ${firstCopy.replace(/\n/g, "\n    ")}`;
  return `
landing as (
  select
    'landing' as source_kind,
    _file_name as origin,
    ingest_date,
    -- a folder outside the layout (hour=xx, hour=99) gives no arrival time: rule record_landing_path
    timestamp_add(
      timestamp(ingest_date),
      interval if(safe_cast(hour as int64) between 0 and 23, safe_cast(hour as int64), null) hour
    ) as ingested_at,
    -- a CSV table reads an empty line (or one a 0x01 cuts to nothing) as NULL: kept as '', quarantined
    coalesce(line, '') as raw_record,
  from ${ctx.ref(`${contract.name}_landing`)}${landingWhere}
),

pubsub as (
  select
    'pubsub' as source_kind,
    concat(subscription_name, '/', message_id) as origin,
    date(publish_time) as ingest_date,
    publish_time as ingested_at,
    coalesce(data, '') as raw_record,
  from ${raw} as this_copy${pubsubWhere}
),`;
}

// Returns the query that parses, types and checks bronze records against every rule: one row per
// bronze row, exactly. Without `scope`, every bronze record (the staging view, a first or full
// run's batch); with `scope` ({landing, pubsub}: a WHERE clause per bronze table), only the
// records it selects (an incremental run's batch).
function stagedQuery(contract, ctx, scope) {
  const fieldList = indent(contract.fields.map((field) => `${field.name},`), 4);
  return `
with ${bronzeSelects(contract, ctx, scope).trim()}

bronze as (
  select * from landing
  union all
  select * from pubsub
),

numbered as (
  select
    *,
    -- identical copies of a line in one file, or of one message, are told apart by occurrence
    row_number() over (partition by ingest_date, source_kind, origin, raw_record) as occurrence,
  from bronze
),

parsed as (
  select
    to_hex(
      sha256(concat(source_kind, '|', origin, '|', raw_record, '|', cast(occurrence as string)))
    ) as record_id,
    source_kind,
    origin,
    ingested_at,
    ingest_date,
    raw_record,
    safe.parse_json(raw_record) is not null as is_json,
  from numbered
),

extracted as (
  select
    *,
${extractColumns(contract)}
  from parsed
),

${extraCtes(contract, Boolean(scope))}

typed as (
  select
    *,
${typedColumns(contract)}
  from extracted
),

with_extra as (
  select
    typed.*,
    coalesce(extra_values.extra_fields, []) as extra_fields,
    extra_values.extra,
  from typed
  left join extra_values using (record_id)
),

checked as (
  select
    *,
    ${failedRulesColumn(contract)}
  from with_extra
),

final as (
  select
    record_id,
    source_kind,
    origin,
    coalesce(ingested_at, timestamp(ingest_date)) as ingested_at,
    ingest_date,
    event_id,
    raw_record,
${fieldList}
    extra_fields,
    extra,
    failed_rules,
  from checked
)

select * from final
`;
}

// The intake ledger's columns: one row per landing file or Pub/Sub message a run took.
const INTAKE_COLUMNS = [
  ["source_kind", "string"],
  ["origin", "string"],
  ["ingest_date", "date"],
  ["ingested_at", "timestamp"],
  ["record_count", "int64"],
  ["taken_at", "timestamp"],
];

// The scripting variable naming the contract fields the batch table has no column for yet.
const PENDING_FIELDS = "pending_fields";

// Returns the DECLARE of PENDING_FIELDS: the contract's fields that are not columns of `table` (a
// resolved `project.dataset.name`) before this run's onSchemaChange adds them.
function pendingFieldsDeclaration(contract, table) {
  const [project, dataset, name] = table.replace(/`/g, "").split(".");
  return `declare ${PENDING_FIELDS} array<string> default (
  select coalesce(array_agg(field_name), [])
  from unnest([
${wrap(contract.fields.map((field) => literal(field.name)), 6, 90).join("\n")}
    ]) as field_name
  where field_name not in (
      select column_name
      from \`${project}.${dataset}\`.information_schema.columns
      where table_name = ${literal(name)}
    )
);`;
}

// The control table the audit function appends one row to per object finalized in the landing
// bucket (ingest/audit.py; locally `lakehouse run` records what landed since, as finalize would).
const FILE_ARRIVALS = ["ops", "file_arrivals"];

// Returns the batch's pre-operations. Incremental runs empty the batch and declare the watermarks as
// scripting variables, so that BigQuery prunes what it reads:
// - landing_files: the landing objects of this source that arrived (ops.file_arrivals) and no run
//   took (the intake ledger), and landing_first / landing_last, the first and last ingest_date
//   folder among them. The batch reads those files alone (_FILE_NAME), in those folders alone (the
//   hive partition ingest_date). The watermark is by arrival, not by path: a file that arrives late
//   in an old folder is taken. Arrivals are read from lookback_days before the newest landing hour
//   taken, or the last run if that is earlier: a folder dated in the future does not move the window
//   past what arrives now (arrivals_from: the arrivals table is partitioned by arrived_at). The variable holds only
//   the files not taken (BigQuery limits the size of a script variable): the ledger's landing rows
//   are read whole (one name per file; it is clustered by source_kind), not filtered by a list of
//   the window's arrivals, whose names could outgrow a variable at high landing rates.
// - pubsub_from: the oldest publish time still scanned for Pub/Sub messages not taken yet
//   (lookback_days before the newest taken).
// The intake ledger is created empty if a crash left the batch without it. A first or full-refresh
// run takes all of bronze, so a full refresh rebuilds every silver table from everything landed.
function batchPreOps(contract, ctx, intake) {
  const columns = INTAKE_COLUMNS.map(([name, type]) => `  ${name} ${type}`).join(",\n");
  const days = params.lookbackDays();
  const arrivals = ctx.ref(...FILE_ARRIVALS);
  const bucket = params.landingBucket();
  // the ingest_date folder of a landing file `uri`, which landing_first and landing_last bound
  const folderDate = "safe.parse_date('%Y-%m-%d', regexp_extract(uri, r'/ingest_date=([^/]*)/'))";
  // BigQuery takes DECLARE only at the start of a script: declare, then create, then set.
  return ctx.when(ctx.incremental(), `declare arrivals_from timestamp;
declare landing_files array<string>;
declare landing_first date;
declare landing_last date;
declare pubsub_from timestamp;
${pendingFieldsDeclaration(contract, ctx.self())}

create table if not exists ${intake} (
${columns}
);

delete from ${ctx.self()}
where true;

set arrivals_from = (
  select
    coalesce(
      timestamp_sub(least(max(ingested_at), max(taken_at)), interval ${days} day),
      timestamp '1970-01-01'
    )
  from ${intake}
  where source_kind = 'landing'
);

set landing_files = (
  with arrived as (
    select distinct concat('gs://', bucket, '/', object_name) as uri
    from ${arrivals}
    where
      arrived_at >= arrivals_from
      and bucket = ${literal(bucket)}
      and starts_with(object_name, ${literal(`source=${contract.name}/`)})
  ),

  taken as (
    select origin
    from ${intake}
    where source_kind = 'landing'
  )

  select coalesce(array_agg(uri order by uri), [])
  from arrived
  where uri not in (select origin from taken)
);

set landing_first = (
  select min(${folderDate})
  from unnest(landing_files) as uri
);

set landing_last = (
  select max(${folderDate})
  from unnest(landing_files) as uri
);

set pubsub_from = (
  select coalesce(timestamp_sub(max(ingested_at), interval ${days * 24} hour), timestamp '1970-01-01')
  from ${intake}
  where source_kind = 'pubsub'
);`, "");
}

// Returns the WHERE clauses selecting the bronze records no run has taken yet.
function batchScope(intake) {
  return {
    landing: [
      "where ingest_date between landing_first and landing_last",
      "    and _file_name in unnest(landing_files)",
    ].join("\n"),
    pubsub: [
      "where publish_time >= pubsub_from",
      "    and " + PUBSUB_INTAKE_KEY + " not in (",
      "      select intake.origin",
      `      from ${intake} as intake`,
      "      where intake.source_kind = 'pubsub' and intake.ingested_at >= pubsub_from",
      "    )",
    ].join("\n"),
  };
}

// A Pub/Sub message in the intake ledger: its id with its publish time, which a redelivery repeats
// (message ids are unique per topic on GCP, but a restarted local emulator numbers from 1 again).
const PUBSUB_INTAKE_KEY =
  "concat(subscription_name, '/', message_id, '@', format_timestamp('%FT%H:%M:%E6SZ', publish_time))";

// Returns the intake ledger rows of the batch: one per landing file or Pub/Sub message taken.
function intakeQuery(batch) {
  return `
with taken as (
  select
    source_kind,
    if(
      source_kind = 'pubsub',
      concat(origin, '@', format_timestamp('%FT%H:%M:%E6SZ', ingested_at)),
      origin
    ) as origin,
    ingest_date,
    ingested_at,
  from ${batch}
),

final as (
  select
    source_kind,
    origin,
    min(ingest_date) as ingest_date,
    min(ingested_at) as ingested_at,
    count(*) as record_count,
    current_timestamp() as taken_at,
  from taken
  group by source_kind, origin
)

select * from final
`;
}

// Returns the latest valid version per key among the batch and (incremental) the kept versions
// of the keys it touches; only keys whose kept version changes are merged, so a replay changes
// nothing. `selectList` maps batch columns to silver columns (PII hashed, derived columns).
function latestVersionsQuery(contract, ctx, selectList) {
  const keys = keyList(contract);
  return `
with ${validBatch(ctx, contract, `${selectList},\n    true as is_new`)},
${ctx.when(ctx.incremental(), `
touched_keys as (
  ${selectDistinctKeys(contract)}
  from batch
),

kept as (
  -- only what ranking needs: the kept rows are never written again, and naming their columns
  -- keeps this query valid when a contract change adds a column (onSchemaChange EXTEND)
  select
    ${rankColumns(contract).map((column) => `kept_rows.${column}`).join(",\n    ")},
    false as is_new,
  from ${ctx.self()} as kept_rows
  inner join touched_keys using (${keys})
),
`)}
candidates as (
  select
    ${rankColumns(contract).join(",\n    ")},
    is_new,
  from batch${ctx.when(ctx.incremental(), `
  union all
  select * from kept`)}
),

distinct_records as (
  select * from candidates
  -- a record taken again after a crash is the version already kept
  qualify row_number() over (partition by record_id order by is_new) = 1
),

ranked as (
  select
    *,
    row_number() over (
      partition by ${keys}
      order by ${latestFirst(contract)}
    ) as version_rank,
  from distinct_records
),

final as (
  select batch.* except (is_new)
  from batch
  inner join ranked using (record_id)
  where ranked.version_rank = 1 and ranked.is_new
)

select * from final
`;
}

// The columns that rank versions of a key: the key, then the latestFirst order.
function rankColumns(contract) {
  return contract.key.concat([contract.event_time, "ingested_at", "record_id"]
    .filter((column) => !contract.key.includes(column)));
}

// Returns [[column, expression over the staging view]] of the silver table: contract fields typed,
// PII replaced by salted hashes, the payload keys the contract does not name (`extra`, JSON), then
// lineage columns.
function silverColumns(contract) {
  const columns = contract.fields.map((field) =>
    field.pii ? [`${field.name}_hash`, piiHash(field.name)] : [field.name, field.name],
  );
  return columns.concat([
    ["extra", "extra"],
    ["event_date", `date(${contract.event_time})`],
    ["event_id", "event_id"],
    ["record_id", "record_id"],
    ["source_kind", "source_kind"],
    ["ingested_at", "ingested_at"],
    ["ingest_date", "ingest_date"],
  ]);
}

// Columns a hand-written silver model derives beyond the contract's fields: [column, expression,
// the column it follows]. The model and the duplicates pre-operation build the same select list.
const DERIVED_COLUMNS = {
  orders: [["total_price", "quantity * price", "price"]],
};
// Silver tables kept as BigLake Iceberg tables, which take no JSON column: `extra` is JSON text there.
const ICEBERG_SILVER = ["orders"];

// Returns the select list (batch columns as silver columns) of the source's silver table.
function silverSelectList(contract) {
  const columns = [];
  silverColumns(contract).forEach(([column, expression]) => {
    const json = column === "extra" && ICEBERG_SILVER.includes(contract.name);
    columns.push([column, json ? "to_json_string(extra)" : expression]);
    (DERIVED_COLUMNS[contract.name] || []).filter(([, , after]) => after === column)
      .forEach(([derived, derivation]) => columns.push([derived, derivation]));
  });
  return columns.map(([column, expression]) =>
    expression === column ? column : `${expression} as ${column}`).join(",\n    ");
}

// Returns the statement creating the source's silver table, empty, when it does not exist (for the
// pre-operations of <source>_duplicates, which reads it). A run that committed the duplicates table
// and not silver (killed, silver failed, `--actions <source>_duplicates`) leaves the duplicates table
// incremental and silver absent; without this every later run fails reading silver. The table gets
// silver's columns, partitioning, clustering and (BigLake Iceberg) connection and storage, read from
// the silver action's compiled config, so that whether silver then replaces it (this run) or merges
// into it (a later run) the table is the one a first run creates. With an empty intake ledger the
// batch holds all of bronze, so silver fills it completely.
function createSilverIfAbsent(contract, ctx) {
  const target = ctx.resolve(contract.name);
  const action = dataform.actions.find((each) => each.proto && each.proto.target &&
    each.proto.target.name === contract.name && target.includes(`.${each.proto.target.schema}.`));
  const bigquery = (action && action.proto.bigquery) || {};
  const lines = [`create table if not exists ${target}`];
  if (bigquery.partitionBy) {
    lines.push(`partition by ${bigquery.partitionBy}`);
  }
  if (bigquery.clusterBy && bigquery.clusterBy.length) {
    lines.push(`cluster by ${bigquery.clusterBy.join(", ")}`);
  }
  if (bigquery.tableFormat === "ICEBERG" || bigquery.tableFormat === 1) {
    // sqlfluff's BigQuery grammar has no WITH CONNECTION DEFAULT (BigQuery's default connection).
    const connection = bigquery.connection === "DEFAULT" ? "DEFAULT  -- noqa: PRS" : `\`${bigquery.connection}\``;
    lines.push(`with connection ${connection}`);
    lines.push(`options (file_format = 'PARQUET', table_format = 'ICEBERG', storage_uri = '${bigquery.storageUri}')`);
  }
  return `${lines.join("\n")}
as
with empty_batch as (
  select
    ${silverSelectList(contract)},
  from ${ctx.ref(`${contract.name}_batch`)}
  where false
)

select * from empty_batch`;
}

// The contract fields each hand-written silver model (definitions/silver/<name>.sqlx) lists itself.
const HAND_WRITTEN_FIELDS = {
  orders: [
    "order_id", "customer_id", "customer_email", "customer_name", "shipping_address", "product_id", "quantity",
    "price", "currency", "status", "event_ts",
  ],
};

// Returns [[column, expression]] of the contract fields a hand-written silver model does not list,
// so that a field added to the contract (`lakehouse contract diff`) reaches it too.
function addedColumns(contract) {
  const listed = HAND_WRITTEN_FIELDS[contract.name] || [];
  const added = contract.fields.filter((field) => !listed.includes(field.name));
  return silverColumns({ ...contract, fields: added }).slice(0, added.length);
}

// Returns the salted SHA-256 (hex) of a column; NULL stays NULL. The salt is read from the key
// table when the query runs, so no SQL text holds it; an empty key table fails the query, never
// hashes everything to NULL.
function piiHash(column) {
  const salt = `(select salt from ${params.piiKeyTable()})`;
  return `to_hex(sha256(concat(
      coalesce(${salt}, error('keys.pii_salt is empty')),
      ${column}
    )))`;
}

// The silver order of versions of one key: latest event first, then latest arrival.
function latestFirst(contract) {
  return `${contract.event_time} desc, ingested_at desc, record_id desc`;
}

// Returns the CTE `batch`: `selectList` over the valid records of <source>_batch (the versions a run
// took: silver keeps the latest of each key, duplicates the others).
function validBatch(ctx, contract, selectList) {
  return `batch as (
  select
    ${selectList},
  from ${ctx.ref(`${contract.name}_batch`)}
  where array_length(failed_rules) = 0
)`;
}

// Returns the WINDOW clause naming latest_first: the versions of one key, latest first.
function latestFirstWindow(contract) {
  return `window latest_first as (
    partition by ${keyList(contract)}
    order by ${latestFirst(contract)}
  )`;
}

function keyList(contract) {
  return contract.key.join(", ");
}

// Returns the key columns as select-list lines (one per line, each ending with a comma).
// Returns "select distinct <keys>" for a select list: one key on the line, several one per line.
function selectDistinctKeys(contract) {
  if (contract.key.length === 1) {
    return `select distinct ${contract.key[0]}`;
  }
  return ["select distinct"].concat(contract.key.map((key) => `    ${key},`)).join("\n");
}

// Descriptions of the columns that hold what the contract does not name.
const EXTRA_DESCRIPTIONS = {
  extra_fields: "Top-level payload keys the contract does not name (kept under unknown_fields: keep), sorted.",
  extra: "The payload keys the contract does not name, with their values (JSON object); NULL when none.",
};

// The columns of the staging view and the batch, in order.
function stagedColumns(contract) {
  return ["record_id", "source_kind", "origin", "ingested_at", "ingest_date", "event_id", "raw_record"]
    .concat(contract.fields.map((field) => field.name), ["extra_fields", "extra", "failed_rules"]);
}

module.exports = {
  RECORD_FIELDS,
  RESTRICTED_SCHEMA,
  knownFields,
  stagedColumns,
  EXTRA_DESCRIPTIONS,
  rules,
  ruleNames,
  stagedQuery,
  silverColumns,
  silverSelectList,
  createSilverIfAbsent,
  addedColumns,
  piiHash,
  INTAKE_COLUMNS,
  PUBSUB_INTAKE_KEY,
  pubsubFirstCopy,
  batchPreOps,
  batchScope,
  FILE_ARRIVALS,
  intakeQuery,
  latestVersionsQuery,
  latestFirst,
  latestFirstWindow,
  validBatch,
  keyList,
  selectDistinctKeys,
  isRequired,
};
