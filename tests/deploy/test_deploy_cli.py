"""`lakehouse deploy ...` and `lakehouse trigger` from the command line: clear messages, no tracebacks."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from lakehouse.cli import main

REPO = Path(__file__).resolve().parents[2]
NO_CREDENTIALS = {"GOOGLE_APPLICATION_CREDENTIALS": "", "CLOUDSDK_CONFIG": "/nonexistent", "K_SERVICE": "",
                  "GCE_METADATA_HOST": ""}  # fmt: skip


def invoke(*args):
    return CliRunner().invoke(main, list(args), env=NO_CREDENTIALS)


def test_plan_offline_prints_the_full_desired_state_fast(write_env, project_dir):
    env_file = write_env()
    result = invoke("deploy", "plan", "--env", str(env_file), "--project-dir", str(project_dir))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Plan for environment 'dev': project lakehouse-test-1, region us-central1, BigQuery location US"
    assert lines[1] == f"Config: {env_file}   Sources (includes/contracts): orders, page_views"
    assert lines[2].startswith("Current state NOT read: no Google Cloud credentials found")
    assert "+ create    bucket               lh-test-landing [holds data]" in lines
    job = "projects/lakehouse-test-1/locations/us-central1/jobs/lh-test-generator"
    assert f"+ create    scheduler_job        {job}" in lines
    # + 9 alerting resources and 4 for the PII key; no Dataplex: these stand-in contracts have no fields
    assert "Plan: 90 to create, 0 to update, 0 unchanged, 0 blocked (90 resources). Nothing was changed." in lines


def test_plan_of_the_sample_config_as_a_user_runs_it(tmp_path):
    """The real command in a subprocess: no credentials, offline, well under a few seconds."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/nonexistent",
        "LAKEHOUSE_HOME": str(tmp_path),
    }
    started = time.perf_counter()
    command = [str(Path(sys.executable).parent / "lakehouse"), "deploy", "plan", "--brief"]
    command += ["--env", "config/environments/dev.yaml"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=60)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert "Current state NOT read: no Google Cloud credentials found" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("Plan: ")
    assert elapsed < 10


def test_invalid_config_is_a_clear_error_without_traceback(write_env, project_dir):
    result = invoke("deploy", "plan", "--env", str(write_env(region="moon-1")), "--project-dir", str(project_dir))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "Error: invalid configuration:" in result.output
    assert "field 'region': 'moon-1' is not valid" in result.output


def test_apply_refuses_without_credentials_before_any_call(write_env, project_dir, monkeypatch):
    monkeypatch.setenv("TEST_PII_SALT", "x")
    result = CliRunner().invoke(
        main, ["deploy", "apply", "--env", str(write_env()), "--project-dir", str(project_dir), "--yes"],
        env={**NO_CREDENTIALS, "TEST_PII_SALT": "x"},
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot reach Google Cloud: no Google Cloud credentials found")


def test_apply_names_an_unset_secret_first(write_env, project_dir, monkeypatch):
    monkeypatch.delenv("TEST_PII_SALT", raising=False)
    result = invoke("deploy", "apply", "--env", str(write_env()), "--project-dir", str(project_dir), "--yes")
    assert result.exit_code == 1
    assert "field 'dataform.vars.api_token': environment variable TEST_PII_SALT is not set" in result.output


def test_destroy_refuses_without_credentials(write_env, project_dir):
    result = invoke("deploy", "destroy", "--env", str(write_env()), "--project-dir", str(project_dir), "--yes")
    assert result.exit_code == 1
    assert "cannot reach Google Cloud" in result.output


def test_trigger_bad_input(project_dir):
    result = invoke("trigger", "--target", "gcp", "--project-dir", str(project_dir))
    assert result.exit_code == 2 and "--target gcp needs --env" in result.output
    result = invoke("trigger", "--var", "novalue", "--project-dir", str(project_dir))
    assert result.exit_code == 2 and "'novalue' is not KEY=VALUE" in result.output
    result = invoke("trigger", "--tags", "bad tag", "--project-dir", str(project_dir))
    assert result.exit_code == 1 and "field 'tags' must be a list of tag names" in result.output


def test_help_lists_the_commands():
    result = invoke("--help")
    assert "deploy    Plan, apply or destroy the GCP deployment of an environment config." in result.output
    assert "trigger   Run the Dataform workflow (local or GCP) and report assertions." in result.output
    assert "destroy" in invoke("deploy", "--help").output


@pytest.fixture
def with_cloud(monkeypatch, project_dir):
    """Credentials 'exist' and the CLI's clients are in-memory fakes of the real types."""
    from deploy_fakes import FakeCloud

    from deploy import cli, plan
    from deploy.handlers import handlers

    cloud = FakeCloud()
    monkeypatch.setattr(plan, "credentials_status", lambda environ=None: (True, ""))
    monkeypatch.setattr(cli, "_clients", lambda env: (cloud.clients(), handlers(project_dir)))
    monkeypatch.setenv("TEST_PII_SALT", "pepper")
    monkeypatch.setenv("LAKEHOUSE_ALERT_EMAIL", "data-oncall@example.com")  # the alert channel's address
    return cloud


def test_apply_plan_destroy_through_the_cli(with_cloud, write_env, project_dir):
    args = ["--env", str(write_env()), "--project-dir", str(project_dir)]
    runner = CliRunner()
    applied = runner.invoke(main, ["deploy", "apply", *args, "--yes"])
    assert applied.exit_code == 0, applied.output
    assert "  created  bucket lh-test-landing" in applied.output
    assert applied.output.splitlines()[-1] == "Applied: 90 created, 0 updated, 0 unchanged."
    planned = runner.invoke(main, ["deploy", "plan", *args])
    assert "Current state NOT read" not in planned.output
    assert "= unchanged iam_binding          roles/run.invoker for serviceAccount:lh-dev-scheduler" in planned.output
    assert "Plan: 0 to create, 0 to update, 90 unchanged, 0 blocked (90 resources). Nothing was changed." in (
        planned.output
    )
    again = runner.invoke(main, ["deploy", "apply", *args, "--yes"])
    assert again.output.splitlines()[-1] == "Nothing to do."
    destroyed = runner.invoke(main, ["deploy", "destroy", *args, "--yes"])
    assert destroyed.exit_code == 0, destroyed.output
    assert destroyed.output.splitlines()[-1] == "Destroyed: 75 deleted, 15 kept, 0 left-alone, 0 absent."
    assert "      kept  bucket lh-test-landing  (holds data; pass --include-data to delete it)" in destroyed.output


def test_apply_failure_exits_1_with_what_to_do(with_cloud, write_env, project_dir):
    from google.api_core import exceptions as gexc

    with_cloud.fail["create_topic"] = gexc.ResourceExhausted("Quota exceeded for topics per project")
    result = CliRunner().invoke(
        main, ["deploy", "apply", "--env", str(write_env()), "--project-dir", str(project_dir), "--yes"]
    )
    assert result.exit_code == 1
    assert "Error: create topic projects/lakehouse-test-1/topics/lh-test-orders failed: ResourceExhausted" in (
        result.output
    )
    assert (
        "what to do: a quota or rate limit was hit: wait a minute or request more quota for pubsub.googleapis.com"
        in (result.output)
    )
    assert "(so far: 55 created, 0 updated, 0 unchanged)" in result.output


def test_plan_falls_back_to_the_desired_state_when_reading_fails(with_cloud, write_env, project_dir):
    from google.api_core import exceptions as gexc

    with_cloud.fail["get_service_account"] = gexc.PermissionDenied("iam.serviceAccounts.get denied")
    result = CliRunner().invoke(main, ["deploy", "plan", "--env", str(write_env()), "--project-dir", str(project_dir)])
    assert result.exit_code == 0
    assert (
        "Current state NOT read: reading it failed (PermissionDenied: 403 iam.serviceAccounts.get denied). "
        "Showing the full desired state" in result.output
    )


def _plan_json(runner, args, tmp_path, name="plan.json"):
    import json

    result = runner.invoke(main, ["deploy", "plan", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    path = tmp_path / name
    path.write_text(result.stdout)
    return path, json.loads(result.stdout)


def test_plan_json_is_machine_readable_and_masks_secrets(with_cloud, write_env, project_dir, tmp_path):
    args = ["--env", str(write_env()), "--project-dir", str(project_dir)]
    _, plan = _plan_json(CliRunner(), args, tmp_path)
    header = (plan["format"], plan["environment"], plan["project"], plan["state_read"])
    assert header == (1, "dev", "lakehouse-test-1", True)
    assert plan["totals"] == {"create": 90, "update": 0, "unchanged": 0, "blocked": 0, "delete": 0}
    release = next(c for c in plan["changes"] if c["kind"] == "release_config")
    assert release["spec"]["vars"]["api_token"] == "***" and release["current"] is None
    assert "pepper" not in (tmp_path / "plan.json").read_text()
    function = next(c for c in plan["changes"] if c["name"].endswith("functions/lh-test-trigger"))
    assert (function["action"], function["spec"]["ingress"]) == ("create", "ALLOW_INTERNAL_ONLY")


def test_apply_plan_applies_a_saved_plan_and_refuses_once_live_state_moved(with_cloud, write_env, project_dir,
                                                                          tmp_path):  # fmt: skip
    from google.cloud import storage

    args = ["--env", str(write_env()), "--project-dir", str(project_dir)]
    runner = CliRunner()
    first, _ = _plan_json(runner, args, tmp_path, "first.json")
    applied = runner.invoke(main, ["deploy", "apply", *args, "--plan", str(first)])
    assert applied.exit_code == 0, applied.output
    assert applied.output.splitlines()[-1] == "Applied: 90 created, 0 updated, 0 unchanged."
    # Applied once, the same saved plan no longer matches the live state.
    again = runner.invoke(main, ["deploy", "apply", *args, "--plan", str(first)])
    assert again.exit_code == 1
    assert "the saved plan no longer applies; nothing was changed:" in again.output
    assert "  bucket lh-test-landing: live state moved since the plan (create -> unchanged)" in again.output

    with_cloud.buckets["lh-test-landing"]["labels"]["added-by-hand"] = "x"
    second, saved = _plan_json(runner, args, tmp_path, "second.json")
    assert [c["name"] for c in saved["changes"] if c["action"] == "update"] == ["lh-test-landing"]
    with_cloud.buckets["lh-test-dead-letter"]["storageClass"] = storage.constants.NEARLINE_STORAGE_CLASS
    with_cloud.calls.clear()
    refused = runner.invoke(main, ["deploy", "apply", *args, "--plan", str(second)])
    assert refused.exit_code == 1
    assert "  bucket lh-test-dead-letter: live state moved since the plan (unchanged -> update)" in refused.output
    assert [name for name in with_cloud.writes() if name not in ("create_lock", "delete_lock")] == []


def test_apply_takes_the_lock_and_refuses_while_another_holds_it(with_cloud, write_env, project_dir):
    args = ["--env", str(write_env()), "--project-dir", str(project_dir), "--yes"]
    runner = CliRunner()
    first = runner.invoke(main, ["deploy", "apply", *args])
    assert "no apply lock: bucket lh-test-functions that holds it does not exist yet (first apply)" in first.output
    with_cloud.buckets["lh-test-landing"]["labels"]["added-by-hand"] = "x"
    lock = ("lh-test-functions", "lakehouse-deploy.lock")
    with_cloud.objects[lock] = b'{"holder": "ana@build-7 pid 42", "since": "2026-11-30T04:00:00+00:00"}'
    held = runner.invoke(main, ["deploy", "apply", *args])
    assert held.exit_code == 1
    assert held.output.strip() == (
        "Error: another apply holds the lock gs://lh-test-functions/lakehouse-deploy.lock (ana@build-7 pid 42 since "
        "2026-11-30T04:00:00+00:00). Wait for it to finish; if no apply is running (it was killed), re-run with "
        "--break-lock"
    )
    assert "added-by-hand" in with_cloud.buckets["lh-test-landing"]["labels"]
    with_cloud.calls.clear()
    broken = runner.invoke(main, ["deploy", "apply", *args, "--break-lock"])
    assert broken.exit_code == 0, broken.output
    assert "added-by-hand" not in with_cloud.buckets["lh-test-landing"]["labels"]
    assert lock not in with_cloud.objects  # released after the apply
    writes = with_cloud.writes()
    assert writes[:2] == ["delete_lock", "create_lock"] and writes[-1] == "delete_lock"
    assert "patch_bucket" in writes[2:-1]


def test_the_trigger_report_shows_failed_lookups():
    import datetime as dt

    from deploy import trigger
    from deploy.cli import _render_report

    report = trigger.TriggerReport("r1", "gcp", "dev", dt.datetime(2026, 11, 22, tzinfo=dt.UTC), status="failed")
    report.actions = [trigger.ActionReport("p.assertions.a", "assertion", "failed", "error", error="3 rows")]
    report.lookup_errors = ["failing rows of p.assertions.a not read: Forbidden: 403 Access Denied"]
    assert _render_report(report).splitlines() == [
        "   failed  assertion   p.assertions.a [error]",
        "           3 rows",
        "           lookup failed: failing rows of p.assertions.a not read: Forbidden: 403 Access Denied",
        "run r1 (gcp) failed: 1 actions; failed error assertions: p.assertions.a; 1 lookups failed",
    ]
