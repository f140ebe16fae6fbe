"""Lineage from contracts and the compiled graph (source → landing → bronze → silver → gold) as SVG."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from lakehouse.engine.graph import Graph

CONTRACTS = Path("includes") / "contracts"
LAYER_ORDER = ("source", "landing", "bronze", "silver", "gold", "assertions", "ops", "other")
LAYER_COLORS = {
    "source": "#e0e7ff",
    "landing": "#ede9fe",
    "bronze": "#f5d0a9",
    "silver": "#e5e7eb",
    "gold": "#fde68a",
    "assertions": "#fecaca",
    "ops": "#d1fae5",
    "other": "#f3f4f6",
}
STATUS_STROKE = {
    "ok": "#15803d",
    "failing": "#b91c1c",
    "warn": "#c2410c",
    "failed": "#b91c1c",
    None: "#6b7280",
}
NODE_W, NODE_H, COL_GAP, ROW_GAP, MARGIN = 220, 34, 70, 14, 20
_GCS = re.compile(r"gs://[A-Za-z0-9._\-]+/[^'\"\s,\]\)]*")


@dataclass
class Node:
    """One box of the picture: a source, a landing path, a declaration or an action's table."""

    id: str
    label: str
    layer: str
    kind: str
    status: str | None = None  # ok | failing | warn | failed | None (nothing checks it)
    detail: str = ""


@dataclass
class Lineage:
    """Nodes and edges (from id, to id), dependencies first."""

    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)

    def add_edge(self, source: str, target: str) -> None:
        if source in self.nodes and target in self.nodes and (source, target) not in self.edges:
            self.edges.append((source, target))

    def to_json(self) -> dict:
        """Return nodes and edges as a JSON-ready dict."""
        return {
            "nodes": [node.__dict__ for node in self.nodes.values()],
            "edges": [{"from": a, "to": b} for a, b in self.edges],
        }


def layer_of(dataset: str) -> str:
    """Return the medallion layer a dataset belongs to, by the layer word in its name."""
    lowered = dataset.lower()
    for layer in ("bronze", "silver", "gold", "assertions", "ops"):
        if layer in lowered:
            return layer
    if lowered in ("raw", "sources", "landing"):
        return "bronze"
    return "other"


def contract_names(project_dir: Path) -> list[str]:
    """Return the source names of the project's ingest contracts (includes/contracts/*.json), sorted."""
    folder = project_dir / CONTRACTS
    names = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            names.append(json.loads(path.read_text())["name"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return names


def build(graph: Graph | None, project_dir: Path, statuses: dict[str, str] | None = None) -> Lineage:
    """Return the lineage of the project: contracts → landing paths → bronze → … → gold.

    `statuses` maps a readable table name to ok | failing | warn | failed, drawn as the box's outline.
    """
    statuses = statuses or {}
    lineage = Lineage()
    actions = {} if graph is None else {n: a for n, a in graph.actions.items() if a.kind != "assertion"}
    declarations = {} if graph is None else graph.declarations
    for name, action in list(declarations.items()) + list(actions.items()):
        dataset = action.target.get("schema", "")
        layer = layer_of(dataset)
        if action.kind == "declaration" and layer == "other":
            layer = "bronze"
        lineage.nodes[name] = Node(
            id=name,
            label=f"{dataset}.{action.target.get('name', '')}",
            layer=layer,
            kind=action.kind,
            status=statuses.get(name),
            detail=action.file_name or "",
        )
    for name, action in actions.items():
        for dep in action.dependencies:
            lineage.add_edge(dep, name)
    for source in contract_names(project_dir):
        source_id, landing_id = f"source:{source}", f"landing:{source}"
        readers = _landing_readers(actions, source)
        bucket = ((graph.project_config.get("vars") or {}) if graph else {}).get("landing_bucket")
        uri = f"gs://{bucket}/source={source}/" if bucket else f"landing/source={source}/"
        uri = readers[0][1] if readers else uri
        lineage.nodes[source_id] = Node(
            source_id, source, "source", "contract", detail=f"includes/contracts/{source}.json"
        )
        lineage.nodes[landing_id] = Node(
            landing_id,
            uri.rstrip("/*").rsplit("/", 1)[-1] + "/",
            "landing",
            "landing",
            detail=f"{uri} (hive-partitioned JSONL)",
        )
        lineage.add_edge(source_id, landing_id)
        targets = [name for name, _ in readers] or [
            name
            for name, node in lineage.nodes.items()
            if node.layer == "bronze" and name.rsplit(".", 1)[-1] in (source, f"{source}_raw", f"raw_{source}")
        ]
        for target in targets:
            lineage.add_edge(landing_id, target)
    return lineage


def _landing_readers(actions: dict, source: str) -> list[tuple[str, str]]:
    """Return (action, gs:// URI) for the actions whose SQL reads the landing path of `source`."""
    found = []
    for name, action in actions.items():
        text = " ".join(str(action.raw.get(key) or "") for key in ("query", "incrementalQuery", "preOps", "queries"))
        for uri in _GCS.findall(text):
            if f"source={source}/" in uri or uri.rstrip("/*").endswith(f"/{source}"):
                found.append((name, uri))
                break
    return found


# The first column a layer may take: a bronze declaration with no parent still sits with bronze.
LAYER_BASE = {"source": 0, "landing": 1, "bronze": 2, "silver": 3, "gold": 4}


def _ranks(lineage: Lineage) -> dict[str, int]:
    """Return each node's column: one after its deepest parent, and never before its layer's base column."""
    preds: dict[str, list[str]] = {n: [] for n in lineage.nodes}
    for a, b in lineage.edges:
        preds[b].append(a)
    rank: dict[str, int] = {}

    def depth(node: str, seen: frozenset) -> int:
        if node in rank:
            return rank[node]
        if node in seen:  # a cycle never reaches here from a valid graph; cut it rather than loop
            return 0
        value = max((depth(p, seen | {node}) + 1 for p in preds[node]), default=0)
        value = max(value, LAYER_BASE.get(lineage.nodes[node].layer, 0))
        rank[node] = value
        return value

    for node in lineage.nodes:
        depth(node, frozenset())
    return rank


def layout(lineage: Lineage) -> dict[str, tuple[float, float]]:
    """Return the top-left (x, y) of each node: a column per depth, rows ordered by the parents' mean row."""
    rank = _ranks(lineage)
    columns: dict[int, list[str]] = {}
    for node in sorted(lineage.nodes, key=lambda n: (LAYER_ORDER.index(lineage.nodes[n].layer), n)):
        columns.setdefault(rank[node], []).append(node)
    preds: dict[str, list[str]] = {n: [] for n in lineage.nodes}
    for a, b in lineage.edges:
        preds[b].append(a)
    position: dict[str, int] = {}
    for col in sorted(columns):
        members = columns[col]
        if col > 0:

            def barycenter(node: str) -> float:
                rows = [position[p] for p in preds[node] if p in position]
                return sum(rows) / len(rows) if rows else float("inf")

            members.sort(key=lambda n: (barycenter(n), n))
        for index, node in enumerate(members):
            position[node] = index
    coords = {}
    # Columns no node took (a project without contracts has no source or landing column) are closed up.
    compact = {col: index for index, col in enumerate(sorted(columns))}
    columns = {compact[col]: members for col, members in columns.items()}
    for col, members in columns.items():
        for index, node in enumerate(members):
            coords[node] = (MARGIN + col * (NODE_W + COL_GAP), MARGIN + 24 + index * (NODE_H + ROW_GAP))
    return coords


def _clip(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def svg(lineage: Lineage) -> str:
    """Return the lineage as a standalone inline SVG (no script, no external reference)."""
    if not lineage.nodes:
        return (
            '<svg xmlns="http://www.w3.org/2000/svg" width="420" height="40" role="img" class="lineage">'
            '<text x="10" y="25" font-family="sans-serif" font-size="13">No lineage: the project has no '
            "compiled actions and no contracts.</text></svg>"
        )
    coords = layout(lineage)
    width = max(x for x, _ in coords.values()) + NODE_W + MARGIN
    height = max(y for _, y in coords.values()) + NODE_H + MARGIN
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" role="img" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        'font-family="sans-serif" font-size="12">',
        "<title>Lineage: source → landing → bronze → silver → gold</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#6b7280"/></marker></defs>',
    ]
    legend_x = MARGIN
    for layer in LAYER_ORDER:
        if not any(n.layer == layer for n in lineage.nodes.values()):
            continue
        parts.append(
            f'<rect x="{legend_x}" y="4" width="12" height="12" fill="{LAYER_COLORS[layer]}" '
            'stroke="#6b7280"/>'
            f'<text x="{legend_x + 16}" y="14">{layer}</text>'
        )
        legend_x += 24 + 8 * len(layer)
    for a, b in lineage.edges:
        (x1, y1), (x2, y2) = coords[a], coords[b]
        sx, sy, tx, ty = x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
        mid = (sx + tx) / 2
        parts.append(
            f'<path class="edge" data-from="{escape(a)}" data-to="{escape(b)}" '
            f'd="M {sx:.1f} {sy:.1f} C {mid:.1f} {sy:.1f}, {mid:.1f} {ty:.1f}, {tx - 2:.1f} {ty:.1f}" '
            'fill="none" stroke="#9ca3af" stroke-width="1.3" marker-end="url(#arrow)"/>'
        )
    for node_id, node in lineage.nodes.items():
        x, y = coords[node_id]
        stroke = STATUS_STROKE[node.status]
        dash = ' stroke-dasharray="4 3"' if node.status == "failed" else ""
        width_px = 2.5 if node.status in ("failing", "failed", "warn") else 1.2
        tip = escape(f"{node_id} ({node.kind}) {node.detail}".strip())
        parts.append(
            f'<g class="node" data-id="{escape(node_id)}" data-layer="{node.layer}" '
            f'data-status="{node.status or ""}">'
            f"<title>{tip}</title>"
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6" '
            f'fill="{LAYER_COLORS[node.layer]}" '
            f'stroke="{stroke}" stroke-width="{width_px}"{dash}/>'
            f'<text x="{x + 8}" y="{y + 21}">{escape(_clip(node.label))}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)
