"""Compile a Dataform project with the pinned Dataform CLI, offline, cached by content."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from lakehouse import paths

log = logging.getLogger(__name__)

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
    # Said once per compile, e.g. that the kit's core stood in for one that could not be installed.
    warnings: tuple[str, ...] = ()


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
    # Root files a project can require (a Dataform package's index.js, JSON settings) count too.
    files.extend(
        sorted(
            f
            for f in project_dir.iterdir()
            if f.is_file()
            and f.suffix in (".js", ".json")
            and f.name not in COMPILED_FILES
            and not f.name.startswith(".")
        )
    )
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


def cache_key(project_dir: Path, vars: dict[str, str] | None, bundle: Path, source_dir: Path | None = None) -> str:
    """Return the content hash that identifies one compilation of `project_dir` with `vars`.

    `source_dir` is the directory handed to the CLI (a staged copy holds the core actually used).
    """
    digest = hashlib.sha256()
    stat = bundle.stat()
    digest.update(f"cli:{bundle}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    digest.update(f"core:{_core_version(source_dir or project_dir)}\n".encode())
    digest.update(json.dumps(sorted((vars or {}).items())).encode())
    for file in _project_files(project_dir):
        digest.update(str(file.relative_to(project_dir)).encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def _kit_core() -> Path:
    return KIT_ROOT / "node_modules" / "@dataform" / "core"


# -- which @dataform/core a project asks for -----------------------------------------------------------

_VERSION = re.compile(r"^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(?:-[0-9A-Za-z.-]+)?$")
_COMPARATOR = re.compile(r"^(\^|~|>=|<=|>|<|=)?\s*(.+)$")


def _version_tuple(version: str) -> tuple[int, int, int] | None:
    match = _VERSION.match(version.strip())
    if not match or any(p in ("x", "X", "*") or p is None for p in match.groups()):
        return None
    return tuple(int(p) for p in match.groups())  # type: ignore[return-value]


def _satisfies_comparator(version: tuple[int, int, int], comparator: str) -> bool:
    operator, text = _COMPARATOR.match(comparator).groups()
    if text in ("*", "x", "X", "latest"):
        return True
    match = _VERSION.match(text)
    if not match:
        return False
    parts = [None if p is None or p in ("x", "X", "*") else int(p) for p in match.groups()]
    # Fill a partial version (`3`, `3.0`, `3.x`) as npm does: a range over the missing parts.
    known = [p for p in parts if p is not None]
    low = tuple(known + [0] * (3 - len(known)))
    if operator in (None, "=") and len(known) < 3:
        return version[: len(known)] == tuple(known)
    if operator in (None, "="):
        return version == low
    if operator == "^":
        first = next((i for i, p in enumerate(low) if p != 0), len(known) - 1 if known else 0)
        first = min(first, max(len(known) - 1, 0))
        return version >= low and version[: first + 1] == low[: first + 1]
    if operator == "~":
        width = 2 if len(known) >= 2 else 1
        return version >= low and version[:width] == low[:width]
    return {">=": version >= low, ">": version > low, "<=": version <= low, "<": version < low}[operator]


def satisfies(version: str, spec: str) -> bool:
    """Return True when `version` (x.y.z) is within the npm range `spec` (exact, ^, ~, >=, <, x, ||)."""
    parsed = _version_tuple(version)
    if parsed is None:
        return False
    for alternative in spec.split("||"):
        comparators = alternative.replace(">= ", ">=").replace("<= ", "<=").split()
        if comparators and all(_satisfies_comparator(parsed, c) for c in comparators):
            return True
    return False


def _read_package(project_dir: Path) -> dict | None:
    """Return package.json as a dict (None when there is none).

    Raises CompileError in one line when it is empty or not a JSON object.
    """
    path = project_dir / "package.json"
    if not path.is_file():
        return None
    text = path.read_text()
    hint = 'it must be a JSON object such as {"dependencies": {"@dataform/core": "3.0.62"}}'
    if not text.strip():
        raise CompileError([("package.json", f"is empty; {hint}")])
    try:
        package = json.loads(text)
    except json.JSONDecodeError as error:
        raise CompileError([("package.json", f"is not valid JSON ({error}); {hint}")]) from error
    if not isinstance(package, dict):
        raise CompileError([("package.json", f"is not a JSON object; {hint}")])
    return package


def _wanted_core_version(project_dir: Path, settings: dict) -> str | None:
    if settings.get("dataformCoreVersion"):
        return str(settings["dataformCoreVersion"])
    package = _read_package(project_dir) or {}
    return (package.get("dependencies") or {}).get("@dataform/core")


@dataclass(frozen=True)
class _Source:
    path: Path
    warnings: tuple[str, ...] = ()


def _source_dir(project_dir: Path, home_dir: Path) -> _Source:
    """Return the directory to hand the CLI and any warning about the core it compiles with.

    In order: the project itself when its @dataform/core is installed; a staged copy with the kit's
    core when that satisfies what the project asks for and it needs no other npm package; a staged copy
    with the project's own dependencies installed by npm into a cache keyed by package.json and the
    lock file; else a staged copy with the kit's core and a warning saying so.
    Raises CompileError (one line) for a directory that is not a Dataform v3 project.
    """
    if not project_dir.is_dir():
        raise CompileError([(str(project_dir), "no such project directory")])
    settings_file = project_dir / "workflow_settings.yaml"
    package = _read_package(project_dir)
    dependencies = dict((package or {}).get("dependencies") or {})
    if not settings_file.is_file():
        if not (project_dir / "dataform.json").is_file():
            raise CompileError(
                [(str(project_dir), "not a Dataform project: no workflow_settings.yaml (nor dataform.json)")]
            )
        core_spec = dependencies.get("@dataform/core")
        major = re.search(r"\d+", core_spec or "")
        if major is None or int(major.group()) < 3:
            raise CompileError(
                [
                    (
                        "dataform.json",
                        f"this is a Dataform v2 project (@dataform/core {core_spec or 'not named'}); the local "
                        "engine compiles Dataform v3: move the settings to workflow_settings.yaml and pin "
                        "@dataform/core 3.x (see cloud.google.com/dataform/docs/migrate-to-dataform-core-3)",
                    )
                ]
            )
    settings = {}
    if settings_file.is_file():
        try:
            settings = yaml.safe_load(settings_file.read_text()) or {}
        except yaml.YAMLError as error:
            raise CompileError([("workflow_settings.yaml", f"is not valid YAML: {error}")]) from error
    core = project_dir / "node_modules" / "@dataform" / "core"
    # The compiler's sandbox refuses a core that resolves outside the project (a symlinked
    # node_modules): such a project is staged like one without node_modules.
    installed = core.is_dir() and core.resolve().is_relative_to(project_dir.resolve())
    if installed and not settings.get("dataformCoreVersion"):
        return _Source(project_dir)
    wanted = _wanted_core_version(project_dir, settings)
    if not wanted:
        where = "package.json" if package is not None else "workflow_settings.yaml"
        raise CompileError(
            [
                (
                    where,
                    "names no @dataform/core version: set dataformCoreVersion: 3.0.62 in workflow_settings.yaml "
                    'or add "@dataform/core": "3.0.62" to the dependencies in package.json',
                )
            ]
        )
    kit_version = _core_version(KIT_ROOT) if _kit_core().is_dir() else None
    others = {name: spec for name, spec in dependencies.items() if name != "@dataform/core"}
    if kit_version and satisfies(kit_version, wanted) and not others:
        return _Source(_stage(project_dir, home_dir, settings, None, f"kit-{kit_version}"))
    install = {name: _absolute_file_spec(spec, project_dir) for name, spec in dependencies.items()}
    install["@dataform/core"] = wanted
    try:
        modules = _install(project_dir, home_dir, install)
    except CompileError as error:
        if kit_version is None:
            raise
        reason = error.errors[0][1]
        return _Source(
            _stage(project_dir, home_dir, settings, None, f"kit-{kit_version}"),
            (
                f"@dataform/core {wanted} could not be installed ({reason}); compiled with the kit's "
                f"@dataform/core {kit_version} instead",
            ),
        )
    return _Source(_stage(project_dir, home_dir, settings, modules, modules.parent.name))


NPM_TIMEOUT_SECONDS = 300


def _absolute_file_spec(spec: str, project_dir: Path) -> str:
    """Return a `file:` dependency as an absolute path: npm installs it from the cache directory."""
    if isinstance(spec, str) and spec.startswith("file:") and not Path(spec[5:]).is_absolute():
        return f"file:{(project_dir / spec[5:]).resolve()}"
    return spec


def _install(project_dir: Path, home_dir: Path, dependencies: dict[str, str]) -> Path:
    """Return a node_modules holding `dependencies`, installed once per package.json + lock content.

    `npm ci` when the project has a package-lock.json that agrees, else `npm install`; lifecycle
    scripts are not run. Raises CompileError naming npm's last line when npm fails or is missing.
    """
    lock = project_dir / "package-lock.json"
    manifest = json.dumps({"name": "lakehouse-compile", "private": True, "dependencies": dependencies}, indent=2)
    digest = hashlib.sha256(manifest.encode())
    if lock.is_file():
        digest.update(lock.read_bytes())
    root = home_dir / "npm" / digest.hexdigest()[:16]
    modules = root / "node_modules"
    if (root / ".complete").is_file():
        return modules
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    (partial / "package.json").write_text(manifest)
    flags = ["--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
    attempts = []
    if lock.is_file():
        shutil.copy2(lock, partial / "package-lock.json")
        attempts.append(["npm", "ci", *flags])
    attempts.append(["npm", "install", "--omit=dev", *flags])
    last = ""
    for command in attempts:
        try:
            done = subprocess.run(
                command, cwd=partial, capture_output=True, text=True, timeout=NPM_TIMEOUT_SECONDS, check=False
            )
        except FileNotFoundError:
            shutil.rmtree(partial, ignore_errors=True)
            raise CompileError([("npm", "npm is not on PATH")]) from None
        except subprocess.TimeoutExpired:
            last = f"{' '.join(command[:2])} took over {NPM_TIMEOUT_SECONDS} s"
            continue
        if done.returncode == 0 and (partial / "node_modules" / "@dataform" / "core").is_dir():
            (partial / ".complete").write_text("")
            shutil.rmtree(root, ignore_errors=True)
            partial.replace(root)
            return modules
        lines = [
            line.strip()
            for line in (done.stderr or done.stdout).strip().splitlines()
            if line.strip() and "complete log of this run" not in line and line.strip() != "npm error"
        ]
        lines = [line for line in lines if "notarget" in line or "ERR" in line] or lines
        last = lines[0] if lines else f"{' '.join(command[:2])} exited {done.returncode}"
        (partial / "package-lock.json").unlink(missing_ok=True)
    shutil.rmtree(partial, ignore_errors=True)
    raise CompileError([("package.json", last)])


# Entries of a project root that are never handed to the compiler.
_NOT_STAGED = {"node_modules", "workflow_settings.yaml", "package.json", "package-lock.json"}


def _stage(project_dir: Path, home_dir: Path, settings: dict, node_modules: Path | None, name: str) -> Path:
    """Copy the project into LAKEHOUSE_HOME/compile-stage/<name> beside a copy of `node_modules`
    (None: the kit's @dataform/core alone, 1.3 MB).

    The compiler's sandbox refuses a symlinked node_modules, so the packages are copied once per stage
    and the project's files (root files such as index.js, definitions/, includes/, any other folder
    it may require) are refreshed on every compile. dataformCoreVersion is dropped from the staged
    settings: the core is installed beside it.
    """
    stage = home_dir / "compile-stage" / name
    if not (stage / ".modules-complete").is_file():
        shutil.rmtree(stage, ignore_errors=True)
        if node_modules is None:
            shutil.copytree(_kit_core(), stage / "node_modules" / "@dataform" / "core")
        else:
            # npm links `file:` dependencies; the sandbox wants real files inside the project.
            shutil.copytree(node_modules, stage / "node_modules")
        (stage / ".modules-complete").write_text("")
    for entry in stage.iterdir():
        if entry.name not in ("node_modules", ".modules-complete"):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    for entry in project_dir.iterdir():
        if entry.name.startswith(".") or entry.name in _NOT_STAGED:
            continue
        if entry.is_dir():
            shutil.copytree(entry, stage / entry.name, ignore=shutil.ignore_patterns(".*", "node_modules"))
        elif entry.is_file():
            shutil.copy2(entry, stage / entry.name)
    if (project_dir / "workflow_settings.yaml").is_file():
        staged = {k: v for k, v in settings.items() if k != "dataformCoreVersion"}
        (stage / "workflow_settings.yaml").write_text(yaml.safe_dump(staged))
    # The project's own package.json stays (a package's `main` is what `require("../")` loads), pinned
    # to the core staged beside it.
    package = _read_package(project_dir) or {}
    package.pop("devDependencies", None)
    package["dependencies"] = {**(package.get("dependencies") or {}), "@dataform/core": _core_version(stage)}
    (stage / "package.json").write_text(json.dumps(package, indent=2))
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
    staged = _source_dir(project_dir, home_dir)
    source = staged.path
    for warning in staged.warnings:
        log.warning("%s", warning)
    _remove_killed_scratch(home_dir)
    key = cache_key(project_dir, vars, bundle, source)
    cache_file = paths.compile_cache_dir(home_dir) / f"{key}.json"
    if use_cache:
        cached = _read_cache(cache_file)
        if cached is not None:
            return Compiled(cached, key, cached=True, warnings=staged.warnings)

    command = ["node", str(bundle), "compile", str(source), "--json"]
    if vars:
        command.append("--vars=" + ",".join(f"{k}={v}" for k, v in vars.items()))
    # The CLI leaves a temporary directory behind per compile: give it one we remove.
    scratch = _scratch_dir(home_dir)
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
    return Compiled(graph, key, cached=False, warnings=staged.warnings)


def _scratch_dir(home_dir: Path) -> str:
    """Return a new directory under LAKEHOUSE_HOME/tmp/compile named after this process."""
    root = home_dir / "tmp" / "compile"
    root.mkdir(parents=True, exist_ok=True)
    return tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root)


def _remove_killed_scratch(home_dir: Path) -> None:
    """Remove the scratch directories of compiles whose process no longer runs (killed before it
    removed its own)."""
    root = home_dir / "tmp" / "compile"
    for entry in root.iterdir() if root.is_dir() else ():
        pid = entry.name.split("-", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


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
