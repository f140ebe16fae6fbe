// The sources of the lakehouse, each described by one contract: includes/contracts/<name>.json.
//
// Dataform compiles in a sandbox that can read a file by name but cannot list a directory, so the
// names are listed here once. tests/models/test_sources.py fails, naming the file to add, when this
// list and includes/contracts/ disagree.
const NAMES = ["ad_clicks", "inventory", "orders", "page_views", "user_activity"];

// Sources whose silver table is hand-written in definitions/silver/<name>.sqlx (derived columns,
// Iceberg); their staging view, quarantine, duplicates and assertions are still generated.
const HAND_WRITTEN_SILVER = ["orders"];

const IDENTIFIER = /^[a-z][a-z0-9_]{0,62}$/;
const TYPES = ["STRING", "INT64", "NUMERIC", "FLOAT64", "BOOL", "TIMESTAMP", "DATE"];
const NUMERIC_TYPES = ["INT64", "NUMERIC", "FLOAT64"];
// What silver does with a payload key the contract does not name: keep it in the `extra` column
// (the default) or quarantine the record (rule record_unexpected_field).
const UNKNOWN_FIELDS = ["keep", "quarantine"];
const FIELD_KEYS = [
  "name",
  "type",
  "required",
  "pii",
  "pattern",
  "min",
  "min_exclusive",
  "accepted_values",
  "description",
];

function fail(name, where, message) {
  const place = where ? `${where}: ` : "";
  throw new Error(`includes/contracts/${name}.json: ${place}${message}`);
}

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

// Columns the pipeline writes beside a contract's fields: the same list as ingest/contracts.py
// RESERVED_NAMES (a field named raw_record would put the raw line in silver; failed_rules would lose records).
const RESERVED_NAMES = [
  "source", "event_id", "record_id", "source_kind", "origin", "ingested_at", "ingest_date", "raw_record",
  "is_json", "payload_source", "payload_keys", "extra_fields", "extra", "failed_rules", "occurrence",
  "event_date", "duplicate_of", "taken_at", "record_count",
];

// Why `fieldName` cannot be a field (ingest/contracts.py reserved_name_reason), or null.
function reservedNameReason(fieldName, pii) {
  if (fieldName === "source" || fieldName === "event_id") {
    return "is an envelope field every payload carries already";
  }
  if (RESERVED_NAMES.includes(fieldName)) {
    return "is a column the pipeline writes beside the fields (rename it at the producer)";
  }
  if (fieldName.includes("__")) {
    return "holds '__', which the pipeline's own columns use (<field>__json, <field>__text)";
  }
  if (fieldName.endsWith("_hash") && pii.has(fieldName.slice(0, -"_hash".length))) {
    return `is the column of the hash of PII field ${fieldName.slice(0, -"_hash".length)}`;
  }
  return null;
}

// The same checks as ingest/contracts.py `_parse_field`, so a bound, pattern or list of the wrong type
// stops the compile naming file and field instead of failing the generated SQL at run time.
function checkField(name, index, field) {
  if (!isObject(field)) {
    fail(name, `fields[${index}]`, "must be an object");
  }
  if (typeof field.name !== "string" || !IDENTIFIER.test(field.name)) {
    fail(name, `fields[${index}].name`, `${JSON.stringify(field.name)} must match ^[a-z][a-z0-9_]{0,62}$`);
  }
  const where = `fields[${index}] (${field.name})`;
  const unknown = Object.keys(field).filter((key) => !FIELD_KEYS.includes(key)).sort();
  if (unknown.length) {
    fail(name, where, `unknown attribute(s) ${unknown.join(", ")}`);
  }
  if (!TYPES.includes(field.type)) {
    fail(name, `${where}.type`, `${JSON.stringify(field.type)} is not one of ${TYPES.join(", ")}`);
  }
  ["required", "pii"].forEach((flag) => {
    if (flag in field && typeof field[flag] !== "boolean") {
      fail(name, `${where}.${flag}`, "must be true or false");
    }
  });
  if ("pattern" in field) {
    // BigQuery reads the pattern as RE2; its syntax is checked by ingest/contracts.py, its type here.
    if (typeof field.pattern !== "string" || !field.pattern) {
      fail(name, `${where}.pattern`, "must be a non-empty string");
    }
    if (field.type !== "STRING") {
      fail(name, `${where}.pattern`, `only STRING fields take a pattern, not ${field.type}`);
    }
  }
  ["min", "min_exclusive"].forEach((bound) => {
    if (!(bound in field)) {
      return;
    }
    if (!NUMERIC_TYPES.includes(field.type)) {
      fail(name, `${where}.${bound}`, `only numeric fields take a bound, not ${field.type}`);
    }
    if (typeof field[bound] !== "number" || !Number.isFinite(field[bound])) {
      fail(name, `${where}.${bound}`, `${JSON.stringify(field[bound])} must be a finite number`);
    }
  });
  if ("accepted_values" in field) {
    const values = field.accepted_values;
    if (!Array.isArray(values) || !values.length || !values.every((value) => typeof value === "string")) {
      fail(name, `${where}.accepted_values`, "must be a non-empty list of strings");
    }
  }
  if ("description" in field && typeof field.description !== "string") {
    fail(name, `${where}.description`, "must be a string");
  }
}

// Returns the contract, checked for what the SQL generators rely on; throws naming file and field.
function load(name) {
  if (!IDENTIFIER.test(name)) {
    throw new Error(`includes/sources.js: source name ${JSON.stringify(name)} is not an identifier`);
  }
  // eslint-disable-next-line global-require
  const contract = require(`./contracts/${name}.json`);
  if (!isObject(contract)) {
    fail(name, "", "a contract must be a JSON object");
  }
  if (contract.name !== name) {
    fail(name, "name", `${JSON.stringify(contract.name)} must equal the file name`);
  }
  const fields = contract.fields;
  if (!Array.isArray(fields) || !fields.length) {
    fail(name, "fields", "must be a non-empty list");
  }
  const names = new Set();
  fields.forEach((field, index) => {
    checkField(name, index, field);
    if (names.has(field.name)) {
      fail(name, `fields (${field.name})`, "duplicate field name");
    }
    names.add(field.name);
  });
  const pii = new Set(fields.filter((field) => field.pii === true).map((field) => field.name));
  fields.forEach((field) => {
    const reason = reservedNameReason(field.name, pii);
    if (reason) {
      fail(name, `fields (${field.name})`, reason);
    }
  });
  if (!Array.isArray(contract.key) || !contract.key.length) {
    fail(name, "key", "must be a non-empty list of field names");
  }
  contract.key.forEach((key) => {
    if (!names.has(key)) {
      fail(name, "key", `${JSON.stringify(key)} is not a field`);
    }
    if (pii.has(key)) {
      fail(name, "key", `${key} is pii: silver keeps only its hash, so it cannot be the key silver merges on`);
    }
  });
  if (!names.has(contract.event_time)) {
    fail(name, "event_time", `${JSON.stringify(contract.event_time)} is not a field`);
  }
  if (fields.find((field) => field.name === contract.event_time).type !== "TIMESTAMP") {
    fail(name, "event_time", `${contract.event_time} must be a TIMESTAMP field`);
  }
  checkQuality(name, contract.quality);
  if (contract.unknown_fields !== undefined && !UNKNOWN_FIELDS.includes(contract.unknown_fields)) {
    fail(name, "unknown_fields", `${JSON.stringify(contract.unknown_fields)} must be "keep" or "quarantine"`);
  }
  return contract;
}

const QUALITY_RATES = ["max_reject_rate", "max_duplicate_rate", "max_dead_letter_rate", "max_late_rate"];

function isShare(value) {
  return typeof value === "number" && value >= 0 && value <= 1;
}

// The optional quality block: thresholds (shares 0-1) that definitions/ops/quality.js asserts.
// Rule names are checked there against silver's rules (includes/silver.js ruleNames).
function checkQuality(name, quality) {
  if (quality === undefined) {
    return;
  }
  if (quality === null || typeof quality !== "object" || Array.isArray(quality)) {
    fail(name, "quality", "must be an object of thresholds");
  }
  Object.keys(quality).forEach((key) => {
    if (!QUALITY_RATES.concat(["severity", "rules"]).includes(key)) {
      fail(name, `quality.${key}`, "is not a known threshold");
    }
  });
  QUALITY_RATES.forEach((key) => {
    if (quality[key] !== undefined && !isShare(quality[key])) {
      fail(name, `quality.${key}`, `${JSON.stringify(quality[key])} is not a share between 0 and 1`);
    }
  });
  if (quality.severity !== undefined && !["warn", "error"].includes(quality.severity)) {
    fail(name, "quality.severity", `${JSON.stringify(quality.severity)} must be "warn" or "error"`);
  }
  Object.entries(quality.rules || {}).forEach(([rule, value]) => {
    if (!isShare(value)) {
      fail(name, `quality.rules.${rule}`, `${JSON.stringify(value)} is not a share between 0 and 1`);
    }
  });
}

// Returns every contract, in name order.
function all() {
  return NAMES.map(load);
}

function hasHandWrittenSilver(name) {
  return HAND_WRITTEN_SILVER.includes(name);
}

// Returns the contract's unknown_fields policy: "keep" (the default) or "quarantine".
function unknownFields(contract) {
  return contract.unknown_fields || "keep";
}

module.exports = { NAMES, HAND_WRITTEN_SILVER, all, load, hasHandWrittenSilver, unknownFields };
