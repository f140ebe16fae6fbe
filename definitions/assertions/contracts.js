// Cross-table checks generated per source contract. A row returned is a failure. Severity: an
// assertion tagged "warn" is reported only; any other assertion fails the run.

sources.all().forEach((contract) => {
  const name = contract.name;
  const event = contract.event_time;

  // Every record this run took ends in exactly one of silver, quarantine or duplicates. It reads
  // the batch, not bronze, so data landing while the run runs is judged by the next run. Each table
  // is read at the partitions the batch's records go to (silver by event date, the others by
  // ingest date, and silver's NULL partition), values read from the batch, so BigQuery need not read
  // every partition. Silver's event_date is date(event time) of the batch's record (its row
  // condition); a record written at another date is then found nowhere and fails here. A record's
  // ingested_at comes with its record_id (both name its landing folder or publish time), so each table
  // is also read from the batch's earliest ingested_at on: the local engine skips the rows of earlier
  // runs by the tables' min/max per row group instead of reading them.
  assert(`${name}_conservation`, {
    tags: ["assertions", "hourly", name],
    description: `Every record of ${name}_batch is in exactly one of silver, quarantine or duplicates.`,
  }).query((ctx) => `
with batch as (
  select
    record_id,
    ingest_date,
    ingested_at,
    date(${event}) as event_date,
  from ${ctx.ref(`${name}_batch`)}
),

placed as (
  select
    record_id,
    'silver' as place,
  from ${ctx.ref(name)}
  where
    (event_date in (select batch.event_date from batch) or event_date is null)
    and record_id in (select batch.record_id from batch)
    and ingested_at >= (select min(batch.ingested_at) from batch)
  union all
  select
    record_id,
    'quarantine' as place,
  from ${ctx.ref(`${name}_quarantine`)}
  where
    ingest_date in (select batch.ingest_date from batch)
    and record_id in (select batch.record_id from batch)
    and ingested_at >= (select min(batch.ingested_at) from batch)
  union all
  select
    record_id,
    'duplicates' as place,
  from ${ctx.ref(`${name}_duplicates`)}
  where
    ingest_date in (select batch.ingest_date from batch)
    and record_id in (select batch.record_id from batch)
    and ingested_at >= (select min(batch.ingested_at) from batch)
),

-- One aggregate over the batch's ids and the places found, not a join of the two and then an
-- aggregate: the join's table and the aggregate's held at once did not fit a 1 GiB memory limit at
-- ten million events (docs/engine.md, "Memory, threads and spilling").
counted as (
  select
    record_id,
    count(place) as places,
    string_agg(place, ', ') as found_in,
  from (
    select
      record_id,
      cast(null as string) as place,
    from batch
    union all
    select
      record_id,
      place,
    from placed
  ) as sightings
  group by record_id
)

select * from counted
where places != 1
`);

  // The all-time identity, from the intake ledger: records taken = silver + quarantine + duplicates.
  assert(`${name}_ledger`, {
    tags: ["assertions", "hourly", name],
    description: `Records of ${name} taken by all runs (ops.${name}_intake) = silver + quarantine + duplicates rows.`,
  }).query((ctx) => `
with counts as (
  select
    (select coalesce(sum(record_count), 0) from ${ctx.ref(`${name}_intake`)}) as taken_records,
    (select count(*) from ${ctx.ref(name)}) as silver_rows,
    (select count(*) from ${ctx.ref(`${name}_quarantine`)}) as quarantined_rows,
    (select count(*) from ${ctx.ref(`${name}_duplicates`)}) as duplicate_rows,
)

select * from counts
where taken_records != silver_rows + quarantined_rows + duplicate_rows
`);

  // Nothing is left behind: every bronze record that arrived before the last run started was
  // taken. Scans all of bronze, so it runs daily, not hourly.
  assert(`${name}_all_taken`, {
    tags: ["assertions", "daily", name],
    description: `Every bronze record of ${name} that arrived before the last run started is in ops.${name}_intake.`,
  }).query((ctx) => `
with intake as (
  select
    source_kind,
    origin,
    record_count,
    taken_at,
  from ${ctx.ref(`${name}_intake`)}
),

last_run as (
  select max(taken_at) as started_at from intake
),

bronze as (
  select
    'landing' as source_kind,
    _file_name as origin,
    count(*) as record_count,
  from ${ctx.ref(`${name}_landing`)}
  -- folders whose hour had ended when the last run started
  where timestamp_add(timestamp(ingest_date), interval safe_cast(hour as int64) + 1 hour)
    <= (select started_at from last_run)
  group by _file_name
  union all
  select
    'pubsub' as source_kind,
    ${silver.PUBSUB_INTAKE_KEY} as origin,
    count(*) as record_count,
  from ${ctx.ref(`${name}_raw`)} as this_copy
  -- a line published again is not a record of its own (includes/silver.js pubsubFirstCopy)
  where publish_time < (select started_at from last_run)
    and ${silver.pubsubFirstCopy(ctx.ref(`${name}_raw`)).replace(/\n/g, "\n    ")}
  group by origin
),

untaken as (
  select
    bronze.source_kind,
    bronze.origin,
    bronze.record_count as bronze_records,
    intake.record_count as taken_records,
  from bronze
  left join intake using (source_kind, origin)
  where intake.record_count is null or intake.record_count != bronze.record_count
)

select * from untaken
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
