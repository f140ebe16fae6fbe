"""The gold dashboard: data read from the gold tables, and the charts drawn by headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from lakehouse.report.build import build
from lakehouse.report.context import open_context
from lakehouse.report.dashboard import Chart, DashboardData, collect, html
from lakehouse.report.scorecard import Scorecard

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install -y chromium); the browser test needs it",
)


def test_collect_reads_revenue_products_and_funnel_from_gold(history):
    with open_context(history.project, history.home) as ctx:
        data = collect(ctx)
    assert (data.revenue.labels, data.revenue.values) == (
        ["2026-01-01", "2026-01-02", "2026-01-03"],
        [45.0, 49.0, 5.0],
    )
    assert data.revenue.source == "rpt-local.gold.daily_product_summary: sum(revenue_usd) by order_date"
    assert (data.products.labels, data.products.values) == (["P1", "P2", "P3"], [59.0, 25.0, 15.0])
    # conversion_rate is a rate, not a stage
    assert (data.funnel.labels, data.funnel.values) == (
        ["page_views", "add_to_cart", "orders"],
        [70.0, 21.0, 7.0],
    )


def test_the_page_embeds_the_data_safely():
    data = DashboardData(
        "r1", Chart(["</script><!--<b>x"], [1.0]), Chart(empty_reason="none"), Chart(empty_reason="none")
    )
    page = html(data, Scorecard())
    embedded = page.split("<script type='application/json' id='dashboard-data'>")[1].split("</script>")[0]
    assert "<" not in embedded
    assert json.loads(embedded)["revenue"]["labels"] == ["</script><!--<b>x"]
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page


class _Charts(HTMLParser):
    """Count what the script drew: per chart container, its svg's data-points and shapes."""

    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str] = {}
        self.chart: str | None = None
        self.found: dict[str, dict[str, int]] = {}
        self.empty: dict[str, bool] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        if tag == "div" and attrs.get("class") == "chart":
            self.chart = attrs["id"]
            self.found[self.chart] = {}
        elif self.chart:
            counts = self.found[self.chart]
            if tag == "svg":
                counts["points"] = int(attrs.get("data-points", -1))
            key = attrs.get("class") or tag
            counts[key] = counts.get(key, 0) + 1
            if tag == "p" and attrs.get("class") == "empty":
                self.empty[self.chart] = True

    def handle_endtag(self, tag):
        if tag == "section":
            self.chart = None


def render(page_path, tmp_path) -> _Charts:
    """Return what headless Chromium drew for the page (its DOM after the scripts ran)."""
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page_path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    parser = _Charts()
    parser.feed(done.stdout)
    return parser


@needs_chromium
def test_chromium_draws_all_four_charts(history, tmp_path):
    with open_context(history.project, history.home) as ctx:
        report = build(ctx)
        page = tmp_path / "dashboard.html"
        page.write_text(html(collect(ctx), report.scorecard))
    drawn = render(page, tmp_path)
    assert drawn.body["data-charts-drawn"] == "4"
    revenue = drawn.found["chart-revenue"]
    assert (revenue["points"], revenue["point"], revenue["series"]) == (3, 3, 1)
    assert (drawn.found["chart-products"]["points"], drawn.found["chart-products"]["bar"]) == (3, 3)
    assert (drawn.found["chart-funnel"]["points"], drawn.found["chart-funnel"]["bar"]) == (3, 3)
    # two tables, then the five dimensions measured across them
    assert (drawn.found["chart-scorecard"]["points"], drawn.found["chart-scorecard"]["bar"]) == (7, 7)
    # the fixture project has no ops views: the quality chart says why it is empty
    assert drawn.empty == {"chart-quality": True}


@needs_chromium
def test_chromium_shows_why_a_chart_is_empty(tmp_path):
    data = DashboardData(
        "r1",
        Chart(empty_reason="the local warehouse is empty"),
        Chart(empty_reason="x"),
        Chart(empty_reason="x"),
    )
    page = tmp_path / "dashboard.html"
    page.write_text(html(data, Scorecard()))
    drawn = render(page, tmp_path)
    assert drawn.body["data-charts-drawn"] == "0"
    assert drawn.empty == {
        "chart-revenue": True,
        "chart-products": True,
        "chart-funnel": True,
        "chart-quality": True,
        "chart-scorecard": True,
    }
    assert all("svg" not in counts for counts in drawn.found.values())
