// SPDX-License-Identifier: Apache-2.0
// The seed scenario over real HTTP on loopback: the test host forwards what the plugin left of
// each request (path, headers, body) to the strict mock upstream and feeds the plugin the
// response chunks as the socket delivers them.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ProxyWasmHost } from "./host/host.ts";
import { exchange } from "./host/exchange.ts";
import { loadStatsTags, renderPrometheus, renderJsonAccessLog } from "./host/telemetry.ts";
import { startMockUpstream, completionBody, completionEvents, MOCK_API_KEY } from "./mock-upstream.ts";
import {
  WASM,
  ALL_FILTER_STATE,
  BOOTSTRAP_CONFIGMAP,
  SEED_HOST,
  PLUGIN_CONFIG,
  PATH,
  CLUSTER,
  CALLS,
  REQUEST_BODY,
  LOG_FIELDS,
  PROMETHEUS_LINES,
  grepLlmproxy,
} from "./seed.ts";

test("seed over loopback HTTP: the curl calls completed, access-log fields, Prometheus lines", async () => {
  const upstream = await startMockUpstream();
  try {
    const host = await ProxyWasmHost.load(WASM, {
      ...SEED_HOST,
      pluginConfig: { ...PLUGIN_CONFIG, ...ALL_FILTER_STATE },
    });
    const logs = [];
    for (const call of CALLS) {
      const { [":method"]: method, [":path"]: path, [":authority"]: authority, ...headers } = call.headers;
      const r = await exchange(
        host,
        { method, path, authority, headers, body: REQUEST_BODY },
        upstream.port,
        CLUSTER,
      );
      assert.equal(r.status, 200);
      assert.equal(r.upstreamPath, PATH);
      assert.equal(r.upstreamHeaders.authorization, `Bearer ${MOCK_API_KEY}`);
      assert.equal(JSON.parse(r.upstreamBody).model, call.model);
      assert.equal(r.body, completionBody(call.model));
      assert.ok(r.chunks >= 2, "the body arrived in more than one chunk");
      assert.equal(r.stream.held, 0);
      logs.push(JSON.parse(renderJsonAccessLog(LOG_FIELDS, { stream: r.stream, responseCode: r.status })));
    }
    // The seed's access-log lines, field by field.
    const line = (route: string, model: string, prompt: string, completion: string) => ({
      authority_for: "dashscope.aliyuncs.com",
      path: PATH,
      response_code: "200",
      route_name: route,
      upstream_cluster: CLUSTER,
      request_model: model,
      request_prompt_tokens: prompt,
      request_completion_tokens: completion,
    });
    assert.deepEqual(logs, [
      line("-", "qwen1.5-72b-chat", "3", "55"),
      line("vip-route", "qwen-turbo", "11", "90"),
    ]);
    assert.equal(upstream.requests.length, 2);
    assert.deepEqual(
      grepLlmproxy(renderPrometheus(host, loadStatsTags(BOOTSTRAP_CONFIGMAP))),
      PROMETHEUS_LINES,
    );
    assert.deepEqual(host.traps, []);
  } finally {
    await upstream.close();
  }
});

test("a streamed call over loopback HTTP: the client's model kept, usage from the last event", async () => {
  const upstream = await startMockUpstream();
  try {
    const host = await ProxyWasmHost.load(WASM, {
      ...SEED_HOST,
      pluginConfig: { ...PLUGIN_CONFIG, ...ALL_FILTER_STATE },
    });
    const body = JSON.stringify({
      model: "qwen-turbo",
      stream: true,
      stream_options: { include_usage: true },
      messages: [],
    });
    const r = await exchange(
      host,
      {
        method: "POST",
        path: CALLS[0].headers[":path"],
        authority: "dashscope.aliyuncs.com",
        headers: { "content-type": "application/json" },
        body,
      },
      upstream.port,
      CLUSTER,
    );
    assert.equal(r.upstreamBody, body, "the client named its model: the body is left alone");
    assert.equal(r.body, completionEvents("qwen-turbo", true).join(""));
    assert.ok(r.chunks > 3, "the events arrived in separate chunks");
    assert.equal(r.stream.held, 0);
    assert.equal(r.stream.state("wasm.asm.llmproxy.request_prompt_tokens"), "11");
    assert.equal(r.stream.state("wasm.asm.llmproxy.request_completion_tokens"), "90");
    assert.equal(r.stream.state("wasm.asm.llmproxy.request_stream"), "true");
  } finally {
    await upstream.close();
  }
});
