"""Refuse contract changes that would drop data: compare each contract with its base version (git HEAD or a file)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ingest.contracts import CONTRACTS_DIR

# BigQuery's coercions that keep every value: a column may change from the key to a type in the set.
# Anything else (FLOAT64 -> INT64, NUMERIC -> INT64, STRING -> anything, ...) narrows or reinterprets.
WIDENINGS = {
    "INT64": frozenset({"NUMERIC", "FLOAT64"}),
    "NUMERIC": frozenset({"FLOAT64"}),
}
_VERSION_HINT = "version the contract instead (a new contract file, both accepted during a transition window)"


@dataclass(frozen=True)
class Breaking:
    """One change between a contract's base and its working version that would drop or quarantine data."""

    file: str
    field: str | None
    change: str

    def __str__(self) -> str:
        where = f"field {self.field!r}: " if self.field else ""
        return f"{self.file}: {where}{self.change}; {_VERSION_HINT}"


def breaking_changes(base: dict, new: dict, file: str) -> list[Breaking]:
    """Return the changes from `base` to `new` (parsed contract JSON) that would lose data, in field order.

    Refused: removing a field (its column and values go); changing a type other than by a BigQuery
    widening (INT64 -> NUMERIC/FLOAT64, NUMERIC -> FLOAT64); making an optional field required;
    removing an accepted value, or putting accepted values on a field that had none (records carrying
    other values, which silver took until now, would be quarantined); changing the key or the event
    time. Lint sees no data, so any accepted value that is removed counts as used. Additions and
    widenings are allowed: the next run applies them with onSchemaChange EXTEND.
    """
    found: list[Breaking] = []
    old_fields = {field["name"]: field for field in base.get("fields") or []}
    new_fields = {field["name"]: field for field in new.get("fields") or []}
    for name, old in old_fields.items():
        field = new_fields.get(name)
        if field is None:
            found.append(Breaking(file, name, "removed; silver would drop its column and values"))
            continue
        old_type, new_type = old.get("type"), field.get("type")
        if old_type != new_type and new_type not in WIDENINGS.get(old_type, ()):
            found.append(Breaking(file, name, f"type {old_type} -> {new_type} narrows or changes its values"))
        if field.get("required") and not old.get("required"):
            found.append(Breaking(file, name, "became required; records without it would be quarantined"))
        old_values, new_values = old.get("accepted_values"), field.get("accepted_values")
        if new_values is not None:
            if old_values is None:
                found.append(Breaking(file, name, "gained accepted values; other values would be quarantined"))
            else:
                removed = [value for value in old_values if value not in new_values]
                if removed:
                    found.append(
                        Breaking(
                            file,
                            name,
                            f"accepted value(s) {', '.join(map(repr, removed))} removed; "
                            "records carrying them would be quarantined",
                        )
                    )
    for key, what in (("key", "key"), ("event_time", "event time")):
        if base.get(key) != new.get(key):
            found.append(Breaking(file, None, f"{what} {base.get(key)!r} -> {new.get(key)!r} re-keys silver"))
    return found


def base_contracts(project_dir: Path, base: str | None) -> dict[str, dict] | None:
    """Return the base contracts by source name, or None when there is no base to compare with.

    `base` is a contract file, a directory of contract files or a git revision of the project's
    repository; None means HEAD, and a project outside git has no base. Raises ValueError naming
    `base` when it is none of those, or a file in it is not JSON.
    """
    if base is not None and Path(base).exists():
        path = Path(base)
        files = sorted(path.glob("*.json")) if path.is_dir() else [path]
        return {file.stem: _load(file.read_text(), str(file)) for file in files}
    revision = base or "HEAD"
    if _git(project_dir, "rev-parse", "--is-inside-work-tree") is None:
        if base is None:
            return None
        raise ValueError(f"--base {base}: not a file, a directory or a git revision ({project_dir} is not in git)")
    prefix = (_git(project_dir, "rev-parse", "--show-prefix") or "").strip()
    folder = f"{prefix}{CONTRACTS_DIR.as_posix()}"
    listing = _git(project_dir, "ls-tree", "--name-only", f"{revision}:{folder}")
    if listing is None:
        if base is not None and _git(project_dir, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}") is None:
            raise ValueError(f"--base {base}: not a file, a directory or a git revision")
        return {}
    out: dict[str, dict] = {}
    for name in listing.split():
        if name.endswith(".json"):
            text = _git(project_dir, "show", f"{revision}:{folder}/{name}")
            out[name[: -len(".json")]] = _load(text or "", f"{revision}:{folder}/{name}")
    return out


def contract_problems(project_dir: Path, base: str | None = None) -> list[str]:
    """Return one line per breaking change between the base contracts and those in the working tree
    (empty: none, or no base). A contract deleted since the base is refused too; a new one passes.

    Raises ValueError when `base` cannot be read (see base_contracts). A working contract that is not
    JSON is left to the contract loader, which names the problem.
    """
    bases = base_contracts(project_dir, base)
    if not bases:
        return []
    contracts_dir = project_dir / CONTRACTS_DIR
    problems: list[str] = []
    for name, old in sorted(bases.items()):
        path = contracts_dir / f"{name}.json"
        file = str(CONTRACTS_DIR / f"{name}.json")
        if not path.is_file():
            problems.append(str(Breaking(file, None, "deleted; the source's silver and its data would go")))
            continue
        try:
            new = json.loads(path.read_text())
        except ValueError:
            continue
        problems += [str(change) for change in breaking_changes(old, new, file)]
    return problems


def _load(text: str, where: str) -> dict:
    try:
        return json.loads(text)
    except ValueError as error:
        raise ValueError(f"{where}: base contract is not JSON ({error})") from None


def _git(cwd: Path, *args: str) -> str | None:
    """Return git's output, or None when git fails (not a repository, no such revision or path)."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    return done.stdout if done.returncode == 0 else None
