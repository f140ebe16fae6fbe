"""Compiling with the pinned Dataform CLI: errors, vars and the content-keyed cache."""

from __future__ import annotations

import json
import shutil

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


def test_project_pinning_another_core_says_to_run_npm_ci(make_project):
    project = make_project(TABLE)
    shutil.rmtree(project / "node_modules")
    (project / "package.json").write_text(json.dumps({"dependencies": {"@dataform/core": "3.0.1"}}))

    with pytest.raises(CompileError, match="npm ci"):
        compile_project(project)


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
