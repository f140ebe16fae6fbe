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

function fail(name, where, message) {
  throw new Error(`includes/contracts/${name}.json: ${where}: ${message}`);
}

// Returns the contract, checked for what the SQL generators rely on; throws naming file and field.
function load(name) {
  if (!IDENTIFIER.test(name)) {
    throw new Error(`includes/sources.js: source name ${JSON.stringify(name)} is not an identifier`);
  }
  // eslint-disable-next-line global-require
  const contract = require(`./contracts/${name}.json`);
  if (contract.name !== name) {
    fail(name, "name", `${JSON.stringify(contract.name)} must equal the file name`);
  }
  const fields = contract.fields || [];
  const names = new Set();
  fields.forEach((field, index) => {
    const where = `fields[${index}]`;
    if (!IDENTIFIER.test(field.name || "")) {
      fail(name, `${where}.name`, "must match ^[a-z][a-z0-9_]{0,62}$");
    }
    if (!TYPES.includes(field.type)) {
      fail(name, `${where}.type`, `${JSON.stringify(field.type)} is not one of ${TYPES.join(", ")}`);
    }
    names.add(field.name);
  });
  (contract.key || []).forEach((key) => {
    if (!names.has(key)) {
      fail(name, "key", `${JSON.stringify(key)} is not a field`);
    }
  });
  if (!names.has(contract.event_time)) {
    fail(name, "event_time", `${JSON.stringify(contract.event_time)} is not a field`);
  }
  if (!(contract.key || []).length) {
    fail(name, "key", "must name at least one field");
  }
  return contract;
}

// Returns every contract, in name order.
function all() {
  return NAMES.map(load);
}

function hasHandWrittenSilver(name) {
  return HAND_WRITTEN_SILVER.includes(name);
}

module.exports = { NAMES, HAND_WRITTEN_SILVER, all, load, hasHandWrittenSilver };
