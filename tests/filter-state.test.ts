// SPDX-License-Identifier: Apache-2.0
// The `filter_state` option: the seed's three keys are always published, every other key only
// when listed (or with "all"), and a name the plugin does not know is reported and ignored.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ProxyWasmHost } from "./host/host.ts";
import { WASM, CALLS, PLUGIN_CONFIG, SEED_HOST, seedCall } from "./seed.ts";

const SEED_KEYS = ["request_model", "request_prompt_tokens", "request_completion_tokens"];
const EXTRA_KEYS = [
  "request_total_tokens",
  "request_cached_tokens",
  "request_reasoning_tokens",
  "response_model",
  "request_stream",
  "usage",
  "first_token_ms",
  "duration_ms",
  "ms_per_output_token",
  "request_cache_write_tokens",
];

async function keysAfterSeedCall(filterState?: string[]) {
  // The seed's sidecar (its calls are routed), with or without the option.
  const host = await ProxyWasmHost.load(WASM, {
    ...SEED_HOST,
    pluginConfig: filterState === undefined ? PLUGIN_CONFIG : { ...PLUGIN_CONFIG, filter_state: filterState },
  });
  const s = seedCall(host, CALLS[1]);
  assert.deepEqual(host.traps, []);
  return { host, s, keys: [...s.filterState.keys()].map((k) => k.replace("wasm.asm.llmproxy.", "")).sort() };
}

test("filter_state: by default only the seed's three keys are published", async () => {
  const { keys, s } = await keysAfterSeedCall();
  assert.deepEqual(keys, [...SEED_KEYS].sort());
  assert.equal(s.state("wasm.asm.llmproxy.request_model"), "qwen-turbo");
  assert.equal(s.state("wasm.asm.llmproxy.request_prompt_tokens"), "11");
  assert.equal(s.state("wasm.asm.llmproxy.request_completion_tokens"), "90");
  assert.equal(s.propertySets, 3);
});

test("filter_state: listed keys are added to the seed's three", async () => {
  const { keys, s } = await keysAfterSeedCall(["request_total_tokens", "usage"]);
  assert.deepEqual(keys, [...SEED_KEYS, "request_total_tokens", "usage"].sort());
  assert.equal(s.state("wasm.asm.llmproxy.request_total_tokens"), "101");
  assert.equal(s.state("wasm.asm.llmproxy.usage"), "present");
});

test('filter_state: "all" publishes every key the call has a value for', async () => {
  const { keys } = await keysAfterSeedCall(["all"]);
  // The seed's response reports no cached, cache-write or reasoning tokens.
  const expected = [...SEED_KEYS, ...EXTRA_KEYS].filter(
    (k) =>
      k !== "request_cached_tokens" && k !== "request_reasoning_tokens" && k !== "request_cache_write_tokens",
  );
  assert.deepEqual(keys, expected.sort());
});

test("filter_state: naming a seed key changes nothing; an unknown name is reported and ignored, the valid ones kept", async () => {
  assert.deepEqual((await keysAfterSeedCall(["request_model"])).keys, [...SEED_KEYS].sort());
  const { host, keys } = await keysAfterSeedCall(["usage", "tokens"]);
  assert.deepEqual(keys, [...SEED_KEYS, "usage"].sort());
  assert.ok(
    host.logs.some(
      (l) => l.level === "warn" && l.message.includes("'filter_state'") && l.message.includes("tokens"),
    ),
    JSON.stringify(host.logs),
  );
});
