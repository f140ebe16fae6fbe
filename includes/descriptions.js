// One dictionary of column descriptions, reused by every table that carries the column. Contract
// fields bring their own description (see forContract).

const COMMON = {
  record_id: "Identifier of the bronze record: hash of its origin, content and occurrence; stable across runs.",
  source_kind: "How the record arrived: landing (GCS file) or pubsub (BigQuery subscription).",
  origin: "Where the record was read: gs:// object of the landing file, or subscription/message_id.",
  ingested_at: "When the record reached bronze: landing partition hour, or Pub/Sub publish time (UTC).",
  ingest_date: "UTC date of ingested_at; the bronze partition the record was read from.",
  event_id: "Identifier of the generated event; a re-delivered message repeats it.",
  event_date: "UTC date of the event time; the partition of the table.",
  raw_record: "The record exactly as it arrived (one JSONL line or Pub/Sub data).",
  failed_rules: "Every quality rule the record failed, named <field>_<rule> or record_<rule>.",
  duplicate_of:
    "record_id of the version that displaced this record: the next newer version of the same key " +
    "(latest first by event time, ingested_at, record_id); following duplicate_of from any version " +
    "leads to the one silver keeps.",
  duplicate_kind: "redelivery (same event_id as the version in duplicate_of) or older_version (an earlier event).",
  total_price: "quantity * price, in the order currency.",
  sales_date: "UTC date of the order's latest event.",
  currency: "ISO 4217 currency of the amounts in the row.",
  revenue: "Sum of total_price of orders not cancelled, in the row's currency.",
  units: "Units ordered in orders not cancelled.",
  order_count: "Orders not cancelled.",
  record_count: "Bronze records taken from the file or message (one per line; one per message).",
  taken_at: "When the run that took the file or message started (UTC).",
};

// Returns {column: description} for `names`, taking `extra` first, then the contract, then COMMON.
function describe(names, extra, contract) {
  const fromContract = {};
  ((contract && contract.fields) || []).forEach((field) => {
    if (field.description) {
      fromContract[field.name] = field.description;
      fromContract[`${field.name}_hash`] = `Salted SHA-256 (hex) of ${field.name}: ${field.description}`;
    }
  });
  const out = {};
  names.forEach((name) => {
    const text = (extra || {})[name] || fromContract[name] || COMMON[name];
    if (text) {
      out[name] = text;
    }
  });
  return out;
}

module.exports = { COMMON, describe };
