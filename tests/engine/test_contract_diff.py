"""`lakehouse contract diff`: the JSON patch proposed from ops.schema_drift rows."""

from __future__ import annotations

import json
from pathlib import Path

from ingest.contracts import parse_contract
from lakehouse.contract_diff import Drift, apply, diff

ORDERS = Path(__file__).resolve().parents[2] / "includes" / "contracts" / "orders.json"


def test_scalar_keys_become_optional_fields_and_others_are_skipped_with_a_reason():
    contract = json.loads(ORDERS.read_text())
    drift = [
        Drift("coupon_code", "string", 3, 0, '"SAVE10"'),
        Drift("customerId", "string", 2, 2, '"CUST-00001"'),
        Drift("experiment", "object", 1, 0, '{"id":"exp-42"}'),
        Drift("order_id", "string", 5, 0, '"ORD-1"'),
        Drift("weight", "integer", 1, 0, "3"),
        Drift("weight", "number", 1, 0, "2.5"),
    ]
    result = diff(contract, drift)
    assert result.patch == [
        {
            "op": "add",
            "path": "/fields/-",
            "value": {
                "name": "coupon_code",
                "type": "STRING",
                "description": 'Added from schema drift: 3 record(s) carried it, e.g. "SAVE10".',
            },
        },
        {
            "op": "add",
            "path": "/fields/-",
            "value": {
                "name": "weight",
                "type": "NUMERIC",
                "description": "Added from schema drift: 2 record(s) carried it, e.g. 3.",
            },
        },
    ]
    assert result.skipped == [
        "customerId: not a field name (lower-case letters, digits, _); rename it at the producer",
        "experiment: values are object; no contract type takes them (they stay in `extra`)",
    ]
    changed = parse_contract(apply(contract, result.patch), ORDERS)
    assert changed.field_names[-2:] == ["coupon_code", "weight"]
    assert changed.field("weight").required is False


def test_a_key_named_like_a_pipeline_column_is_never_proposed():
    """A producer sending raw_record would put the raw line (PII in clear) in silver once accepted;
    failed_rules would lose every record. They stay in `extra`."""
    contract = json.loads(ORDERS.read_text())
    drift = [
        Drift("raw_record", "string", 4, 0, '"x"'),
        Drift("failed_rules", "string", 1, 0, '"y"'),
        Drift("customer_email_hash", "string", 1, 0, '"z"'),
    ]

    result = diff(contract, drift)

    assert result.patch == []
    assert [line.split(":")[0] for line in result.skipped] == ["customer_email_hash", "failed_rules", "raw_record"]
    assert "is a column the pipeline writes" in result.skipped[2]
