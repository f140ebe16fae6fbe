// Silver, per source contract. Each run takes the bronze records no run has taken yet:
//   <source>_batch       what arrived since the last successful run, parsed, typed and checked once;
// and routes every record of the batch to exactly one of three incremental tables:
//   <source>             the latest valid version per key (PII hashed), MERGE on the key;
//   <source>_quarantine  records that failed any rule, with the raw record and every rule failed;
//   <source>_duplicates  valid records that are not the latest version of their key.
// Then ops.<source>_intake, the watermark, records the files and messages taken; it is written only
// when all three succeeded, so a failed or killed run leaves it where it was and the next run takes
// the same records again (every table is keyed on record_id, so taking them twice changes nothing).
// <source>_duplicates runs before silver and reads the silver table as it was before this run
// (resolve(), not ref()), so a version displaced by a newer one is recorded as a duplicate.
// <source>_staged is the same parsing over all of bronze, as a view, for people and unit tests.
// Staged, batch and quarantine carry the raw record and the PII fields in clear, so they live in
// their own dataset, silver_restricted (silver.RESTRICTED_SCHEMA), not in silver: analysts are granted
// silver, gold and ops, never this dataset (deploy/resources.py). Not beside bronze, because bronze is
// also written by the Pub/Sub subscription's identity, which must not edit quarantine; the name keeps
// the layer word so lineage and docs place it in silver. Analysts read quarantine reasons without the
// raw record in ops.quarantine_failures and ops.quarantine_rules.

sources.all().forEach((contract) => {
  const name = contract.name;
  const keys = silver.keyList(contract);
  const tags = ["silver", "hourly", name];
  const event = contract.event_time;

  publish(`${name}_staged`, {
    type: "view",
    schema: silver.RESTRICTED_SCHEMA,
    tags,
    description: `One row per bronze record of ${name} (landing lines and Pub/Sub rows), parsed, typed and checked.`,
    columns: descriptions.describe(silver.stagedColumns(contract), silver.EXTRA_DESCRIPTIONS, contract),
  }).query((ctx) => silver.stagedQuery(contract, ctx));

  const intake = `${name}_intake`;
  // Incremental so that a full refresh is visible to it: an incremental run replaces its rows with
  // what is new, a first or full-refresh run with all of bronze.
  publish(`${name}_batch`, {
    type: "incremental",
    schema: silver.RESTRICTED_SCHEMA,
    // a contract change (new field, wider type) adds the column on the next run, no full refresh
    onSchemaChange: "EXTEND",
    tags,
    description:
      `One row per bronze record of ${name} that arrived since the last successful run (landing files ` +
      "and Pub/Sub messages not in the intake ledger), parsed, typed and checked once.",
    columns: descriptions.describe(silver.stagedColumns(contract), silver.EXTRA_DESCRIPTIONS, contract),
    assertions: {
      uniqueKey: ["record_id"],
      nonNull: ["record_id", "source_kind", "origin", "ingested_at", "ingest_date", "raw_record"],
    },
  })
    .preOps((ctx) => silver.batchPreOps(contract, ctx, ctx.resolve("ops", intake)))
    .query((ctx) => silver.stagedQuery(
      contract, ctx, ctx.incremental() ? silver.batchScope(ctx.resolve("ops", intake)) : undefined,
    ));

  publish(`${name}_quarantine`, {
    type: "incremental",
    schema: silver.RESTRICTED_SCHEMA,
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
from ${ctx.ref(`${name}_batch`)}
where array_length(failed_rules) > 0
`);

  // beyond the key, the columns gold tables recompute by (includes/touched.js): a displaced
  // version's values of them are known only here once silver holds the newer one
  const dedupColumns = contract.key.filter((key) => key !== event).concat(
    touched.duplicateColumns(contract),
    ["event_id", event, "record_id", "source_kind", "ingested_at", "ingest_date"],
  );
  const dedupList = dedupColumns.join(",\n    ");
  publish(`${name}_duplicates`, {
    type: "incremental",
    uniqueKey: ["record_id"],
    tags,
    description:
      `One row per valid bronze record of ${name} that is not the latest version of its key ` +
      "(a re-delivery, or an older version).",
    bigquery: { partitionBy: "ingest_date", clusterBy: contract.key.slice(0, 4) },
    columns: descriptions.describe(dedupColumns.concat(["duplicate_of", "duplicate_kind"]), {
      duplicate_of: "record_id of the version of the same key that silver keeps (updated when a newer one arrives).",
    }, contract),
    assertions: {
      uniqueKey: ["record_id"],
      nonNull: ["record_id", "duplicate_of", "duplicate_kind"].concat(contract.key),
      rowConditions: [
        "duplicate_of != record_id",
        "duplicate_kind in ('redelivery', 'older_version')",
      ],
    },
  })
    .preOps((ctx) => ctx.when(ctx.incremental(), silver.createSilverIfAbsent(contract, ctx)))
    .query((ctx) => `
with batch as (
  select
    ${dedupList},
    cast(null as string) as prior_duplicate_of,
    cast(null as string) as prior_duplicate_kind,
  from ${ctx.ref(`${name}_batch`)}
  where array_length(failed_rules) = 0
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
    cast(null as string) as prior_duplicate_of,
    cast(null as string) as prior_duplicate_kind,
  from ${ctx.resolve(name)} as kept_rows
  inner join touched_keys using (${keys})
),

prior as (
  -- the duplicates already recorded for those keys: a newer version changes their duplicate_of
  select
    ${dedupColumns.map((column) => `prior_rows.${column}`).join(",\n    ")},
    prior_rows.duplicate_of as prior_duplicate_of,
    prior_rows.duplicate_kind as prior_duplicate_kind,
  from ${ctx.self()} as prior_rows
  inner join touched_keys using (${keys})
),
`)}
candidates as (
  select * from batch${ctx.when(ctx.incremental(), `
  union all
  select * from kept
  union all
  select * from prior`)}
),

distinct_records as (
  select * from candidates
  -- a record taken again after a crash keeps what was recorded of it
  qualify row_number() over (partition by record_id order by prior_duplicate_of is null) = 1
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

judged as (
  select
    *,
    kept_record_id as duplicate_of,
    if(coalesce(event_id = kept_event_id, false), 'redelivery', 'older_version') as duplicate_kind,
  from ranked
  where record_id != kept_record_id
),

final as (
  -- new duplicates, and recorded ones whose latest version changed (so any sequence of runs
  -- ends where one run over all of bronze would)
  select
    ${dedupList},
    duplicate_of,
    duplicate_kind,
  from judged
  where prior_duplicate_of is null
    or prior_duplicate_of != duplicate_of
    or prior_duplicate_kind != duplicate_kind
)

select * from final
`);

  if (!sources.hasHandWrittenSilver(name)) {
    publishSilver(contract, tags);
  }

  // The watermark: what this run took, written once silver, quarantine, duplicates and the
  // incremental gold tables that read the batch (includes/touched.js) hold it.
  publish(intake, {
    type: "incremental",
    schema: "ops",
    tags,
    dependencies: [name, `${name}_quarantine`, `${name}_duplicates`].concat(touched.consumersOf(name)),
    description:
      `One row per landing file or Pub/Sub message of ${name} taken by a run: the watermark of ` +
      `${name}_batch, and the ledger of record counts behind the conservation checks.`,
    bigquery: { partitionBy: "ingest_date", clusterBy: ["source_kind", "origin"] },
    columns: descriptions.describe(silver.INTAKE_COLUMNS.map(([column]) => column), {
      origin: "gs:// object of the landing file, or subscription/message_id@publish_time of the message.",
    }),
    assertions: {
      nonNull: silver.INTAKE_COLUMNS.map(([column]) => column),
      rowConditions: ["record_count > 0"],
    },
  }).query((ctx) => silver.intakeQuery(ctx.ref(`${name}_batch`)));
});

function publishSilver(contract, tags) {
  const name = contract.name;
  const event = contract.event_time;
  const keys = silver.keyList(contract);
  const columns = silver.silverColumns(contract);
  const selectList = silver.silverSelectList(contract);
  const nonNull = contract.fields.filter((field) => silver.isRequired(contract, field))
    .map((field) => (field.pii ? `${field.name}_hash` : field.name))
    .concat(["event_date", "record_id", "ingested_at"]);
  publish(name, {
    type: "incremental",
    uniqueKey: contract.key,
    onSchemaChange: "EXTEND",
    tags,
    dependencies: [`${name}_duplicates`],
    description: `One row per ${keys}: the latest valid version (${contract.description})`,
    bigquery: { partitionBy: "event_date", clusterBy: contract.key.slice(0, 4) },
    columns: descriptions.describe(columns.map(([column]) => column), silver.EXTRA_DESCRIPTIONS, contract),
    assertions: {
      uniqueKey: contract.key,
      nonNull,
      rowConditions: [`event_date = date(${event})`],
    },
  }).query((ctx) => silver.latestVersionsQuery(contract, ctx, selectList));
}
