// SPDX-License-Identifier: Apache-2.0
// The seed scenario, through the compiled plugin in the test host: the seed's two curl calls as
// written (POST /, no model, no key) completed by the plugin's provider routing, answered by the
// strict mock's rules, give the access-log fields and the /stats/prometheus lines the seed shows.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ProxyWasmHost } from "./host/host.ts";
import { drive } from "./host/driver.ts";
import { loadStatsTags, renderPrometheus, renderJsonAccessLog } from "./host/telemetry.ts";
import { completionBody, MOCK_API_KEY } from "./mock-upstream.ts";
import {
  WASM,
  BOOTSTRAP_CONFIGMAP,
  CLUSTER,
  CALLS,
  PATH,
  REQUEST_BODY,
  LOG_FIELDS,
  PROMETHEUS_LINES,
  SEED_HOST,
  grepLlmproxy,
  seedCall,
  upstreamRequest,
} from "./seed.ts";

const tags = loadStatsTags(BOOTSTRAP_CONFIGMAP);
const enc = new TextEncoder();

async function runSeed(attributes: "xds" | "legacy") {
  const host = await ProxyWasmHost.load(WASM, { ...SEED_HOST, attributes });
  const logs: Array<Record<string, string>> = [];
  for (const call of CALLS) {
    const s = seedCall(host, call);
    logs.push(JSON.parse(renderJsonAccessLog(LOG_FIELDS, { stream: s, responseCode: s.status })));
    assert.equal(s.held, 0, "no chunk held");
    assert.equal(s.headerStops, 0, "headers continue");
  }
  return { host, logs };
}

for (const attributes of ["xds", "legacy"] as const) {
  test(`seed: the access-log fields of both curl calls (${attributes} attributes)`, async () => {
    const { host, logs } = await runSeed(attributes);
    assert.deepEqual(host.traps, []);
    // The seed's lines, field by field.
    assert.deepEqual(logs, [
      {
        authority_for: "dashscope.aliyuncs.com",
        path: PATH,
        response_code: "200",
        route_name: "-",
        upstream_cluster: CLUSTER,
        request_model: "qwen1.5-72b-chat",
        request_prompt_tokens: "3",
        request_completion_tokens: "55",
      },
      {
        authority_for: "dashscope.aliyuncs.com",
        path: PATH,
        response_code: "200",
        route_name: "vip-route",
        upstream_cluster: CLUSTER,
        request_model: "qwen-turbo",
        request_prompt_tokens: "11",
        request_completion_tokens: "90",
      },
    ]);
    assert.deepEqual(
      host.logs.filter((l) => l.level === "warn"),
      [],
    );
  });

  test(`seed: /stats/prometheus lines (${attributes} attributes)`, async () => {
    const { host } = await runSeed(attributes);
    assert.deepEqual(grepLlmproxy(renderPrometheus(host, tags)), PROMETHEUS_LINES);
  });
}

test("seed: the curl body is the seed's 85 bytes (bytes_received)", () => {
  assert.equal(enc.encode(REQUEST_BODY).length, 85);
});

test("seed: without the plugin's routing the strict upstream refuses the seed's curl", async () => {
  const host = await ProxyWasmHost.load(WASM, { ...SEED_HOST, pluginConfig: {} });
  const s = seedCall(host, CALLS[0]);
  assert.equal(s.status, 404, "POST / is not an API path");
  assert.equal(s.state("wasm.asm.llmproxy.request_model"), undefined, "and nothing is recorded");
});

test("seed: each distinct counter is defined once per VM", async () => {
  const host = await ProxyWasmHost.load(WASM, SEED_HOST);
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

test("seed: what goes upstream under every split of the body, down to one byte per chunk", async () => {
  const host = await ProxyWasmHost.load(WASM, SEED_HOST);
  const n = enc.encode(REQUEST_BODY).length;
  const cases: number[][] = [[]];
  for (let i = 1; i < n; i++) cases.push([i]);
  cases.push(Array.from({ length: n - 1 }, (_, i) => i + 1)); // one byte per chunk
  for (const call of CALLS) {
    for (const cuts of cases) {
      const s = seedCall(host, call, cuts);
      const up = upstreamRequest(s);
      const what = `${call.model}, cuts ${cuts.length > 3 ? "every byte" : cuts.join(",")}`;
      assert.equal(s.status, 200, what);
      assert.equal(up.path, PATH, what);
      assert.equal(up.authorization, `Bearer ${MOCK_API_KEY}`, what);
      // The client's bytes, then the route's model before the closing brace: valid JSON.
      assert.equal(up.body, REQUEST_BODY.slice(0, -1) + `,"model":"${call.model}"}`, what);
      assert.deepEqual(JSON.parse(up.body).messages, JSON.parse(REQUEST_BODY).messages, what);
      assert.equal(
        s.requestHeaders.find(([k]) => k === "content-length"),
        undefined,
        "content-length removed: the body grows",
      );
      assert.equal(s.held, 0, what);
      assert.equal(s.forwardedRequest.length, cuts.length + 1, "each chunk forwarded as its own chunk");
      assert.equal(s.state("wasm.asm.llmproxy.request_model"), call.model, what);
    }
  }
  assert.deepEqual(host.traps, []);
});

test("seed: the response every side sees is the response that was sent", async () => {
  const host = await ProxyWasmHost.load(WASM, SEED_HOST);
  const response = completionBody("qwen-turbo");
  const s = drive(host, {
    cluster: CLUSTER,
    request: { headers: CALLS[1].headers, body: REQUEST_BODY, cuts: [10, 20] },
    response: { headers: { "content-type": "application/json" }, body: response, cuts: [1, 50, 51, 200] },
  });
  assert.equal(new TextDecoder().decode(s.forwarded("response")), response);
  assert.equal(s.forwardedResponse.length, 5, "each chunk forwarded as its own chunk");
});
