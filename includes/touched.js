// Gold tables recompute only the keys (dates, customers, products) a run touched. A silver version a
// run adds or displaces changes the rows of its key values: those of this run's versions, read from
// the batch (its valid records: the versions silver took and older ones it did not, whose keys are
// rebuilt to the same rows), and of the versions they displaced (recorded in duplicates with
// duplicate_of = the batch's version directly above it, which is why duplicates carry the key
// columns, see duplicateColumns; a duplicate a late version now follows is found too, and rebuilds
// its keys to the same rows). On an incremental run the pre-operations delete the touched keys and the query
// inserts them again, inside one BigQuery transaction (locally every action is one transaction); a
// first or full-refresh run builds every key. gold.ad_attribution is scoped by customer and time
// instead of by one key (includes/attribution.js), from the same touched versions.

// The keys gold tables are recomputed by: the script variable holding the touched values, its type,
// and the expression of the value over a source's contract fields (in the batch and in duplicates).
const KEYS = {
  date: {
    variable: "touched_dates",
    type: "date",
    value: (contract) => `date(${contract.event_time})`,
  },
  customer_id: {
    variable: "touched_customer_ids",
    type: "string",
    value: () => "customer_id",
  },
  product_id: {
    variable: "touched_product_ids",
    type: "string",
    value: () => "product_id",
  },
};

// The incremental gold tables: the key each recomputes by, and the silver sources whose changes
// change its rows. A source's intake ledger (the watermark) waits for them, so a run that stops
// before them takes the same batch again and they see its keys.
// An entry without a key (ad_attribution) scopes its own rows; `columns` are the ones it reads of the
// displaced versions, so that duplicates carry them.
const TABLES = {
  daily_sales: { key: "date", sources: ["orders"] },
  daily_product_summary: { key: "date", sources: ["orders"] },
  conversion_funnel: { key: "date", sources: ["orders", "page_views"] },
  customers: { key: "customer_id", sources: ["orders", "page_views", "ad_clicks", "user_activity"] },
  ad_attribution: { key: null, columns: ["customer_id"], sources: ["orders", "ad_clicks"] },
  customer_360: { key: "customer_id", sources: ["orders", "page_views", "ad_clicks", "user_activity"] },
  products: { key: "product_id", sources: ["orders", "page_views", "inventory"] },
};

function tableOf(table) {
  const entry = TABLES[table];
  if (entry === undefined) {
    throw new Error(`${table} is not an incremental gold table of includes/touched.js`);
  }
  return entry;
}

// Returns the incremental gold tables that read the batch of `source` (action names).
function consumersOf(source) {
  return Object.keys(TABLES).filter((table) => TABLES[table].sources.includes(source));
}

// Returns the columns of `contract` that duplicates carry beyond the key and event time, so the
// key values of a displaced version stay known after silver drops it.
function duplicateColumns(contract) {
  const used = new Set();
  consumersOf(contract.name).forEach((table) =>
    (TABLES[table].columns || [TABLES[table].key]).forEach((column) => used.add(column)));
  return contract.fields.map((field) => field.name)
    .filter((name) => used.has(name) && !contract.key.includes(name) && name !== contract.event_time);
}

// Returns the union of the touched key values of incremental gold `table` (column touched_key,
// NULLs and repeats included): those of the batch's valid records (a superset of the versions silver
// took from it, read without scanning silver) and of the versions they displaced.
function touchedKeys(ctx, table) {
  const key = KEYS[tableOf(table).key];
  return tableOf(table).sources.map((source) =>
    versions(ctx, source, [`${key.value(sources.load(source))} as touched_key`], 4),
  ).join("\n    union all\n");
}

// Returns the query of `columns` (expressions over contract fields kept in duplicates) of the
// versions of `source` this run touched: the batch's valid records and the versions they displaced.
// Each line is indented by `spaces`.
function versions(ctx, source, columns, spaces = 0) {
  const batch = ctx.ref(`${source}_batch`);
  const pad = " ".repeat(spaces);
  // one column on the select's line, several one per line (the house's sqlfluff layout)
  const select = (table) => (columns.length === 1
    ? [`select ${columns[0]} from ${table}`]
    : ["select"].concat(columns.map((column) => `  ${column},`), [`from ${table}`]));
  return select(batch).concat(
    ["where array_length(failed_rules) = 0", "union all"],
    select(ctx.ref(`${source}_duplicates`)),
    [`where duplicate_of in (select batch.record_id from ${batch} as batch)`],
  ).map((line) => pad + line).join("\n");
}

// Returns the pre-operations of incremental gold `table` whose key column is `column`: declare the
// touched key values, then delete their rows.
function preOps(ctx, table, column) {
  const key = KEYS[tableOf(table).key];
  return ctx.when(ctx.incremental(), `declare ${key.variable} array<${key.type}> default (
  select array_agg(distinct touched.touched_key)
  from (
${touchedKeys(ctx, table)}
  ) as touched
  where touched.touched_key is not null
);

begin transaction;

delete from ${ctx.self()}
where ${column} in unnest(${key.variable});`, "");
}

// Returns the post-operations closing the transaction of preOps.
function postOps(ctx) {
  return ctx.when(ctx.incremental(), "commit transaction;", "");
}

// Returns the filter of rows of incremental gold `table` whose key is `column`: on an incremental
// run, those of the touched keys (`keyword` "where" or "and" to join it to a filter of its own).
function filter(ctx, table, column, keyword = "where") {
  const key = KEYS[tableOf(table).key];
  return ctx.when(ctx.incremental(), `\n  ${keyword} ${column} in unnest(${key.variable})`, "");
}

module.exports = { consumersOf, duplicateColumns, versions, preOps, postOps, filter };
