"""The gold dashboard: one static HTML page charting revenue, products, the funnel, incoming quality and health."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from html import escape

import duckdb

from lakehouse.report.context import Context, quoted, split_name
from lakehouse.report.lineage import layer_of
from lakehouse.report.quality import Quality
from lakehouse.report.scorecard import DIMENSIONS, Scorecard

TOP_PRODUCTS = 10
_NUMERIC = re.compile(
    r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|FLOAT|DOUBLE|"
    r"REAL|DECIMAL.*)$"
)
_RATE = re.compile(r"rate|ratio|pct|percent|share|avg|average", re.IGNORECASE)


@dataclass
class Chart:
    """One chart's data: labels and values, or why there is none."""

    labels: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    source: str = ""
    empty_reason: str | None = None

    def to_json(self) -> dict:
        return {
            "labels": self.labels,
            "values": self.values,
            "source": self.source,
            "empty": self.empty_reason,
        }


@dataclass
class DashboardData:
    """The data of the four charts plus the run they were read after."""

    run_id: str
    revenue: Chart
    products: Chart
    funnel: Chart
    notes: list[str] = field(default_factory=list)


def _gold_tables(ctx: Context) -> list[str]:
    """Return the gold tables: graph actions in a gold dataset, else warehouse schemas named gold."""
    if ctx.graph is not None:
        names = [
            n
            for n, a in ctx.graph.actions.items()
            if a.kind in ("table", "incremental", "view") and layer_of(a.target.get("schema", "")) == "gold"
        ]
        if names:
            return sorted(names)
    if ctx.con is None:
        return []
    rows = ctx.con.execute(
        "SELECT table_catalog, table_schema, table_name FROM information_schema.tables "
        "WHERE lower(table_schema) LIKE '%gold%' ORDER BY ALL"
    ).fetchall()
    return [".".join(r) for r in rows]


def _columns(ctx: Context, table: str) -> list[tuple[str, str]]:
    project, dataset, name = split_name(table)
    return ctx.con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_catalog = ? AND table_schema = ? "
        "AND table_name = ? ORDER BY ordinal_position",
        [project, dataset, name],
    ).fetchall()


def _pick(tables: list[str], *words: str) -> str | None:
    for word in words:
        for table in tables:
            if word in table.rsplit(".", 1)[-1]:
                return table
    return None


def _first(columns: list[tuple[str, str]], test, *words: str) -> str | None:
    for word in words:
        for name, kind in columns:
            if word in name.lower() and test(kind):
                return name
    return None


def _is_numeric(kind: str) -> bool:
    return bool(_NUMERIC.match(kind))


def _is_time(kind: str) -> bool:
    return kind == "DATE" or kind.startswith("TIMESTAMP")


def _revenue_column(columns) -> str | None:
    return _first(columns, _is_numeric, "revenue", "sales", "amount", "total")


def daily_revenue(ctx: Context, tables: list[str]) -> Chart:
    """Return revenue per day from the daily sales (or daily product summary) gold table."""
    table = _pick(tables, "daily_sales", "daily_product_summary", "daily_revenue", "daily")
    if table is None:
        return Chart(empty_reason="no daily gold table (daily_sales / daily_product_summary) in the warehouse")
    columns = _columns(ctx, table)
    day = _first(columns, _is_time, "date", "day", "ts", "")
    revenue = _revenue_column(columns)
    if day is None or revenue is None:
        return Chart(source=table, empty_reason=f"{table} has no date column and revenue column to chart")
    _, rows = ctx.query(
        f'SELECT CAST("{day}" AS DATE) AS day, sum("{revenue}") FROM {quoted(table)} '
        f'WHERE "{day}" IS NOT NULL GROUP BY 1 ORDER BY 1'
    )
    return Chart(
        [d.isoformat() for d, _ in rows],
        [float(v or 0) for _, v in rows],
        f"{table}: sum({revenue}) by {day}",
    )


def top_products(ctx: Context, tables: list[str]) -> Chart:
    """Return the TOP_PRODUCTS products by revenue from the daily product summary gold table."""
    table = _pick(tables, "daily_product_summary", "product_summary", "products", "product")
    if table is None:
        return Chart(empty_reason="no product gold table (daily_product_summary) in the warehouse")
    columns = _columns(ctx, table)
    product = _first(columns, lambda kind: kind == "VARCHAR", "product_id", "product", "sku")
    revenue = _revenue_column(columns)
    if product is None or revenue is None:
        return Chart(source=table, empty_reason=f"{table} has no product column and revenue column to chart")
    _, rows = ctx.query(
        f'SELECT "{product}", sum("{revenue}") AS revenue FROM {quoted(table)} WHERE "{product}" IS NOT NULL '
        f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {TOP_PRODUCTS}"
    )
    return Chart(
        [str(p) for p, _ in rows],
        [float(v or 0) for _, v in rows],
        f"{table}: top {TOP_PRODUCTS} by {revenue}",
    )


def funnel(ctx: Context, tables: list[str]) -> Chart:
    """Return the funnel stages and their totals from the conversion funnel gold table.

    A wide table (one count column per stage, in stage order) is summed per column; a long table (a stage
    column and a count column) is summed per stage, largest first. Rate columns are left out.
    """
    table = _pick(tables, "conversion_funnel", "funnel")
    if table is None:
        return Chart(empty_reason="no conversion_funnel gold table in the warehouse")
    columns = _columns(ctx, table)
    stage = next((name for name, kind in columns if kind == "VARCHAR" and "stage" in name.lower()), None)
    counts = [name for name, kind in columns if _is_numeric(kind) and not _RATE.search(name)]
    if stage and counts:
        _, rows = ctx.query(f'SELECT "{stage}", sum("{counts[0]}") FROM {quoted(table)} GROUP BY 1 ORDER BY 2 DESC, 1')
        return Chart([str(s) for s, _ in rows], [float(v or 0) for _, v in rows], f"{table}: {counts[0]} by {stage}")
    if not counts:
        return Chart(source=table, empty_reason=f"{table} has no count column per stage")
    sums = ", ".join(f'sum("{c}")' for c in counts)
    _, rows = ctx.query(f"SELECT {sums} FROM {quoted(table)}")
    return Chart(list(counts), [float(v or 0) for v in rows[0]], f"{table}: total per stage")


def collect(ctx: Context) -> DashboardData:
    """Return the dashboard's data read from the warehouse's gold tables (each chart says why when empty)."""
    tables = _gold_tables(ctx) if ctx.con is not None else []
    data = DashboardData(ctx.run.run_id, Chart(), Chart(), Chart())
    if ctx.con is None:
        reason = "the local warehouse is empty"
        data.revenue.empty_reason = data.products.empty_reason = data.funnel.empty_reason = reason
        return data
    existing = [t for t in tables if ctx.table_exists(*split_name(t))]
    for attribute, reader in (("revenue", daily_revenue), ("products", top_products), ("funnel", funnel)):
        try:
            setattr(data, attribute, reader(ctx, existing))
        except duckdb.Error as error:
            first = str(error).strip().splitlines()[0]
            setattr(data, attribute, Chart(empty_reason=f"could not read: {first}"))
    return data


SCRIPT = r"""
(function () {
  const data = JSON.parse(document.getElementById('dashboard-data').textContent);
  const NS = 'http://www.w3.org/2000/svg';
  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const key in attrs) node.setAttribute(key, attrs[key]);
    if (parent) parent.appendChild(node);
    return node;
  }
  function text(parent, x, y, value, attrs) {
    const node = el('text', Object.assign({x: x, y: y}, attrs || {}), parent);
    node.textContent = value;
    return node;
  }
  function fmt(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(2) + 'M';
    if (v >= 1e3) return (v / 1e3).toFixed(1) + 'k';
    return String(Math.round(v * 100) / 100);
  }
  function frame(id, chart, w, h) {
    const box = document.getElementById(id);
    if (chart.empty || !chart.values.length) {
      const p = document.createElement('p'); p.className = 'empty';
      p.textContent = 'No data: ' + (chart.empty || 'the table is empty');
      box.appendChild(p); return null;
    }
    const svg = el('svg', {width: w, height: h, viewBox: '0 0 ' + w + ' ' + h,
                           'data-points': chart.values.length,
                           'font-family': 'sans-serif', 'font-size': 11}, box);
    const cap = document.createElement('p');
    cap.className = 'source';
    cap.textContent = chart.source;
    box.appendChild(cap);
    return svg;
  }
  function line(id, chart) {
    const w = 640, h = 260, l = 60, r = 16, t = 16, b = 40;
    const svg = frame(id, chart, w, h); if (!svg) return 0;
    const max = Math.max.apply(null, chart.values.concat([1]));
    const n = chart.values.length;
    const x = i => l + (n === 1 ? (w - l - r) / 2 : i * (w - l - r) / (n - 1));
    const y = v => t + (h - t - b) * (1 - v / max);
    el('line', {x1: l, y1: h - b, x2: w - r, y2: h - b, stroke: '#9ca3af'}, svg);
    el('line', {x1: l, y1: t, x2: l, y2: h - b, stroke: '#9ca3af'}, svg);
    text(svg, 4, t + 8, fmt(max)); text(svg, 4, h - b, '0');
    const d = chart.values.map((v, i) => (i ? 'L' : 'M') + x(i).toFixed(1) + ' ' + y(v).toFixed(1)).join(' ');
    el('path', {d: d, fill: 'none', stroke: '#2563eb', 'stroke-width': 2, class: 'series'}, svg);
    chart.values.forEach((v, i) => {
      const c = el('circle', {cx: x(i), cy: y(v), r: 3, fill: '#2563eb', class: 'point'}, svg);
      el('title', {}, c).textContent = chart.labels[i] + ': ' + fmt(v);
    });
    text(svg, l, h - b + 16, chart.labels[0]);
    text(svg, w - r, h - b + 16, chart.labels[n - 1], {'text-anchor': 'end'});
    return 1;
  }
  function bars(id, chart, color, suffix) {
    const n = chart.values.length, rowH = 24, w = 640, l = 170, r = 70;
    const svg = frame(id, chart, w, n * rowH + 10); if (!svg) return 0;
    const max = Math.max.apply(null, chart.values.concat([1e-9]));
    chart.values.forEach((v, i) => {
      const y = 5 + i * rowH, width = Math.max(1, (w - l - r) * v / max);
      text(svg, l - 6, y + 15, chart.labels[i], {'text-anchor': 'end'});
      const bar = el('rect', {x: l, y: y + 2, width: width.toFixed(1), height: rowH - 6,
                              fill: color(v, i), class: 'bar'}, svg);
      el('title', {}, bar).textContent = chart.labels[i] + ': ' + fmt(v);
      text(svg, l + width + 4, y + 15, suffix(v, i));
    });
    return 1;
  }
  let drawn = 0;
  drawn += line('chart-revenue', data.revenue);
  drawn += bars('chart-products', data.products, () => '#f59e0b', v => fmt(v));
  const first = data.funnel.values[0] || 1;
  const blues = ['#1d4ed8', '#2563eb', '#3b82f6', '#60a5fa', '#93c5fd'];
  drawn += bars('chart-funnel', data.funnel, (v, i) => blues[i % 5],
                (v, i) => fmt(v) + (i ? ' (' + (100 * v / first).toFixed(1) + '%)' : ''));
  drawn += line('chart-quality', data.quality);
  drawn += bars('chart-scorecard', data.scorecard,
                v => 'hsl(' + Math.round(1.2 * v) + ',65%,50%)', v => v.toFixed(1));
  document.body.setAttribute('data-charts-drawn', String(drawn));
})();
"""

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#111827;
background:#f9fafb}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(660px,1fr));gap:16px}
.panel{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:12px 16px}
h1{font-size:22px}h2{font-size:16px;margin:0 0 8px}.source{color:#6b7280;font-size:12px}.empty{color:#92400e}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #e5e7eb;padding:3px 6px}
"""


def scorecard_chart(card: Scorecard) -> Chart:
    """Return the scorecard as a chart: one bar per table, then one per dimension."""
    labels, values = [], []
    for table in card.tables:
        score = card.table_score(table)
        if score is not None:
            labels.append(table.split(".", 1)[-1])
            values.append(score)
    for dimension in DIMENSIONS:
        score = card.dimension_score(dimension)
        if score is not None:
            labels.append(f"[{dimension}]")
            values.append(score)
    if not values:
        return Chart(empty_reason="; ".join(card.notes) or "no score")
    return Chart(labels, values, f"score 0–100 per table, then per dimension; overall {card.overall}")


def quality_chart(quality: Quality | None) -> Chart:
    """Return incoming quality over time: per ingest day, 100 × lines valid / lines taken over every source."""
    if quality is None or not quality.daily:
        notes = quality.notes if quality is not None else []
        return Chart(empty_reason="; ".join(notes) or "no ingest day measured yet")
    days: dict = {}
    for row in quality.daily:
        taken, rejected = days.get(row.ingest_date, (0, 0))
        days[row.ingest_date] = (taken + row.lines_taken, rejected + row.quarantined_rows)
    labels = [str(day) for day in sorted(days)]
    values = [round(100 * (1 - days[day][1] / days[day][0]), 1) if days[day][0] else 0.0 for day in sorted(days)]
    return Chart(labels, values, "ops.source_quality_daily: 100 × (1 − quarantined / lines taken) per ingest_date")


def html(data: DashboardData, card: Scorecard, quality: Quality | None = None) -> str:
    """Return the dashboard page: data embedded as JSON, drawn as SVG by an inline script (no network)."""
    payload = {
        "revenue": data.revenue.to_json(),
        "products": data.products.to_json(),
        "funnel": data.funnel.to_json(),
        "quality": quality_chart(quality).to_json(),
        "scorecard": scorecard_chart(card).to_json(),
    }
    # "</script" or "<!--" inside a JSON string would end or confuse the script element: escape every "<".
    embedded = json.dumps(payload).replace("<", "\\u003c")
    panels = [
        ("chart-revenue", "Daily revenue"),
        ("chart-products", f"Top {TOP_PRODUCTS} products by revenue"),
        ("chart-funnel", "Conversion funnel"),
        ("chart-quality", "Incoming data quality over time (share of lines valid)"),
        ("chart-scorecard", "Pipeline health scorecard (assertions)"),
    ]
    body = "".join(
        f"<section class='panel'><h2>{escape(title)}</h2><div class='chart' id='{pid}'></div></section>"
        for pid, title in panels
    )
    notes = "".join(f"<p class='empty'>{escape(n)}</p>" for n in data.notes)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Gold dashboard — run {escape(data.run_id)}</title><style>{CSS}</style></head>"
        "<body data-charts-drawn='0'><h1>Gold dashboard</h1>"
        f"<p class='source'>After run {escape(data.run_id)}; "
        f"figures read from the local warehouse's gold tables.</p>{notes}<div class='grid'>{body}</div>"
        "<noscript>The charts are drawn by a small inline script; enable JavaScript to see them.</noscript>"
        f"<script type='application/json' id='dashboard-data'>{embedded}</script>"
        f"<script>{SCRIPT}</script></body></html>"
    )
