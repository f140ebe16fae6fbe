// Data-quality views in the ops dataset, generated from the source contracts: what arrived per source and
// where it went (silver, quarantine, duplicates, dead letters), per quarantine rule, per quality dimension
// and per ingest day; plus one threshold assertion per contract with a quality block. The local report
// (lakehouse/report/quality.py) reads these same views, so BigQuery users and the report see one number.

const contracts = sources.all();
const tags = ["ops", "hourly"];

// The dead-letter bucket: the var (deploy's, or workflow_settings.yaml's local one), else
// <landing bucket>-dead-letter, as ingest/local.py Settings names it.
function deadLetterBucket() {
  const vars = (dataform.projectConfig && dataform.projectConfig.vars) || {};
  return vars.dead_letter_bucket || `${params.landingBucket()}-dead-letter`;
}

const ANY_RULE = "(any rule)";

// Every payload the landing function refused, one row per dead-letter record (reason, error, payload).
operate("dead_letters", {
  dataset: "ops",
  hasOutput: true,
  tags,
  description:
    "One row per payload the landing function dead-lettered: source, reason, error and the raw payload " +
    `(gs://${deadLetterBucket()}/source=*/reason=*/...jsonl).`,
}).queries((ctx) => `create or replace external table ${ctx.self()}
(
  \`source\` string,
  reason string,
  \`error\` string,
  received_at timestamp,
  payload_bytes int64,
  payload_truncated bool,
  payload string,
  payload_base64 string
)
options (
  format = 'NEWLINE_DELIMITED_JSON',
  uris = ['gs://${deadLetterBucket()}/*'],
  description = 'Dead-lettered payloads; defined by definitions/ops/quality.js.'
)`);

publish("dead_letter_reasons", {
  type: "view",
  dataset: "ops",
  tags,
  description: "One row per source and dead-letter reason: how many payloads the landing function refused.",
}).query((ctx) => `
with dead_letters as (
  select * from ${ctx.ref("ops", "dead_letters")}
),

final as (
  select
    source as source_name,
    reason,
    count(*) as dead_lettered_rows,
  from dead_letters
  group by source, reason
)

select * from final
`);

// The quality dimension of a quarantine rule, as SQL over the rule-name column `column`
// (includes/silver.js names rules `record_*` and `<field>_<check>`).
function dimensionOf(column) {
  return `case
      when starts_with(${column}, 'record_') or ends_with(${column}, '_type') then 'conformity'
      when ends_with(${column}, '_required') then 'completeness'
      else 'validity'
    end`;
}

// One row per line silver took (kept, quarantined or duplicate), with its event and arrival times.
function linesCte(ctx) {
  return contracts.map((contract) => {
    const name = contract.name;
    const event = contract.event_time;
    return [
      [name, "silver", event],
      [`${name}_quarantine`, "quarantined", "cast(null as timestamp)"],
      [`${name}_duplicates`, "duplicate", event],
    ].map(([table, outcome, eventAt]) => `  select
    '${name}' as source_name,
    '${outcome}' as outcome,
    ${eventAt} as event_at,
    ingested_at,
    ingest_date,
  from ${ctx.ref(table)}`).join("\n  union all\n");
  }).join("\n  union all\n");
}

// Every rule of every contract, in silver's order.
// One array literal rather than a UNION ALL of a select per rule (over a hundred): the same rows,
// planned as one scan instead of a hundred-branch union in every query that reads them.
function declaredRulesCte() {
  const rows = contracts.flatMap((contract) => silver.ruleNames(contract).map((rule, index) =>
    `      struct('${contract.name}' as source_name, '${rule}' as rule_name, ${index + 1} as rule_order)`));
  return `  select
    source_name,
    rule_name,
    rule_order,
  from unnest([
${rows.join(",\n")}
    ])`;
}

function sourceNamesCte() {
  return contracts.map((contract) => `  select '${contract.name}' as source_name`).join("\n  union all\n");
}

// Per source: every line silver took ends in exactly one of silver, quarantine or duplicates.
publish("source_quality", {
  type: "view",
  dataset: "ops",
  tags,
  description:
    "One row per source: lines taken into silver, kept, quarantined, duplicates, dead-lettered and late " +
    "(arrived freshness_sla_hours or more after the event), with the share of valid lines.",
}).query((ctx) => `
with source_names as (
${sourceNamesCte()}
),

lines as (
${linesCte(ctx)}
),

dead_letters as (
  select
    source as source_name,
    count(*) as dead_lettered_rows,
  from ${ctx.ref("ops", "dead_letters")}
  group by source
),

counted as (
  select
    source_name,
    countif(outcome = 'silver') as silver_rows,
    countif(outcome = 'quarantined') as quarantined_rows,
    countif(outcome = 'duplicate') as duplicate_rows,
    countif(
      outcome != 'quarantined'
      and timestamp_diff(ingested_at, event_at, hour) >= ${params.freshnessSlaHours()}
    ) as late_rows,
  from lines
  group by source_name
),

joined as (
  select
    source_names.source_name,
    coalesce(counted.silver_rows, 0) as silver_rows,
    coalesce(counted.quarantined_rows, 0) as quarantined_rows,
    coalesce(counted.duplicate_rows, 0) as duplicate_rows,
    coalesce(dead_letters.dead_lettered_rows, 0) as dead_lettered_rows,
    coalesce(counted.late_rows, 0) as late_rows,
  from source_names
  left join counted on source_names.source_name = counted.source_name
  left join dead_letters on source_names.source_name = dead_letters.source_name
),

final as (
  select
    source_name,
    silver_rows + quarantined_rows + duplicate_rows as lines_taken,
    silver_rows,
    quarantined_rows,
    round(100 * safe_divide(quarantined_rows, silver_rows + quarantined_rows + duplicate_rows), 1)
      as quarantined_pct,
    duplicate_rows,
    dead_lettered_rows,
    late_rows,
    round(
      100 * safe_divide(silver_rows + duplicate_rows, silver_rows + quarantined_rows + duplicate_rows), 1
    ) as valid_pct,
  from joined
)

select * from final
`);

// One row per quarantined record and rule it failed: the flat form dashboards filter and count.
publish("quarantine_failures", {
  type: "view",
  dataset: "ops",
  tags,
  description:
    "One row per quarantined record and rule it failed (a record failing three rules has three rows), " +
    "with the rule's quality dimension.",
}).query((ctx) => `
with failures as (
${contracts.map((contract) => `  select
    '${contract.name}' as source_name,
    quarantine.record_id,
    quarantine.ingest_date,
    failed_rule as rule_name,
  from ${ctx.ref(`${contract.name}_quarantine`)} as quarantine
  cross join unnest(quarantine.failed_rules) as failed_rule`).join("\n  union all\n")}
),

final as (
  select
    source_name,
    record_id,
    ingest_date,
    rule_name,
    ${dimensionOf("rule_name")} as dimension,
  from failures
)

select * from final
`);

// Per source and rule: quarantined records failing the rule (a record failing three rules counts under
// each), every rule of the contract listed even at zero, and one '(any rule)' row per source.
publish("quarantine_rules", {
  type: "view",
  dataset: "ops",
  tags,
  description:
    "One row per source and quarantine rule of its contract (plus '(any rule)'): records failing it " +
    "and their share of the lines taken.",
}).query((ctx) => {
  return `
with declared_rules as (
${declaredRulesCte()}
),

sources as (
  select * from ${ctx.ref("ops", "source_quality")}
),

failures as (
  select * from ${ctx.ref("ops", "quarantine_failures")}
),

rule_counts as (
  select
    source_name,
    rule_name,
    count(*) as quarantined_rows,
  from failures
  group by source_name, rule_name
),

rules as (
  select
    coalesce(declared_rules.source_name, rule_counts.source_name) as source_name,
    coalesce(declared_rules.rule_name, rule_counts.rule_name) as rule_name,
    -- a rule no longer in the contract, still in old quarantined records, sorts last
    coalesce(declared_rules.rule_order, 1000) as rule_order,
    coalesce(rule_counts.quarantined_rows, 0) as quarantined_rows,
  from declared_rules
  full outer join rule_counts
    on
      declared_rules.source_name = rule_counts.source_name
      and declared_rules.rule_name = rule_counts.rule_name
),

any_rule as (
  select
    source_name,
    '${ANY_RULE}' as rule_name,
    0 as rule_order,
    quarantined_rows,
  from sources
),

combined as (
  select
    *,
    ${dimensionOf("rule_name")} as dimension,
  from rules
  union all
  select
    *,
    'any' as dimension,
  from any_rule
),

final as (
  select
    combined.source_name,
    combined.rule_name,
    combined.rule_order,
    combined.dimension,
    combined.quarantined_rows,
    round(100 * safe_divide(combined.quarantined_rows, sources.lines_taken), 1) as quarantined_pct,
  from combined
  inner join sources on combined.source_name = sources.source_name
)

select * from final
`;
});

// Per source and dimension: completeness, validity and conformity from the quarantine rules,
// uniqueness from duplicates, timeliness from late lines; score = 100 × (1 − failing / checked).
publish("source_quality_dimensions", {
  type: "view",
  dataset: "ops",
  tags,
  description:
    "One row per source and quality dimension (completeness, validity, conformity, uniqueness, timeliness): " +
    "lines failing it, lines checked and the score 0-100.",
}).query((ctx) => `
with sources as (
  select * from ${ctx.ref("ops", "source_quality")}
),

failures as (
  select * from ${ctx.ref("ops", "quarantine_failures")}
),

rule_dimensions as (
  select 'completeness' as dimension
  union all
  select 'validity' as dimension
  union all
  select 'conformity' as dimension
),

dimension_failures as (
  select
    source_name,
    dimension,
    count(distinct record_id) as failing_rows,
  from failures
  group by source_name, dimension
),

from_rules as (
  select
    sources.source_name,
    rule_dimensions.dimension,
    coalesce(dimension_failures.failing_rows, 0) as failing_rows,
    sources.lines_taken as rows_checked,
  from sources
  cross join rule_dimensions
  left join dimension_failures
    on
      sources.source_name = dimension_failures.source_name
      and rule_dimensions.dimension = dimension_failures.dimension
),

uniqueness as (
  select
    source_name,
    'uniqueness' as dimension,
    duplicate_rows as failing_rows,
    lines_taken as rows_checked,
  from sources
),

timeliness as (
  select
    source_name,
    'timeliness' as dimension,
    late_rows as failing_rows,
    silver_rows + duplicate_rows as rows_checked,
  from sources
),

combined as (
  select * from from_rules
  union all
  select * from uniqueness
  union all
  select * from timeliness
),

final as (
  select
    *,
    round(100 * (1 - safe_divide(failing_rows, rows_checked)), 1) as score,
  from combined
)

select * from final
`);

// Per source and ingest day: the trend of what arrived and where it went.
publish("source_quality_daily", {
  type: "view",
  dataset: "ops",
  tags,
  description: "One row per source and ingest_date: lines taken, kept, quarantined and duplicates that day.",
}).query((ctx) => `
with lines as (
${linesCte(ctx)}
),

final as (
  select
    source_name,
    ingest_date,
    count(*) as lines_taken,
    countif(outcome = 'silver') as silver_rows,
    countif(outcome = 'quarantined') as quarantined_rows,
    countif(outcome = 'duplicate') as duplicate_rows,
    round(100 * countif(outcome = 'quarantined') / count(*), 1) as quarantined_pct,
  from lines
  group by source_name, ingest_date
)

select * from final
`);

// This run: the records of each <source>_batch (exactly what the last run took), where each went.
// The batch is small; duplicates is read on record_id and its partition column ingest_date only.
function batchCte(ctx) {
  return contracts.map((contract) => `  select
    '${contract.name}' as source_name,
    batch.record_id,
    array_length(batch.failed_rules) > 0 as rejected,
    duplicates.record_id is not null as duplicate,
    array_length(batch.failed_rules) = 0
    and timestamp_diff(batch.ingested_at, batch.${contract.event_time}, hour) >= ${params.freshnessSlaHours()}
      as late,
  from ${ctx.ref(`${contract.name}_batch`)} as batch
  left join ${ctx.ref(`${contract.name}_duplicates`)} as duplicates
    on
      batch.record_id = duplicates.record_id
      and batch.ingest_date = duplicates.ingest_date`).join("\n  union all\n");
}

// The intake ledger of every source: one row per landing file or Pub/Sub message a run took.
function intakeCte(ctx) {
  return contracts.map((contract) => `  select
    '${contract.name}' as source_name,
    source_kind,
    origin,
    record_count,
    taken_at,
  from ${ctx.ref(`${contract.name}_intake`)}`).join("\n  union all\n");
}

publish("source_quality_run", {
  type: "view",
  dataset: "ops",
  tags,
  description:
    "One row per source, for the last run (its <source>_batch): lines it took, kept in silver, quarantined, " +
    "duplicates and late, with the share of valid lines; taken_at and ledger_lines from the intake ledger.",
}).query((ctx) => `
with source_names as (
${sourceNamesCte()}
),

batch as (
${batchCte(ctx)}
),

intake as (
${intakeCte(ctx)}
),

last_run as (
  select
    source_name,
    max(taken_at) as taken_at,
  from intake
  group by source_name
),

ledger as (
  select
    intake.source_name,
    last_run.taken_at,
    sum(intake.record_count) as ledger_lines,
  from intake
  inner join last_run
    on
      intake.source_name = last_run.source_name
      and intake.taken_at = last_run.taken_at
  group by intake.source_name, last_run.taken_at
),

counted as (
  select
    source_name,
    count(*) as lines_taken,
    countif(not rejected and not duplicate) as silver_rows,
    countif(rejected) as quarantined_rows,
    countif(duplicate) as duplicate_rows,
    countif(late) as late_rows,
  from batch
  group by source_name
),

final as (
  select
    source_names.source_name,
    ledger.taken_at,
    coalesce(ledger.ledger_lines, 0) as ledger_lines,
    coalesce(counted.lines_taken, 0) as lines_taken,
    coalesce(counted.silver_rows, 0) as silver_rows,
    coalesce(counted.quarantined_rows, 0) as quarantined_rows,
    round(100 * safe_divide(counted.quarantined_rows, counted.lines_taken), 1) as quarantined_pct,
    coalesce(counted.duplicate_rows, 0) as duplicate_rows,
    coalesce(counted.late_rows, 0) as late_rows,
    round(100 * safe_divide(counted.silver_rows + counted.duplicate_rows, counted.lines_taken), 1) as valid_pct,
  from source_names
  left join counted on source_names.source_name = counted.source_name
  left join ledger on source_names.source_name = ledger.source_name
)

select * from final
`);

// This run, per source and rule: records of the batch failing it, every rule of the contract listed,
// and '(any rule)' once per record.
publish("quarantine_rules_run", {
  type: "view",
  dataset: "ops",
  tags,
  description:
    "One row per source and quarantine rule of its contract (plus '(any rule)'), for the last run: records " +
    "of its <source>_batch failing the rule and their share of the lines it took.",
}).query((ctx) => `
with declared_rules as (
${declaredRulesCte()}
),

failures as (
${contracts.map((contract) => `  select
    '${contract.name}' as source_name,
    failed_rule as rule_name,
  from ${ctx.ref(`${contract.name}_batch`)} as batch
  cross join unnest(batch.failed_rules) as failed_rule`).join("\n  union all\n")}
),

rule_counts as (
  select
    source_name,
    rule_name,
    count(*) as quarantined_rows,
  from failures
  group by source_name, rule_name
),

rules as (
  select
    coalesce(declared_rules.source_name, rule_counts.source_name) as source_name,
    coalesce(declared_rules.rule_name, rule_counts.rule_name) as rule_name,
    coalesce(declared_rules.rule_order, 1000) as rule_order,
    coalesce(rule_counts.quarantined_rows, 0) as quarantined_rows,
  from declared_rules
  full outer join rule_counts
    on
      declared_rules.source_name = rule_counts.source_name
      and declared_rules.rule_name = rule_counts.rule_name
),

combined as (
  select
    *,
    ${dimensionOf("rule_name")} as dimension,
  from rules
  union all
  select
    source_name,
    '${ANY_RULE}' as rule_name,
    0 as rule_order,
    quarantined_rows,
    'any' as dimension,
  from ${ctx.ref("ops", "source_quality_run")}
),

final as (
  select
    combined.source_name,
    combined.rule_name,
    combined.rule_order,
    combined.dimension,
    combined.quarantined_rows,
    round(100 * safe_divide(combined.quarantined_rows, runs.lines_taken), 1) as quarantined_pct,
  from combined
  -- the view named twice rather than a CTE read twice: DuckDB materialises such a CTE whole, and a
  -- filter on source_name (a threshold assertion's) then no longer reaches each source's tables
  inner join ${ctx.ref("ops", "source_quality_run")} as runs on combined.source_name = runs.source_name
)

select * from final
`);

// Per source and run (taken_at), from the intake ledger: lines taken, and of them quarantined (a
// quarantined record keeps its landing file or message, so it joins the ledger row that took it).
publish("source_quality_runs", {
  type: "view",
  dataset: "ops",
  tags,
  description:
    "One row per source and run that took lines (taken_at of ops.<source>_intake): lines taken, " +
    "quarantined and valid (silver or duplicates).",
}).query((ctx) => `
with intake as (
${intakeCte(ctx)}
),

quarantined_records as (
${contracts.map((contract) => `  select
    '${contract.name}' as source_name,
    source_kind,
    if(
      source_kind = 'pubsub',
      concat(origin, '@', format_timestamp('%FT%H:%M:%E6SZ', ingested_at)),
      origin
    ) as origin,
  from ${ctx.ref(`${contract.name}_quarantine`)}`).join("\n  union all\n")}
),

quarantined as (
  select
    source_name,
    source_kind,
    origin,
    count(*) as quarantined_rows,
  from quarantined_records
  group by source_name, source_kind, origin
),

per_origin as (
  select
    intake.source_name,
    intake.taken_at,
    intake.record_count,
    coalesce(quarantined.quarantined_rows, 0) as quarantined_rows,
  from intake
  left join quarantined
    on
      intake.source_name = quarantined.source_name
      and intake.source_kind = quarantined.source_kind
      and intake.origin = quarantined.origin
),

final as (
  select
    source_name,
    taken_at,
    sum(record_count) as lines_taken,
    sum(quarantined_rows) as quarantined_rows,
    sum(record_count) - sum(quarantined_rows) as valid_rows,
    round(100 * safe_divide(sum(quarantined_rows), sum(record_count)), 1) as quarantined_pct,
  from per_origin
  group by source_name, taken_at
)

select * from final
`);

// Thresholds of the contract's quality block, a row per threshold crossed, severity as the contract says.
// Hourly, <source>_quality_thresholds judges this run: the shares of rejected, duplicate and late lines
// and of each rule among the lines the last run took (ops.source_quality_run, over the small batch), so
// it scans no whole table. The dead-letter share needs the whole dead-letter bucket (an external table
// with no date partition), so <source>_dead_letter_threshold judges it daily, over all time.
contracts.filter((contract) => contract.quality).forEach((contract) => {
  const name = contract.name;
  const quality = contract.quality;
  const severity = quality.severity || "error";
  const severityTags = severity === "warn" ? ["warn"] : [];
  // [threshold, observed share over the run row `runs` or the rule row `rules`, limit]
  const checks = [];
  if (quality.max_reject_rate !== undefined) {
    checks.push(["max_reject_rate", "safe_divide(quarantined_rows, lines_taken)", quality.max_reject_rate]);
  }
  if (quality.max_duplicate_rate !== undefined) {
    checks.push(["max_duplicate_rate", "safe_divide(duplicate_rows, lines_taken)", quality.max_duplicate_rate]);
  }
  if (quality.max_late_rate !== undefined) {
    checks.push(["max_late_rate", "safe_divide(late_rows, silver_rows + duplicate_rows)", quality.max_late_rate]);
  }
  const measured = checks.map(([threshold, share, limit]) => `  select
    '${threshold}' as threshold,
    ${share} as observed_rate,
    ${limit} as max_rate,
  from runs`);
  Object.keys(quality.rules || {}).sort().forEach((rule) => {
    if (!silver.ruleNames(contract).includes(rule)) {
      throw new Error(`includes/contracts/${name}.json: quality.rules.${rule}: not a rule of ${name}`);
    }
    measured.push(`  select
    'rules.${rule}' as threshold,
    safe_divide(quarantined_rows, lines_taken) as observed_rate,
    ${quality.rules[rule]} as max_rate,
  from rules
  where rule_name = '${rule}'`);
  });
  if (measured.length) {
    assert(`${name}_quality_thresholds`, {
      // "incoming_quality": the report scores it as incoming data, not as pipeline health
      tags: ["assertions", "hourly", name, "incoming_quality"].concat(severityTags),
      description:
        `${name}: the shares of rejected, duplicate and late lines and of each rule among the lines the last ` +
        `run took stay within the contract's quality thresholds (includes/contracts/${name}.json); ` +
        `severity ${severity}.`,
    }).query((ctx) => `
with runs as (
  select * from ${ctx.ref("ops", "source_quality_run")}
  where source_name = '${name}'
),
${Object.keys(quality.rules || {}).length ? `
rules as (
  select
    quarantine_rules_run.rule_name,
    quarantine_rules_run.quarantined_rows,
    runs.lines_taken,
  from ${ctx.ref("ops", "quarantine_rules_run")} as quarantine_rules_run
  inner join runs on quarantine_rules_run.source_name = runs.source_name
  -- named here too, not only through the join: the engines then read this source's tables alone
  where quarantine_rules_run.source_name = '${name}'
),
` : ""}
measured as (
${measured.join("\n  union all\n")}
)

select * from measured
where observed_rate > max_rate
`);
  }
  if (quality.max_dead_letter_rate !== undefined) {
    assert(`${name}_dead_letter_threshold`, {
      tags: ["assertions", "daily", name, "incoming_quality"].concat(severityTags),
      description:
        `${name}: the share of payloads dead-lettered (of lines taken + dead-lettered, all time) stays within ` +
        `the contract's max_dead_letter_rate (includes/contracts/${name}.json); severity ${severity}.`,
    }).query((ctx) => `
with sources as (
  select * from ${ctx.ref("ops", "source_quality")}
  where source_name = '${name}'
),

measured as (
  select
    'max_dead_letter_rate' as threshold,
    safe_divide(dead_lettered_rows, lines_taken + dead_lettered_rows) as observed_rate,
    ${quality.max_dead_letter_rate} as max_rate,
  from sources
)

select * from measured
where observed_rate > max_rate
`);
  }
});
