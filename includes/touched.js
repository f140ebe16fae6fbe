// Gold tables that aggregate by date recompute only the dates a run touched. A silver version a run
// adds or displaces changes the totals of its date: the dates of this run's versions in silver and
// of the versions they displaced (recorded in duplicates with duplicate_of = the new version). On an
// incremental run the pre-operations delete those dates and the query inserts them again, inside one
// BigQuery transaction (locally every action is one transaction); a first or full-refresh run builds
// every date.

// The date aggregates of each source. A source's intake ledger (the watermark) waits for them, so
// a run that stops before them takes the same batch again and they see its dates.
const CONSUMERS = {
  orders: ["daily_sales", "daily_product_summary"],
};

// Returns the date aggregates of `source` (action names).
function consumersOf(source) {
  return CONSUMERS[source] || [];
}

// Returns the pre-operations of a date aggregate over silver `source`, whose date column is `column`.
function preOps(ctx, source, column) {
  const contract = sources.load(source);
  return ctx.when(ctx.incremental(), `declare touched_dates array<date> default (
  select array_agg(distinct touched.touched_date)
  from (
    select event_date as touched_date from ${ctx.ref(source)}
    where record_id in (select batch.record_id from ${ctx.ref(`${source}_batch`)} as batch)
    union all
    select date(${contract.event_time}) as touched_date from ${ctx.ref(`${source}_duplicates`)}
    where duplicate_of in (select batch.record_id from ${ctx.ref(`${source}_batch`)} as batch)
  ) as touched
  where touched.touched_date is not null
);

begin transaction;

delete from ${ctx.self()}
where ${column} in unnest(touched_dates);`, "");
}

// Returns the post-operations closing the transaction of preOps.
function postOps(ctx) {
  return ctx.when(ctx.incremental(), "commit transaction;", "");
}

// Returns the filter of the aggregate's silver rows: the touched dates on an incremental run.
function filter(ctx, column) {
  return ctx.when(ctx.incremental(), `\n  where ${column} in unnest(touched_dates)`, "");
}

module.exports = { consumersOf, preOps, postOps, filter };
