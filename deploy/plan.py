"""Compare the desired state with what exists and render the difference; nothing is changed here."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.config import EnvConfig, display_var, salt_problem
from deploy.resources import ARCHIVE_KEY, PLACEHOLDER, Resource, resolve

ACTIONS = ("create", "update", "unchanged", "blocked")
SYMBOLS = {"create": "+", "update": "~", "unchanged": "=", "blocked": "!"}


@dataclass
class Change:
    """What apply would do to one resource: `changed` lists the spec keys that differ."""

    resource: Resource
    action: str
    spec: dict[str, Any]
    unknown: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    current: Any = None
    reason: str = ""


@dataclass
class Plan:
    """The changes for every resource of an environment, in apply order."""

    env: EnvConfig
    sources: list[str]
    changes: list[Change]
    state_read: bool
    why_not_read: str = ""
    orphans: list[Resource] = field(default_factory=list)
    unmanaged: list[Resource] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)


def credentials_status(environ: Mapping[str, str] | None = None) -> tuple[bool, str]:
    """Return (whether Google credentials are configured, why not), without any network call.

    Looks where google.auth.default() looks, except the metadata server, which is assumed only
    on Google runtimes (K_SERVICE, GCE_METADATA_HOST): probing it offline would hang for seconds.
    """
    environ = os.environ if environ is None else environ
    path = environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if path:
        if Path(path).is_file():
            return True, ""
        return False, f"GOOGLE_APPLICATION_CREDENTIALS points to {path}, which does not exist"
    config_dir = environ.get("CLOUDSDK_CONFIG") or str(Path(environ.get("HOME", "~")).expanduser() / ".config/gcloud")
    if (Path(config_dir) / "application_default_credentials.json").is_file():
        return True, ""
    if environ.get("K_SERVICE") or environ.get("GCE_METADATA_HOST"):
        return True, ""
    return False, (
        "no Google Cloud credentials found (set GOOGLE_APPLICATION_CREDENTIALS or run "
        "`gcloud auth application-default login`)"
    )


def diff(desired: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Return the keys of `desired` whose value differs in `current` (lists compared in order)."""
    return [key for key in desired if _norm(desired[key]) != _norm(current.get(key))]


def _norm(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def local_outputs(resource: Resource, project_dir: Path) -> dict[str, str]:
    """Return outputs known without the cloud: the source archive's content hash."""
    if resource.key == ARCHIVE_KEY:
        from deploy.archive import build_archive

        return {"sha": build_archive(project_dir, resource.spec["entry_points"])[0]}
    return {}


def entry_point_problems(resource: Resource, project_dir: Path) -> list[str]:
    """Return why the function source archive would not import, or [] (other kinds: always [])."""
    if resource.key != ARCHIVE_KEY:
        return []
    from deploy.archive import missing_entry_points

    return missing_entry_points(project_dir, resource.spec["entry_points"])


def make_plan(
    env: EnvConfig,
    sources: list[str],
    resources: list[Resource],
    project_dir: Path,
    clients: Any = None,
    handlers: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    why_not_read: str = "",
    on_read: Callable[[Resource], None] = lambda resource: None,
) -> Plan:
    """Return the plan: with `clients`, each resource is read and compared; without, all are creates.

    Raises google.api_core exceptions from reads (the caller maps them to messages).
    """
    outputs: dict[str, dict[str, str]] = {}
    changes: list[Change] = []
    for resource in resources:
        outputs.setdefault(resource.key, {}).update(local_outputs(resource, project_dir))
        spec, unknown = resolve(resource.spec, outputs, environ)
        missing = entry_point_problems(resource, project_dir)
        if missing:
            changes.append(Change(resource, "blocked", spec, unknown, reason="; ".join(missing)))
            continue
        if resource.kind == "pii_salt" and not unknown and salt_problem(spec["salt"]):
            reason = f"{env.pii_salt} {salt_problem(spec['salt'])}: a dictionary reverses its hashes"
            changes.append(Change(resource, "blocked", spec, unknown, reason=reason))
            continue
        if clients is None:
            changes.append(Change(resource, "create", spec, unknown))
            continue
        handler = handlers[resource.kind]
        if resource.kind == "iam_binding" and unknown:
            changes.append(Change(resource, "create", spec, unknown))
            continue
        current = handler.read(clients, resource, spec)
        on_read(resource)
        if current is None:
            changes.append(Change(resource, "create", spec, unknown))
            continue
        outputs[resource.key].update(current.outputs)
        unknown_keys = {k for k in spec if "@{" in json.dumps(spec[k]) or "${env:" in json.dumps(spec[k])}
        changed = [k for k in diff(spec, current.spec) if k not in unknown_keys]
        action, reason = ("update" if changed else "unchanged"), ""
        if changed and not current.managed:
            action, reason = "blocked", "exists but was not created by lakehouse-kit; apply will not touch it"
        elif set(changed) & handler.immutable:
            fields = ", ".join(sorted(set(changed) & handler.immutable))
            action, reason = "blocked", f"{fields} cannot change in place"
        changes.append(Change(resource, action, spec, unknown, changed, current, reason))
    orphans, unmanaged = [], []
    if clients is not None:
        from deploy.orphans import survey

        orphans, unmanaged = survey(env, resources, clients)
    return Plan(env, sources, changes, clients is not None, why_not_read, orphans, unmanaged)


def salt_fingerprint(value: str) -> str:
    """Return how a salt is shown: a short hash that tells salts apart and reveals nothing of them."""
    if value.startswith("${env:"):
        return value
    return "sha256:" + hashlib.sha256(b"lakehouse-pii-salt\0" + value.encode()).hexdigest()[:12]


def _show(key: str, value: Any, resource: Resource) -> str:
    if resource.kind == "pii_salt" and key == "salt":
        return salt_fingerprint(str(value))
    if resource.kind == "release_config" and key == "vars":
        return json.dumps({k: display_var(k, str(v)) for k, v in value.items()}, sort_keys=True)
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return PLACEHOLDER.sub(lambda m: f"<{m.group(2)} of {m.group(1)}, known after apply>", text)


def _binding_line(spec: Mapping[str, Any], resource: Resource) -> str:
    return (
        f"{spec['role']} for {_show('member', spec['member'], resource)} "
        f"on {spec['scope'].replace('_', ' ')} {spec['resource']}"
    )


def render(plan: Plan, verbose: bool = True) -> str:
    """Return the plan as text: a header, one block per resource, and the totals."""
    env = plan.env
    lines = [
        f"Plan for environment '{env.environment}': project {env.project}, region {env.region}, "
        f"BigQuery location {env.bigquery_location}",
        f"Config: {env.path}   Sources (includes/contracts): {', '.join(plan.sources) or 'none'}",
    ]
    if not plan.state_read:
        lines.append(
            f"Current state NOT read: {plan.why_not_read or 'offline'}. "
            "Showing the full desired state: every resource is listed as create."
        )
    lines.append("")
    for change in plan.changes:
        resource, spec = change.resource, change.spec
        symbol = SYMBOLS[change.action]
        if resource.kind == "iam_binding":
            lines.append(f"{symbol} {change.action:<9} iam_binding          {_binding_line(spec, resource)}")
            continue
        suffix = " [holds data]" if resource.data else ""
        lines.append(f"{symbol} {change.action:<9} {resource.kind:<20} {resource.name}{suffix}")
        if change.reason:
            lines.append(f"      ! {change.reason}")
        unset = [u for u in change.unknown if u.startswith("$")]
        if unset:
            lines.append(f"      ? {', '.join(unset)} not set here: apply needs it (compared without it)")
        if change.action == "create" and verbose:
            for key, value in spec.items():
                lines.append(f"      {key}: {_show(key, value, resource)}")
        elif change.action in ("update", "blocked"):
            for key in change.changed:
                old = _show(key, change.current.spec.get(key), resource)
                lines.append(f"      {key}: {old} -> {_show(key, spec[key], resource)}")
    for orphan in plan.orphans:
        if orphan.data:
            lines.append(f"- orphan    {orphan.kind:<20} {orphan.name} [holds data]")
            lines.append("      ! no longer in the config; kept (destroy --include-data or delete it yourself)")
        else:
            lines.append(f"- delete    {orphan.kind:<20} {orphan.name}")
            lines.append("      ! no longer in the config; apply deletes it")
    for other in plan.unmanaged:
        lines.append(f"  not managed {other.kind:<18} {other.name}")
        lines.append("      ! not in the config and not marked as lakehouse-kit's; apply leaves it alone")
    counts = ", ".join(f"{plan.count(a)} to {a}" if a in ("create", "update") else f"{plan.count(a)} {a}"
                       for a in ACTIONS)  # fmt: skip
    if plan.orphans:
        counts += f", {sum(1 for o in plan.orphans if not o.data)} to delete"
    if plan.unmanaged:
        counts += f", {len(plan.unmanaged)} not managed"
    total = len(plan.changes) + len(plan.orphans)
    lines += ["", f"Plan: {counts} ({total} resources). Nothing was changed."]
    return "\n".join(lines)


PLAN_FORMAT = 1


def _masked(resource: Resource, spec: Any) -> Any:
    """Return `spec` with secret-looking release-config vars and the salt masked (plans are shared and stored)."""
    if resource.kind == "pii_salt" and isinstance(spec, dict) and "salt" in spec:
        return {**spec, "salt": salt_fingerprint(str(spec["salt"]))}
    if resource.kind != "release_config" or not isinstance(spec, dict) or "vars" not in spec:
        return spec
    return {**spec, "vars": {k: display_var(k, str(v)) for k, v in spec["vars"].items()}}


def fingerprint(resource: Resource, spec: Any) -> str | None:
    """Return a short hash of a spec (secrets masked), or None for no spec (the resource is absent)."""
    if spec is None:
        return None
    text = json.dumps(_norm(_masked(resource, spec)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def to_json(plan: Plan) -> dict[str, Any]:
    """Return the plan as a JSON-ready dict: per resource its action, the changed keys, the desired
    spec (secrets masked) and fingerprints of the desired and the current spec, which `apply --plan`
    compares with the live state."""
    changes = []
    for change in plan.changes:
        resource = change.resource
        current = change.current.spec if change.current is not None else None
        changes.append({
            "kind": resource.kind,
            "name": resource.name,
            "action": change.action,
            "changed": list(change.changed),
            "reason": change.reason,
            "spec": _norm(_masked(resource, change.spec)),
            "desired": fingerprint(resource, change.spec),
            "current": fingerprint(resource, current),
        })  # fmt: skip
    return {
        "format": PLAN_FORMAT,
        "environment": plan.env.environment,
        "project": plan.env.project,
        "state_read": plan.state_read,
        "why_not_read": plan.why_not_read,
        "changes": changes,
        "delete": [{"kind": o.kind, "name": o.name} for o in plan.orphans if not o.data],
        "keep": [{"kind": o.kind, "name": o.name} for o in plan.orphans if o.data],
        "not_managed": [{"kind": o.kind, "name": o.name} for o in plan.unmanaged],
        "totals": {**{a: plan.count(a) for a in ACTIONS}, "delete": sum(1 for o in plan.orphans if not o.data)},
    }


def moved(saved: Mapping[str, Any], live: Plan) -> list[str]:
    """Return why `live` is not the `saved` plan (JSON of to_json), one line each; [] when it is.

    A saved plan applies only if it was made with the state read, for the same environment, and
    every resource's action, desired spec and current spec are what they were.
    """
    if not isinstance(saved, Mapping) or saved.get("format") != PLAN_FORMAT:
        return [f"not a plan of this version (expected format {PLAN_FORMAT}; make it with plan --format json)"]
    if not saved.get("state_read"):
        return ["the plan was made without reading the current state; make it again with credentials"]
    problems = []
    for key, value in (("environment", live.env.environment), ("project", live.env.project)):
        if saved.get(key) != value:
            problems.append(f"the plan is for {key} {saved.get(key)!r}, the config for {value!r}")
    now = to_json(live)
    before = {(c["kind"], c["name"]): c for c in saved.get("changes", [])}
    after = {(c["kind"], c["name"]): c for c in now["changes"]}
    for key in sorted(before.keys() - after.keys()):
        problems.append(f"{key[0]} {key[1]}: in the plan, no longer in the config")
    for key in sorted(after.keys() - before.keys()):
        problems.append(f"{key[0]} {key[1]}: in the config, not in the plan")
    for key in [k for k in after if k in before]:
        old, new = before[key], after[key]
        if old.get("desired") != new["desired"]:
            problems.append(f"{key[0]} {key[1]}: the config changed since the plan")
        elif old.get("current") != new["current"] or old.get("action") != new["action"]:
            problems.append(f"{key[0]} {key[1]}: live state moved since the plan ({old.get('action')} -> "
                            f"{new['action']})")  # fmt: skip
    for field_name in ("delete", "keep"):
        old_set = {(o["kind"], o["name"]) for o in saved.get(field_name, [])}
        new_set = {(o["kind"], o["name"]) for o in now[field_name]}
        for kind, name in sorted(old_set ^ new_set):
            where = "the plan" if (kind, name) in old_set else "the live state"
            problems.append(f"{kind} {name}: to {field_name} only in {where}")
    return problems
