// Compilation vars (workflow_settings.yaml defaults, overridden per environment by release-config
// vars), read and checked in one place so a bad value fails the compile with its name.

function raw(name) {
  const vars = (dataform.projectConfig && dataform.projectConfig.vars) || {};
  if (vars[name] === undefined || vars[name] === "") {
    throw new Error(`workflow_settings.yaml: var ${name} is not set`);
  }
  return String(vars[name]);
}

function integer(name, min) {
  const text = raw(name);
  if (!/^[0-9]+$/.test(text) || Number(text) < min) {
    throw new Error(`workflow_settings.yaml: var ${name}=${JSON.stringify(text)} must be an integer >= ${min}`);
  }
  return Number(text);
}

function ratio(name) {
  const text = raw(name);
  if (!/^[0-9]+(\.[0-9]+)?$/.test(text)) {
    throw new Error(`workflow_settings.yaml: var ${name}=${JSON.stringify(text)} must be a decimal number`);
  }
  return text;
}

function bucket(name) {
  const text = raw(name);
  if (!/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/.test(text)) {
    throw new Error(`workflow_settings.yaml: var ${name}=${JSON.stringify(text)} is not a bucket name`);
  }
  return text;
}

// Returns whether an optional "true"/"false" var is on; unset is off.
function flag(name) {
  const vars = (dataform.projectConfig && dataform.projectConfig.vars) || {};
  const text = vars[name] === undefined ? "false" : String(vars[name]);
  if (!/^(true|false)$/.test(text)) {
    throw new Error(`workflow_settings.yaml: var ${name}=${JSON.stringify(text)} must be true or false`);
  }
  return text === "true";
}

// Returns a SQL string literal of `value` (BigQuery escaping).
function sqlString(value) {
  return `'${String(value).replace(/\\/g, "\\\\").replace(/'/g, "\\'").replace(/\n/g, "\\n")}'`;
}

module.exports = {
  // Salt of the PII hashes, as a SQL literal; set a secret value per environment.
  piiSalt: () => sqlString(raw("pii_salt")),
  // Days of already-processed ingestion re-read on each incremental run, so late files still land.
  lookbackDays: () => integer("lookback_days", 0),
  freshnessSlaHours: () => integer("freshness_sla_hours", 1),
  landingBucket: () => bucket("landing_bucket"),
  icebergBucket: () => bucket("iceberg_bucket"),
  icebergConnection: () => raw("iceberg_connection"),
  // Partitioning of BigLake Iceberg tables is in Preview: off unless the project has it
  // (release-config var iceberg_partitioning: "true"). Spread into a bigquery config block:
  // { partitionBy: column } when on, {} when off (Dataform refuses an empty or undefined partitionBy).
  icebergPartitioning: (column) => (flag("iceberg_partitioning") ? { partitionBy: column } : {}),
  // Records larger than this are quarantined (the landing function rejects them earlier).
  maxRecordBytes: () => integer("max_record_bytes", 1),
  attributionWindowDays: () => integer("attribution_window_days", 1),
  volumeMinRatio: () => ratio("volume_min_ratio"),
  volumeMaxRatio: () => ratio("volume_max_ratio"),
  sqlString,
};
