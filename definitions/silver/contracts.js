// Silver, per source contract: a staging view that parses, types and checks every bronze record,
// and three incremental tables that every bronze record ends in exactly one of:
//   <source>             the latest valid version per key (PII hashed), MERGE on the key;
//   <source>_quarantine  records that failed any rule, with the raw record and every rule failed;
//   <source>_duplicates  valid records that are not the latest version of their key.
// <source>_duplicates runs first and reads the silver table as it was before this run (resolve(),
// not ref()), so a version displaced by a newer one is recorded as a duplicate, never lost.

sources.all().forEach((contract) => {
  const name = contract.name;
  const keys = silver.keyList(contract);
  const tags = ["silver", "hourly", name];
  const event = contract.event_time;

  publish(`${name}_staged`, {
    type: "view",
    tags,
    description: `One row per bronze record of ${name} (landing lines and Pub/Sub rows), parsed, typed and checked.`,
    columns: descriptions.describe(
      ["record_id", "source_kind", "origin", "ingested_at", "ingest_date", "event_id", "raw_record", "failed_rules"]
        .concat(contract.fields.map((field) => field.name)),
      {},
      contract,
    ),
    assertions: {
      uniqueKey: ["record_id"],
      nonNull: ["record_id", "source_kind", "origin", "ingested_at", "ingest_date", "raw_record"],
    },
  }).query((ctx) => silver.stagedQuery(contract, ctx));

  publish(`${name}_quarantine`, {
    type: "incremental",
    uniqueKey: ["record_id"],
    tags,
    description: `One row per rejected bronze record of ${name}: the raw record and every rule it failed.`,
    bigquery: { partitionBy: "ingest_date", clusterBy: ["source_kind"] },
    columns: descriptions.describe(
      ["record_id", "source_kind", "origin", "ingested_at", "ingest_date", "event_id", "raw_record", "failed_rules"],
    ),
    assertions: {
      uniqueKey: ["record_id"],
      nonNull: ["record_id", "source_kind", "origin", "ingested_at", "ingest_date", "raw_record"],
      rowConditions: ["array_length(failed_rules) > 0"],
    },
  })
    .preOps((ctx) => silver.ingestCutoff(ctx))
    .query((ctx) => `
select
  record_id,
  source_kind,
  origin,
  ingested_at,
  ingest_date,
  event_id,
  raw_record,
  failed_rules,
from ${ctx.ref(`${name}_staged`)}
where ingest_date >= ingest_cutoff and array_length(failed_rules) > 0
`);

  const dedupColumns = contract.key.filter((key) => key !== event).concat([
    "event_id", event, "record_id", "source_kind", "ingested_at", "ingest_date",
  ]);
  const dedupList = dedupColumns.join(",\n    ");
  publish(`${name}_duplicates`, {
    type: "incremental",
    uniqueKey: ["record_id"],
    tags,
    description:
      `One row per valid bronze record of ${name} that is not the latest version of its key ` +
      "(a re-delivery, or an older version).",
    bigquery: { partitionBy: "ingest_date", clusterBy: contract.key.slice(0, 4) },
    columns: descriptions.describe(dedupColumns.concat(["duplicate_of", "duplicate_kind"]), {}, contract),
    assertions: {
      uniqueKey: ["record_id"],
      nonNull: ["record_id", "duplicate_of", "duplicate_kind"].concat(contract.key),
      rowConditions: [
        "duplicate_of != record_id",
        "duplicate_kind in ('redelivery', 'older_version')",
      ],
    },
  })
    .preOps((ctx) => silver.ingestCutoff(ctx))
    .query((ctx) => `
with batch as (
  select
    ${dedupList},
  from ${ctx.ref(`${name}_staged`)}
  where ingest_date >= ingest_cutoff and array_length(failed_rules) = 0
),
${ctx.when(ctx.incremental(), `
touched_keys as (
  ${silver.selectDistinctKeys(contract)}
  from batch
),

kept as (
  -- the versions silver holds now (before this run's merge), for the keys this batch touches
  select
    ${dedupColumns.map((column) => `kept_rows.${column}`).join(",\n    ")},
  from ${ctx.resolve(name)} as kept_rows
  inner join touched_keys using (${keys})
),
`)}
candidates as (
  select * from batch${ctx.when(ctx.incremental(), `
  union all
  select * from kept`)}
),

distinct_records as (
  select * from candidates
  qualify row_number() over (partition by record_id) = 1
),

ranked as (
  select
    *,
    first_value(record_id) over latest_first as kept_record_id,
    first_value(event_id) over latest_first as kept_event_id,
  from distinct_records
  window latest_first as (
    partition by ${keys}
    order by ${silver.latestFirst(contract)}
  )
),

final as (
  select
    ${dedupList},
    kept_record_id as duplicate_of,
    if(coalesce(event_id = kept_event_id, false), 'redelivery', 'older_version') as duplicate_kind,
  from ranked
  where record_id != kept_record_id
)

select * from final
`);

  if (sources.hasHandWrittenSilver(name)) {
    return;
  }

  const columns = silver.silverColumns(contract);
  const selectList = columns.map(([column, expression]) =>
    expression === column ? column : `${expression} as ${column}`).join(",\n    ");
  const nonNull = contract.fields.filter((field) => silver.isRequired(contract, field))
    .map((field) => (field.pii ? `${field.name}_hash` : field.name))
    .concat(["event_date", "record_id", "ingested_at"]);
  publish(name, {
    type: "incremental",
    uniqueKey: contract.key,
    tags,
    dependencies: [`${name}_duplicates`],
    description: `One row per ${keys}: the latest valid version (${contract.description})`,
    bigquery: { partitionBy: "event_date", clusterBy: contract.key.slice(0, 4) },
    columns: descriptions.describe(columns.map(([column]) => column), {}, contract),
    assertions: {
      uniqueKey: contract.key,
      nonNull,
      rowConditions: [`event_date = date(${event})`],
    },
  })
    .preOps((ctx) => silver.ingestCutoff(ctx))
    .query((ctx) => silverQuery(contract, ctx, selectList));
});

// The latest valid version per key among this batch and (incremental) the kept versions of the
// keys it touches; only keys whose kept version changes are merged, so a replay changes nothing.
function silverQuery(contract, ctx, selectList) {
  const keys = silver.keyList(contract);
  return `
with batch as (
  select
    ${selectList},
    true as is_new,
  from ${ctx.ref(`${contract.name}_staged`)}
  where ingest_date >= ingest_cutoff and array_length(failed_rules) = 0
),
${ctx.when(ctx.incremental(), `
touched_keys as (
  ${silver.selectDistinctKeys(contract)}
  from batch
),

kept as (
  select
    kept_rows.*,
    false as is_new,
  from ${ctx.self()} as kept_rows
  inner join touched_keys using (${keys})
),
`)}
candidates as (
  select * from batch${ctx.when(ctx.incremental(), `
  union all
  select * from kept`)}
),

distinct_records as (
  select * from candidates
  -- a record re-read inside the lookback window is the version already kept
  qualify row_number() over (partition by record_id order by is_new) = 1
),

ranked as (
  select
    *,
    row_number() over (
      partition by ${keys}
      order by ${silver.latestFirst(contract)}
    ) as version_rank,
  from distinct_records
),

final as (
  select * except (is_new, version_rank) from ranked
  where version_rank = 1 and is_new
)

select * from final
`;
}
