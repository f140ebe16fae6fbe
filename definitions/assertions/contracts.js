// Cross-table checks generated per source contract. A row returned is a failure. Severity: an
// assertion tagged "warn" is reported only; any other assertion fails the run.

sources.all().forEach((contract) => {
  const name = contract.name;
  const event = contract.event_time;

  // Every bronze record ends in exactly one of silver, quarantine or duplicates.
  assert(`${name}_conservation`, {
    tags: ["assertions", "hourly", name],
    description: `Bronze rows of ${name} = silver rows + quarantined rows + duplicate rows, exactly.`,
  }).query((ctx) => `
with landing as (
  select count(*) as row_count from ${ctx.ref(`${name}_landing`)}
),

pubsub as (
  select count(*) as row_count from ${ctx.ref(`${name}_raw`)}
),

latest as (
  select count(*) as row_count from ${ctx.ref(name)}
),

quarantine as (
  select count(*) as row_count from ${ctx.ref(`${name}_quarantine`)}
),

duplicates as (
  select count(*) as row_count from ${ctx.ref(`${name}_duplicates`)}
),

counts as (
  select
    landing.row_count + pubsub.row_count as bronze_rows,
    latest.row_count as silver_rows,
    quarantine.row_count as quarantined_rows,
    duplicates.row_count as duplicate_rows,
  from landing, pubsub, latest, quarantine, duplicates
)

select * from counts
where bronze_rows != silver_rows + quarantined_rows + duplicate_rows
`);

  // The newest event in silver is no older than the SLA (an empty table fails too).
  assert(`${name}_freshness`, {
    tags: ["assertions", "hourly", name],
    description: `The latest ${name} event in silver is at most freshness_sla_hours old.`,
  }).query((ctx) => `
with latest as (
  select max(${event}) as latest_event_at from ${ctx.ref(name)}
)

select
  latest_event_at,
  ${params.freshnessSlaHours()} as sla_hours,
from latest
where latest_event_at is null
  or timestamp_diff(current_timestamp(), latest_event_at, hour) >= ${params.freshnessSlaHours()}
`);

  // Today's bronze volume against the average of the seven days before (no history: no verdict).
  assert(`${name}_volume`, {
    tags: ["assertions", "daily", "warn", name],
    description:
      `Bronze rows of ${name} ingested today are between volume_min_ratio and volume_max_ratio ` +
      "times the trailing 7-day daily average.",
  }).query((ctx) => `
with arrivals as (
  select ingest_date from ${ctx.ref(`${name}_landing`)}
  union all
  select date(publish_time) as ingest_date from ${ctx.ref(`${name}_raw`)}
),

daily as (
  select
    ingest_date,
    count(*) as row_count,
  from arrivals
  where ingest_date between date_sub(current_date(), interval 7 day) and current_date()
  group by ingest_date
),

compared as (
  select
    coalesce(sum(if(ingest_date = current_date(), row_count, 0)), 0) as today_rows,
    avg(if(ingest_date < current_date(), row_count, null)) as trailing_daily_average,
  from daily
)

select * from compared
where trailing_daily_average is not null
  and (
    today_rows < trailing_daily_average * ${params.volumeMinRatio()}
    or today_rows > trailing_daily_average * ${params.volumeMaxRatio()}
  )
`);

  // The silver table holds only the contract's accepted values (quarantine keeps the others).
  const accepted = contract.fields.filter((field) => field.accepted_values !== undefined);
  if (accepted.length) {
    assert(`${name}_accepted_values`, {
      tags: ["assertions", "hourly", name],
      description: `Silver ${name} holds only accepted values of ${accepted.map((field) => field.name).join(", ")}.`,
    }).query((ctx) => accepted.map((field) => `
select
  '${field.name}' as column_name,
  cast(${field.name} as string) as rejected_value,
  count(*) as row_count,
from ${ctx.ref(name)}
where ${field.name} not in (${field.accepted_values.map((value) => params.sqlString(value)).join(", ")})
group by rejected_value`).join("\nunion all\n"));
  }
});
