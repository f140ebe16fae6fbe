"""Compiling with the pinned Dataform CLI: errors, vars and the content-keyed cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from lakehouse.commands import compile_command
from lakehouse.engine.compile import CompileError, compile_project, parse_vars

TABLE = {
    "definitions/a.sqlx": """
        config { type: "table" }
        select "${dataform.projectConfig.vars.colour}" as colour
    """
}


def test_compile_returns_the_graph_with_vars(make_project):
    project = make_project(TABLE, vars={"colour": "red"})

    compiled = compile_project(project, vars={"colour": "blue"})

    assert compiled.cached is False
    (table,) = compiled.graph["tables"]
    assert table["target"] == {"database": "test-local", "schema": "silver", "name": "a"}
    assert '"blue" as colour' in table["query"]


def test_unchanged_definitions_come_from_the_cache_and_a_change_recompiles(make_project):
    project = make_project(TABLE, vars={"colour": "red"})
    first = compile_project(project)

    again = compile_project(project)
    assert (again.cached, again.key) == (True, first.key)
    assert again.graph == first.graph

    other_vars = compile_project(project, vars={"colour": "green"})
    assert other_vars.cached is False

    (project / "definitions" / "a.sqlx").write_text('config { type: "view" }\nselect 1 as one\n')
    changed = compile_project(project)
    assert changed.cached is False
    assert changed.graph["tables"][0]["type"] == "view"


def test_a_compile_leaves_no_scratch_and_removes_what_killed_compiles_left(make_project, lakehouse_home):
    project = make_project(TABLE, vars={"colour": "red"})
    scratch = lakehouse_home / "tmp" / "compile"
    scratch.mkdir(parents=True)
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = scratch / f"{int(ended.stdout)}-abc123"  # a compile killed before it removed its directory
    (killed / "tmp-1-x").mkdir(parents=True)
    running = scratch / f"{os.getpid()}-def456"  # one of a compile still running
    running.mkdir()

    compile_project(project)
    assert sorted(scratch.iterdir()) == [running]

    killed.mkdir()
    assert compile_project(project).cached  # a compile from the cache removes them too
    assert sorted(scratch.iterdir()) == [running]


def test_compile_errors_name_the_file(make_project):
    project = make_project({"definitions/bad.sqlx": 'config { type: "table" }\nselect * from ${ref("missing")}\n'})

    with pytest.raises(CompileError) as caught:
        compile_project(project)

    assert any(file == "definitions/bad.sqlx" and "missing" in message for file, message in caught.value.errors)


def test_cli_prints_file_colon_message_and_exits_1(make_project):
    project = make_project({"definitions/bad.sqlx": 'config { type: "table" \nselect 1\n'})

    result = CliRunner().invoke(compile_command, ["--project-dir", str(project)])

    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith("definitions/bad.sqlx: ")
    assert "Traceback" not in result.output


def test_not_a_dataform_project_is_named(tmp_path, lakehouse_home):
    with pytest.raises(CompileError, match="not a Dataform project"):
        compile_project(tmp_path)


def test_project_pinning_the_kits_core_compiles_without_its_own_node_modules(make_project):
    project = make_project(TABLE, vars={"colour": "red"})
    shutil.rmtree(project / "node_modules")

    compiled = compile_project(project)

    assert compiled.graph["tables"][0]["fileName"] == "definitions/a.sqlx"
    assert '"red" as colour' in compiled.graph["tables"][0]["query"]
    assert not (project / "node_modules").exists()


def test_symlinked_node_modules_is_staged_instead_of_refused(make_project, tmp_path):
    project = make_project(TABLE, vars={"colour": "red"})
    elsewhere = tmp_path / "elsewhere"
    shutil.move(project / "node_modules", elsewhere)
    (project / "node_modules").symlink_to(elsewhere)

    compiled = compile_project(project)

    assert '"red" as colour' in compiled.graph["tables"][0]["query"]


def test_workflow_settings_core_version_of_the_kit_compiles_offline(make_project):
    project = make_project(TABLE, vars={"colour": "red"})
    shutil.rmtree(project / "node_modules")
    (project / "package.json").unlink()
    settings = json.loads((project / "workflow_settings.yaml").read_text())
    (project / "workflow_settings.yaml").write_text(json.dumps({**settings, "dataformCoreVersion": "3.0.62"}))

    compiled = compile_project(project)

    assert compiled.graph["dataformCoreVersion"] == "3.0.62"


def _without_node_modules(project, **package):
    shutil.rmtree(project / "node_modules")
    (project / "package.json").write_text(json.dumps(package))
    return project


def test_a_range_the_kits_core_satisfies_compiles_offline_without_a_warning(make_project):
    project = _without_node_modules(
        make_project(TABLE, vars={"colour": "red"}), dependencies={"@dataform/core": "^3.0.61"}
    )

    compiled = compile_project(project)

    assert compiled.warnings == ()
    assert compiled.graph["dataformCoreVersion"] == "3.0.62"


def test_a_core_that_cannot_be_installed_compiles_with_the_kits_core_and_says_so(make_project, monkeypatch):
    # An unreachable registry stands for an offline laptop; npm gives up at once.
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")
    monkeypatch.setenv("npm_config_fetch_retries", "0")
    monkeypatch.setenv("npm_config_cache", str(project_cache := make_project(TABLE).parent / "npm-cache"))
    project = _without_node_modules(
        make_project(TABLE, vars={"colour": "red"}), dependencies={"@dataform/core": "3.0.1"}
    )

    compiled = compile_project(project)

    (warning,) = compiled.warnings
    assert warning.startswith("@dataform/core 3.0.1 could not be installed (")
    assert warning.endswith("compiled with the kit's @dataform/core 3.0.62 instead")
    assert '"red" as colour' in compiled.graph["tables"][0]["query"]
    assert project_cache.is_dir()


def test_root_index_js_and_json_includes_are_staged(make_project):
    project = make_project(
        {
            "index.js": 'module.exports = (name) => publish(name, { type: "view" }).query("select 1 as one");\n',
            "includes/names.json": '{"views": ["first_view", "second_view"]}\n',
            "definitions/views.js": (
                'const make = require("../");\nrequire("../includes/names.json").views.forEach(make);\n'
            ),
        }
    )
    _without_node_modules(project, main="index.js", dependencies={"@dataform/core": "3.0.62"})

    first = compile_project(project)
    (project / "index.js").write_text(
        'module.exports = (name) => publish(name, { type: "view" }).query("select 2 as two");\n'
    )
    changed = compile_project(project)

    assert sorted(t["target"]["name"] for t in first.graph["tables"]) == ["first_view", "second_view"]
    assert changed.cached is False
    assert {t["query"].strip() for t in changed.graph["tables"]} == {"select 2 as two"}


def test_npm_dependencies_of_the_project_are_installed_into_a_cache(make_project, tmp_path, monkeypatch):
    if shutil.which("npm") is None:
        pytest.skip("npm is not on PATH")
    # Offline: @dataform/core comes from npm's cache (filled by ./dev setup), the package from a folder.
    monkeypatch.setenv("npm_config_offline", "true")
    package = tmp_path / "shared-macros"
    package.mkdir()
    (package / "package.json").write_text(json.dumps({"name": "shared-macros", "version": "1.0.0"}))
    (package / "index.js").write_text("module.exports = { greeting: () => \"select 'hello' as word\" };\n")
    project = make_project(
        {"definitions/hello.js": 'publish("hello", { type: "view" }).query(require("shared-macros").greeting());\n'}
    )
    _without_node_modules(project, dependencies={"@dataform/core": "3.0.62", "shared-macros": "file:../shared-macros"})

    compiled = compile_project(project)

    assert compiled.warnings == ()
    assert compiled.graph["tables"][0]["query"] == "select 'hello' as word"
    assert not (project / "node_modules").exists()


@pytest.mark.parametrize(
    ("package_json", "settings_core", "expected"),
    [
        ("", None, "package.json: is empty; it must be a JSON object such as"),
        ("{", None, "package.json: is not valid JSON"),
        (None, None, "workflow_settings.yaml: names no @dataform/core version: set dataformCoreVersion"),
        ('{"name": "x"}', None, "package.json: names no @dataform/core version"),
    ],
)
def test_a_project_without_a_usable_core_version_gets_one_line(make_project, package_json, settings_core, expected):
    project = make_project(TABLE)
    shutil.rmtree(project / "node_modules")
    if package_json is None:
        (project / "package.json").unlink()
    else:
        (project / "package.json").write_text(package_json)

    with pytest.raises(CompileError) as caught:
        compile_project(project)

    assert str(caught.value).startswith(expected)
    assert "\n" not in str(caught.value)


def test_a_dataform_v2_project_is_named_as_such(make_project):
    project = make_project(TABLE)
    (project / "workflow_settings.yaml").unlink()
    (project / "dataform.json").write_text(json.dumps({"warehouse": "bigquery", "defaultSchema": "silver"}))
    (project / "package.json").write_text(json.dumps({"dependencies": {"@dataform/core": "2.9.0"}}))

    with pytest.raises(CompileError) as caught:
        compile_project(project)

    assert str(caught.value).startswith(
        "dataform.json: this is a Dataform v2 project (@dataform/core 2.9.0); the local engine compiles Dataform v3"
    )


def test_dependency_cycle_is_reported_with_its_files(make_project):
    project = make_project(
        {
            "definitions/a.sqlx": 'config { type: "table" }\nselect * from ${ref("b")}\n',
            "definitions/b.sqlx": 'config { type: "table" }\nselect * from ${ref("a")}\n',
        }
    )

    with pytest.raises(CompileError, match="Circular dependency"):
        compile_project(project)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", {}), ("a=1", {"a": "1"}), ("a=1,b=x=y", {"a": "1", "b": "x=y"})],
)
def test_parse_vars(text, expected):
    assert parse_vars(text) == expected


def test_parse_vars_rejects_a_pair_without_equals():
    with pytest.raises(ValueError, match="'b' is not name=value"):
        parse_vars("a=1,b")
