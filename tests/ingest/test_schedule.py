"""Tests for the shared schedule definition and the local scheduler loop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingest.schedule import Schedule, load_schedules, next_fire, run_schedule

from .conftest import REPO


def test_the_shared_file_defines_the_generator_every_two_minutes():
    schedule = load_schedules(REPO)["generate"]
    assert schedule.cron == "*/2 * * * *"
    assert (schedule.events, schedule.batch_size) == (34, 10)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("schedules:\n  generate: {cron: 'every two minutes', events: 5}\n", "generate.cron"),
        ("schedules:\n  generate: {cron: '*/2 * * * *', events: 0}\n", "events and batch_size must be > 0"),
        ("timezone: Europe/Paris\nschedules: {}\n", "only UTC"),
        ("schedules: [1, 2]\n", "must map names"),
        ("- generate\n", "must be a mapping with `schedules:`"),
        ("schedules:\n  generate: {cron: '0 0 31 2 *', events: 5}\n", "never fires"),
    ],
)
def test_bad_schedules_name_the_entry(tmp_path, text, message):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "schedules.yaml").write_text(text)
    with pytest.raises(ValueError, match=message):
        load_schedules(tmp_path)


def test_next_fire_is_strictly_after():
    at = datetime(2026, 11, 22, 10, 2, tzinfo=UTC)
    assert next_fire("*/2 * * * *", at) == datetime(2026, 11, 22, 10, 4, tzinfo=UTC)
    assert next_fire("*/2 * * * *", at - timedelta(seconds=1)) == at


def test_the_loop_ticks_at_each_fire_time_and_survives_a_failing_tick():
    clock = [datetime(2026, 11, 22, 10, 0, 30, tzinfo=UTC)]
    fired = []

    def sleep(seconds):
        clock[0] += timedelta(seconds=seconds)

    def tick(fire):
        fired.append(fire)
        if len(fired) == 1:
            raise RuntimeError("landing down")

    schedule = Schedule("generate", "*/2 * * * *", "", 10, 10, 0.0)
    assert run_schedule(schedule, tick, ticks=3, now=lambda: clock[0], sleep=sleep) == 3
    assert [f.strftime("%H:%M") for f in fired] == ["10:02", "10:04", "10:06"]
