"""`lakehouse deploy plan | apply | destroy` and `lakehouse trigger`."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import click

from deploy.config import ConfigError, EnvConfig, load_env

_ENV_OPTION = click.option(
    "--env",
    "env_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Environment config, e.g. config/environments/dev.yaml.",
)
_PROJECT_DIR = click.option(
    "--project-dir",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The repository root (holds includes/contracts and pyproject.toml).",
)


def _load(env_file: Path, project_dir: Path) -> tuple[EnvConfig, list[str], list]:
    from deploy.dataplex import observability_resources
    from deploy.resources import desired_state, discover_sources

    if not (project_dir / "pyproject.toml").is_file():
        # the functions' source archive and its pinned requirements are built from it
        raise click.UsageError(f"--project-dir {project_dir} is not the kit's repository: it has no pyproject.toml")
    try:
        env = load_env(env_file, project_dir)
        sources = discover_sources(project_dir)
        # Dataplex scans and alerting come last: they read what the rest creates
        return env, sources, desired_state(env, sources) + observability_resources(env, project_dir)[0]
    except ConfigError as error:
        raise click.ClickException(f"invalid configuration:\n{error}") from error


def _clients(env: EnvConfig):
    from deploy.clients import Clients
    from deploy.handlers import handlers

    return Clients(project=env.project), handlers()


@click.group("deploy")
def deploy_group() -> None:
    """Deploy the lakehouse to a Google Cloud project from one environment config.

    plan shows what would change (offline it shows the full desired state), apply makes it so
    (safe to re-run), destroy removes only what apply created.
    """


@deploy_group.command("plan", short_help="Show what apply would change (works offline).")
@_ENV_OPTION
@_PROJECT_DIR
@click.option("--offline", is_flag=True, help="Do not read the current state even if credentials exist.")
@click.option("--brief", is_flag=True, help="One line per resource, without the desired properties.")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: machine-readable, for review and for apply --plan FILE.")  # fmt: skip
def plan_command(env_file: Path, project_dir: Path, offline: bool, brief: bool, output_format: str) -> None:
    """Show create / update / unchanged per resource; changes nothing."""
    from deploy.plan import credentials_status, make_plan, render, to_json

    started = time.perf_counter()
    env, sources, resources = _load(env_file, project_dir)
    has_credentials, why = credentials_status()
    if offline:
        has_credentials, why = False, "--offline was given"
    plan = None
    if has_credentials:
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exc

        clients, handlers = _clients(env)
        try:
            plan = _read_plan(env, sources, resources, project_dir, clients, handlers)
        except (gexc.GoogleAPICallError, auth_exc.GoogleAuthError) as error:
            why = f"reading it failed ({type(error).__name__}: {error})"
    if plan is None:
        plan = make_plan(env, sources, resources, project_dir, why_not_read=why)
    if output_format == "json":
        click.echo(json.dumps(to_json(plan), indent=2, sort_keys=True))
    else:
        from deploy.dataplex import observability_plan  # Dataplex scans and alerts, before the totals

        body, _, totals = render(plan, verbose=not brief).rpartition("\n")
        click.echo(f"{body.rstrip()}\n{observability_plan(env, project_dir)}\n\n{totals}")
    click.echo(f"({time.perf_counter() - started:.2f} s)", err=True)


def _read_plan(env, sources, resources, project_dir, clients, handlers):
    """Return the plan with the current state read, a progress bar on stderr while it reads."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from deploy.plan import make_plan

    columns = (TextColumn("reading current state"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"))
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("", total=len(resources))

        def advance(resource) -> None:
            progress.update(task, advance=1, description=resource.kind)

        return make_plan(env, sources, resources, project_dir, clients, handlers, on_read=advance)


def _confirm(yes: bool, question: str) -> None:
    if not yes and not click.confirm(question, default=False):
        raise click.ClickException("cancelled; nothing was changed")


def _require_credentials() -> None:
    from deploy.plan import credentials_status

    ok, why = credentials_status()
    if not ok:
        raise click.ClickException(f"cannot reach Google Cloud: {why}")


@deploy_group.command("apply", short_help="Create or update everything; safe to re-run.")
@_ENV_OPTION
@_PROJECT_DIR
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Apply exactly this saved plan (plan --format json); refuse if the live state moved since.",
)
@click.option("--break-lock", is_flag=True, help="Remove the apply lock an apply that was killed left behind.")
def apply_command(env_file: Path, project_dir: Path, yes: bool, plan_file: Path | None, break_lock: bool) -> None:
    """Create or update every resource; re-running after a failure resumes where it stopped.

    Holds the environment's apply lock (an object in the functions source bucket) throughout.
    """
    from google.api_core import exceptions as gexc

    from deploy.lock import LockError, apply_lock

    env, sources, resources = _load(env_file, project_dir)
    try:
        env.resolved_vars()
    except ConfigError as error:
        raise click.ClickException(str(error)) from error
    saved = _saved_plan(plan_file) if plan_file else None
    _require_credentials()
    clients, handlers = _clients(env)
    try:
        with apply_lock(env, clients, break_lock=break_lock, note=lambda text: click.echo(text, err=True)):
            _apply_locked(env, sources, resources, project_dir, clients, handlers, yes, saved)
    except LockError as error:
        raise click.ClickException(str(error)) from error
    except gexc.GoogleAPICallError as error:  # from reading the current state; nothing was changed
        raise click.ClickException(f"reading the current state failed; nothing was changed: {error}") from error


def _saved_plan(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise click.ClickException(f"{path}: not a saved plan ({error}); make one with plan --format json") from error


def _apply_locked(env, sources, resources, project_dir, clients, handlers, yes, saved) -> None:
    from deploy.apply import apply
    from deploy.plan import moved, render

    plan = _read_plan(env, sources, resources, project_dir, clients, handlers)
    if saved is not None:
        problems = moved(saved, plan)
        if problems:
            listed = "\n".join(f"  {p}" for p in problems)
            raise click.ClickException(f"the saved plan no longer applies; nothing was changed:\n{listed}\n"
                                       "make a new plan and review it")  # fmt: skip
    click.echo(render(plan, verbose=False))
    if plan.count("create") + plan.count("update") + sum(1 for o in plan.orphans if not o.data) == 0:
        click.echo("Nothing to do.")
        return
    _confirm(yes or saved is not None, f"Apply these changes to project {env.project}?")

    def show(outcome) -> None:
        click.echo(f"{outcome.result:>9}  {outcome.resource.kind} {outcome.resource.name}")

    report = apply(env, resources, clients, handlers, project_dir, on_outcome=show)
    summary = ", ".join(f"{report.count(r)} {r}" for r in ("created", "updated", "unchanged"))
    if report.error:
        raise click.ClickException(f"{report.error}\n(so far: {summary})")
    click.echo(f"Applied: {summary}.")


@deploy_group.command("destroy", short_help="Delete what apply created; data kept unless asked.")
@_ENV_OPTION
@_PROJECT_DIR
@click.option("--include-data", is_flag=True, help="Also delete buckets, datasets and tables that hold data.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def destroy_command(env_file: Path, project_dir: Path, include_data: bool, yes: bool) -> None:
    """Delete what apply created (labelled managed-by=lakehouse-kit); data is kept unless --include-data."""
    from deploy.apply import destroy

    env, _, resources = _load(env_file, project_dir)
    _require_credentials()
    what = "everything, INCLUDING DATA," if include_data else "everything except data buckets and datasets"
    _confirm(yes, f"Delete {what} lakehouse-kit created in project {env.project}?")
    clients, handlers = _clients(env)
    report = destroy(env, resources, clients, handlers, project_dir, include_data,
                     on_outcome=lambda o: click.echo(f"{o.result:>10}  {o.resource.kind} {o.resource.name}"
                                                     + (f"  ({o.detail})" if o.detail else "")))  # fmt: skip
    summary = ", ".join(f"{report.count(r)} {r}" for r in ("deleted", "kept", "left-alone", "absent"))
    if report.error:
        raise click.ClickException(f"{report.error}\n(so far: {summary})")
    click.echo(f"Destroyed: {summary}.")


@deploy_group.command("replay-dead-letter", short_help="Republish dead-lettered messages to their topics.")
@_ENV_OPTION
@_PROJECT_DIR
@click.option("--max", "max_messages", type=click.IntRange(1, 1_000_000), default=10_000, show_default=True)
@click.option("--dry-run", is_flag=True, help="Count what would be replayed; move nothing.")
def replay_command(env_file: Path, project_dir: Path, max_messages: int, dry_run: bool) -> None:
    """Republish dead-lettered Pub/Sub messages to their source topics (after fixing the cause)."""
    import os

    from google.api_core import exceptions as gexc
    from google.cloud import pubsub_v1

    from deploy.replay import replay

    env, sources, _ = _load(env_file, project_dir)
    if not os.environ.get("PUBSUB_EMULATOR_HOST"):
        _require_credentials()
    try:
        result = replay(env, sources, pubsub_v1.SubscriberClient(), pubsub_v1.PublisherClient(), max_messages, dry_run)
    except gexc.GoogleAPICallError as error:
        raise click.ClickException(f"replay from {env.prefix}-dead-letter-hold failed: {error}") from error
    click.echo(result.summary())


@click.command("trigger")
@click.option(
    "--target",
    type=click.Choice(["local", "gcp"]),
    default="local",
    show_default=True,
    help="local: the embedded engine; gcp: Dataform in the --env project.",
)
@click.option("--env", "env_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Environment config (needed for --target gcp).")  # fmt: skip
@_PROJECT_DIR
@click.option("--tags", "-t", multiple=True, help="Run actions with this tag (repeatable); none = all.")
@click.option("--full-refresh", is_flag=True, help="Rebuild incremental tables from scratch.")
@click.option("--no-deps", is_flag=True, help="Do not include the dependencies of the selected actions.")
@click.option("--include-dependents", is_flag=True, help="Also run everything downstream of the selected actions.")
@click.option("--commitish", help="Compile this branch, tag or commit instead of the release config (gcp).")
@click.option("--var", "variables", multiple=True, metavar="KEY=VALUE", help="Compilation var (repeatable).")
@click.option("--timeout", "timeout_s", type=float, help="Give up (and cancel) after this many seconds (gcp).")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
def trigger_command(target, env_file, project_dir, tags, full_refresh, no_deps, include_dependents, commitish,
                    variables, timeout_s, as_json) -> None:  # fmt: skip
    """Run the Dataform workflow and report every action; exit 1 when an error assertion or action failed.

    --target local runs the embedded engine on this machine; --target gcp compiles and invokes
    Dataform in the environment's project, exactly as the scheduled Cloud Function does.
    """
    from deploy import trigger

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    body = {"tags": list(tags), "include_dependencies": not no_deps, "include_dependents": include_dependents,
            "full_refresh": full_refresh}  # fmt: skip
    pairs = {}
    for item in variables:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--var")
        pairs[key] = value
    if pairs:
        body["vars"] = pairs
    if commitish:
        body["git_commitish"] = commitish
    if timeout_s:
        body["timeout_s"] = timeout_s
    try:
        request = trigger.TriggerRequest.from_json(body)
        if target == "local":
            report = trigger.run_local(project_dir, request)
            write_rows = trigger.local_writer(project_dir)
        else:
            report, write_rows = _trigger_gcp(env_file, project_dir, request)
    except (trigger.TriggerRequestError, trigger.TriggerSetupError) as error:
        raise click.ClickException(str(error)) from error
    trigger.publish(report, write_rows)
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else _render_report(report))
    if report.status != "success":
        raise SystemExit(1)


def _trigger_gcp(env_file: Path | None, project_dir: Path, request):
    from deploy import trigger
    from deploy.resources import ACTION_RUNS_TABLE

    if env_file is None:
        raise click.UsageError("--target gcp needs --env <environment config>")
    try:
        env = load_env(env_file, project_dir)
    except ConfigError as error:
        raise click.ClickException(f"invalid configuration:\n{error}") from error
    _require_credentials()
    repo = f"projects/{env.project}/locations/{env.region}/repositories/{env.dataform.repository}"
    target, write_rows = trigger.gcp_target_from_environment({
        "LAKEHOUSE_GCP_PROJECT": env.project,
        "LAKEHOUSE_DATAFORM_REPOSITORY": repo,
        "LAKEHOUSE_RELEASE_CONFIG": f"{repo}/releaseConfigs/{env.dataform.release_config}",
        "LAKEHOUSE_OPS_TABLE": f"{env.project}.{env.datasets['ops']}.{ACTION_RUNS_TABLE}",
        "LAKEHOUSE_DATAFORM_SERVICE_ACCOUNT": env.service_account_email("dataform"),
        "LAKEHOUSE_BIGQUERY_LOCATION": env.bigquery_location,
        "LAKEHOUSE_ENVIRONMENT": env.environment,
        "LAKEHOUSE_TRIGGER_TIMEOUT_S": str(env.trigger_timeout_s),
    })  # fmt: skip
    from google.api_core.exceptions import GoogleAPICallError

    try:
        return target.run(request), write_rows
    except GoogleAPICallError as error:
        raise click.ClickException(trigger.api_failure(error)["error"]) from error


def _render_report(report) -> str:
    lines = []
    for a in report.actions:
        extra = f" failing_rows={a.failing_rows}" if a.failing_rows is not None else ""
        severity = f" [{a.severity}]" if a.severity else ""
        lines.append(f"{a.status:>9}  {a.type:<11} {a.name}{severity}{extra}")
        if a.error and a.status == "failed":
            lines.append(f"           {a.error.splitlines()[0][:200]}")
    lines += [f"           compilation error: {e}" for e in report.compilation_errors]
    lines += [f"           lookup failed: {e}" for e in report.lookup_errors]
    lines.append(report.summary())
    return "\n".join(lines)
