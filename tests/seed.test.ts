// SPDX-License-Identifier: Apache-2.0
// The seed scenario, through the compiled plugin in the test host: the access-log fields and the
// /stats/prometheus lines the seed shows, byte for byte.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ProxyWasmHost } from "./host/host.ts";
import { loadStatsTags, renderPrometheus, renderJsonAccessLog } from "./host/telemetry.ts";
import { completionBody } from "./mock-upstream.ts";
import {
  WASM,
  BOOTSTRAP_CONFIGMAP,
  NODE_METADATA,
  CLUSTER,
  CALLS,
  REQUEST_BODY,
  LOG_FIELDS,
  PROMETHEUS_LINES,
  grepLlmproxy,
  seedCall,
} from "./seed.ts";

const tags = loadStatsTags(BOOTSTRAP_CONFIGMAP);

async function runSeed(attributes: "xds" | "legacy") {
  const host = await ProxyWasmHost.load(WASM, { nodeMetadata: NODE_METADATA, attributes });
  const logs: Array<Record<string, string>> = [];
  for (const call of CALLS) {
    const s = seedCall(host, call);
    logs.push(JSON.parse(renderJsonAccessLog(LOG_FIELDS, { stream: s, responseCode: 200 })));
    assert.equal(s.held, 0, "no chunk held");
    assert.equal(s.headerStops, 0, "headers continue");
  }
  return { host, logs };
}

for (const attributes of ["xds", "legacy"] as const) {
  test(`seed: access-log fields of both calls (${attributes} attributes)`, async () => {
    const { host, logs } = await runSeed(attributes);
    assert.deepEqual(host.traps, []);
    assert.deepEqual(
      logs.map((l) => ({ m: l.request_model, p: l.request_prompt_tokens, c: l.request_completion_tokens })),
      [
        { m: "qwen1.5-72b-chat", p: "3", c: "55" },
        { m: "qwen-turbo", p: "11", c: "90" },
      ],
    );
    assert.equal(logs[0].authority_for, "dashscope.aliyuncs.com");
    assert.equal(logs[0].upstream_cluster, CLUSTER);
  });

  test(`seed: /stats/prometheus lines (${attributes} attributes)`, async () => {
    const { host } = await runSeed(attributes);
    assert.deepEqual(grepLlmproxy(renderPrometheus(host, tags)), PROMETHEUS_LINES);
  });
}

test("seed: each distinct counter is defined once per VM", async () => {
  const host = await ProxyWasmHost.load(WASM, { nodeMetadata: NODE_METADATA });
  for (let i = 0; i < 5; i++) {
    for (const call of CALLS) seedCall(host, call);
  }
  // Per model: the two token counters, asm_llm_proxy_requests and the duration histogram.
  assert.equal(host.defineCalls, 8, "4 metrics x 2 models, each defined once");
  assert.equal(
    host.counter(
      "asm_llm_proxy_prompt_tokens|llmproxy_source_workload=sleep|llmproxy_source_workload_namespace=default|llmproxy_destination_service=dashscope.aliyuncs.com|llmproxy_model=qwen-turbo",
    ),
    55,
  );
});

test("seed: the body every side sees is the body that was sent", async () => {
  const host = await ProxyWasmHost.load(WASM, { nodeMetadata: NODE_METADATA });
  const s = host.stream({ cluster: CLUSTER });
  const response = completionBody("qwen-turbo");
  s.sendRequestHeaders(CALLS[1].headers);
  s.sendRequestChunks(REQUEST_BODY, [10, 20]);
  s.sendResponseHeaders({ ":status": "200", "content-type": "application/json" });
  s.sendResponseChunks(response, [1, 50, 51, 200]);
  s.end();
  assert.equal(new TextDecoder().decode(s.forwarded("request")), REQUEST_BODY);
  assert.equal(new TextDecoder().decode(s.forwarded("response")), response);
  assert.equal(s.forwardedResponse.length, 5, "each chunk forwarded as its own chunk");
  assert.equal(s.bufferChanges + s.headerChanges + s.localReplies, 0);
});
