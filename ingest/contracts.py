"""Load and validate the source contracts in includes/contracts/*.json."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTRACTS_DIR = Path("includes") / "contracts"

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# Columns the pipeline writes beside a contract's fields (includes/silver.js, the duplicates and intake
# tables): a field of one of these names would overwrite it (raw_record would put the raw line, PII in
# clear, in silver; failed_rules would lose every record). The same list is in includes/sources.js.
RESERVED_NAMES = frozenset(
    {
        "source", "event_id", "record_id", "source_kind", "origin", "ingested_at", "ingest_date", "raw_record",
        "is_json", "payload_source", "payload_keys", "extra_fields", "extra", "failed_rules", "occurrence",
        "event_date", "duplicate_of", "taken_at", "record_count",
    }
)  # fmt: skip


def reserved_name_reason(name: str, pii_fields: frozenset[str] = frozenset()) -> str | None:
    """Why `name` cannot be a contract field (a column the pipeline writes), or None."""
    if name in ("source", "event_id"):
        return "is an envelope field every payload carries already"
    if name in RESERVED_NAMES:
        return "is a column the pipeline writes beside the fields (rename it at the producer)"
    if "__" in name:
        return "holds '__', which the pipeline's own columns use (<field>__json, <field>__text)"
    if name.endswith("_hash") and name[: -len("_hash")] in pii_fields:
        return f"is the column of the hash of PII field {name[: -len('_hash')]}"
    return None
FIELD_TYPES = frozenset({"STRING", "INT64", "NUMERIC", "FLOAT64", "BOOL", "TIMESTAMP", "DATE"})
NUMERIC_TYPES = frozenset({"INT64", "NUMERIC", "FLOAT64"})

# Value kinds the generator knows how to fake (see ingest/generator.py).
VALUE_KINDS = frozenset(
    {
        "id",
        "int",
        "money",
        "choice",
        "event_time",
        "customer.id",
        "customer.email",
        "customer.name",
        "customer.address",
        "product.id",
        "product.price",
        "session.id",
        "session.customer_id",
        "page.url",
        "page.product_id",
        "campaign.id",
        "campaign.ad_network",
        "warehouse.id",
    }
)
# Faults that change one field's value; at most one of them hits a given field of a record.
FIELD_FAULTS = frozenset({"null", "wrong_format", "as_string", "negative", "zero", "unknown_value"})
# Faults that replace the whole record; at most one of them hits a record.
REPLACING_FAULTS = frozenset({"poison_pill", "non_utf8", "oversized"})
# Faults that act on the record or the stream, independently of each other.
RECORD_FAULTS = frozenset({"duplicate_key", "extra_field", "renamed_field", "late_event", "redelivery"})
FAULT_KINDS = FIELD_FAULTS | REPLACING_FAULTS | RECORD_FAULTS

_TOP_KEYS = {"name", "description", "key", "event_time", "fields", "generator", "quality", "unknown_fields"}
# What silver does with a payload key the contract does not name: keep it in silver's `extra` column,
# or quarantine the record (rule record_unexpected_field).
UNKNOWN_FIELDS = ("keep", "quarantine")
# The optional `quality` block: thresholds (shares 0-1) whose crossing is a warn or error assertion.
_QUALITY_RATES = ("max_reject_rate", "max_duplicate_rate", "max_dead_letter_rate", "max_late_rate")
_QUALITY_KEYS = {*_QUALITY_RATES, "severity", "rules"}
# Rules silver checks on every record, before the per-field ones (includes/silver.js).
RECORD_RULES = (
    "record_not_json",
    "record_not_utf8",
    "record_oversized",
    "record_source_mismatch",
    "record_landing_path",
    "record_unexpected_field",
)
_FIELD_KEYS = {
    "name",
    "type",
    "required",
    "pii",
    "pattern",
    "min",
    "min_exclusive",
    "accepted_values",
    "description",
}
_FAULT_KEYS = {"name", "kind", "field", "rate", "format", "rename_to", "max_days", "values"}


class ContractError(ValueError):
    """A contract file is missing, unreadable or breaks the contract format; names the file and field."""

    def __init__(self, path: Path | str, where: str, message: str) -> None:
        self.path = str(path)
        self.where = where
        self.detail = message
        super().__init__(f"{self.path}: {where}: {message}" if where else f"{self.path}: {message}")


@dataclass(frozen=True)
class Field:
    """One field of a source: BigQuery type and the quality rules derived from its attributes."""

    name: str
    type: str
    required: bool = False
    pii: bool = False
    pattern: str | None = None
    min: float | None = None
    min_exclusive: float | None = None
    accepted_values: tuple[str, ...] | None = None
    description: str = ""

    def rule_names(self) -> list[str]:
        """Return the names of the rules this field carries, as silver names them (`<field>_<rule>`)."""
        rules = []
        if self.required:
            rules.append(f"{self.name}_required")
        if self.type != "STRING":
            rules.append(f"{self.name}_type")
        if self.pattern is not None:
            rules.append(f"{self.name}_pattern")
        if self.min is not None:
            rules.append(f"{self.name}_min")
        if self.min_exclusive is not None:
            rules.append(f"{self.name}_min_exclusive")
        if self.accepted_values is not None:
            rules.append(f"{self.name}_accepted_values")
        return rules


@dataclass(frozen=True)
class Fault:
    """One fault the generator injects: a named kind, a rate and its parameters."""

    name: str
    kind: str
    rate: float
    field: str | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Quality:
    """A source's quality thresholds: shares (0-1) of lines it may reject, duplicate, dead-letter or get
    late, per rule too; crossing one is an assertion of `severity` (warn or error)."""

    max_reject_rate: float | None = None
    max_duplicate_rate: float | None = None
    max_dead_letter_rate: float | None = None
    max_late_rate: float | None = None
    rules: dict[str, float] = dataclasses.field(default_factory=dict)
    severity: str = "error"

    @property
    def empty(self) -> bool:
        """True when no threshold is set."""
        return not self.rules and all(getattr(self, name) is None for name in _QUALITY_RATES)


@dataclass(frozen=True)
class Contract:
    """A source: its fields, key, event-time field and generator profile."""

    name: str
    description: str
    key: tuple[str, ...]
    event_time: str
    fields: tuple[Field, ...]
    share: float
    value_specs: dict[str, dict[str, Any]]
    faults: tuple[Fault, ...]
    path: str
    quality: Quality = dataclasses.field(default_factory=Quality)
    unknown_fields: str = "keep"

    def field(self, name: str) -> Field:
        """Return the field called `name`; raises KeyError when the contract has none."""
        for item in self.fields:
            if item.name == name:
                return item
        raise KeyError(name)

    @property
    def field_names(self) -> list[str]:
        """Return the field names in contract order."""
        return [item.name for item in self.fields]

    @property
    def quarantine_rules(self) -> list[str]:
        """Return every rule silver checks, in its order: record rules, then `<field>_<check>` per field."""
        # under unknown_fields "keep" an unknown key is kept in silver's `extra`, not a failure
        keep = self.unknown_fields == "keep"
        rules = [rule for rule in RECORD_RULES if not (keep and rule == "record_unexpected_field")]
        for item in self.fields:
            names = item.rule_names()
            if f"{item.name}_type" not in names:
                # silver type-checks STRING fields too (a JSON number is not a string)
                at = 1 if item.required else 0
                names.insert(at, f"{item.name}_type")
            rules.extend(names)
        return rules

    @property
    def pii_fields(self) -> list[str]:
        """Return the names of the fields marked PII."""
        return [item.name for item in self.fields if item.pii]


def _fail(path: Path, where: str, message: str) -> ContractError:
    return ContractError(path, where, message)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _identifier(path: Path, where: str, value: Any) -> str:
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise _fail(path, where, f"{value!r} is not an identifier matching {IDENTIFIER.pattern}")
    return value


def _parse_field(path: Path, index: int, raw: Any) -> Field:
    where = f"fields[{index}]"
    if not isinstance(raw, dict):
        raise _fail(path, where, "must be an object")
    name = _identifier(path, f"{where}.name", raw.get("name"))
    where = f"fields[{index}] ({name})"
    unknown = sorted(set(raw) - _FIELD_KEYS)
    if unknown:
        raise _fail(path, where, f"unknown attribute(s) {', '.join(unknown)}")
    kind = raw.get("type")
    if kind not in FIELD_TYPES:
        raise _fail(path, f"{where}.type", f"{kind!r} is not one of {', '.join(sorted(FIELD_TYPES))}")
    for flag in ("required", "pii"):
        if flag in raw and not isinstance(raw[flag], bool):
            raise _fail(path, f"{where}.{flag}", "must be true or false")
    pattern = raw.get("pattern")
    if pattern is not None:
        if not isinstance(pattern, str):
            raise _fail(path, f"{where}.pattern", "must be a string")
        try:
            re.compile(pattern)
        except re.error as error:
            raise _fail(path, f"{where}.pattern", f"not a valid regular expression: {error}") from None
    bounds = {}
    for bound in ("min", "min_exclusive"):
        if bound in raw:
            if kind not in NUMERIC_TYPES:
                raise _fail(path, f"{where}.{bound}", f"only numeric fields take a bound, not {kind}")
            if not _is_number(raw[bound]):
                raise _fail(path, f"{where}.{bound}", "must be a finite number")
            bounds[bound] = raw[bound]
    accepted = raw.get("accepted_values")
    if accepted is not None:
        if not isinstance(accepted, list) or not accepted or not all(isinstance(value, str) for value in accepted):
            raise _fail(path, f"{where}.accepted_values", "must be a non-empty list of strings")
        accepted = tuple(accepted)
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise _fail(path, f"{where}.description", "must be a string")
    return Field(
        name=name,
        type=kind,
        required=raw.get("required", False),
        pii=raw.get("pii", False),
        pattern=pattern,
        min=bounds.get("min"),
        min_exclusive=bounds.get("min_exclusive"),
        accepted_values=accepted,
        description=description,
    )


def _parse_value_specs(path: Path, raw: Any, names: set[str]) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, dict):
        raise _fail(path, "generator.fields", "must be an object of field name -> value spec")
    specs = {}
    for name, spec in raw.items():
        where = f"generator.fields.{name}"
        if name not in names:
            raise _fail(path, where, "is not a field of the contract")
        if not isinstance(spec, dict) or spec.get("kind") not in VALUE_KINDS:
            kind = spec.get("kind") if isinstance(spec, dict) else spec
            raise _fail(path, where, f"kind {kind!r} is not one of {', '.join(sorted(VALUE_KINDS))}")
        kind = spec["kind"]
        if kind == "choice":
            values, weights = spec.get("values"), spec.get("weights")
            if not isinstance(values, list) or not values:
                raise _fail(path, f"{where}.values", "choice needs a non-empty list of values")
            if weights is not None and (
                not isinstance(weights, list)
                or len(weights) != len(values)
                or not all(_is_number(w) and w >= 0 for w in weights)
                or sum(weights) <= 0
            ):
                raise _fail(path, f"{where}.weights", "must be non-negative numbers, one per value")
        if kind in ("int", "money"):
            low, high = spec.get("min"), spec.get("max")
            if not (_is_number(low) and _is_number(high) and low <= high):
                raise _fail(path, where, f"{kind} needs numbers min <= max")
        if kind == "id" and not re.fullmatch(r"[A-Z][A-Z0-9_-]{0,15}", str(spec.get("prefix", ""))):
            raise _fail(path, f"{where}.prefix", "id needs an upper-case prefix such as 'ORD-'")
        specs[name] = dict(spec)
    missing = sorted(names - set(specs))
    if missing:
        raise _fail(path, "generator.fields", f"no value spec for field(s) {', '.join(missing)}")
    return specs


def _parse_faults(path: Path, raw: Any, fields: dict[str, Field]) -> tuple[Fault, ...]:
    if not isinstance(raw, list):
        raise _fail(path, "generator.faults", "must be a list")
    faults: list[Fault] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        where = f"generator.faults[{index}]"
        if not isinstance(item, dict):
            raise _fail(path, where, "must be an object")
        name = _identifier(path, f"{where}.name", item.get("name"))
        where = f"generator.faults[{index}] ({name})"
        if name in seen:
            raise _fail(path, where, "duplicate fault name")
        seen.add(name)
        unknown = sorted(set(item) - _FAULT_KEYS)
        if unknown:
            raise _fail(path, where, f"unknown attribute(s) {', '.join(unknown)}")
        kind = item.get("kind")
        if kind not in FAULT_KINDS:
            raise _fail(path, f"{where}.kind", f"{kind!r} is not one of {', '.join(sorted(FAULT_KINDS))}")
        rate = item.get("rate")
        if not _is_number(rate) or not 0 <= rate <= 1:
            raise _fail(path, f"{where}.rate", f"{rate!r} is not a rate between 0 and 1")
        target = item.get("field")
        if kind in FIELD_FAULTS or kind == "renamed_field":
            if target not in fields:
                raise _fail(path, f"{where}.field", f"{target!r} is not a field of the contract")
        elif target is not None:
            raise _fail(path, f"{where}.field", f"fault kind {kind} takes no field")
        if kind in ("negative", "zero") and fields[target].type not in NUMERIC_TYPES:
            raise _fail(path, f"{where}.field", f"{kind} needs a numeric field, {target} is {fields[target].type}")
        if kind == "wrong_format":
            template = item.get("format")
            if not isinstance(template, str):
                raise _fail(path, f"{where}.format", "wrong_format needs a format such as 'sku_{n:04d}'")
            try:
                template.format(n=1)
            except (KeyError, IndexError, ValueError) as error:
                raise _fail(path, f"{where}.format", f"bad format: {error}") from None
        if kind == "renamed_field":
            new_name = item.get("rename_to")
            if not isinstance(new_name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,62}", new_name):
                raise _fail(path, f"{where}.rename_to", "renamed_field needs a plain field name")
            if new_name in fields:
                raise _fail(path, f"{where}.rename_to", f"{new_name} is already a field of the contract")
        if kind == "late_event" and not (_is_number(item.get("max_days")) and item["max_days"] >= 1):
            raise _fail(path, f"{where}.max_days", "late_event needs max_days >= 1")
        if kind == "unknown_value":
            values = item.get("values")
            if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
                raise _fail(path, f"{where}.values", "unknown_value needs a non-empty list of strings")
            accepted = fields[target].accepted_values or ()
            clash = [v for v in values if v in accepted]
            if clash:
                raise _fail(path, f"{where}.values", f"{clash} are accepted values, not faults")
        params = {k: v for k, v in item.items() if k not in ("name", "kind", "rate", "field")}
        faults.append(Fault(name=name, kind=kind, rate=float(rate), field=target, params=params))
    check_fault_rates(path, faults)
    return tuple(faults)


def check_fault_rates(path: Path | str, faults: list[Fault] | tuple[Fault, ...]) -> None:
    """Check that exclusive faults can all happen at their rates; raises ContractError if not.

    Faults on the same field exclude each other, as do the record-replacing faults, so each group's
    rates must add up to at most 1.
    """
    groups: dict[str, float] = {}
    for fault in faults:
        if fault.kind in FIELD_FAULTS:
            group = f"field {fault.field}"
        elif fault.kind in REPLACING_FAULTS:
            group = "record-replacing faults (poison_pill, non_utf8, oversized)"
        else:
            continue
        groups[group] = groups.get(group, 0.0) + fault.rate
    for group, total in groups.items():
        if total > 1 + 1e-9:
            raise ContractError(path, "generator.faults", f"rates of the {group} add up to {total:g} > 1")


def _parse_quality(path: Path, raw: Any, rule_names: list[str]) -> Quality:
    if raw is None:
        return Quality()
    if not isinstance(raw, dict):
        raise _fail(path, "quality", "must be an object of thresholds")
    unknown = sorted(set(raw) - _QUALITY_KEYS)
    if unknown:
        raise _fail(path, "quality", f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_QUALITY_KEYS))})")

    def share(where: str, value: Any) -> float:
        if not _is_number(value) or not 0 <= value <= 1:
            raise _fail(path, where, f"{value!r} is not a share between 0 and 1")
        return float(value)

    rates = {name: share(f"quality.{name}", raw[name]) for name in _QUALITY_RATES if name in raw}
    rules = raw.get("rules", {})
    if not isinstance(rules, dict):
        raise _fail(path, "quality.rules", "must be an object of rule name -> share")
    for rule in rules:
        if rule not in rule_names:
            raise _fail(
                path, f"quality.rules.{rule}", f"is not a rule of this contract (rules: {', '.join(rule_names)})"
            )
    severity = raw.get("severity", "error")
    if severity not in ("warn", "error"):
        raise _fail(path, "quality.severity", f"{severity!r} must be 'warn' or 'error'")
    return Quality(
        **rates, rules={rule: share(f"quality.rules.{rule}", value) for rule, value in rules.items()}, severity=severity
    )


def parse_contract(raw: Any, path: Path | str) -> Contract:
    """Return the Contract described by the decoded JSON `raw`; raises ContractError naming the field."""
    path = Path(path)
    if not isinstance(raw, dict):
        raise _fail(path, "", "a contract must be a JSON object")
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise _fail(path, "", f"unknown key(s) {', '.join(unknown)}")
    name = _identifier(path, "name", raw.get("name"))
    if path.suffix == ".json" and path.stem != name:
        raise _fail(path, "name", f"{name!r} differs from the file name {path.name!r}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise _fail(path, "description", "must be a string")
    raw_fields = raw.get("fields")
    if not isinstance(raw_fields, list) or not raw_fields:
        raise _fail(path, "fields", "must be a non-empty list")
    fields = [_parse_field(path, index, item) for index, item in enumerate(raw_fields)]
    by_name: dict[str, Field] = {}
    for item in fields:
        if item.name in by_name:
            raise _fail(path, f"fields ({item.name})", "duplicate field name")
        by_name[item.name] = item
    pii = frozenset(item.name for item in fields if item.pii)
    for item in fields:
        reason = reserved_name_reason(item.name, pii)
        if reason:
            raise _fail(path, f"fields ({item.name})", reason)
    key = raw.get("key")
    if not isinstance(key, list) or not key:
        raise _fail(path, "key", "must be a non-empty list of field names")
    for part in key:
        if part not in by_name:
            raise _fail(path, "key", f"{part!r} is not a field of the contract")
        if by_name[part].pii:
            reason = "silver keeps only its hash, so it cannot be the key silver merges on"
            raise _fail(path, "key", f"{part} is pii: {reason}")
    event_time = raw.get("event_time")
    if event_time not in by_name:
        raise _fail(path, "event_time", f"{event_time!r} is not a field of the contract")
    if by_name[event_time].type != "TIMESTAMP":
        raise _fail(path, "event_time", f"{event_time} must be a TIMESTAMP field")
    generator = raw.get("generator")
    if not isinstance(generator, dict):
        raise _fail(path, "generator", "must be an object with share, fields and faults")
    unknown = sorted(set(generator) - {"share", "fields", "faults"})
    if unknown:
        raise _fail(path, "generator", f"unknown key(s) {', '.join(unknown)}")
    share = generator.get("share")
    if not _is_number(share) or not 0 <= share <= 1:
        raise _fail(path, "generator.share", f"{share!r} is not a share between 0 and 1")
    unknown_fields = raw.get("unknown_fields", "keep")
    if unknown_fields not in UNKNOWN_FIELDS:
        raise _fail(path, "unknown_fields", f"{unknown_fields!r} must be 'keep' or 'quarantine'")
    specs = _parse_value_specs(path, generator.get("fields"), set(by_name))
    faults = _parse_faults(path, generator.get("faults", []), by_name)
    contract = Contract(
        name=name,
        description=description,
        key=tuple(key),
        event_time=event_time,
        fields=tuple(fields),
        share=float(share),
        value_specs=specs,
        faults=faults,
        path=str(path),
        unknown_fields=unknown_fields,
    )
    quality = _parse_quality(path, raw.get("quality"), contract.quarantine_rules)
    return dataclasses.replace(contract, quality=quality)


def load_contract(path: Path | str) -> Contract:
    """Return the contract in the JSON file `path`; raises ContractError when unreadable or invalid."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ContractError(path, "", f"cannot be read: {error}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise ContractError(path, f"line {error.lineno}", f"not valid JSON: {error.msg}") from None
    return parse_contract(raw, path)


def load_contracts(project_dir: Path | str) -> dict[str, Contract]:
    """Return every contract under <project_dir>/includes/contracts by source name.

    Raises ContractError for the first invalid file, or when the directory holds no contract.
    """
    directory = Path(project_dir) / CONTRACTS_DIR
    files = sorted(directory.glob("*.json"))
    if not files:
        raise ContractError(directory, "", "no contract (*.json) found")
    return {contract.name: contract for contract in map(load_contract, files)}
