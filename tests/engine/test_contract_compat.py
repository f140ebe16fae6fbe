"""Lint refuses contract changes that would drop data, against git HEAD or a --base file; additions pass."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from lakehouse.contract_compat import breaking_changes, contract_problems
from lakehouse.lint import lint_command

REPO = Path(__file__).resolve().parents[2]
ORDERS = json.loads((REPO / "includes" / "contracts" / "orders.json").read_text())
FILE = "includes/contracts/orders.json"
HINT = "version the contract instead (a new contract file, both accepted during a transition window)"


def _changed(edit) -> dict:
    contract = json.loads(json.dumps(ORDERS))
    edit({field["name"]: field for field in contract["fields"]}, contract)
    return contract


def _lines(new: dict) -> list[str]:
    return [str(change) for change in breaking_changes(ORDERS, new, FILE)]


def test_additions_and_widenings_pass():
    def edit(fields, contract):
        contract["fields"].append({"name": "coupon", "type": "STRING", "description": "Coupon code."})
        fields["quantity"]["type"] = "NUMERIC"
        fields["price"]["type"] = "FLOAT64"
        fields["currency"]["accepted_values"].append("JPY")
        fields["customer_id"]["required"] = False

    assert _lines(_changed(edit)) == []


def test_removing_a_field_is_refused_naming_it():
    new = _changed(lambda fields, contract: contract["fields"].remove(fields["shipping_address"]))
    assert _lines(new) == [
        f"{FILE}: field 'shipping_address': removed; silver would drop its column and values; {HINT}"
    ]


@pytest.mark.parametrize(
    ("field", "old", "new"),
    [("price", "NUMERIC", "INT64"), ("quantity", "INT64", "STRING"), ("event_ts", "TIMESTAMP", "DATE")],
)
def test_narrowing_or_changing_a_type_is_refused(field, old, new):
    def edit(fields, contract):
        fields[field]["type"] = new

    assert _lines(_changed(edit)) == [
        f"{FILE}: field {field!r}: type {old} -> {new} narrows or changes its values; {HINT}"
    ]


def test_removing_accepted_values_and_tightening_are_refused():
    def edit(fields, contract):
        fields["status"]["accepted_values"] = ["placed", "paid", "shipped"]
        fields["customer_email"]["required"] = True
        fields["customer_name"]["accepted_values"] = ["Ann"]
        contract["key"] = ["order_id", "status"]

    assert _lines(_changed(edit)) == [
        f"{FILE}: field 'customer_email': became required; records without it would be quarantined; {HINT}",
        f"{FILE}: field 'customer_name': gained accepted values; other values would be quarantined; {HINT}",
        f"{FILE}: field 'status': accepted value(s) 'delivered', 'cancelled' removed; "
        f"records carrying them would be quarantined; {HINT}",
        f"{FILE}: key ['order_id'] -> ['order_id', 'status'] re-keys silver; {HINT}",
    ]


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=cwd, check=True, capture_output=True
    )


@pytest.fixture()
def committed(tmp_path) -> Path:
    """A git repository holding the repository's contracts, committed."""
    shutil.copytree(REPO / "includes" / "contracts", tmp_path / "includes" / "contracts")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "contracts")
    return tmp_path


def _write(project: Path, contract: dict) -> None:
    (project / "includes" / "contracts" / f"{contract['name']}.json").write_text(json.dumps(contract))


def test_head_is_the_default_base(committed):
    assert contract_problems(committed) == []
    _write(committed, _changed(lambda fields, contract: contract["fields"].remove(fields["price"])))
    (committed / "includes" / "contracts" / "inventory.json").unlink()
    assert contract_problems(committed) == [
        f"includes/contracts/inventory.json: deleted; the source's silver and its data would go; {HINT}",
        f"{FILE}: field 'price': removed; silver would drop its column and values; {HINT}",
    ]
    # once committed, HEAD holds the change; an older revision still sees it
    _git(committed, "commit", "-q", "-am", "drop price")
    assert contract_problems(committed) == []
    assert len(contract_problems(committed, "HEAD~1")) == 2


def test_a_base_file_or_directory_is_compared(tmp_path):
    project = tmp_path / "project"
    (project / "includes" / "contracts").mkdir(parents=True)
    _write(project, _changed(lambda fields, contract: fields["quantity"].update(type="BOOL")))
    base = tmp_path / "orders.json"
    base.write_text(json.dumps(ORDERS))
    expected = [f"{FILE}: field 'quantity': type INT64 -> BOOL narrows or changes its values; {HINT}"]
    assert contract_problems(project, str(base)) == expected
    assert contract_problems(project, str(REPO / "includes" / "contracts")) == [
        f"includes/contracts/{name}.json: deleted; the source's silver and its data would go; {HINT}"
        for name in ("ad_clicks", "inventory")
    ] + expected + [
        f"includes/contracts/{name}.json: deleted; the source's silver and its data would go; {HINT}"
        for name in ("page_views", "user_activity")
    ]
    # outside git with no base there is nothing to compare with
    assert contract_problems(project) == []


def test_a_base_that_is_nothing_is_an_error(committed, tmp_path_factory):
    with pytest.raises(ValueError, match=r"^--base nope: not a file, a directory or a git revision$"):
        contract_problems(committed, "nope")
    outside = tmp_path_factory.mktemp("outside")
    with pytest.raises(ValueError, match=r"is not in git\)$"):
        contract_problems(outside, "HEAD")


def test_lint_command_prints_the_refusal_and_fails(committed):
    _write(committed, _changed(lambda fields, contract: contract["fields"].remove(fields["shipping_address"])))
    # no .sqlfluff: the command reports the contract problem, then stops before compiling (exit 2)
    result = CliRunner().invoke(lint_command, ["--project-dir", str(committed)])
    assert result.exit_code == 2
    assert result.output.splitlines()[0] == (
        f"{FILE}: field 'shipping_address': removed; silver would drop its column and values; {HINT}"
    )
    bad = CliRunner().invoke(lint_command, ["--project-dir", str(committed), "--base", "nope"])
    assert bad.exit_code == 2
    assert "--base nope: not a file, a directory or a git revision" in bad.output
