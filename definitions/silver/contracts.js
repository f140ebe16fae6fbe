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

// Beyond what the contract gives every silver table, the checks of a hand-written silver table's
// derived columns (definitions/silver/<name>.sqlx).
const HAND_WRITTEN_CHECKS = {
  orders: {
    nonNull: ["total_price"],
    rowConditions: [
      "total_price = quantity * price",
      "quantity >= 1",
      "price > 0",
      "regexp_contains(product_id, r'^PROD-[0-9]{4}$')",
    ],
  },
};

sources.all().forEach((contract) => {
  const name = contract.name;
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
      "(a re-delivery, or an older version), with the version that displaced it.",
    bigquery: { partitionBy: "ingest_date", clusterBy: contract.key.slice(0, 4) },
    columns: descriptions.describe(dedupColumns.concat(["duplicate_of", "duplicate_kind"]), {}, contract),
  })
    .preOps((ctx) => ctx.when(ctx.incremental(), silver.createSilverIfAbsent(contract, ctx)))
    .query((ctx) => (ctx.incremental() ? incrementalDuplicates(contract, ctx, dedupColumns) : `
with ${silver.validBatch(ctx, contract, dedupList)},

ranked as (
  -- every version's successor: the next newer version of its key (batch record_ids are unique)
  select
    *,
    lag(record_id) over latest_first as successor_record_id,
    lag(event_id) over latest_first as successor_event_id,
  from batch
  ${silver.latestFirstWindow(contract)}
),

final as (
  select
    ${dedupList},
    successor_record_id as duplicate_of,
    ${duplicateKind("successor_event_id")} as duplicate_kind,
  from ranked
  where successor_record_id is not null
)

select * from final
`));

  if (!sources.hasHandWrittenSilver(name)) {
    publishSilver(contract, tags);
  }
  publishChecks(contract);

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
  publish(name, {
    type: "incremental",
    uniqueKey: contract.key,
    onSchemaChange: "EXTEND",
    tags,
    dependencies: [`${name}_duplicates`],
    description: `One row per ${keys}: the latest valid version (${contract.description})`,
    bigquery: { partitionBy: "event_date", clusterBy: contract.key.slice(0, 4) },
    columns: descriptions.describe(columns.map(([column]) => column), silver.EXTRA_DESCRIPTIONS, contract),
  }).query((ctx) => silver.latestVersionsQuery(contract, ctx, selectList));
}

// The checks of silver, quarantine and duplicates (includes/checks.js): hourly over the rows this
// run's batch could have written, daily over the whole table. Each hourly filter names the table's
// partition column with values read from the batch, so BigQuery need not read every partition:
//   silver       the batch's records (by record_id, valid or not: a model that let a bad one through
//                is caught) at their event dates and the NULL partition; uniqueness over the rows of
//                the batch's keys (a duplicate key may sit in any partition);
//   quarantine   the batch's records at their ingest dates;
//   duplicates   the batch's records at their ingest dates, and the recorded duplicates this run
//                re-pointed at a batch record (duplicate_of), by the first key column (clustered).
// The silver and quarantine filters also keep only rows ingested at or after the batch's earliest
// line (a row this run wrote carries its line's ingested_at): the local engine then skips, by the
// table's min/max per row group, the rows of earlier runs without reading them (the filter by record_id
// alone read every row of the table, all columns, each hour). Duplicates are not bounded so: a version
// a new one displaced moves there with its own, older ingested_at.
// A record's ingest date is part of its record_id (the origin names the landing folder or the
// publish time), so every copy of a record_id is in the same partition. A silver row written at a
// date other than its event time's is outside the hourly filter; its record is then found nowhere
// and <source>_conservation fails, and the daily checks see it.
function publishChecks(contract) {
  const name = contract.name;
  const tags = ["silver", name];
  const batchCte = (ctx, columns) => `batch as (
  select
    ${columns.map((column) => `${column},`).join("\n    ")}
  from ${ctx.ref(`${name}_batch`)}
)`;
  const inBatch = "record_id in (select batch.record_id from batch)";
  const atIngestDates = "ingest_date in (select batch.ingest_date from batch)";
  const sinceBatch = "ingested_at >= (select min(batch.ingested_at) from batch)";

  const extra = HAND_WRITTEN_CHECKS[name] || {};
  const silverChecks = {
    uniqueKey: contract.key,
    nonNull: contract.fields.filter((field) => silver.isRequired(contract, field))
      .map((field) => (field.pii ? `${field.name}_hash` : field.name))
      .concat(extra.nonNull || [], ["event_date", "record_id", "ingested_at"]),
    rowConditions: (extra.rowConditions || []).concat([`event_date = date(${contract.event_time})`]),
  };
  checks.assertions("silver", name, silverChecks, (ctx) => ({
    ctes: batchCte(ctx, ["record_id", "ingested_at"].concat(contract.key, [`date(${contract.event_time}) as event_date`])),
    written: `${inBatch}\n    and (event_date in (select batch.event_date from batch) or event_date is null)`
      + `\n    and ${sinceBatch}`,
    candidates: contract.key.length === 1
      ? `select distinct batch.${contract.key[0]} from batch`
      : `select distinct\n    ${contract.key.map((key) => `${key},`).join("\n    ")}\n  from batch`,
  }), tags).forEach(publishCheck);

  const quarantineChecks = {
    uniqueKey: ["record_id"],
    nonNull: ["record_id", "source_kind", "origin", "ingested_at", "ingest_date", "raw_record"],
    rowConditions: ["array_length(failed_rules) > 0"],
  };
  checks.assertions(silver.RESTRICTED_SCHEMA, `${name}_quarantine`, quarantineChecks, (ctx) => ({
    ctes: batchCte(ctx, ["record_id", "ingest_date", "ingested_at"]),
    written: `${atIngestDates}\n    and ${inBatch}\n    and ${sinceBatch}`,
    candidates: "select batch.record_id from batch",
    partner: `checked_rows.${atIngestDates}`,
  }), tags).forEach(publishCheck);

  const duplicatesChecks = {
    uniqueKey: ["record_id"],
    nonNull: ["record_id", "duplicate_of", "duplicate_kind"].concat(contract.key),
    rowConditions: [
      "duplicate_of != record_id",
      "duplicate_kind in ('redelivery', 'older_version')",
    ],
  };
  // The rows written are found by two filters joined by UNION DISTINCT, not one filter with OR: each
  // `in (select … from batch)` then is a semi-join that DuckDB builds on the smaller side (a full run's
  // batch holds every record; under OR each became a mark join over it, 1.6 GB at ten million events).
  // Every copy of a written record_id is checked: they share its ingest date.
  const firstKey = contract.key[0];
  checks.assertions("silver", `${name}_duplicates`, duplicatesChecks, (ctx) => ({
    ctes: `${batchCte(ctx, ["record_id", "ingest_date", firstKey])},

written as (
  select
    record_id,
    ingest_date,
  from ${ctx.ref(`${name}_duplicates`)}
  where
    ${atIngestDates}
    and ${inBatch}
  union distinct
  select
    record_id,
    ingest_date,
  from ${ctx.ref(`${name}_duplicates`)}
  where
    ${firstKey} in (select batch.${firstKey} from batch)
    and duplicate_of in (select batch.record_id from batch)
)`,
    written: "ingest_date in (select written.ingest_date from written)\n    and record_id in (select written.record_id from written)",
    candidates: "select written.record_id from written",
    partner: "checked_rows.ingest_date in (select written.ingest_date from written)",
  }), tags).forEach(publishCheck);
}

function publishCheck(check) {
  assert(check.name, check.config).query(check.query);
}

// 'redelivery' when the version that displaced a record is the same event (same event_id), else
// 'older_version'.
function duplicateKind(successorEventId) {
  return `if(coalesce(event_id = ${successorEventId}, false), 'redelivery', 'older_version')`;
}

// The incremental run of <source>_duplicates: the rows it writes are the batch's versions that are
// not the latest of their key, and the recorded version each run of new versions lands directly on
// (silver's version displaced by a newer one, or a duplicate a late version now follows). It sorts
// only the versions at or after the oldest new event time of each touched key (a new version ranks
// above every older event time); the version right below them is found by its recorded successor.
function incrementalDuplicates(contract, ctx, dedupColumns) {
  const name = contract.name;
  const event = contract.event_time;
  const keys = silver.keyList(contract);
  const keyLines = contract.key.map((key) => `${key},`).join("\n    ");
  const dedupList = dedupColumns.join(",\n    ");
  const qualified = (alias) => dedupColumns.map((column) => `${alias}.${column}`).join(",\n    ");
  const newRecordIds = "select new_versions.record_id from new_versions";
  return `
with ${silver.validBatch(ctx, contract, dedupList)},

touched_keys as (
  ${silver.selectDistinctKeys(contract)}
  from batch
),

silver_rows as (
  -- the versions silver holds now (before this run's merge), for the keys this batch touches
  select
    ${qualified("kept_rows")},
  from ${ctx.resolve(name)} as kept_rows
  inner join touched_keys using (${keys})
),

recorded as (
  -- the duplicates recorded for those keys
  select
    ${qualified("recorded_rows")},
    recorded_rows.duplicate_of,
    recorded_rows.duplicate_kind,
  from ${ctx.self()} as recorded_rows
  inner join touched_keys using (${keys})
),

recorded_ids as (
  -- those already recorded here: a run that stopped after this table committed and before silver
  -- did is taken again
  select recorded.record_id
  from recorded
  where recorded.record_id in (select batch.record_id from batch)
    or recorded.record_id in (select silver_rows.record_id from silver_rows)
),

kept as (
  select * from silver_rows
  where record_id not in (select recorded_ids.record_id from recorded_ids)
),

new_versions as (
  select * from batch
  where record_id not in (select recorded_ids.record_id from recorded_ids)
    and record_id not in (select silver_rows.record_id from silver_rows)
),

floors as (
  select
    ${keyLines}
    min(${event}) as floor_time,
  from new_versions
  group by ${keys}
),

slice as (
  -- the versions a new version can land among: all but those older than every new one
  select
    ${qualified("kept_rows")},
    cast(null as string) as recorded_duplicate_of,
    cast(null as string) as recorded_duplicate_kind,
    false as is_new,
  from kept as kept_rows
  inner join floors using (${keys})
  where kept_rows.${event} >= floors.floor_time
  union all
  select
    ${qualified("recorded_rows")},
    recorded_rows.duplicate_of as recorded_duplicate_of,
    recorded_rows.duplicate_kind as recorded_duplicate_kind,
    false as is_new,
  from recorded as recorded_rows
  inner join floors using (${keys})
  where recorded_rows.${event} >= floors.floor_time
  union all
  select
    ${dedupList},
    cast(null as string) as recorded_duplicate_of,
    cast(null as string) as recorded_duplicate_kind,
    true as is_new,
  from new_versions
),

ordered as (
  select
    *,
    lag(record_id) over latest_first as successor_record_id,
    lag(event_id) over latest_first as successor_event_id,
    lead(record_id) over latest_first is null as is_lowest,
    -- the lowest recorded version at or above this one
    last_value(if(is_new, null, record_id) ignore nulls) over (
      latest_first rows between unbounded preceding and current row
    ) as boundary_record_id,
  from slice
  ${silver.latestFirstWindow(contract)}
),

lowest_new as (
  -- the keys whose slice ends with a new version: the recorded version right below the slice
  -- now follows it
  select
    ${contract.key.map((key) => `ordered.${key},`).join("\n    ")}
    ordered.record_id as successor_record_id,
    ordered.event_id as successor_event_id,
    ordered.boundary_record_id,
    floors.floor_time,
  from ordered
  inner join floors using (${keys})
  where ordered.is_lowest and ordered.is_new
),

below as (
  -- that version: the one recorded as following the slice's lowest recorded version; with none in
  -- the slice, the one silver keeps, or (after a stopped run) the one recorded as following a
  -- version of this batch
  select
    ${qualified("recorded_rows")},
    recorded_rows.duplicate_of as recorded_duplicate_of,
    recorded_rows.duplicate_kind as recorded_duplicate_kind,
    lowest_new.successor_record_id,
    lowest_new.successor_event_id,
  from recorded as recorded_rows
  inner join lowest_new on recorded_rows.duplicate_of = lowest_new.boundary_record_id
  -- below the slice; only rows recorded under the former meaning (all pointing at silver's
  -- version) could be in it, and they are written from the slice
  where recorded_rows.${event} < lowest_new.floor_time
  union all
  select
    ${qualified("kept_rows")},
    cast(null as string) as recorded_duplicate_of,
    cast(null as string) as recorded_duplicate_kind,
    lowest_new.successor_record_id,
    lowest_new.successor_event_id,
  from kept as kept_rows
  inner join lowest_new using (${keys})
  where lowest_new.boundary_record_id is null
  union all
  select
    ${qualified("recorded_rows")},
    recorded_rows.duplicate_of as recorded_duplicate_of,
    recorded_rows.duplicate_kind as recorded_duplicate_kind,
    lowest_new.successor_record_id,
    lowest_new.successor_event_id,
  from recorded as recorded_rows
  inner join lowest_new using (${keys})
  where lowest_new.boundary_record_id is null
    and recorded_rows.duplicate_of in (${newRecordIds})
),

successors as (
  select
    ${dedupList},
    recorded_duplicate_of,
    recorded_duplicate_kind,
    successor_record_id,
    successor_event_id,
  from ordered
  where successor_record_id is not null
  union all
  select * from below
),

judged as (
  select
    *,
    successor_record_id as duplicate_of,
    ${duplicateKind("successor_event_id")} as duplicate_kind,
  from successors
),

final as (
  -- new duplicates, and recorded ones whose successor changed
  select
    ${dedupList},
    duplicate_of,
    duplicate_kind,
  from judged
  where recorded_duplicate_of is null
    or recorded_duplicate_of != duplicate_of
    or recorded_duplicate_kind != duplicate_kind
)

select * from final
`;
}
