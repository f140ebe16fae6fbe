"""Run history: JSON and ops-table records, failing streaks, flaky detection and trends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from lakehouse import warehouse
from lakehouse.engine import records
from lakehouse.report.runs import (
    History,
    ReportInputError,
    Run,
    all_runs,
    flips,
    json_runs,
    run_from_json,
    run_from_trigger,
    select_run,
    table_runs,
)

T0 = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)


def make_run(index: int, statuses: dict[str, str], *, finished: bool = True) -> Run:
    actions = [
        records.ActionResult(
            name=name,
            type="assertion",
            status=status,
            failing_rows=3 if status == "failed" else 0,
            severity="error",
            file_name="definitions/x.sqlx",
        )
        for name, status in statuses.items()
    ]
    started = T0 + timedelta(hours=index)
    return Run(
        f"run-{index}",
        started,
        started + timedelta(seconds=5) if finished else None,
        "failed" if "failed" in statuses.values() else "success",
        actions,
        "json",
    )


def test_flips_counts_state_changes():
    assert flips([]) == 0
    assert flips(["pass", "pass"]) == 0
    assert flips(["pass", "fail", "fail"]) == 1
    assert flips(["pass", "fail", "pass", "fail"]) == 3


def test_streak_starts_at_first_failure_and_skips_runs_that_did_not_evaluate():
    runs = [
        make_run(0, {"a": "failed"}),
        make_run(1, {"a": "success"}),
        make_run(2, {"a": "failed"}),
        make_run(3, {"a": "skipped"}),
        make_run(4, {"b": "success"}),  # `a` not selected in this run
        make_run(5, {"a": "failed"}),
    ]
    history = History.upto(runs, runs[-1])
    streak = history.streak("a")
    assert (streak.since_run, streak.since, streak.runs) == ("run-2", T0 + timedelta(hours=2), 2)
    assert history.streak("b") is None
    assert history.sequence("a") == ["fail", "pass", "fail", "fail"]
    assert history.flaky("a") is True  # fail → pass → fail: two flips


def test_a_regression_is_not_flaky_and_the_window_limits_what_counts():
    runs = [make_run(i, {"a": "success" if i < 6 else "failed"}) for i in range(12)]
    history = History.upto(runs, runs[-1])
    assert history.flaky("a") is False
    assert history.streak("a").runs == 6
    flapping = [make_run(i, {"a": "failed" if i in (3, 5) else "success"}) for i in range(12)]
    assert History.upto(flapping, flapping[-1]).flaky("a") is True  # runs 2..11: four flips
    assert History.upto(flapping, flapping[-1]).flaky("a", window=5) is False  # runs 7..11 all pass


def test_history_upto_ignores_later_runs_and_trend_summarises_each_run():
    runs = [make_run(0, {"a": "success", "b": "failed"}), make_run(1, {"a": "failed", "b": "failed"})]
    history = History.upto(runs, runs[0])
    assert [r.run_id for r in history.runs] == ["run-0"]
    assert history.streak("a") is None
    trend = History.upto(runs, runs[1]).trend()
    assert [(s.run_id, s.assertions_passed, s.assertions_failed, s.failing_rows) for s in trend] == [
        ("run-0", 1, 1, 3),
        ("run-1", 0, 2, 6),
    ]


def test_json_runs_skip_latest_and_dry_runs(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    record = records.RunRecord("r1", "/p", T0, T0 + timedelta(seconds=1), "success")
    records.write_json(record, tmp_path)
    dry = records.RunRecord("r0", "/p", T0 - timedelta(hours=1), T0, "success", dry_run=True)
    (folder / "r0.json").write_text(json.dumps(dry.to_json()))
    found = json_runs(tmp_path)
    assert [r.run_id for r in found] == ["r1"]
    assert sorted(p.name for p in folder.iterdir()) == ["latest.json", "r0.json", "r1.json"]


@pytest.mark.parametrize(
    ("name", "text", "remedy"),
    [
        ("broken.json", "{not json", "mv {path} {path}.broken"),
        ("latest.json", "", "rm {path}"),
        ("latest.json", "[1, 2]", "rm {path}"),
        ("r2.json", '{"run_id": "r2"}', "mv {path} {path}.broken"),
    ],
)
def test_an_unreadable_run_record_is_named_never_skipped(tmp_path, name, text, remedy):
    records.write_json(records.RunRecord("r1", "/p", T0, T0 + timedelta(seconds=1), "success"), tmp_path)
    path = tmp_path / "runs" / name
    path.write_text(text)
    with pytest.raises(ReportInputError) as raised:
        json_runs(tmp_path)
    assert str(raised.value).startswith(f"the run record {path} is unreadable (")
    assert remedy.format(path=path) in str(raised.value)


def test_a_record_without_finish_time_is_a_crashed_run():
    data = records.RunRecord("r2", "/p", T0).to_json()
    run = run_from_json(data)
    assert run.crashed is True
    assert run.status == "running"
    with pytest.raises(ReportInputError, match="malformed"):
        run_from_json({"actions": []})


def test_table_runs_rebuild_runs_from_the_ops_table(tmp_path):
    con = warehouse.connect(tmp_path, ["proj-x"])
    for index, status in enumerate(("success", "failed")):
        record = records.RunRecord(f"r{index}", "/p", T0 + timedelta(minutes=index))
        record.actions = [
            records.ActionResult("proj-x.silver.t", "table", "success", rows_affected=4),
            records.ActionResult(
                "proj-x.assertions.a",
                "assertion",
                status,
                failing_rows=2 if status == "failed" else 0,
                severity="error",
            ),
        ]
        records.write_table(record, con, "proj-x")
    found = table_runs(con, "proj-x")
    assert [(r.run_id, r.status, r.source) for r in found] == [
        ("r0", "success", "table"),
        ("r1", "failed", "table"),
    ]
    assert [(a.name, a.status, a.failing_rows) for a in found[1].actions] == [
        ("proj-x.silver.t", "success", None),
        ("proj-x.assertions.a", "failed", 2),
    ]
    assert table_runs(con, "other-project") == []
    con.close()


def test_all_runs_prefers_the_json_record(tmp_path):
    con = warehouse.connect(tmp_path, ["proj-x"])
    record = records.RunRecord("r0", "/p", T0, T0 + timedelta(seconds=2), "success")
    record.actions = [records.ActionResult("proj-x.silver.t", "table", "success")]
    records.write_table(record, con, "proj-x")
    records.write_json(record, tmp_path)
    found = all_runs(tmp_path, con, "proj-x")
    assert [(r.run_id, r.source) for r in found] == [("r0", "json")]
    con.close()


def test_select_run_says_plainly_when_there_is_nothing(tmp_path):
    with pytest.raises(ReportInputError, match=r"no run is recorded under .* run `lakehouse run`"):
        select_run([], None, tmp_path)
    runs = [make_run(0, {}), make_run(1, {})]
    assert select_run(runs, None, tmp_path).run_id == "run-1"
    assert select_run(runs, "run-0", tmp_path).run_id == "run-0"
    with pytest.raises(ReportInputError, match=r"no run 'run-9'.*recent runs: run-0, run-1"):
        select_run(runs, "run-9", tmp_path)


def test_a_run_record_nested_past_the_parser_is_named_as_unreadable(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "zz.json").write_text("[" * 100_000)

    with pytest.raises(ReportInputError, match="zz.json"):
        json_runs(tmp_path)


def test_a_trigger_sample_that_is_not_rows_is_left_out():
    started = "2026-03-01T06:00:00+00:00"
    report = {
        "run_id": "t1", "started_at": started, "finished_at": started, "status": "failed",
        "actions": [
            {"name": "p.assertions.a", "type": "assertion", "status": "failed", "failing_sample": "oops"},
            {"name": "p.assertions.b", "type": "assertion", "status": "failed", "failing_sample": [{"id": 1}]},
        ],
    }  # fmt: skip

    _, samples, _ = run_from_trigger(report)

    assert samples == {"p.assertions.b": [{"id": 1}]}
