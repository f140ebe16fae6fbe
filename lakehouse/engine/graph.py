"""The compiled Dataform graph as a small model: actions, dependency order and run selection."""

# Selection is a port of the pinned CLI's computeIncludedActionNames and matchPatterns
# (node_modules/@dataform/cli/bundle.js 3.0.69); tests/engine/test_graph.py checks it against prune().

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from lakehouse.engine.statements import readable_name, table_type

ACTION_KINDS = ("table", "view", "incremental", "operation", "assertion", "declaration", "notebook", "dataPreparation")
# Action kinds that need a Google Cloud service with no local stand-in: listed in a run as skipped, with why.
NOT_LOCAL = {
    "notebook": "a notebook runs on a Colab Enterprise runtime in Google Cloud; it is not run locally",
    "dataPreparation": "a data preparation runs on BigQuery's data preparation service; it is not run locally",
}


class CycleError(ValueError):
    """The graph's dependencies form a cycle; `cycle` lists its action names, first repeated last."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__("dependency cycle: " + " -> ".join(cycle))


class AmbiguousActionError(ValueError):
    """An --actions name without a dot matches more than one action (the CLI's own message)."""


@dataclass(frozen=True)
class Action:
    """One action of the compiled graph."""

    name: str  # readable "project.dataset.table", as the CLI's targetAsReadableString
    kind: str  # one of ACTION_KINDS
    target: dict
    dependencies: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    file_name: str | None = None
    disabled: bool = False
    raw: dict = field(default_factory=dict, compare=False, repr=False)
    parent_action: str | None = None  # the table a built-in assertion checks
    has_output: bool = False  # operations only: the operation creates its own target


def _action(raw: dict, kind: str) -> Action:
    target = raw.get("target") or {}
    parent = raw.get("parentAction")
    return Action(
        name=readable_name(target),
        kind=kind,
        target=target,
        dependencies=tuple(readable_name(dep) for dep in raw.get("dependencyTargets") or []),
        tags=tuple(raw.get("tags") or ()),
        file_name=raw.get("fileName"),
        disabled=bool(raw.get("disabled")),
        raw=raw,
        parent_action=readable_name(parent) if parent else None,
        has_output=bool(raw.get("hasOutput")),
    )


def sql_texts(action: Action) -> list[str]:
    """Return every SQL text of a compiled action: query, incremental query, pre/post operations, queries."""
    raw = action.raw
    texts = [raw.get("query"), raw.get("incrementalQuery")]
    for key in ("preOps", "postOps", "incrementalPreOps", "incrementalPostOps", "queries"):
        texts.extend(raw.get(key) or [])
    return [text for text in texts if text]


def match_patterns(patterns: Iterable[str], values: list[str]) -> list[str]:
    """Return the values the patterns name, as the CLI's matchPatterns.

    A pattern with a dot must equal a value exactly ("dataset.table" does not match "project.dataset.table");
    a pattern without one matches the value whose last part it is. Unmatched patterns are dropped silently.
    Raises AmbiguousActionError when a dotless pattern matches several values.
    """
    matched = []
    for pattern in patterns:
        if "." in pattern:
            if pattern in values:
                matched.append(pattern)
            continue
        candidates = [value for value in values if value.split(".")[-1] == pattern]
        if len(candidates) > 1:
            raise AmbiguousActionError(
                f"Ambiguous Action name: {pattern}. Did you mean one of: {', '.join(candidates)}."
            )
        matched.extend(candidates)
    return matched


class Graph:
    """The actions of one compiled graph (`dataform compile --json` output), keyed by readable name."""

    def __init__(self, compiled: dict) -> None:
        self.compiled = compiled
        self.project_config: dict = compiled.get("projectConfig") or {}
        self.core_version: str = compiled.get("dataformCoreVersion") or "1.0.0"
        self.actions: dict[str, Action] = {}
        for raw in compiled.get("tables") or []:
            self._add(_action(raw, table_type(raw)))
        for raw in compiled.get("operations") or []:
            self._add(_action(raw, "operation"))
        for raw in compiled.get("assertions") or []:
            self._add(_action(raw, "assertion"))
        for key in NOT_LOCAL:
            for raw in compiled.get(f"{key}s") or []:
                self._add(_action(raw, key))
        declarations = (_action(raw, "declaration") for raw in compiled.get("declarations") or [])
        self.declarations: dict[str, Action] = {action.name: action for action in declarations}

    @classmethod
    def from_compiled(cls, compiled: dict) -> Graph:
        """Return the graph of a compiled project (the parsed JSON of `dataform compile --json`)."""
        return cls(compiled)

    def _add(self, action: Action) -> None:
        # The CLI keys actions by readable name too (a later duplicate wins); Dataform's compiler already
        # reports duplicate targets as compilation errors.
        self.actions[action.name] = action

    def topological_order(self) -> list[str]:
        """Return every action name, dependencies first, otherwise in compiled order.

        Dependencies outside the graph's actions (declarations, undeclared sources) are ignored.
        Raises CycleError naming the actions of a cycle.
        """
        names = list(self.actions)
        position = {name: index for index, name in enumerate(names)}
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done
        order: list[str] = []
        for root in names:
            if root in state:
                continue
            path = [root]
            stack = [iter(self._deps(root, position))]
            state[root] = 1
            while stack:
                dep = next(stack[-1], None)
                if dep is None:
                    stack.pop()
                    done = path.pop()
                    state[done] = 2
                    order.append(done)
                elif state.get(dep) == 1:
                    raise CycleError(path[path.index(dep) :] + [dep])
                elif dep not in state:
                    state[dep] = 1
                    path.append(dep)
                    stack.append(iter(self._deps(dep, position)))
        return order

    def _deps(self, name: str, position: dict[str, int]) -> list[str]:
        deps = {dep for dep in self.actions[name].dependencies if dep in self.actions}
        return sorted(deps, key=position.get)

    def select(
        self,
        actions: Iterable[str] = (),
        tags: Iterable[str] = (),
        include_deps: bool = False,
        include_dependents: bool = False,
    ) -> set[str]:
        """Return the names of the actions a run with these options includes, as the CLI's prune().

        No actions and no tags selects everything. Raises AmbiguousActionError (see match_patterns).
        """
        actions, tags = list(actions or ()), list(tags or ())
        all_names = list(self.actions)
        if not actions and not tags:
            return set(all_names)
        included: set[str] = set()
        if actions:
            included.update(match_patterns(actions, all_names))
        if tags:
            included.update(a.name for a in self.actions.values() if any(tag in tags for tag in a.tags))
        if include_deps:
            queue = list(included)
            while queue:
                for dep in match_patterns(self.actions[queue.pop()].dependencies, all_names):
                    if dep not in included:
                        included.add(dep)
                        queue.append(dep)
        if include_dependents:
            queue = list(included)
            while queue:
                name = queue.pop()
                for action in self.actions.values():
                    if match_patterns([name], list(action.dependencies)) and action.name not in included:
                        included.add(action.name)
                        queue.append(action.name)
        return included

    def dependents(self, name: str) -> set[str]:
        """Return the names of every action that depends on `name`, directly or through other actions."""
        found: set[str] = set()
        queue = [name]
        while queue:
            current = queue.pop()
            for action in self.actions.values():
                if current in action.dependencies and action.name not in found:
                    found.add(action.name)
                    queue.append(action.name)
        return found
