// Schema drift: payload keys the source contracts do not name, as each run's batches bring them
// (kept in silver's `extra` column under unknown_fields: keep, quarantined under quarantine).
// `lakehouse contract diff --source S` turns these rows into the contract change that accepts them.

const contracts = sources.all();
const tags = ["ops", "hourly", "drift"];

// The JSON type of a value from its JSON text; an integer is told from a number with a fraction
// so that a contract diff can propose INT64 rather than NUMERIC.
const JSON_TYPE = `case
      when starts_with(value_json, '"') then 'string'
      when starts_with(value_json, '{') then 'object'
      when starts_with(value_json, '[') then 'array'
      when value_json in ('true', 'false') then 'boolean'
      when value_json = 'null' then 'null'
      when regexp_contains(value_json, r'^-?[0-9]+$') then 'integer'
      else 'number'
    end`;

const COLUMNS = {
  source_name: "Source (contract) the records belong to.",
  field_name: "Top-level payload key the contract does not name.",
  json_type: "JSON type of its values: string, integer, number, boolean, object, array or null.",
  first_seen_at: "ingested_at of the first record seen with the key and type (UTC).",
  last_seen_at: "ingested_at of the latest record seen with the key and type (UTC).",
  record_count: "Records seen with the key and type, over all runs (a batch taken again after a crash counts again).",
  quarantined_count: "Of those, records quarantined for another rule (a renamed required field shows here).",
  sample_value: "One value seen, as JSON text (the first seen), at most 200 characters.",
};

publish("schema_drift", {
  type: "incremental",
  schema: "ops",
  uniqueKey: ["source_name", "field_name", "json_type"],
  tags,
  description: "One row per source, payload key the contract does not name, and JSON type of its values.",
  columns: COLUMNS,
  assertions: {
    uniqueKey: ["source_name", "field_name", "json_type"],
    nonNull: ["source_name", "field_name", "json_type", "first_seen_at", "last_seen_at", "record_count"],
    rowConditions: ["quarantined_count <= record_count", "first_seen_at <= last_seen_at"],
  },
}).query((ctx) => `
with arrivals as (
${contracts.map((contract) => `  select
    '${contract.name}' as source_name,
    extra_field as field_name,
    to_json_string(extra[extra_field]) as value_json,
    ingested_at,
    array_length(failed_rules) > 0 as quarantined,
  from ${ctx.ref(`${contract.name}_batch`)}, unnest(extra_fields) as extra_field`).join("\n  union all\n")}
),

typed as (
  select
    *,
    ${JSON_TYPE} as json_type,
  from arrivals
),

arrived as (
  select
    source_name,
    field_name,
    json_type,
    min(ingested_at) as first_seen_at,
    max(ingested_at) as last_seen_at,
    count(*) as record_count,
    countif(quarantined) as quarantined_count,
    substr(min(value_json), 1, 200) as sample_value,
  from typed
  group by source_name, field_name, json_type
),
${ctx.when(ctx.incremental(), `
recorded as (
  select * from ${ctx.self()}
),
`, `
recorded as (
  select * from arrived
  where false
),
`)}
final as (
  select
    arrived.source_name,
    arrived.field_name,
    arrived.json_type,
    least(arrived.first_seen_at, coalesce(recorded.first_seen_at, arrived.first_seen_at)) as first_seen_at,
    greatest(arrived.last_seen_at, coalesce(recorded.last_seen_at, arrived.last_seen_at)) as last_seen_at,
    arrived.record_count + coalesce(recorded.record_count, 0) as record_count,
    arrived.quarantined_count + coalesce(recorded.quarantined_count, 0) as quarantined_count,
    coalesce(recorded.sample_value, arrived.sample_value) as sample_value,
  from arrived
  left join recorded using (source_name, field_name, json_type)
)

select * from final
`);

// New fields: drift rows whose key no contract names yet. A warning: the records flow on (kept in
// `extra`), but someone should decide whether the contract takes the field.
assert("schema_drift_new_fields", {
  tags: tags.concat(["warn"]),
  description: "Payload keys arriving that the source's contract does not name (see ops.schema_drift).",
}).query((ctx) => `
with drift as (
  select * from ${ctx.ref("ops", "schema_drift")}
),

final as (
  select
    source_name,
    field_name,
    json_type,
    record_count,
    first_seen_at,
    last_seen_at,
  from drift
  where
    concat(source_name, '.', field_name) not in (
${contracts.map((contract) => contract.fields.map((field) => `      '${contract.name}.${field.name}'`).join(",\n"))
    .join(",\n")}
    )
)

select * from final
`);
