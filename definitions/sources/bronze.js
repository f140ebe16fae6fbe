// Bronze, per source contract: the landing files as an external table that keeps every line as
// raw text (valid JSON or not), and the table the source's Pub/Sub BigQuery subscription writes.

sources.all().forEach((contract) => {
  const name = contract.name;
  const prefix = `gs://${params.landingBucket()}/source=${name}`;

  // One STRING column per line: a CSV table whose delimiter (0x01) and quote (none) never occur in
  // JSON text, so nothing is parsed, dropped or rejected here; silver parses and quarantines.
  // Control characters (NUL included) in a file someone else put there are kept, not an error, so
  // such a line reaches the quarantine; no max_bad_records, which would drop lines unseen.
  operate(`${name}_landing`, {
    dataset: "bronze",
    hasOutput: true,
    tags: ["bronze", "hourly", name],
    description: `Every line landed for ${name} in ${prefix}/ingest_date=YYYY-MM-DD/hour=HH/*.jsonl, as raw text.`,
  }).queries((ctx) => `create or replace external table ${ctx.self()}
(
  line string
)
with partition columns (
  ingest_date date,
  hour string
)
options (
  format = 'CSV',
  field_delimiter = '\\x01',
  quote = '',
  preserve_ascii_control_characters = true,
  uris = ['${prefix}/*'],
  hive_partition_uri_prefix = '${prefix}',
  description = 'Raw landing lines of ${name}; defined by definitions/sources/bronze.js.'
)`);

  declare({
    schema: "bronze",
    name: `${name}_raw`,
    description:
      `Messages of the ${name} topic as its BigQuery subscription writes them ` +
      "(subscription_name, message_id, publish_time, data, attributes).",
  });
});

// One row per object finalized in the landing bucket (bucket, object_name, generation, arrived_at,
// ...), appended by the audit function on GCP and by `lakehouse run` locally: the batches take the
// landing files that arrived and no run took (includes/silver.js batchPreOps).
declare({
  schema: silver.FILE_ARRIVALS[0],
  name: silver.FILE_ARRIVALS[1],
  description:
    "Every object finalized in the landing bucket, recorded by the audit function (ingest/audit.py); " +
    "partitioned by arrived_at.",
});
