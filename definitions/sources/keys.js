// The PII salt: one row in the restricted dataset keys, which the Dataform identity reads and
// analysts do not. Silver's hashes read it when they run (includes/silver.js piiHash), so the salt
// is in no compiled SQL, var or job text. Deploy creates and fills it; locally `lakehouse run` does.

declare({
  schema: "keys",
  name: "pii_salt",
  description:
    "One row: the secret salt of every PII hash in silver (column salt). Restricted; written only by " +
    "deploy apply (docs/runbook.md, \"Rotate the PII salt\").",
});
