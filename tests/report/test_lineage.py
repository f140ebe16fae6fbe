"""Lineage layout and SVG: columns by depth, parents before children, a well-formed picture."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from lakehouse.report.lineage import COL_GAP, MARGIN, NODE_W, Lineage, Node, layer_of, layout, svg

SVG = "{http://www.w3.org/2000/svg}"


def chain() -> Lineage:
    lineage = Lineage()
    for node_id, layer in [
        ("src", "source"),
        ("land", "landing"),
        ("b", "bronze"),
        ("s1", "silver"),
        ("s2", "silver"),
        ("g", "gold"),
        ("raw", "bronze"),  # a declaration: no parent, still drawn with bronze
    ]:
        lineage.nodes[node_id] = Node(node_id, node_id, layer, "table")
    edges = [
        ("src", "land"),
        ("land", "b"),
        ("b", "s1"),
        ("b", "s2"),
        ("s1", "g"),
        ("s2", "g"),
        ("b", "g"),
        ("raw", "s2"),
    ]
    for edge in edges:
        lineage.add_edge(*edge)
    lineage.add_edge("b", "missing")  # edges to unknown nodes are dropped
    return lineage


def test_layers_come_from_dataset_names():
    assert [layer_of(d) for d in ("bronze", "lh_silver", "GOLD", "assertions", "ops", "raw", "misc")] == [
        "bronze",
        "silver",
        "gold",
        "assertions",
        "ops",
        "bronze",
        "other",
    ]


def test_layout_puts_each_node_one_column_after_its_deepest_parent():
    coords = layout(chain())
    column = {n: round((x - MARGIN) / (NODE_W + COL_GAP)) for n, (x, _) in coords.items()}
    assert column == {"src": 0, "land": 1, "b": 2, "raw": 2, "s1": 3, "s2": 3, "g": 4}
    assert coords["s1"][1] < coords["s2"][1]


def test_svg_is_well_formed_and_draws_every_node_and_edge():
    lineage = chain()
    lineage.nodes["s1"].status = "failing"
    root = ET.fromstring(svg(lineage))
    nodes = [g for g in root.iter(f"{SVG}g") if g.get("class") == "node"]
    edges = [p for p in root.iter(f"{SVG}path") if p.get("class") == "edge"]
    assert len(nodes) == 7 and len(edges) == 8
    failing = next(g for g in nodes if g.get("data-id") == "s1")
    assert failing.get("data-status") == "failing"
    assert failing.find(f"{SVG}rect").get("stroke") == "#b91c1c"
    empty = ET.fromstring(svg(Lineage()))
    assert "No lineage" in "".join(empty.itertext())
