"""Compile a Dataform project with the pinned Dataform CLI, offline, cached by content."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from lakehouse import paths

KIT_ROOT = Path(__file__).resolve().parents[2]
CLI_ENV = "LAKEHOUSE_DATAFORM_CLI"
# The folders and files the Dataform compiler reads; everything else in a project is ignored by it.
COMPILED_FOLDERS = ("definitions", "includes")
COMPILED_FILES = ("workflow_settings.yaml", "dataform.json", "package.json")
COMPILE_TIMEOUT_SECONDS = 300


class CompileError(Exception):
    """The project does not compile; `errors` holds (file, message) pairs."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("\n".join(f"{file}: {message}" for file, message in errors))


@dataclass(frozen=True)
class Compiled:
    """A compiled graph and where it came from."""

    graph: dict
    key: str
    cached: bool


def cli_path() -> Path:
    """Return the pinned Dataform CLI's bundle.js (kit's node_modules, or $LAKEHOUSE_DATAFORM_CLI).

    Raises CompileError when it is not installed, saying how to install it.
    """
    configured = os.environ.get(CLI_ENV)
    bundle = Path(configured) if configured else KIT_ROOT / "node_modules" / "@dataform" / "cli" / "bundle.js"
    if not bundle.is_file():
        raise CompileError(
            [(str(bundle), f"the pinned Dataform CLI is not installed; run `npm ci` in {KIT_ROOT} (or ./dev setup)")]
        )
    return bundle


def _project_files(project_dir: Path) -> list[Path]:
    files = [project_dir / name for name in COMPILED_FILES if (project_dir / name).is_file()]
    for folder in COMPILED_FOLDERS:
        root = project_dir / folder
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            # The CLI's glob skips dot-folders and dot-files; so does the cache key.
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "node_modules")
            files.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    return files


def _core_version(project_dir: Path) -> str:
    core = project_dir / "node_modules" / "@dataform" / "core" / "package.json"
    if core.is_file():
        return json.loads(core.read_text()).get("version", "?")
    return "installed-by-cli"


def cache_key(project_dir: Path, vars: dict[str, str] | None, bundle: Path) -> str:
    """Return the content hash that identifies one compilation of `project_dir` with `vars`."""
    digest = hashlib.sha256()
    stat = bundle.stat()
    digest.update(f"cli:{bundle}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    digest.update(f"core:{_core_version(project_dir)}\n".encode())
    digest.update(json.dumps(sorted((vars or {}).items())).encode())
    for file in _project_files(project_dir):
        digest.update(str(file.relative_to(project_dir)).encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def _kit_core() -> Path:
    return KIT_ROOT / "node_modules" / "@dataform" / "core"


def _wanted_core_version(project_dir: Path, settings: dict) -> str | None:
    if settings.get("dataformCoreVersion"):
        return str(settings["dataformCoreVersion"])
    try:
        package = json.loads((project_dir / "package.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return (package.get("dependencies") or {}).get("@dataform/core")


def _source_dir(project_dir: Path, home_dir: Path) -> Path:
    """Return the directory to hand the CLI: the project itself when its @dataform/core is installed,
    else a staged copy using the kit's pinned core when the project asks for that same version.

    Raises CompileError saying what to install otherwise.
    """
    if not project_dir.is_dir():
        raise CompileError([(str(project_dir), "no such project directory")])
    settings_file = project_dir / "workflow_settings.yaml"
    if not settings_file.is_file() and not (project_dir / "dataform.json").is_file():
        raise CompileError([(str(project_dir), "not a Dataform project: no workflow_settings.yaml")])
    settings = {}
    if settings_file.is_file():
        try:
            settings = yaml.safe_load(settings_file.read_text()) or {}
        except yaml.YAMLError as error:
            raise CompileError([("workflow_settings.yaml", f"is not valid YAML: {error}")]) from error
    core = project_dir / "node_modules" / "@dataform" / "core"
    # The compiler's sandbox refuses a core that resolves outside the project (a symlinked
    # node_modules): such a project is staged like one without node_modules.
    if core.is_dir() and core.resolve().is_relative_to(project_dir.resolve()):
        return project_dir
    wanted = _wanted_core_version(project_dir, settings)
    kit_version = _core_version(KIT_ROOT) if _kit_core().is_dir() else None
    if wanted and wanted == kit_version:
        return _stage(project_dir, home_dir, settings)
    if settings.get("dataformCoreVersion"):
        return project_dir  # the CLI installs that version itself (needs the npm registry)
    if not (project_dir / "package.json").is_file():
        raise CompileError(
            [("workflow_settings.yaml", "names no dataformCoreVersion and the project has no package.json")]
        )
    raise CompileError([("package.json", f"@dataform/core is not installed; run `npm ci` in {project_dir}")])


def _stage(project_dir: Path, home_dir: Path, settings: dict) -> Path:
    """Copy what the compiler reads into LAKEHOUSE_HOME with the kit's pinned @dataform/core.

    The compiler's sandbox refuses a symlinked node_modules, so the core (1.3 MB) is copied once and
    the project's files are refreshed on every compile. dataformCoreVersion is dropped from the
    staged settings: the same version is installed beside it.
    """
    stage = home_dir / "compile-stage"
    core = stage / "node_modules" / "@dataform" / "core"
    if not core.is_dir():
        shutil.copytree(_kit_core(), core)
    for folder in COMPILED_FOLDERS:
        shutil.rmtree(stage / folder, ignore_errors=True)
        if (project_dir / folder).is_dir():
            shutil.copytree(project_dir / folder, stage / folder, ignore=shutil.ignore_patterns(".*", "node_modules"))
    for name in ("workflow_settings.yaml", "dataform.json"):
        (stage / name).unlink(missing_ok=True)
    if (project_dir / "workflow_settings.yaml").is_file():
        staged = {k: v for k, v in settings.items() if k != "dataformCoreVersion"}
        (stage / "workflow_settings.yaml").write_text(yaml.safe_dump(staged))
    elif (project_dir / "dataform.json").is_file():
        shutil.copy2(project_dir / "dataform.json", stage / "dataform.json")
    (stage / "package.json").write_text(
        json.dumps({"dependencies": {"@dataform/core": _core_version(KIT_ROOT)}}, indent=2)
    )
    return stage


def _compilation_errors(graph: dict) -> list[tuple[str, str]]:
    errors = (graph.get("graphErrors") or {}).get("compilationErrors") or []
    return [(e.get("fileName") or "(project)", (e.get("message") or "").strip()) for e in errors]


def _read_cache(cache_file: Path) -> dict | None:
    """Return the cached graph, or None when there is none or it does not parse (a truncated or
    overwritten entry is a miss: the caller compiles again and rewrites it)."""
    try:
        graph = json.loads(cache_file.read_bytes())
    except (OSError, ValueError):
        return None
    return graph if isinstance(graph, dict) else None


def compile_project(
    project_dir: Path | str,
    *,
    vars: dict[str, str] | None = None,
    home_dir: Path | None = None,
    use_cache: bool = True,
) -> Compiled:
    """Return the compiled graph of `project_dir`, from the cache when its content is unchanged.

    Raises CompileError with (file, message) pairs when the project does not compile.
    """
    project_dir = Path(project_dir).resolve()
    home_dir = home_dir or paths.home(project_dir)
    bundle = cli_path()
    source = _source_dir(project_dir, home_dir)
    key = cache_key(project_dir, vars, bundle)
    cache_file = paths.compile_cache_dir(home_dir) / f"{key}.json"
    if use_cache:
        cached = _read_cache(cache_file)
        if cached is not None:
            return Compiled(cached, key, cached=True)

    command = ["node", str(bundle), "compile", str(source), "--json"]
    if vars:
        command.append("--vars=" + ",".join(f"{k}={v}" for k, v in vars.items()))
    # The CLI leaves a temporary directory behind per compile: give it one we remove.
    scratch = tempfile.mkdtemp(prefix="lakehouse-compile-")
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env={**os.environ, "TMPDIR": scratch},
            timeout=COMPILE_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError as error:
        raise CompileError([("node", "Node.js is not on PATH; install Node 20")]) from error
    except subprocess.TimeoutExpired as error:
        raise CompileError([(str(project_dir), f"compilation took over {COMPILE_TIMEOUT_SECONDS} s")]) from error
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    try:
        graph = json.loads(done.stdout)
    except json.JSONDecodeError as error:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise CompileError(
            [(str(project_dir), message[-1] if message else "the Dataform CLI printed nothing")]
        ) from error
    errors = _compilation_errors(graph)
    if errors:
        raise CompileError(errors)
    if done.returncode != 0:
        raise CompileError([(str(project_dir), (done.stderr or "compile failed").strip())])
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    partial = cache_file.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(graph))
    partial.replace(cache_file)
    return Compiled(graph, key, cached=False)


def parse_vars(pairs: str | None) -> dict[str, str]:
    """Return the vars given as `a=1,b=2` (Dataform CLI syntax) as a dict.

    Raises ValueError naming the malformed pair.
    """
    result: dict[str, str] = {}
    if not pairs:
        return result
    for pair in pairs.split(","):
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--vars: {pair!r} is not name=value")
        result[name.strip()] = value
    return result
