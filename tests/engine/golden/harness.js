// Golden harness: renders execution tasks with the pinned Dataform CLI's own code (build, prune, ExecutionSql).
//
// The CLI ships as one script (bundle.js) that ends with `runCli();` and exports nothing. We read it, drop the
// shebang and that last call, append a `module.exports` of the internals we need, and compile it as a module
// whose filename is the bundle's own path, so every `require` inside resolves from node_modules/@dataform/cli
// exactly as it does when the CLI runs.
//
// stdin:  {"cases": [{"id", "graph": <compile --json output>, "runConfig": {...},
//                     "tables": [{"target": {...}, "type": "table"|"view"|"unknown", "fields": [names]}]}]}
//         or, to exercise the script joiner alone: {"id", "concatenate": [statements]}
// stdout: {"uniqueId": <the id the pinned generator returns>,
//          "results": [{"id", "actions": [{"name", "type", "tableType", "tasks": [{"type", "statement"}]}]}
//                      | {"id", "script": <concatenateQueries output>} | {"id", "error": <message>}]}
"use strict";

const fs = require("fs");
const path = require("path");
const Module = require("module");

const EXPORTS = [
  "dataform",
  "build",
  "prune",
  "computeIncludedActionNames",
  "matchPatterns",
  "targetAsReadableString",
  "ExecutionSql",
  "Builder",
  "concatenateQueries",
];

function loadCli(cliDir) {
  const bundlePath = fs.realpathSync(path.join(cliDir, "bundle.js"));
  let source = fs.readFileSync(bundlePath, "utf8").replace(/^#!.*\n/, "");
  const call = "\nrunCli();";
  const at = source.lastIndexOf(call);
  if (at < 0 || source.slice(at).trim() !== "runCli();") {
    throw new Error(`${bundlePath} does not end with runCli(); the harness must be updated for this CLI`);
  }
  source = source.slice(0, at) + `\nmodule.exports = { ${EXPORTS.join(", ")} };\n`;
  const cliModule = new Module(bundlePath, module);
  cliModule.filename = bundlePath;
  cliModule.paths = Module._nodeModulePaths(path.dirname(bundlePath));
  cliModule._compile(source, bundlePath);
  return cliModule.exports;
}

function sameTarget(a, b) {
  return (a.database || "") === (b.database || "") && (a.schema || "") === (b.schema || "") && a.name === b.name;
}

// A stand-in for BigQueryDbAdapter: table() answers from the warehouse state given in the case.
function fakeAdapter(cli, tables) {
  const types = {
    table: cli.dataform.TableMetadata.Type.TABLE,
    view: cli.dataform.TableMetadata.Type.VIEW,
    unknown: cli.dataform.TableMetadata.Type.UNKNOWN,
  };
  return {
    async table(target) {
      const state = (tables || []).find(table => sameTarget(table.target, target));
      if (!state) {
        return null;
      }
      if (!(state.type in types)) {
        throw new Error(`unknown table type ${state.type}`);
      }
      return cli.dataform.TableMetadata.create({
        type: types[state.type],
        target,
        fields: state.fields.map(name => ({ name })),
      });
    },
  };
}

async function runCase(cli, testCase) {
  // The CLI's run command hands build() a CompiledGraph message (enums as numbers, absent lists empty);
  // fromObject turns the `compile --json` text back into exactly that.
  const graph = cli.dataform.CompiledGraph.fromObject(testCase.graph);
  const executionGraph = await cli.build(graph, testCase.runConfig || {}, fakeAdapter(cli, testCase.tables));
  return executionGraph.actions.map(action => ({
    name: cli.targetAsReadableString(action.target),
    type: action.type,
    tableType: action.tableType,
    tasks: action.tasks.map(task => ({ type: task.type, statement: task.statement })),
  }));
}

async function main() {
  const cliDir = process.argv[2];
  if (!cliDir) {
    throw new Error("usage: node harness.js <path to node_modules/@dataform/cli> < cases.json");
  }
  const cli = loadCli(cliDir);
  // ExecutionSql's default uniqueIdGenerator is Math.random().toString(36).substring(2); pinning Math.random
  // makes the real build() deterministic without touching its code.
  Math.random = () => 0.123456789;
  const uniqueId = Math.random().toString(36).substring(2);
  const input = JSON.parse(fs.readFileSync(0, "utf8"));
  const results = [];
  for (const testCase of input.cases) {
    try {
      if (testCase.concatenate) {
        results.push({ id: testCase.id, script: cli.concatenateQueries(testCase.concatenate) });
        continue;
      }
      results.push({ id: testCase.id, actions: await runCase(cli, testCase) });
    } catch (e) {
      results.push({ id: testCase.id, error: e.message });
    }
  }
  process.stdout.write(JSON.stringify({ uniqueId, results }));
}

main().catch(e => {
  process.stderr.write(`${e.stack || e}\n`);
  process.exit(1);
});
