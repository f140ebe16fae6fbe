// Unit tests generated per source contract, so a new source is tested as soon as it is listed: a
// Pub/Sub message that is not JSON reaches the staging view with its raw text, one rule failed
// (record_not_json) and every contract field NULL; the same line published again (its record_key, another
// message id, a later publish time: what the BigQuery subscription writes after a killed generate) is not
// a second record.

sources.all().forEach((contract) => {
  const name = contract.name;
  const data = `${name};e-${name};<html>502 Bad Gateway</html>`;
  const origin = `projects/p/subscriptions/${name}-bq/1001`;
  const nulls = contract.fields.map((field) => `  cast(null as ${field.type.toLowerCase()}) as ${field.name},`);

  test(`${name}_staged_not_json_message`)
    .dataset({ schema: silver.RESTRICTED_SCHEMA, name: `${name}_staged` })
    .input(`${name}_landing`, `
select
  'unused' as line,
  'gs://landing/unused.jsonl' as _file_name,
  date '2026-11-20' as ingest_date,
  '00' as hour,
from unnest([1]) as no_rows
where false`)
    .input(`${name}_raw`, `
select
  'projects/p/subscriptions/${name}-bq' as subscription_name,
  '1001' as message_id,
  timestamp '2026-11-20 09:30:05+00' as publish_time,
  '${data}' as data,
  '{"record_key":"k-1"}' as attributes,
union all
select
  'projects/p/subscriptions/${name}-bq' as subscription_name,
  '2002' as message_id,
  timestamp '2026-11-20 09:41:00+00' as publish_time,
  '${data}' as data,
  '{"record_key":"k-1"}' as attributes,`)
    .expect(`
select
  to_hex(sha256('pubsub|${origin}|${data}|1')) as record_id,
  'pubsub' as source_kind,
  '${origin}' as origin,
  timestamp '2026-11-20 09:30:05+00' as ingested_at,
  date '2026-11-20' as ingest_date,
  cast(null as string) as event_id,
  '${data}' as raw_record,
${nulls.join("\n")}
  cast([] as array<string>) as extra_fields,
  cast(null as json) as extra,
  ['record_not_json'] as failed_rules,`);
});
