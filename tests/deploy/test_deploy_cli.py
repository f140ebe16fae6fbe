"""`lakehouse deploy ...` and `lakehouse trigger` from the command line: clear messages, no tracebacks."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

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
    assert "Plan: 70 to create, 0 to update, 0 unchanged, 0 blocked (70 resources). Nothing was changed." in lines


def test_plan_of_the_sample_config_as_a_user_runs_it():
    """The real command in a subprocess: no credentials, offline, well under a few seconds."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/nonexistent",
        "LAKEHOUSE_HOME": "/tmp/lakehouse-deploy-test-home",
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
    assert "field 'dataform.vars.pii_salt': environment variable TEST_PII_SALT is not set" in result.output


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
