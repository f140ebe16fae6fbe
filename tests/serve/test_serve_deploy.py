"""The gold API in the deploy plan: Cloud Run service, read-on-gold service account, scaling."""

from __future__ import annotations

from google.cloud import run_v2

from deploy import serving
from deploy.config import load_env
from deploy.handlers import handlers
from deploy.plan import make_plan, render
from deploy.resources import desired_state, discover_sources
from serve.conftest import REPO

ENVIRON = {"LAKEHOUSE_SERVE_IMAGE": "us-docker.pkg.dev/acme/lakehouse/gold-api:1", "LAKEHOUSE_API_KEYS_SECRET": "x"}


def env():
    return load_env(REPO / "config" / "environments" / "dev.yaml", REPO)


def test_no_image_named_no_api_deployed():
    assert serving.resources(env(), {}) == []


def test_the_api_reads_gold_only_and_scales_from_zero():
    config = env()
    account, job_user, gold_reader, service = serving.resources(config, ENVIRON)
    email = serving.service_account_email(config)
    assert account.spec["account_id"] == f"{config.prefix}-serving"
    member = f"serviceAccount:{email}"
    grants = [(b.spec["scope"], b.spec["resource"], b.spec["role"], b.spec["member"]) for b in (job_user, gold_reader)]
    assert grants == [
        ("project", f"projects/{config.project}", "roles/bigquery.jobUser", member),
        ("dataset", f"{config.project}.{config.datasets['gold']}", "roles/bigquery.dataViewer", member),
    ]
    assert service.kind == "cloud_run_service"
    assert service.name == f"projects/{config.project}/locations/{config.region}/services/{config.prefix}-gold-api"
    assert (service.spec["min_instances"], service.spec["max_instances"], service.spec["concurrency"]) == (0, 4, 80)
    assert service.spec["args"][:3] == ["serve", "--backend", "bigquery"]
    assert "cloud_run_service" in handlers(REPO)


def test_the_plan_lists_the_service_with_its_scaling(monkeypatch):
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    config = env()
    resources = desired_state(config, discover_sources(REPO))
    text = render(make_plan(config, discover_sources(REPO), resources, REPO, why_not_read="offline"))
    name = f"projects/{config.project}/locations/{config.region}/services/{config.prefix}-gold-api"
    assert f"+ create    cloud_run_service    {name}" in text
    assert "      max_instances: 4" in text
    assert "      image: us-docker.pkg.dev/acme/lakehouse/gold-api:1" in text


def test_the_service_request_takes_keys_from_secret_manager():
    config = env()
    service = serving.resources(config, ENVIRON)[-1]
    spec = {**service.spec, "image": ENVIRON["LAKEHOUSE_SERVE_IMAGE"], "api_keys_secret": "gold-api-keys"}
    built = serving.build_service(service, spec)
    container = built.template.containers[0]
    keys = [e for e in container.env if e.name == "LAKEHOUSE_API_KEYS"][0]
    assert keys.value == "" and keys.value_source.secret_key_ref.secret == "gold-api-keys"
    assert built.template.scaling.max_instance_count == 4
    assert built.template.service_account == serving.service_account_email(config)
    assert container.startup_probe.http_get.path == "/ready"
    assert built.ingress == run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL
    assert serving.observe_service(built).spec == spec
