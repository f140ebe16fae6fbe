"""The shared schedule definition (config/schedules.yaml) and the local scheduler loop."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml
from croniter import CroniterBadDateError, croniter

log = logging.getLogger(__name__)

SCHEDULES_FILE = Path("config") / "schedules.yaml"


@dataclass(frozen=True)
class Schedule:
    """One scheduled job: its cron expression (UTC) and the generator settings of a tick."""

    name: str
    cron: str
    description: str
    events: int
    batch_size: int
    pubsub_share: float


def load_schedules(project_dir: Path | str) -> dict[str, Schedule]:
    """Return the schedules in <project_dir>/config/schedules.yaml by name.

    Raises ValueError naming the file and entry for a missing file, a bad cron expression or a
    non-positive count.
    """
    path = Path(project_dir) / SCHEDULES_FILE
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot be read: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must be a mapping with `schedules:` (and `timezone: UTC`)")
    if data.get("timezone", "UTC") != "UTC":
        raise ValueError(f"{path}: timezone: only UTC is supported")
    entries = data.get("schedules")
    if not isinstance(entries, dict) or not entries:
        raise ValueError(f"{path}: schedules: must map names to schedules")
    out = {}
    for name, raw in entries.items():
        where = f"{path}: schedules.{name}"
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: must be a mapping")
        cron = raw.get("cron")
        if not isinstance(cron, str) or not croniter.is_valid(cron):
            raise ValueError(f"{where}.cron: {cron!r} is not a cron expression")
        if never_fires(cron):
            raise ValueError(f"{where}.cron: {cron!r} never fires (no such date)")
        try:
            events, batch_size = int(raw.get("events", 0)), int(raw.get("batch_size", 10))
            share = float(raw.get("pubsub_share", 0.0))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}: {error}") from None
        if events <= 0 or batch_size <= 0 or not 0 <= share <= 1:
            raise ValueError(f"{where}: events and batch_size must be > 0, pubsub_share in [0, 1]")
        out[name] = Schedule(name, cron, str(raw.get("description", "")), events, batch_size, share)
    return out


def never_fires(cron: str) -> bool:
    """Whether a valid cron expression names no date that exists (`0 0 31 2 *`, February 31st)."""
    try:
        next_fire(cron, datetime(2000, 1, 1, tzinfo=UTC))
    except CroniterBadDateError:
        return True
    return False


def next_fire(cron: str, after: datetime) -> datetime:
    """Return the first time strictly after `after` (UTC) that `cron` fires."""
    return croniter(cron, after.astimezone(UTC)).get_next(datetime).astimezone(UTC)


def run_schedule(
    schedule: Schedule,
    tick: Callable[[datetime], None],
    *,
    ticks: int | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Call tick(fire_time) at each fire time of the schedule; returns the number of ticks run.

    Runs `ticks` times, or until interrupted when None. A tick that fails is logged and the loop goes
    on, as Cloud Scheduler would retry at the next fire time.
    """
    done = 0
    fire = next_fire(schedule.cron, now())
    while ticks is None or done < ticks:
        wait = (fire - now()).total_seconds()
        if wait > 0:
            sleep(wait)
        try:
            tick(fire)
        except Exception:
            log.exception("scheduled %s at %s failed", schedule.name, fire.isoformat())
        done += 1
        fire = next_fire(schedule.cron, max(fire, now()))
    return done
