"""`lakehouse contract diff`: the contract change (a JSON patch) that accepts the drift a source shows."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from ingest.contracts import CONTRACTS_DIR, ContractError, parse_contract

# JSON types seen in ops.schema_drift -> the contract type that takes every value of them.
_SCALAR_TYPES = {
    frozenset({"string"}): "STRING",
    frozenset({"boolean"}): "BOOL",
    frozenset({"integer"}): "INT64",
    frozenset({"number"}): "NUMERIC",
    frozenset({"integer", "number"}): "NUMERIC",
}


@dataclass(frozen=True)
class Drift:
    """One row of ops.schema_drift: a key the contract does not name, with one JSON type of its values."""

    field_name: str
    json_type: str
    record_count: int
    quarantined_count: int
    sample_value: str | None


@dataclass(frozen=True)
class Diff:
    """The JSON patch (RFC 6902) adding the fields that can be accepted, and why others cannot."""

    patch: list[dict]
    skipped: list[str]


def read_drift(con, source: str, default_project: str) -> list[Drift]:
    """Return the ops.schema_drift rows of `source`, by field and type; raises ValueError when the
    table does not exist (no run has taken a batch yet)."""
    import duckdb

    try:
        rows = con.execute(
            f"SELECT field_name, json_type, record_count, quarantined_count, sample_value "
            f'FROM "{default_project}"."ops"."schema_drift" WHERE source_name = ? ORDER BY field_name, json_type',
            [source],
        ).fetchall()
    except duckdb.CatalogException:
        raise ValueError("ops.schema_drift does not exist yet: run the pipeline (lakehouse run) first") from None
    return [Drift(*row) for row in rows]


def diff(contract: dict, drift: list[Drift]) -> Diff:
    """Return the patch adding, as optional fields, the drifted keys whose JSON types one contract type
    takes; keys already in the contract are left out, keys with objects, arrays or mixed types are
    skipped with the reason (they stay in `extra`)."""
    known = {field["name"] for field in contract["fields"]}
    by_field: dict[str, list[Drift]] = {}
    for row in drift:
        if row.field_name not in known:
            by_field.setdefault(row.field_name, []).append(row)
    patch: list[dict] = []
    skipped: list[str] = []
    for name, rows in sorted(by_field.items()):
        types = frozenset(row.json_type for row in rows) - {"null"}
        count = sum(row.record_count for row in rows)
        kind = _SCALAR_TYPES.get(types)
        sample = next((row.sample_value for row in rows if row.json_type != "null"), None)
        if kind is None:
            seen = ", ".join(sorted(types)) or "null only"
            skipped.append(f"{name}: values are {seen}; no contract type takes them (they stay in `extra`)")
            continue
        if not _is_field_name(name):
            skipped.append(f"{name}: not a field name (lower-case letters, digits, _); rename it at the producer")
            continue
        reserved = _reserved(name, contract)
        if reserved:
            skipped.append(f"{name}: {reserved}; it stays in `extra`")
            continue
        field = {
            "name": name,
            "type": kind,
            "description": f"Added from schema drift: {count} record(s) carried it, e.g. {sample}.",
        }
        patch.append({"op": "add", "path": "/fields/-", "value": field})
        quarantined = sum(row.quarantined_count for row in rows)
        if quarantined:
            skipped.append(f"{name}: {quarantined} of {count} record(s) were quarantined for other rules (a rename?)")
    return Diff(patch, skipped)


def _reserved(name: str, contract: dict) -> str | None:
    from ingest.contracts import reserved_name_reason

    fields = contract.get("fields") if isinstance(contract.get("fields"), list) else []
    pii = frozenset(f.get("name") for f in fields if isinstance(f, dict) and f.get("pii") is True)
    return reserved_name_reason(name, pii)


def _is_field_name(name: str) -> bool:
    from ingest.contracts import IDENTIFIER

    return bool(IDENTIFIER.match(name))


def apply(contract: dict, patch: list[dict]) -> dict:
    """Return the contract with the patch's added fields (and a generator value spec for each, so the
    generator keeps loading it)."""
    out = json.loads(json.dumps(contract))
    for operation in patch:
        field = operation["value"]
        out["fields"].append(field)
        specs = out.setdefault("generator", {}).setdefault("fields", {})
        specs.setdefault(field["name"], _value_spec(field))
    return out


def _value_spec(field: dict) -> dict:
    if field["type"] == "INT64":
        return {"kind": "int", "min": 0, "max": 100}
    if field["type"] == "NUMERIC":
        return {"kind": "money", "min": 1, "max": 100}
    if field["type"] == "BOOL":
        return {"kind": "choice", "values": [True, False]}
    return {"kind": "choice", "values": [f"{field['name']}-1", f"{field['name']}-2"]}


@click.group("contract")
def contract_group() -> None:
    """Source contracts: what the arriving data needs from them."""


@contract_group.command("diff")
@click.option("--source", required=True, help="The source whose contract to compare with ops.schema_drift.")
@click.option("--write", is_flag=True, help="Apply the change to includes/contracts/<source>.json.")
@click.option("--project-dir", type=click.Path(file_okay=False, path_type=Path), default=".", show_default=True)
def diff_command(source: str, write: bool, project_dir: Path) -> None:
    """Print the contract change (a JSON patch) that accepts the fields arriving for SOURCE.

    Reads ops.schema_drift on the local warehouse: each key the contract does not name becomes an
    optional field of the type its values have; keys holding objects, arrays or several types are
    listed as skipped. With --write the patch is applied to the contract file; the next run adds the
    column (onSchemaChange EXTEND). Exits 1 with one line when the source or the table is missing.
    """
    from lakehouse import paths
    from lakehouse.commands import _query_connection, fail

    if not _is_field_name(source):
        fail(f"--source {source[:80]!r} is not a source name (lower-case letters, digits, _; at most 63)", 2)
    path = project_dir / CONTRACTS_DIR / f"{source}.json"
    if not path.is_file():
        fail(f"{path}: no contract for source {source!r}")
    contract = json.loads(path.read_text())
    default_project = paths.default_project(project_dir)
    con = _query_connection(paths.home(project_dir), [default_project])
    try:
        drift = read_drift(con, source, default_project)
    except ValueError as error:
        fail(str(error))
    finally:
        con.close()
    result = diff(contract, drift)
    click.echo(json.dumps(result.patch, indent=2))
    for line in result.skipped:
        click.echo(f"note: {line}", err=True)
    if write and result.patch:
        changed = apply(contract, result.patch)
        try:
            parse_contract(changed, path)
        except ContractError as error:
            fail(f"the change does not make a valid contract: {error}")
        path.write_text(_dump(changed))
        click.echo(f"wrote {len(result.patch)} field(s) to {path}", err=True)
    sys.exit(0)


def _dump(contract: dict) -> str:
    """Return the contract as JSON text: one line per field, fault and key, like the files in the repository."""
    lines = ["{"]
    items = list(contract.items())
    for index, (key, value) in enumerate(items):
        comma = "," if index < len(items) - 1 else ""
        if key == "fields":
            body = ",\n".join(f"    {json.dumps(field)}" for field in value)
            lines.append(f'  "fields": [\n{body}\n  ]{comma}')
        elif key == "generator":
            parts = []
            for gkey, gvalue in value.items():
                if gkey == "fields":
                    inner = ",\n".join(f"      {json.dumps(k)}: {json.dumps(v)}" for k, v in gvalue.items())
                    parts.append(f'    "fields": {{\n{inner}\n    }}')
                elif gkey == "faults":
                    inner = ",\n".join(f"      {json.dumps(fault)}" for fault in gvalue)
                    parts.append(f'    "faults": [\n{inner}\n    ]')
                else:
                    parts.append(f"    {json.dumps(gkey)}: {json.dumps(gvalue)}")
            lines.append('  "generator": {\n' + ",\n".join(parts) + f"\n  }}{comma}")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"
