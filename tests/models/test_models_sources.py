"""includes/sources.js lists exactly the contracts in includes/contracts/ (Dataform cannot list a folder)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from lakehouse.engine.compile import CompileError, compile_project
from lakehouse.lint import registry_problems
from models.project import REPO, copy_project


def test_registry_matches_contracts():
    assert registry_problems(REPO) == []


def test_unregistered_and_orphan_sources_are_named(tmp_path: Path):
    project = copy_project(tmp_path / "project")
    contracts = project / "includes" / "contracts"
    (contracts / "returns.json").write_text((contracts / "orders.json").read_text())
    (contracts / "inventory.json").unlink()
    assert registry_problems(project) == [
        "includes/contracts/returns.json: source 'returns' is not listed in includes/sources.js NAMES; add it",
        "includes/sources.js: source 'inventory' has no contract includes/contracts/inventory.json",
    ]


# (field index in orders.json, attribute, bad value, the message the compile must give)
BAD_ATTRIBUTES = [
    (6, "min", "abc", 'fields[6] (quantity).min: "abc" must be a finite number'),
    (7, "min_exclusive", None, "fields[7] (price).min_exclusive: null must be a finite number"),
    (6, "min", True, "fields[6] (quantity).min: true must be a finite number"),
    (0, "min", 1, "fields[0] (order_id).min: only numeric fields take a bound, not STRING"),
    (0, "pattern", 5, "fields[0] (order_id).pattern: must be a non-empty string"),
    (6, "pattern", "^[0-9]+$", "fields[6] (quantity).pattern: only STRING fields take a pattern, not INT64"),
    (8, "accepted_values", "USD", "fields[8] (currency).accepted_values: must be a non-empty list of strings"),
    (8, "accepted_values", [], "fields[8] (currency).accepted_values: must be a non-empty list of strings"),
    (8, "accepted_values", ["USD", 1], "fields[8] (currency).accepted_values: must be a non-empty list of strings"),
    (2, "pii", "yes", "fields[2] (customer_email).pii: must be true or false"),
    (2, "maximum", 3, "fields[2] (customer_email): unknown attribute(s) maximum"),
    (3, "description", ["x"], "fields[3] (customer_name).description: must be a string"),
]


def test_contract_attributes_of_the_wrong_type_stop_the_compile(tmp_path: Path):
    project = copy_project(tmp_path / "project")
    contract_file = project / "includes" / "contracts" / "orders.json"
    original = json.loads(contract_file.read_text())
    messages = []
    for index, attribute, value, _ in BAD_ATTRIBUTES:
        contract = copy.deepcopy(original)
        contract["fields"][index][attribute] = value
        contract_file.write_text(json.dumps(contract))
        with pytest.raises(CompileError) as raised:
            compile_project(project, home_dir=tmp_path / "home", use_cache=False)
        messages.append(str(raised.value))
    for message, (*_, expected) in zip(messages, BAD_ATTRIBUTES, strict=True):
        assert f"includes/contracts/orders.json: {expected}" in message
    contract_file.write_text(json.dumps(original))
    assert compile_project(project, home_dir=tmp_path / "home", use_cache=False).graph["tables"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("failed_rules", "fields (failed_rules): is a column the pipeline writes beside the fields"),
        ("customer_email_hash", "fields (customer_email_hash): is the column of the hash of PII field customer_email"),
    ],
)
def test_a_field_named_like_a_pipeline_column_stops_the_compile(tmp_path: Path, name, message):
    project = copy_project(tmp_path / "project")
    contract_file = project / "includes" / "contracts" / "orders.json"
    contract = json.loads(contract_file.read_text())
    contract["fields"].append({"name": name, "type": "STRING"})
    contract_file.write_text(json.dumps(contract))

    with pytest.raises(CompileError) as raised:
        compile_project(project, home_dir=tmp_path / "home", use_cache=False)

    assert f"includes/contracts/orders.json: {message}" in str(raised.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["fields"][0].update(pii=True), "key: order_id is pii: silver keeps only its hash"),
        (lambda c: c.update(event_time="currency"), "event_time: currency must be a TIMESTAMP field"),
    ],
)
def test_a_pii_key_or_an_event_time_that_is_no_timestamp_stops_the_compile(tmp_path: Path, change, message):
    project = copy_project(tmp_path / "project")
    contract_file = project / "includes" / "contracts" / "orders.json"
    contract = json.loads(contract_file.read_text())
    change(contract)
    contract_file.write_text(json.dumps(contract))

    with pytest.raises(CompileError) as raised:
        compile_project(project, home_dir=tmp_path / "home", use_cache=False)

    assert f"includes/contracts/orders.json: {message}" in str(raised.value)
