"""Environment config validation: every bad field is named, before any API call."""

from __future__ import annotations

import pytest
from deploy_fakes import BASE_ENV, REPO

from deploy import naming
from deploy.config import ConfigError, display_var, load_env, salt_problem


def problems(path, project_dir=None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_env(path, project_dir or path.parent)
    return caught.value.problems


def test_valid_config_derives_defaults(write_env):
    env = load_env(write_env(), write_env().parent)
    assert env.project == "lakehouse-test-1"
    assert env.datasets == {
        "bronze": "bronze",
        "silver": "silver",
        "silver_restricted": "silver_restricted",
        "gold": "gold",
        "assertions": "assertions",
        "ops": "ops",
    }
    assert env.service_accounts["pubsub_writer"] == "lh-dev-pubsub-writer"
    assert env.service_account_email("trigger") == "lh-dev-trigger@lakehouse-test-1.iam.gserviceaccount.com"
    assert env.dataform.release_config == "dev"
    assert env.dataform.default_branch == "main"
    assert env.generator_cron == "*/2 * * * *"
    assert [(w.name, w.cron, w.tags, w.include_dependencies) for w in env.workflows] == [
        ("hourly", "5 * * * *", ("hourly",), True)
    ]
    assert env.functions["trigger"].entry_point == "deploy.function:workflow_trigger"
    assert env.functions["trigger"].timeout_s == 3600


def test_sample_configs_of_the_repository_load():
    for name in ("dev", "prod"):
        env = load_env(REPO / "config" / "environments" / f"{name}.yaml", REPO)
        assert env.environment == name
        assert env.pii_salt == "${env:LAKEHOUSE_PII_SALT}" and "pii_salt" not in env.dataform.vars


def test_missing_fields_are_each_named(write_env):
    found = problems(write_env(project=None, region=None))
    assert "field 'project' is missing" in found
    assert "field 'region' is missing" in found


def test_time_zone_must_exist(write_env):
    assert problems(write_env(time_zone="Mars/Olympus")) == [
        "field 'time_zone': 'Mars/Olympus' is not valid (not an IANA time zone such as Etc/UTC or Europe/Paris)"
    ]


def test_unknown_region_and_location(write_env):
    found = problems(write_env(region="us-middle9", bigquery_location="ASIA"))
    assert found == [
        "field 'region': 'us-middle9' is not valid (unknown region; use one where Cloud Functions, "
        "Scheduler and Dataform run, e.g. us-central1)",
        "field 'bigquery_location': 'ASIA' is not valid (unknown BigQuery location; use US, EU or a "
        "region such as europe-west1)",
    ]


def test_gcp_naming_rules(write_env):
    found = problems(
        write_env(
            project="My_Project",
            buckets={**BASE_ENV["buckets"], "landing": "goog-landing", "lake": "my.lake.bucket"},
            datasets={"silver": "silver-layer"},
            service_accounts={"trigger": "trg"},
        )
    )
    text = "\n".join(found)
    assert "field 'project': 'My_Project' is not valid (a project id has 6-30 characters" in text
    assert "field 'buckets.landing': 'goog-landing' is not valid (a bucket name cannot start with 'goog'" in text
    assert "field 'buckets.lake': 'my.lake.bucket' is not valid (bucket names with dots need a verified" in text
    assert "field 'datasets.silver': 'silver-layer' is not valid (a dataset id has 1-1024 characters" in text
    assert "field 'service_accounts.trigger': 'trg' is not valid (a service account id has 6-30" in text
    assert len(found) == 5


def test_malformed_values(write_env, tmp_path):
    found = problems(
        write_env(
            labels={"Team": "x"},
            schedules={
                "generator": "every two minutes",
                "workflows": [{"name": "Hourly", "cron": "5 * * * *"}],
            },
            pubsub={"max_delivery_attempts": 2},
            dataform={
                **BASE_ENV["dataform"],
                "git_remote": "git@github.com:x/y.git",
                "token_secret_version": "tok",
            },
        )
    )
    assert found == [
        "field 'labels.Team': label key 'Team': 1-63 lower-case letters, digits, '-' or '_', starting with a letter",
        "field 'dataform.git_remote': 'git@github.com:x/y.git' is not valid (the git remote must be an https:// URL)",
        "field 'dataform.token_secret_version': 'tok' is not valid "
        "(expected projects/<project>/secrets/<name>/versions/<version>)",
        "field 'schedules.generator': 'every two minutes' is not a five-field cron expression",
        "field 'schedules.workflows[0].name': 'Hourly' must be lower-case letters, digits and hyphens (2-49)",
        "field 'pubsub.max_delivery_attempts' must be an integer from 5 to 100, got 2",
    ]


def test_unknown_fields_and_duplicate_names(write_env):
    found = problems(
        write_env(
            projet="typo",
            buckets={**BASE_ENV["buckets"], "lake": "lh-test-landing", "archive": "lh-archive"},
        )
    )
    assert found[0].startswith("field 'projet' is not a known field (known: analysts, bigquery_location, buckets,")
    assert (
        "field 'buckets.archive' is not a known bucket (known: landing, dead_letter, lake, functions_source)" in found
    )
    assert "field 'buckets': every bucket needs its own name" in found


def test_a_dataset_named_like_another_or_like_the_salts_is_refused(write_env):
    """gold named silver_restricted, or keys, would grant analysts the raw records, or the salt."""
    assert problems(write_env(datasets={"gold": "silver_restricted"})) == [
        "field 'datasets': every dataset needs its own name"
    ]
    assert problems(write_env(datasets={"gold": "keys"})) == [
        "field 'datasets.gold': 'keys' is the PII salt's dataset; pick another name"
    ]


def test_vars_naming_deployed_resources_are_derived_not_configured(write_env):
    dataform = {**BASE_ENV["dataform"], "vars": {"landing_bucket": "elsewhere"}}
    assert problems(write_env(dataform=dataform)) == [
        "field 'dataform.vars.landing_bucket' is derived from the deployed resources (buckets.landing); remove it"
    ]


def test_message_names_the_file(write_env):
    path = write_env(region="mars-north1")
    with pytest.raises(ConfigError) as caught:
        load_env(path, path.parent)
    assert str(caught.value).startswith(f"{path}: field 'region': 'mars-north1' is not valid")


def test_not_yaml_and_not_a_mapping(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("project: [unclosed")
    assert problems(bad)[0].startswith("not valid YAML:")
    bad.write_text("- a list\n")
    assert problems(bad) == ["expected a mapping of fields at the top level"]
    assert problems(tmp_path / "absent.yaml") == ["file not found"]


def test_trigger_timeout_must_fit_in_the_function_timeout(write_env):
    found = problems(write_env(trigger={"timeout_s": 3000}, functions={"trigger": {"timeout_s": 600}}))
    assert found == [
        "field 'trigger.timeout_s' must be shorter than 'functions.trigger.timeout_s' so the trigger reports "
        "a timeout before the function is killed"
    ]


def test_env_references_resolve_at_apply_time(write_env, monkeypatch):
    env = load_env(write_env(), write_env().parent)
    monkeypatch.delenv("TEST_PII_SALT", raising=False)
    with pytest.raises(ConfigError) as caught:
        env.resolved_vars()
    assert caught.value.problems == [
        "field 'dataform.vars.api_token': environment variable TEST_PII_SALT is not set "
        "(export it before apply; it is read at deploy time and never committed)"
    ]
    monkeypatch.setenv("TEST_PII_SALT", "s3cret")
    assert env.resolved_vars() == {"api_token": "s3cret", "lookback_days": "3"}


def test_secret_vars_are_masked_for_display():
    assert display_var("api_token", "s3cret") == "***"
    assert display_var("api_token", "${env:X}") == "${env:X}"
    assert display_var("lookback_days", "3") == "3"


def test_shared_schedule_file_is_used_when_the_env_has_none(write_env, tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "schedules.yaml").write_text(
        "generator:\n  cron: '*/5 * * * *'\nworkflows:\n  - {name: daily, cron: '0 3 * * *', tags: [daily]}\n"
    )
    env = load_env(write_env(schedules=None), tmp_path)
    assert env.generator_cron == "*/5 * * * *"
    assert [(w.name, w.tags) for w in env.workflows] == [("daily", ("daily",))]


@pytest.mark.parametrize(
    ("rule", "good", "bad"),
    [
        (naming.project_id_problem, "my-project-42", "my-google-project"),
        (naming.bucket_problem, "a_b-c", "192-168-1-1"),
        (naming.pubsub_problem, "lh-orders", "goog-orders"),
        (naming.function_problem, "lakehouse-dev-trigger", "x" * 50),
        (naming.service_account_problem, "lh-dev-landing", "lh-dev-landing-"),
    ],
)
def test_naming_rules(rule, good, bad):
    assert rule(good) is None
    assert rule(bad) is not None


def test_the_salt_is_no_compilation_var(write_env, project_dir):
    path = write_env(dataform={**BASE_ENV["dataform"], "vars": {"pii_salt": "${env:LAKEHOUSE_PII_SALT}"}})
    with pytest.raises(ConfigError, match="field 'dataform.vars.pii_salt': the salt is no longer a compilation var"):
        load_env(path, project_dir)
    with pytest.raises(ConfigError, match=r"field 'pii_salt' must be \$\{env:NAME\}"):
        load_env(write_env(pii_salt="a-committed-salt"), project_dir)


@pytest.mark.parametrize("days", ["89", "90"])
def test_lookback_must_stay_below_the_nearline_age(write_env, project_dir, days):
    path = write_env(dataform={**BASE_ENV["dataform"], "vars": {"lookback_days": days}})
    if days == "89":
        assert load_env(path, project_dir).dataform.vars["lookback_days"] == "89"
        return
    with pytest.raises(ConfigError, match="'dataform.vars.lookback_days' must be an integer below 90, the age at"):
        load_env(path, project_dir)


@pytest.mark.parametrize(
    ("salt", "problem"),
    [
        ("local-dev-salt-change-me", "is the salt once committed to workflow_settings.yaml"),
        ("demo-" + "0" * 32, "is a demo salt made by `lakehouse run`"),
        ("pepper", "is 6 characters; use at least 32 random ones"),
        ("0f3c9a7e5b1d24680ace13579bdf02468ace13579bdf0246", None),
    ],
)
def test_public_demo_and_short_salts_are_refused(salt, problem):
    found = salt_problem(salt)
    assert found is None if problem is None else found.startswith(problem)


def test_analysts_are_people_groups_or_domains(write_env):
    env = load_env(write_env(analysts=["group:bi@example.com", "domain:example.com", "group:bi@example.com"]))
    assert env.analysts == ("group:bi@example.com", "domain:example.com")
    bad = problems(write_env(analysts=["allUsers", "group:bi", 3, "allAuthenticatedUsers"]))
    assert bad == [
        f"field 'analysts[{i}]': {member!r} must be user:, group:, serviceAccount: (an e-mail) or domain: "
        "(a domain); public members are refused"
        for i, member in enumerate(["allUsers", "group:bi", 3, "allAuthenticatedUsers"])
    ]
    assert problems(write_env(analysts="group:bi@example.com")) == [
        "field 'analysts' must be a list of IAM members (group:analysts@example.com)"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"x1: &a1 [1, 1, 1]\nx2: &a2 [*a1, *a1, *a1]\nproject: *a2\n", "YAML aliases (*name) are not accepted"),
        (b"project: caf\xe9\n", "not UTF-8 text (byte 12)"),
        (b"project: p\ntrigger:\n  timeout_s: " + b"9" * 5000 + b"\n", "not a usable config: Exceeds the limit"),
    ],
)
def test_a_file_that_cannot_be_a_config_is_named_not_a_traceback(tmp_path, text, message):
    path = tmp_path / "env.yaml"
    path.write_bytes(text)

    with pytest.raises(ConfigError) as caught:
        load_env(path, tmp_path)

    assert message in str(caught.value)


def test_a_name_with_a_trailing_newline_is_not_a_name(write_env):
    found = problems(write_env(project="lh-test-project\n", analysts=["domain:example.com\n"]))

    assert any(p.startswith("field 'project'") for p in found)
    assert any("analysts" in p for p in found)


def test_a_duplicate_key_a_cron_that_never_fires_and_a_workflow_named_check_are_refused(write_env, tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("project: a-project-1\nproject: b-project-2\n")
    with pytest.raises(ConfigError, match="key 'project' is given twice"):
        load_env(path, tmp_path)
    workflows = [{"name": "check", "cron": "0 * * * *", "tags": ["hourly"]},
                 {"name": "leap", "cron": "0 0 31 2 *", "tags": ["daily"]}]  # fmt: skip
    found = problems(write_env(schedules={**BASE_ENV["schedules"], "workflows": workflows}))
    assert "field 'schedules.workflows[0].name': 'check' is the trigger's own job; pick another name" in found
    assert "field 'schedules.workflows[1].cron': '0 0 31 2 *' never fires (no such date)" in found


def test_a_typo_under_schedules_is_named_not_ignored(write_env):
    workflows = BASE_ENV["schedules"]["workflows"]

    assert problems(write_env(schedules={"generator": "*/2 * * * *", "workfows": workflows})) == [
        "field 'schedules.workfows' is not a known field (known: generator, workflows)"
    ]
