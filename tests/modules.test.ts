// SPDX-License-Identifier: Apache-2.0
// The two release modules: build/asm-llm-proxy.wasm uses SIMD (v128) to skip string contents and
// find line ends; build/asm-llm-proxy.nosimd.wasm must not contain a single SIMD instruction, so
// that runtimes without SIMD (WAMR's classic interpreter) can load it. `npm test` runs every
// host test that takes the module under test against both (ASM_LLM_PROXY_WASM).

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import binaryen from "binaryen";
import ts from "typescript";
import { ROOT } from "./seed.ts";

function validatesWithout(path: string, features: number): boolean {
  const m = binaryen.readBinary(readFileSync(path));
  m.setFeatures(features);
  const ok = m.validate() === 1;
  m.dispose();
  return ok;
}

const ALL = binaryen.Features.All;
const NO_SIMD = ALL & ~binaryen.Features.SIMD128;

test("modules: the build without SIMD validates with SIMD turned off; the default build needs it", () => {
  assert.ok(validatesWithout(ROOT + "build/asm-llm-proxy.nosimd.wasm", NO_SIMD));
  assert.ok(validatesWithout(ROOT + "build/asm-llm-proxy.wasm", ALL));
  // The check can fail: the SIMD build does not validate without SIMD.
  assert.ok(!validatesWithout(ROOT + "build/asm-llm-proxy.wasm", NO_SIMD));
});

// A budget against unnoticed growth. The observation core alone fitted 48 KB; provider routing
// (configuration, rewriting) and the native wire formats (Gemini, Bedrock's event stream, NDJSON,
// path shapes) bring the module to about 72 KB; token budgets (the `rate_limit` option, its key
// templates, the check and its answer, the report), the opt-in cost (prices, exact arithmetic),
// the OpenTelemetry histogram (its names and series), configuration diagnostics (a JSON syntax
// error's line, column and expectation, per-field checks of keys, hosts and models) and the
// key-route check to about 103 KB. docs/benchmarks.md has the current size.
const BUDGET = 108 * 1024;

test("modules: both release modules stay within their size budget", () => {
  for (const f of ["asm-llm-proxy.wasm", "asm-llm-proxy.nosimd.wasm"]) {
    const size = readFileSync(ROOT + "build/" + f).length;
    assert.ok(size <= BUDGET, `${f}: ${size} bytes`);
  }
});

// Which host tests run against both modules: `test:host` runs every test file with the release
// module, then `test:nosimd` runs the files listed there with the module without SIMD. A file is
// listed exactly when it imports the module under test, `WASM` of tests/seed.ts (which
// ASM_LLM_PROXY_WASM picks), itself or through a helper it imports; a test that needs a module
// only as an artefact or a source of metrics names RELEASE_WASM and runs once.
const SEED = ROOT + "tests/seed.ts";
const scripts = JSON.parse(readFileSync(ROOT + "package.json", "utf8")).scripts as Record<string, string>;
const testFiles = readdirSync(ROOT + "tests")
  .filter((f) => f.endsWith(".test.ts"))
  .map((f) => "tests/" + f)
  .sort();

/**
 * The local modules a file imports (static and dynamic imports), and whether it takes `WASM` from
 * tests/seed.ts: it imports that module and names WASM in its code, read from its syntax tree
 * (comments and strings do not count).
 */
function imports(file: string): { local: string[]; wasm: boolean } {
  const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true);
  const local: string[] = [];
  let namesWasm = false;
  const visit = (node: ts.Node): void => {
    const spec = ts.isImportDeclaration(node)
      ? node.moduleSpecifier
      : ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword
        ? node.arguments[0]
        : undefined;
    if (spec && ts.isStringLiteral(spec) && spec.text.startsWith("."))
      local.push(resolve(dirname(file), spec.text));
    if (ts.isIdentifier(node) && node.text === "WASM") namesWasm = true;
    ts.forEachChild(node, visit);
  };
  visit(source);
  return { local, wasm: namesWasm && local.includes(SEED) };
}

function takesModuleUnderTest(file: string, seen = new Set<string>()): boolean {
  if (seen.has(file)) return false;
  seen.add(file);
  const { local, wasm } = imports(file);
  return wasm || local.some((f) => takesModuleUnderTest(f, seen));
}

test("test:nosimd lists exactly the test files that take the module under test", () => {
  assert.match(scripts["test:host"], /^node --import tsx --test tests\/\*\.test\.ts && npm run test:nosimd$/);
  assert.match(scripts["test:nosimd"], /^ASM_LLM_PROXY_WASM=build\/asm-llm-proxy\.nosimd\.wasm node /);
  const listed = [...scripts["test:nosimd"].matchAll(/tests\/[\w.-]+\.test\.ts/g)].map((m) => m[0]).sort();
  const taking = testFiles.filter((f) => takesModuleUnderTest(ROOT + f));
  assert.deepEqual(listed, taking, "package.json test:nosimd against the files that import WASM");
  assert.ok(taking.length >= 10, `${taking.length} files take the module under test`);
});

test("every test file that loads the plugin names the module it loads", () => {
  for (const f of testFiles) {
    const text = readFileSync(ROOT + f, "utf8");
    if (/ProxyWasmHost\.load\(|new ProxyWasmHost\(/.test(text))
      assert.match(
        text,
        /\b(RELEASE_)?WASM\b/,
        `${f} loads a module: WASM (both modules) or RELEASE_WASM (once)`,
      );
  }
});
