"""bench/run_all.py: child processes measured, the incremental step on a small table, the printed rows."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_run_all", REPO / "bench" / "run_all.py")
run_all = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_all)


def test_run_child_reports_exit_status_and_the_child_peak_memory():
    code, seconds, peak_mb, output = run_all.run_child(
        [sys.executable, "-c", "b = bytearray(200 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); print('done')"],
        timeout=60,
    )
    assert (code, output.strip()) == (0, "done")
    # The child touched 200 MB. Its peak also counts what the kernel charged it between fork and exec
    # (pages of this test process, whose size depends on what the suite imported), as does an idle child's.
    _, _, idle_mb, _ = run_all.run_child([sys.executable, "-c", "print('idle')"], timeout=60)
    assert 200 <= peak_mb < max(400, idle_mb + 50), (peak_mb, idle_mb)
    assert seconds > 0
    code, _, _, output = run_all.run_child([sys.executable, "-c", "raise SystemExit(3)"], timeout=60)
    assert code == 3


@pytest.mark.slow
def test_incremental_step_merges_one_percent_and_matches_a_full_refresh(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path / "home"))
    figures = run_all.measure_incremental(argparse.Namespace(incremental_rows=20_000))
    assert (figures["rows"], figures["rows_added"], figures["incremental_rows_merged"]) == (20_000, 200, 200)
    assert figures["incremental_equals_full_refresh"] is True
    assert figures["first_build_s"] > 0 and figures["incremental_s"] > 0 and figures["full_refresh_s"] > 0


def test_rows_name_every_figure_and_say_what_was_not_measured():
    results = {
        "ingest": {"status": "not measured", "reason": "bench/ingest_bench.py does not exist yet"},
        "e2e": {"status": "failed", "reason": "exit 1: boom", "peak_rss_mb": 10.0},
        "incremental": {
            "status": "ok",
            "peak_rss_mb": 388.4,
            "figures": {
                "rows": 1_000_000,
                "rows_added": 10_000,
                "first_build_s": 13.331,
                "incremental_s": 2.38,
                "full_refresh_s": 3.48,
                "full_vs_incremental_ratio": 1.4621,
                "incremental_equals_full_refresh": True,
            },
        },
    }
    assert run_all.rows_of(results) == [
        ("ingest", "not measured", "bench/ingest_bench.py does not exist yet", ""),
        ("e2e", "not measured", "exit 1: boom", ""),
        ("incremental", "first build, 1,000,000 rows", "13.33 s", ""),
        ("incremental", "incremental, +10,000 rows (1%)", "2.38 s", ""),
        ("incremental", "full refresh, same data", "3.48 s", ""),
        ("incremental", "full refresh / incremental", "1.5×", ""),
        ("incremental", "incremental result = full refresh result", "yes", "yes"),
        ("incremental", "peak memory (RSS) of the step", "388 MB", ""),
    ]
