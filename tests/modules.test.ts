// SPDX-License-Identifier: Apache-2.0
// The two release modules: build/asm-llm-proxy.wasm uses SIMD (v128) to skip string contents and
// find line ends; build/asm-llm-proxy.nosimd.wasm must not contain a single SIMD instruction, so
// that runtimes without SIMD (WAMR's classic interpreter) can load it. `npm test` runs every
// host test against both (ASM_LLM_PROXY_WASM).

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import binaryen from "binaryen";
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
// path shapes) bring the module to about 72 KB. docs/benchmarks.md has the current size.
const BUDGET = 76 * 1024;

test("modules: both release modules stay within their size budget", () => {
  for (const f of ["asm-llm-proxy.wasm", "asm-llm-proxy.nosimd.wasm"]) {
    const size = readFileSync(ROOT + "build/" + f).length;
    assert.ok(size <= BUDGET, `${f}: ${size} bytes`);
  }
});
