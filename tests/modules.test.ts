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

test("modules: both release modules stay within 48 KB", () => {
  for (const f of ["asm-llm-proxy.wasm", "asm-llm-proxy.nosimd.wasm"]) {
    const size = readFileSync(ROOT + "build/" + f).length;
    assert.ok(size <= 48 * 1024, `${f}: ${size} bytes`);
  }
});
