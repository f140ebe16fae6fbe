// The checks of the tables that grow with every run (silver, quarantine, duplicates), generated from
// the uniqueKey / nonNull / rowConditions a table would declare as built-in `assertions`. Dataform's
// built-in assertions take their table's tags (@dataform/core Table.tags()), so on an hourly table they
// would scan the whole table every hour. Each check is two assertions instead, with the built-in names
// and the built-in SQL shape (the reports read index_row_count and failing_row_condition):
//   <schema>_<table>_assertions_uniqueKey_0, _rowConditions    hourly: the rows this run's batch could
//                                                              have written;
//   the same names + WHOLE_TABLE_SUFFIX                        daily: every row of the table.
// On a first or full-refresh run every row comes from the batch, so the hourly checks cover all rows.

const WHOLE_TABLE_SUFFIX = "_whole_table";

// Returns `condition` as a SQL string literal: in double quotes when it holds a single quote, as
// sqlfluff's house style wants.
function conditionLiteral(condition) {
  if (condition.includes("'") && !condition.includes('"') && !condition.includes("\\")) {
    return `"${condition}"`;
  }
  return params.sqlString(condition);
}

// Returns the uniqueKey query over `table`: one row per key value held by more than one row, with
// index_row_count. With `scope` ({ctes, candidates, partner}), only the key values `candidates`
// selects (from the CTEs `ctes` defines) are checked, among the rows `partner` keeps (a filter that
// keeps every row of those keys and names the partition column, or undefined).
function uniqueKeyQuery(table, key, scope) {
  const keys = key.join(",\n    ");
  const groupBy = key.length === 1 ? `group by ${key[0]}` : `group by\n    ${keys}`;
  if (scope === undefined) {
    return `
with counted as (
  select
    ${keys},
    count(*) as index_row_count,
  from ${table}
  ${groupBy}
)

select * from counted
where index_row_count > 1
`;
  }
  return `
with ${scope.ctes},

candidate_keys as (
  ${scope.candidates}
),

counted as (
  select
    ${key.map((column) => `checked_rows.${column}`).join(",\n    ")},
    count(*) as index_row_count,
  from ${table} as checked_rows
  inner join candidate_keys using (${key.join(", ")})${scope.partner ? `\n  where ${scope.partner}` : ""}
  ${groupBy}
),

final as (
  select * from counted
  where index_row_count > 1
)

select * from final
`;
}

// Returns the rowConditions query over the rows of `table` that `scope` ({ctes, written}, or
// undefined for every row) keeps: one row per row and condition it breaks, the condition first.
function rowConditionsQuery(table, conditions, scope) {
  const failing = conditions.map((condition) => `
select
  ${conditionLiteral(condition)} as failing_row_condition,
  *,
from checked_rows
where not (${condition})
`).join("union all");
  const rows = scope ? `${scope.ctes},

checked_rows as (
  select * from ${table}
  where
    ${scope.written}
)` : `checked_rows as (
  select * from ${table}
)`;
  return `
with ${rows}
${failing}`;
}

// Returns the hourly and daily checks of the table `schema`.`name` declared by `declared`
// ({uniqueKey, nonNull, rowConditions}), each {name, config, query(ctx)} for assert(). `scope(ctx)`
// returns the batch-scoped parts: {ctes: CTE definitions the others read, written: filter of the
// rows this run could have written, candidates: SQL selecting the key values a new duplicate could
// have, partner: filter keeping every row of those keys (optional)}. `tags` are the table's, without
// the schedule.
function assertions(schema, name, declared, scope, tags) {
  const base = `${schema}_${name}_assertions`;
  const conditions = (declared.rowConditions || [])
    .concat((declared.nonNull || []).map((column) => `${column} is not null`));
  const variants = [
    { suffix: "", schedule: "hourly", what: "the rows this run's batch could have written" },
    { suffix: WHOLE_TABLE_SUFFIX, schedule: "daily", what: "every row" },
  ];
  const found = [];
  variants.forEach(({ suffix, schedule, what }) => {
    const scoped = (ctx) => (schedule === "hourly" ? scope(ctx) : undefined);
    const config = (description) => ({ tags: tags.concat([schedule]), description });
    found.push({
      name: `${base}_uniqueKey_0${suffix}`,
      config: config(`${declared.uniqueKey.join(", ")} is unique in ${schema}.${name}, checked over ${what}.`),
      query: (ctx) => uniqueKeyQuery(ctx.ref(schema, name), declared.uniqueKey, scoped(ctx)),
    });
    if (conditions.length) {
      found.push({
        name: `${base}_rowConditions${suffix}`,
        config: config(`The rows of ${schema}.${name} meet its row conditions, checked over ${what}.`),
        query: (ctx) => rowConditionsQuery(ctx.ref(schema, name), conditions, scoped(ctx)),
      });
    }
  });
  return found;
}

module.exports = { WHOLE_TABLE_SUFFIX, assertions };
