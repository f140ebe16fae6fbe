"""The functions' source archive of this repository imports and serves, as Cloud Functions would run it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile

import pytest
from deploy_fakes import REPO

from deploy.archive import build_archive
from deploy.config import DEFAULT_ENTRY_POINTS

SERVE = """
import json, sys
import functions_framework
kinds = json.loads(sys.argv[1])
for name, kind in kinds.items():
    app = functions_framework.create_app(target=name, source="main.py", signature_type=kind)
    assert app is not None, name
client = functions_framework.create_app(target="workflow_trigger", source="main.py").test_client()
response = client.post("/", json={"tags": ["hourly"]})
import deploy.function, ingest.main
files = [deploy.function.__file__, ingest.main.__file__]
print(json.dumps({"status": response.status_code, "body": response.get_json(), "files": files}))
"""


@pytest.mark.slow  # a fresh interpreter imports every function's code from the unzipped archive
def test_the_archive_of_this_repository_serves_every_entry_point(tmp_path):
    sha, data = build_archive(REPO, DEFAULT_ENTRY_POINTS)
    zipfile.ZipFile(io.BytesIO(data)).extractall(tmp_path)
    kinds = {"land_http": "http", "generate_http": "http", "on_object_finalized": "cloudevent",
             "workflow_trigger": "http"}  # fmt: skip
    assert {ep.split(":")[1] for ep in DEFAULT_ENTRY_POINTS.values()} == set(kinds)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env["PYTHONPATH"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", SERVE, json.dumps(kinds)], cwd=tmp_path, capture_output=True, text=True, env=env,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(path.startswith(str(tmp_path)) for path in answer["files"]), answer["files"]
    assert answer["status"] == 500
    assert answer["body"]["error"].startswith("missing environment variables: LAKEHOUSE_GCP_PROJECT")
