// Compilation vars (workflow_settings.yaml defaults, overridden per environment by release-config
// vars), read and checked in one place so a bad value fails the compile with its name.

// Age at which the landing bucket moves objects to Nearline (deploy/resources.py LANDING_NEARLINE_AGE_DAYS).
const NEARLINE_AGE_DAYS = 90;

function vars() {
  return (dataform.projectConfig && dataform.projectConfig.vars) || {};
}

function raw(name) {
  if (vars()[name] === undefined || vars()[name] === "") {
    throw new Error(`workflow_settings.yaml: var ${name} is not set`);
  }
  return String(vars()[name]);
}

function integer(name, min, max = Infinity) {
  const text = raw(name);
  if (!/^[0-9]+$/.test(text) || Number(text) < min || Number(text) > max) {
    const range = max === Infinity ? `>= ${min}` : `from ${min} to ${max}`;
    throw new Error(`workflow_settings.yaml: var ${name}=${JSON.stringify(text)} must be an integer ${range}`);
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
  const text = vars()[name] === undefined ? "false" : String(vars()[name]);
  if (!/^(true|false)$/.test(text)) {
    throw new Error(`workflow_settings.yaml: var ${name}=${JSON.stringify(text)} must be true or false`);
  }
  return text === "true";
}

// Returns a SQL string literal of `value` (BigQuery escaping).
function sqlString(value) {
  return `'${String(value).replace(/\\/g, "\\\\").replace(/'/g, "\\'").replace(/\n/g, "\\n")}'`;
}

// The table holding the PII salt (one row, column salt): a restricted dataset that the Dataform
// identity reads and analysts do not (deploy creates it; locally `lakehouse run` does). The salt is
// read at query time, never compiled: a var would sit in the release config, every compilation
// result and every job's SQL text. Returns its backquoted name in the default project.
function piiKeyTable() {
  if (vars().pii_salt !== undefined) {
    throw new Error(
      "workflow_settings.yaml: var pii_salt is no longer read; the salt lives in table keys.pii_salt " +
        "(docs/runbook.md, \"Rotate the PII salt\"): remove the var so the salt is in no SQL text",
    );
  }
  const project = dataform.projectConfig && dataform.projectConfig.defaultDatabase;
  return project ? `\`${project}.keys.pii_salt\`` : "keys.pii_salt";
}

module.exports = {
  piiKeyTable,
  // Days of already-processed ingestion re-read on each incremental run, so late files still land.
  // Under the landing bucket's Nearline age (90 days, deploy/resources.py) so that an hourly scan never
  // reads a Nearline object, which bills retrieval per GB (docs/deploy.md, "What an hourly run scans").
  lookbackDays: () => integer("lookback_days", 0, NEARLINE_AGE_DAYS - 1),
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
