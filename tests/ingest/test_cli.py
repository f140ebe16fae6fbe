"""Tests for the ingest commands, run through the `lakehouse` entry point in the repository."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest
from click.testing import CliRunner
from models.project import KIT_VARS

from lakehouse import paths
from lakehouse.cli import main
from lakehouse.warehouse import open_catalog

from .conftest import REPO

LANDING = KIT_VARS["landing_bucket"]


@pytest.fixture
def in_repo(monkeypatch, lakehouse_home):
    monkeypatch.chdir(REPO)
    return lakehouse_home


def _landed_lines(home) -> int:
    root = paths.gcs_root(home) / LANDING
    return sum(path.read_bytes().count(b"\n") for path in root.rglob("*.jsonl"))


def test_generate_lands_through_the_http_function(in_repo):
    args = [
        "generate",
        "--events",
        "2000",
        "--seed",
        "4",
        "--batch-size",
        "500",
        "--as-of",
        "2026-11-22T09:30:00Z",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "landed in bronze (GCS)" in result.output
    landed = _landed_lines(in_repo)
    with open_catalog(in_repo, "lakehouse-dev") as con:
        arrivals = con.execute(
            "SELECT count(*), sum(record_count) FILTER (WHERE bucket = ?) FROM ops.file_arrivals", [LANDING]
        ).fetchone()
        # No Pub/Sub share, yet every raw table exists (empty) so bronze declarations resolve.
        raw_counts = [
            con.execute(f"SELECT count(*) FROM bronze.{source}_raw").fetchone()[0]
            for source in ("orders", "page_views", "ad_clicks", "inventory", "user_activity")
        ]
    assert raw_counts == [0, 0, 0, 0, 0]
    files = list((paths.gcs_root(in_repo) / LANDING).rglob("*.jsonl"))
    assert arrivals[0] >= len(files) and arrivals[1] == landed
    assert 1900 < landed <= 2050
    # The same run again (same seed, same --as-of): every batch is a retry, nothing new is written.
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0
    assert re.search(r"│ objects created\s+│ 0 ", again.output), again.output
    assert _landed_lines(in_repo) == landed


def _raw_rows(home) -> tuple[int, int]:
    """Return (rows, distinct record keys) over the five raw tables."""
    with open_catalog(home, "lakehouse-dev") as con:
        return con.execute(
            "select count(*), count(distinct json_extract_string(attributes, '$.record_key')) from ("
            + " union all ".join(
                f"select attributes from bronze.{source}_raw"
                for source in ("orders", "page_views", "ad_clicks", "inventory", "user_activity")
            )
            + ")"
        ).fetchone()


def test_generate_again_publishes_no_raw_row_twice(in_repo):
    args = ["generate", "--events", "2000", "--seed", "6", "--pubsub-share", "0.5", "--in-process-bus"]
    first = CliRunner().invoke(main, [*args, "--as-of", "2026-11-22T09:30:00Z"])
    assert first.exit_code == 0, first.output
    rows, keys = _raw_rows(in_repo)
    assert rows == keys and 900 < rows < 1100
    # The same command again later (a rerun after a kill): same lines, same record keys, no new raw row.
    again = CliRunner().invoke(main, [*args, "--as-of", "2026-11-22T10:30:00Z"])
    assert again.exit_code == 0, again.output
    assert re.search(r"raw table rows written\s+│ 0 ", again.output), again.output
    assert re.search(rf"raw rows already written \(same record key\)\s+│ {rows:,} ", again.output)
    assert _raw_rows(in_repo) == (rows, keys)
    # Another seed is another stream: its rows are all written.
    other = CliRunner().invoke(main, [*args[:4], "7", *args[5:], "--as-of", "2026-11-22T10:30:00Z"])
    assert other.exit_code == 0, other.output
    more_rows, more_keys = _raw_rows(in_repo)
    assert more_rows == more_keys and more_rows > rows + 900


def test_up_runs_every_step_with_the_in_process_bus(in_repo):
    result = CliRunner().invoke(
        main,
        [
            "up",
            "--events",
            "1000",
            "--in-process-bus",
            "--pubsub-share",
            "0.5",
            "--batch-size",
            "50",
            "--as-of",
            "2026-11-22T10:00:00Z",
            "--clean",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Pub/Sub: in-process" in result.output
    with open_catalog(in_repo, "lakehouse-dev") as con:
        raw = sum(
            con.execute(f"SELECT count(*) FROM bronze.{source}_raw").fetchone()[0]
            for source in ("orders", "page_views", "ad_clicks", "inventory", "user_activity")
        )
    assert raw > 400 and _landed_lines(in_repo) > 400


def test_bad_options_give_a_message_not_a_traceback(in_repo):
    result = CliRunner().invoke(main, ["generate", "--fault-rate", "quantity_negative=2"])
    assert result.exit_code == 2 and "between 0 and 1" in result.output
    result = CliRunner().invoke(main, ["generate", "--events", "10", "--fault-rate", "gremlins=0.1"])
    assert result.exit_code == 1 and "unknown fault(s) gremlins" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(main, ["generate", "--events", "10", "--source", "refunds"])
    assert result.exit_code == 1 and "unknown source(s) refunds" in result.output


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--span-hours", "nan", "'nan' is not a finite number"),
        ("--pubsub-share", "nan", "'nan' is not a finite number"),
        ("--seed", "99999999999999999999999", "is not in the range 0<=x<=9223372036854775807"),
        ("--seed", "-5", "is not in the range 0<=x<=9223372036854775807"),
    ],
)
def test_numbers_outside_what_the_generator_takes_are_named(in_repo, option, value, message):
    result = CliRunner().invoke(main, ["generate", "--events", "10", option, value])

    assert result.exit_code == 2
    assert f"Invalid value for '{option}'" in result.output and message in result.output


def test_help_lists_the_ingest_commands():
    result = subprocess.run([str(REPO / ".venv/bin/lakehouse"), "--help"], capture_output=True, text=True, check=True)
    for command in ("generate", "up", "schedule", "services"):
        assert command in result.stdout


def _processes_of(home) -> list[tuple[int, bytes]]:
    """Return (pid, command) of every process whose environment has LAKEHOUSE_HOME=home."""
    marker = f"LAKEHOUSE_HOME={home}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as handle:
                    if marker not in handle.read().split(b"\0"):
                        continue
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    found.append((int(entry), handle.read().replace(b"\0", b" ")))
            except OSError:
                continue
    return found


@pytest.mark.parametrize(
    "signals",
    [[signal.SIGTERM], [signal.SIGINT], [signal.SIGTERM, signal.SIGTERM], [signal.SIGKILL]],
    ids=["sigterm", "sigint", "sigterm-twice", "sigkill"],
)
def test_sigterm_mid_run_stops_the_services(in_repo, signals):
    from ingest.services import PubSubEmulator

    emulator_installed = PubSubEmulator.find(in_repo / "logs") is not None
    process = subprocess.Popen(
        [str(REPO / ".venv/bin/lakehouse"), "generate", "--events", "400000", "--batch-size", "100"]
        + ["--pubsub-share", "0.5"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: a runner started in the background (nohup, `&`) passes SIGINT on ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        for line in process.stderr:
            if line.startswith("services up"):
                break
        # keep reading what it writes from now on: a full pipe would block it, not the signal
        drained = threading.Thread(target=process.stderr.read, daemon=True)
        drained.start()
        running = [command for pid, command in _processes_of(in_repo) if pid != process.pid]
        assert any(str(paths.gcs_root(in_repo)).encode() in command for command in running), running
        assert any(b"pubsub-emulator" in command for command in running) == emulator_installed, running
        for number in signals:
            process.send_signal(number)
            time.sleep(0.05)
        assert process.wait(timeout=30) != 0
    finally:
        process.kill()
        process.wait()
    # Stopped on the way out; after SIGKILL the kernel stops them (they are tied to the parent).
    deadline = time.monotonic() + 10
    while _processes_of(in_repo) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_of(in_repo) == []


def test_settings_refuse_a_bad_bucket_or_project(tmp_path):
    from ingest.local import Settings

    (tmp_path / "workflow_settings.yaml").write_text("defaultProject: p-1\nvars: {landing_bucket: Bad_Bucket}\n")
    with pytest.raises(ValueError, match="vars.landing_bucket: 'Bad_Bucket' is not a valid bucket name"):
        Settings.load(tmp_path)
    (tmp_path / "workflow_settings.yaml").write_text("defaultProject: P1\nvars: {landing_bucket: ok-bucket}\n")
    with pytest.raises(ValueError, match="defaultProject: 'P1' is not a valid BigQuery project id"):
        Settings.load(tmp_path)
    (tmp_path / "workflow_settings.yaml").write_text("defaultProject: p-1\nvars: {landing_bucket: ok-bucket}\n")
    assert Settings.load(tmp_path).dead_letter_bucket == "ok-bucket-dead-letter"
    settings = "defaultProject: p-1\nvars: {landing_bucket: ok-bucket, dead_letter_bucket: %s}\n"
    (tmp_path / "workflow_settings.yaml").write_text(settings % "dl.localhost")
    assert Settings.load(tmp_path).dead_letter_bucket == "dl.localhost"
    (tmp_path / "workflow_settings.yaml").write_text(settings % "DL")
    with pytest.raises(ValueError, match="vars.dead_letter_bucket: 'DL' is not a valid bucket name"):
        Settings.load(tmp_path)


def test_local_ingest_writes_the_buckets_the_kit_compiles_with():
    from ingest.local import Settings

    settings = Settings.load(REPO)
    assert (settings.landing_bucket, settings.dead_letter_bucket) == (
        KIT_VARS["landing_bucket"],
        KIT_VARS["dead_letter_bucket"],
    )


def test_schedule_runs_a_tick_from_the_shared_definition(in_repo, monkeypatch):
    from ingest import schedule

    original = schedule.run_schedule
    monkeypatch.setattr(
        schedule, "run_schedule", lambda s, tick, ticks: original(s, tick, ticks=ticks, sleep=lambda _: None)
    )
    result = CliRunner().invoke(main, ["schedule", "--ticks", "1", "--in-process-bus"])
    assert result.exit_code == 0, result.output
    assert "schedule generate: */2 * * * * (UTC), 34 events a tick" in result.output
    line = next(text for text in result.output.splitlines() if " UTC: " in text)
    landed, raw = int(line.split(": ")[1].split()[0]), int(line.split(", ")[-1].split()[0])
    with open_catalog(in_repo, "lakehouse-dev") as con:
        raw_rows = sum(
            con.execute(f"SELECT count(*) FROM bronze.{source}_raw").fetchone()[0]
            for source in ("orders", "page_views", "ad_clicks", "inventory", "user_activity")
        )
    assert landed == _landed_lines(in_repo) and raw == raw_rows and landed > 0 and raw > 0


def test_a_file_copied_by_hand_into_the_landing_bucket_does_not_stop_the_next_generate(in_repo):
    """The storage emulator cannot list a folder holding a file it did not write; the arrivals of what
    generate landed are read object by object then."""
    args = ["generate", "--events", "200", "--source", "orders", "--in-process-bus", "--as-of", "2026-11-22T10:00:00Z"]
    assert CliRunner().invoke(main, [*args, "--seed", "5"]).exit_code == 0
    landed = next((paths.gcs_root(in_repo) / LANDING).rglob("*.jsonl"))
    shutil.copy(landed, landed.with_name("copied-by-hand.jsonl"))

    again = CliRunner().invoke(main, [*args, "--seed", "6"])

    assert again.exit_code == 0, again.output
    with open_catalog(in_repo, "lakehouse-dev") as con:
        recorded = {name for (name,) in con.execute("SELECT object_name FROM ops.file_arrivals").fetchall()}
    generated = {
        path.relative_to(paths.gcs_root(in_repo) / LANDING).as_posix()
        for path in (paths.gcs_root(in_repo) / LANDING).rglob("*.jsonl")
        if path.name != "copied-by-hand.jsonl"
    }
    assert generated <= recorded and len(generated) >= 2
