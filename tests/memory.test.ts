// SPDX-License-Identifier: Apache-2.0
// Linear memory per VM stays flat once the plugin has warmed up: after repeated calls, and with
// as many distinct models as the default series cap keeps counters for.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ProxyWasmHost } from "./host/host.ts";
import { drive } from "./host/driver.ts";
import { WASM, NODE_METADATA, CALLS, CLUSTER, SEED_HOST, seedCall, PATH } from "./seed.ts";
import { completionBody } from "./mock-upstream.ts";

const DIMS_OF = (model: string) =>
  `|llmproxy_source_workload=sleep|llmproxy_source_workload_namespace=default|llmproxy_destination_service=dashscope.aliyuncs.com|llmproxy_model=${model}`;

function call(host: ProxyWasmHost, model: string): void {
  drive(host, {
    cluster: CLUSTER,
    request: {
      headers: { ":method": "POST", ":path": PATH, ":authority": "dashscope.aliyuncs.com" },
      body: JSON.stringify({ model, messages: [] }),
    },
    response: { headers: { "content-type": "application/json" }, body: completionBody(model) },
  });
}

test("memory: flat after warm-up, over repeated calls", async () => {
  // The seed's sidecar: its calls are routed (path, key, model inserted) and counted.
  const host = await ProxyWasmHost.load(WASM, SEED_HOST);
  for (let i = 0; i < 200; i++) seedCall(host, CALLS[i % 2]);
  const warm = host.memoryBytes;
  for (let i = 0; i < 5000; i++) seedCall(host, CALLS[i % 2]);
  assert.equal(host.memoryBytes, warm);
  assert.equal(host.counter("asm_llm_proxy_completion_tokens" + DIMS_OF("qwen-turbo")), 90 * 2600);
  assert.ok(warm <= 256 * 1024, `${warm} bytes`);
  assert.deepEqual(host.traps, []);
});

test("memory: 1,000 distinct models, each counted in its own series, within 256 KiB", async () => {
  const host = await ProxyWasmHost.load(WASM, { nodeMetadata: NODE_METADATA });
  const models = Array.from({ length: 1000 }, (_, i) => `model-${i}-of-a-thousand`);
  for (const m of models) call(host, m);
  const warm = host.memoryBytes;
  for (let round = 0; round < 2; round++) for (const m of models) call(host, m);
  assert.equal(host.memoryBytes, warm);
  assert.ok(warm <= 256 * 1024, `${warm} bytes`);
  for (const m of [models[0], models[499], models[999]]) {
    assert.equal(host.counter("asm_llm_proxy_prompt_tokens" + DIMS_OF(m)), 7 * 3);
    assert.equal(host.counter("asm_llm_proxy_completion_tokens" + DIMS_OF(m)), 13 * 3);
  }
  assert.deepEqual(host.traps, []);
});
