"""Tests for the source contract loader and its identifier validation."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from ingest.contracts import ContractError, load_contract, load_contracts, parse_contract

REPO = Path(__file__).resolve().parents[2]
SOURCES = ["ad_clicks", "inventory", "orders", "page_views", "user_activity"]


def _orders() -> dict:
    return json.loads((REPO / "includes/contracts/orders.json").read_text())


def _write(tmp_path: Path, raw: dict, name: str = "orders") -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(raw))
    return path


def test_the_repository_contracts_load():
    contracts = load_contracts(REPO)
    assert sorted(contracts) == SOURCES
    orders = contracts["orders"]
    assert orders.key == ("order_id",)
    assert orders.event_time == "event_ts"
    assert orders.pii_fields == ["customer_email", "customer_name", "shipping_address"]
    assert orders.field("product_id").pattern == "^PROD-[0-9]{4}$"
    assert orders.field("quantity").rule_names() == ["quantity_required", "quantity_type", "quantity_min"]
    assert contracts["inventory"].key == ("warehouse_id", "product_id")
    assert contracts["page_views"].field("customer_id").required is False
    assert round(sum(c.share for c in contracts.values()), 9) == 1.0


def test_orders_carry_the_issue_default_fault_rates():
    rates = {f.name: f.rate for f in load_contracts(REPO)["orders"].faults}
    assert rates["customer_id_null"] == 0.10
    assert rates["product_id_wrong_format"] == 0.15
    assert rates["quantity_as_string"] == 0.10
    assert rates["quantity_negative"] == 0.05
    assert rates["price_null"] == 0.10
    assert rates["price_zero"] == 0.05
    assert rates["order_id_duplicate"] == 0.05
    assert rates["poison_pill"] == 0.01


@pytest.mark.parametrize(
    ("mutate", "where", "fragment"),
    [
        (lambda r: r.update(name="orders; drop table x"), "name", "is not an identifier"),
        (lambda r: r["fields"][0].update(name="../../etc"), "fields[0].name", "is not an identifier"),
        (lambda r: r["fields"][0].update(name="Order_ID"), "fields[0].name", "is not an identifier"),
        (lambda r: r["fields"][1].update(type="VARCHAR"), "fields[1] (customer_id).type", "'VARCHAR'"),
        (lambda r: r["fields"][1].update(pattern="(["), "fields[1] (customer_id).pattern", "regular"),
        (lambda r: r["fields"][1].update(min=1), "fields[1] (customer_id).min", "only numeric"),
        (lambda r: r["fields"][2].update(colour="red"), "fields[2] (customer_email)", "colour"),
        (lambda r: r.update(key=["nope"]), "key", "'nope' is not a field"),
        (lambda r: r.update(event_time="order_id"), "event_time", "must be a TIMESTAMP"),
        (lambda r: r["fields"][0].update(pii=True), "key", "order_id is pii"),
        (lambda r: r["fields"].append(dict(r["fields"][0])), "fields (order_id)", "duplicate"),
        (lambda r: r["fields"].append({"name": "raw_record", "type": "STRING"}), "fields (raw_record)", "pipeline"),
        (lambda r: r["fields"].append({"name": "a__json", "type": "STRING"}), "fields (a__json)", "'__'"),
        (
            lambda r: r["fields"].append({"name": "customer_email_hash", "type": "STRING"}),
            "fields (customer_email_hash)",
            "hash of PII field customer_email",
        ),
        (lambda r: r["generator"]["fields"].pop("price"), "generator.fields", "price"),
        (lambda r: r["generator"]["fields"]["price"].update(kind="magic"), "generator.fields.price", "magic"),
        (
            lambda r: r["generator"]["faults"][0].update(rate=1.5),
            "generator.faults[0] (customer_id_null).rate",
            "1.5",
        ),
        (
            lambda r: r["generator"]["faults"][0].update(field="ghost"),
            "generator.faults[0] (customer_id_null).field",
            "'ghost'",
        ),
        (
            lambda r: r["generator"]["faults"][4].update(rate=0.96),
            "generator.faults",
            "field price add up to 1.01",
        ),
        (lambda r: r["generator"]["faults"][1].update(name="x-y"), "generator.faults[1].name", "identifier"),
    ],
)
def test_invalid_contracts_name_the_file_and_field(tmp_path, mutate, where, fragment):
    raw = copy.deepcopy(_orders())
    mutate(raw)
    path = _write(tmp_path, raw)
    with pytest.raises(ContractError) as caught:
        load_contract(path)
    assert caught.value.path == str(path)
    assert caught.value.where == where
    assert fragment in caught.value.detail
    assert str(caught.value).startswith(f"{path}: {where}: ")


def test_name_must_equal_the_file_name(tmp_path):
    path = _write(tmp_path, _orders(), name="sales")
    with pytest.raises(ContractError, match="differs from the file name 'sales.json'"):
        load_contract(path)


def test_broken_json_names_the_line(tmp_path):
    path = tmp_path / "orders.json"
    path.write_text('{\n  "name": "orders",\n  oops\n}')
    with pytest.raises(ContractError) as caught:
        load_contract(path)
    assert caught.value.where == "line 3"


def test_an_empty_directory_is_an_error(tmp_path):
    with pytest.raises(ContractError, match="no contract"):
        load_contracts(tmp_path)


def test_parse_contract_rejects_a_non_object():
    with pytest.raises(ContractError, match="must be a JSON object"):
        parse_contract([], "x.json")


def test_the_quality_block_is_read_with_its_thresholds():
    contract = load_contract(REPO / "includes" / "contracts" / "orders.json")
    assert contract.quality.max_reject_rate == 0.25
    assert contract.quality.rules == {"product_id_pattern": 0.1, "customer_id_required": 0.1}
    assert contract.quality.severity == "warn"
    assert load_contract(REPO / "includes" / "contracts" / "inventory.json").quality.empty


def test_quarantine_rules_follow_silver_order():
    rules = load_contract(REPO / "includes" / "contracts" / "orders.json").quarantine_rules
    assert rules[:7] == [
        "record_not_json",
        "record_not_utf8",
        "record_oversized",
        "record_source_mismatch",
        "record_landing_path",
        "order_id_required",
        "order_id_type",
    ]
    assert len(rules) == 31


def test_unknown_fields_defaults_to_keep_and_quarantine_adds_its_rule():
    raw = json.loads((REPO / "includes" / "contracts" / "orders.json").read_text())
    assert parse_contract(raw, "orders.json").unknown_fields == "keep"
    strict = parse_contract({**raw, "unknown_fields": "quarantine"}, "orders.json")
    assert strict.unknown_fields == "quarantine"
    assert strict.quarantine_rules[5] == "record_unexpected_field"
    assert len(strict.quarantine_rules) == 32


def test_an_unknown_fields_policy_other_than_keep_or_quarantine_is_refused():
    raw = json.loads((REPO / "includes" / "contracts" / "orders.json").read_text())
    with pytest.raises(ContractError) as caught:
        parse_contract({**raw, "unknown_fields": "drop"}, "orders.json")
    assert str(caught.value) == "orders.json: unknown_fields: 'drop' must be 'keep' or 'quarantine'"


@pytest.mark.parametrize(
    "quality, where, fragment",
    [
        ([0.1], "quality", "must be an object"),
        ({"max_reject": 0.1}, "quality", "unknown key(s) max_reject"),
        ({"max_reject_rate": 1.5}, "quality.max_reject_rate", "not a share between 0 and 1"),
        ({"max_reject_rate": True}, "quality.max_reject_rate", "not a share between 0 and 1"),
        ({"severity": "fatal"}, "quality.severity", "must be 'warn' or 'error'"),
        ({"rules": {"price_pattern": 0.1}}, "quality.rules.price_pattern", "is not a rule of this contract"),
        ({"rules": {"price_required": -0.1}}, "quality.rules.price_required", "not a share between 0 and 1"),
    ],
)
def test_a_bad_quality_block_names_the_field(quality, where, fragment):
    raw = _orders()
    raw["quality"] = quality
    with pytest.raises(ContractError) as caught:
        parse_contract(raw, "includes/contracts/orders.json")
    assert caught.value.where == where
    assert fragment in caught.value.detail
