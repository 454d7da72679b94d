// SPDX-License-Identifier: Apache-2.0
// The structure rules hold, and the checks behind them can fail; the configuration's derived
// files (parser constants, JSON Schema, README table) match their single source.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Ajv } from "ajv";
import { checkAll, checkLayers, checkHeaders, sources } from "../scripts/check-structure.ts";
import { outputs, loadOptions } from "../scripts/gen-config.ts";
import { ProxyWasmHost } from "./host/host.ts";
import { WASM, ROOT } from "./seed.ts";

test("layers point one way and every source file carries the licence line", () => {
  assert.deepEqual(checkAll(), []);
});

test("the layer check catches a pure module that imports the host", () => {
  const files = new Map([
    ["assembly/llm/bad.ts", 'import { log } from "../host/host";\n'],
    ["assembly/telemetry/sdk.ts", 'import { x } from "@solo-io/proxy-runtime/assembly/runtime";\n'],
    ["assembly/plugin/ok.ts", 'import { Usage } from "../llm/usage";\nimport { log } from "../host/host";\n'],
    ["assembly/config/ext.ts", '@external("env", "proxy_log")\ndeclare function f(): void;\n'],
  ]);
  assert.deepEqual(checkLayers(files), [
    "assembly/llm/bad.ts: a pure module imports assembly/host/host.ts (host)",
    "assembly/telemetry/sdk.ts: only assembly/host/abi.ts may import @solo-io/proxy-runtime",
    "assembly/config/ext.ts: declares a host function outside assembly/host/",
  ]);
  assert.equal(checkHeaders(new Map([["x.ts", "// no licence\n"]])).length, 1);
});

test("generated configuration files are up to date with assembly/config/options.json", () => {
  for (const [path, expected] of outputs()) {
    assert.equal(readFileSync(path, "utf8"), expected, `${path} is stale: run npm run gen:config`);
  }
});

test("the JSON Schema and the plugin agree on what a valid configuration is", async () => {
  const schema = JSON.parse(readFileSync(ROOT + "deploy/plugin-config.schema.json", "utf8"));
  const validate = new Ajv({ strict: false }).compile(schema);
  const options = loadOptions();
  const examples = Object.fromEntries(Object.entries(options).map(([k, o]) => [k, o.example]));
  const cases: Array<[unknown, boolean]> = [
    [{}, true],
    [examples, true],
    [{ paths: [] }, true],
    [{ paths: "x" }, false],
    [{ paths: [""] }, false],
    [{ inject_stream_usage: 1 }, false],
    [{ unknown_key: true }, false],
  ];
  for (const [config, ok] of cases) {
    assert.equal(validate(config), ok, `schema on ${JSON.stringify(config)}`);
    // The example's provider takes its key from the VM environment.
    const env = { DASHSCOPE_API_KEY: "sk-example" };
    const host = await ProxyWasmHost.load(WASM, { pluginConfig: config as object, env });
    const warnings = host.logs.filter((l) => l.level === "warn");
    assert.equal(
      warnings.length === 0,
      ok,
      `plugin on ${JSON.stringify(config)}: ${JSON.stringify(warnings)}`,
    );
  }
});

test("the layer check keeps the pure layers in order: llm, then telemetry, then config", () => {
  const files = new Map([
    ["assembly/telemetry/planted.ts", 'import { Config } from "../config/config";\n'],
    ["assembly/llm/planted.ts", 'import { UNKNOWN } from "../telemetry/names";\n'],
    ["assembly/llm/ok.ts", 'import { JsonScanner } from "./json";\n'],
    ["assembly/telemetry/ok.ts", 'import { asciiLower } from "../llm/hosts";\n'],
    [
      "assembly/config/ok.ts",
      'import { UNKNOWN } from "../telemetry/names";\nimport { Routing } from "../llm/routing";\n',
    ],
  ]);
  assert.deepEqual(checkLayers(files), [
    "assembly/telemetry/planted.ts: imports assembly/config/config.ts, a layer above it (pure layers, lowest first: llm, telemetry, config)",
    "assembly/llm/planted.ts: imports assembly/telemetry/names.ts, a layer above it (pure layers, lowest first: llm, telemetry, config)",
  ]);
  // Planted in the real tree, the same import fails the whole check (what `npm run lint` runs).
  const real = sources(["assembly"], /\.ts$/);
  assert.deepEqual(checkLayers(real), []);
  real.set(
    "assembly/telemetry/names.ts",
    real.get("assembly/telemetry/names.ts") + '\nimport { Config } from "../config/config";\n',
  );
  assert.equal(checkLayers(real).length, 1);
});
