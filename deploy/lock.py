"""The apply lock: one object in the functions source bucket, created only if absent, so two applies
of an environment cannot interleave."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from google.api_core import exceptions as gexc

from deploy.config import EnvConfig

LOCK_OBJECT = "lakehouse-deploy.lock"


class LockError(RuntimeError):
    """The apply lock could not be taken: names why and what to do."""


class LockHeld(LockError):
    """Another apply holds the lock: names who and since when, and what to do."""


def holder() -> str:
    """Return who takes the lock: user@host pid N."""
    return f"{getpass.getuser()}@{socket.gethostname()} pid {os.getpid()}"


@contextmanager
def apply_lock(
    env: EnvConfig,
    clients: Any,
    who: str | None = None,
    break_lock: bool = False,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    note: Callable[[str], None] = lambda text: None,
) -> Iterator[bool]:
    """Hold the environment's apply lock for the block; yield whether a lock was taken.

    The lock is gs://<functions_source>/lakehouse-deploy.lock, created with if_generation_match=0 and
    deleted (that generation only) when the block ends, however it ends. Before the first apply the
    bucket does not exist: no lock is taken and `note` says so. `break_lock` removes a lock left by
    an apply that was killed. Raises LockHeld when another apply holds it; google.api_core errors
    from the storage calls.
    """
    bucket = env.buckets["functions_source"]
    where = f"gs://{bucket}/{LOCK_OBJECT}"
    content = json.dumps({"holder": who or holder(), "since": now().isoformat(), "environment": env.environment})
    try:
        if break_lock:
            clients.storage.delete_lock(bucket, LOCK_OBJECT, None)
        generation = clients.storage.create_lock(bucket, LOCK_OBJECT, content.encode())
        held_by = clients.storage.read_lock(bucket, LOCK_OBJECT) if generation is None else None
    except gexc.NotFound:
        note(f"no apply lock: bucket {bucket} that holds it does not exist yet (first apply)")
        yield False
        return
    except gexc.GoogleAPICallError as error:
        raise LockError(f"the apply lock {where} could not be taken: {error}; the deploying identity needs "
                        f"roles/storage.admin (it creates the bucket)") from error  # fmt: skip
    if generation is None:
        raise LockHeld(_held_message(held_by, bucket))
    try:
        yield True
    finally:
        try:
            clients.storage.delete_lock(bucket, LOCK_OBJECT, generation)
        except gexc.GoogleAPICallError as error:
            note(f"the apply lock {where} was not released ({error}); the next apply needs --break-lock")


def _held_message(raw: bytes | None, bucket: str) -> str:
    try:
        held = json.loads(raw or b"{}")
        by = f"{held['holder']} since {held['since']}"
    except (ValueError, KeyError, TypeError):
        by = "an unknown holder"
    return (
        f"another apply holds the lock gs://{bucket}/{LOCK_OBJECT} ({by}). Wait for it to finish; "
        "if no apply is running (it was killed), re-run with --break-lock"
    )
