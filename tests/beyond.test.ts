// SPDX-License-Identifier: Apache-2.0
// Every matched call accounted for (asm_llm_proxy_requests by usage status), cached and reasoning
// tokens, latency as filter state and histograms, partial streams, and the opt-in dimensions.

import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { ProxyWasmHost, type HttpStream } from "./host/host.ts";
import { drive } from "./host/driver.ts";
import { loadStatsTags, renderPrometheus, renderJsonAccessLog } from "./host/telemetry.ts";
import { sse } from "./fixtures/providers.ts";
import { completionBody } from "./mock-upstream.ts";
import {
  WASM,
  ALL_FILTER_STATE,
  NODE_METADATA,
  CLUSTER,
  CALLS,
  BOOTSTRAP_CONFIGMAP,
  PROMETHEUS_LINES,
  grepLlmproxy,
  seedCall,
  SEED_HOST,
} from "./seed.ts";

const tags = loadStatsTags(BOOTSTRAP_CONFIGMAP);
const DIMS = (model: string) =>
  `|llmproxy_source_workload=sleep|llmproxy_source_workload_namespace=default|llmproxy_destination_service=dashscope.aliyuncs.com|llmproxy_model=${model}`;
const REQUESTS = (model: string, usage: string, stream: boolean) =>
  `asm_llm_proxy_requests${DIMS(model)}|llmproxy_usage=${usage}|llmproxy_stream=${stream}`;
const STATE = (s: HttpStream, key: string) => s.state("wasm.asm.llmproxy." + key);

interface Call {
  request?: string;
  status?: string;
  contentType?: string;
  encoding?: string;
  /** Body chunks, each sent after advancing the clock by its delay (ms). */
  chunks?: Array<[number, string]>;
  /** Milliseconds from request headers to response headers. */
  wait?: number;
  /** Stop before the end of the response (client cancel, reset): only on_log follows. */
  cut?: boolean;
  headers?: Record<string, string>;
}

function call(host: ProxyWasmHost, c: Call): HttpStream {
  const s = drive(host, {
    cluster: CLUSTER,
    request: {
      headers: {
        ":method": "POST",
        ":path": "/compatible-mode/v1/chat/completions",
        ":authority": "dashscope.aliyuncs.com",
        ...c.headers,
      },
      body: c.request ?? '{"model":"qwen-turbo"}',
    },
    wait: c.wait ?? 100,
    response: {
      status: c.status ?? "200",
      headers: {
        "content-type": c.contentType ?? "application/json",
        ...(c.encoding ? { "content-encoding": c.encoding } : {}),
      },
      timed: c.chunks ?? [[0, completionBody("qwen-turbo")]],
      end: c.cut ? "reset" : "body",
    },
  });
  assert.equal(s.held, 0);
  assert.deepEqual(host.traps, []);
  return s;
}

async function load(config: object = {}) {
  return ProxyWasmHost.load(WASM, {
    nodeMetadata: NODE_METADATA,
    pluginConfig: { ...ALL_FILTER_STATE, ...config },
  });
}

const usageEvent = (prompt: number, completion: number) => ({
  model: "qwen-turbo",
  choices: [],
  usage: { prompt_tokens: prompt, completion_tokens: completion },
});
const textEvent = (t: string) => ({ model: "qwen-turbo", choices: [{ delta: { content: t } }] });

describe("asm_llm_proxy_requests counts every matched call, with how its usage was had", () => {
  test("present, missing, injected, encoded, parse_error, aborted and error", async () => {
    const host = await load({ strip_accept_encoding: false });
    const statuses: string[] = [];
    const record = (s: HttpStream) => statuses.push(STATE(s, "usage")!);
    record(call(host, {}));
    record(
      call(host, {
        request: '{"model":"qwen-turbo","stream":true}',
        contentType: "text/event-stream",
        chunks: [[5, sse([{ data: textEvent("hi") }, { data: "[DONE]" }])]],
      }),
    );
    record(call(host, { encoding: "gzip" }));
    record(call(host, { chunks: [[0, '{"usage":']], cut: false }));
    record(
      call(host, {
        request: '{"model":"qwen-turbo","stream":true}',
        contentType: "text/event-stream",
        chunks: [[5, sse([{ data: textEvent("hi") }])]],
        cut: true,
      }),
    );
    record(call(host, { status: "429", chunks: [[0, '{"error":{"message":"slow down"}}']] }));
    assert.deepEqual(statuses, ["present", "missing", "encoded", "parse_error", "aborted", "error"]);
    assert.equal(host.counter(REQUESTS("qwen-turbo", "present", false)), 1);
    assert.equal(host.counter(REQUESTS("qwen-turbo", "missing", true)), 1);
    assert.equal(host.counter(REQUESTS("qwen-turbo", "encoded", false)), 1);
    assert.equal(host.counter(REQUESTS("qwen-turbo", "parse_error", false)), 1);
    assert.equal(host.counter(REQUESTS("qwen-turbo", "aborted", true)), 1);
    assert.equal(host.counter(REQUESTS("qwen-turbo", "error", false)), 1);

    const injectHost = await load({ inject_stream_usage: true });
    const s = call(injectHost, {
      request: '{"model":"qwen-turbo","stream":true}',
      contentType: "text/event-stream",
      chunks: [[5, sse([{ data: textEvent("hi") }, { data: usageEvent(3, 1) }, { data: "[DONE]" }])]],
    });
    assert.equal(STATE(s, "usage"), "injected");
    assert.equal(injectHost.counter(REQUESTS("qwen-turbo", "injected", true)), 1);
  });

  test("the seed scenario keeps exactly the seed's token lines and adds one request line per model", async () => {
    const host = await ProxyWasmHost.load(WASM, SEED_HOST);
    for (const c of CALLS) {
      seedCall(host, c);
    }
    const text = renderPrometheus(host, tags);
    assert.deepEqual(grepLlmproxy(text), PROMETHEUS_LINES);
    assert.deepEqual(
      text.split("\n").filter((l) => l.startsWith("asm_llm_proxy_requests{")),
      [
        'asm_llm_proxy_requests{llmproxy_source_workload="sleep",llmproxy_source_workload_namespace="default",llmproxy_destination_service="dashscope.aliyuncs.com",llmproxy_model="qwen1.5-72b-chat",llmproxy_usage="present",llmproxy_stream="false"} 1',
        'asm_llm_proxy_requests{llmproxy_source_workload="sleep",llmproxy_source_workload_namespace="default",llmproxy_destination_service="dashscope.aliyuncs.com",llmproxy_model="qwen-turbo",llmproxy_usage="present",llmproxy_stream="false"} 1',
      ],
    );
  });
});

test("cached and reasoning tokens are counted only when reported", async () => {
  const host = await load();
  call(host, {
    chunks: [
      [
        0,
        JSON.stringify({
          model: "qwen-turbo",
          usage: {
            prompt_tokens: 100,
            completion_tokens: 50,
            prompt_tokens_details: { cached_tokens: 64 },
            completion_tokens_details: { reasoning_tokens: 30 },
          },
        }),
      ],
    ],
  });
  call(host, {
    chunks: [
      [0, JSON.stringify({ model: "qwen-turbo", usage: { prompt_tokens: 10, completion_tokens: 5 } })],
    ],
  });
  assert.equal(host.counter("asm_llm_proxy_cached_tokens" + DIMS("qwen-turbo")), 64);
  assert.equal(host.counter("asm_llm_proxy_reasoning_tokens" + DIMS("qwen-turbo")), 30);
  assert.equal(host.counter("asm_llm_proxy_prompt_tokens" + DIMS("qwen-turbo")), 110);
});

describe("latency", () => {
  test("first token, duration and time per output token of a stream, as filter state and histograms", async () => {
    const host = await load();
    const s = call(host, {
      request: '{"model":"qwen-turbo","stream":true,"stream_options":{"include_usage":true}}',
      contentType: "text/event-stream",
      wait: 120,
      chunks: [
        [30, sse([{ data: textEvent("Hel") }])],
        [200, sse([{ data: textEvent("lo") }])],
        [300, sse([{ data: usageEvent(11, 50) }, { data: "[DONE]" }])],
      ],
    });
    assert.equal(STATE(s, "first_token_ms"), "150");
    assert.equal(STATE(s, "duration_ms"), "650");
    assert.equal(STATE(s, "ms_per_output_token"), "10.000"); // (650 - 150) / 50
    assert.deepEqual(host.histogram("asm_llm_proxy_first_token_ms" + DIMS("qwen-turbo")), [150]);
    assert.deepEqual(host.histogram("asm_llm_proxy_duration_ms" + DIMS("qwen-turbo")), [650]);
    const buckets = renderPrometheus(host, tags)
      .split("\n")
      .filter((l) => l.startsWith("asm_llm_proxy_first_token_ms_bucket{") && /le="(100|250|\+Inf)"/.test(l))
      .map((l) => l.replace(/\{.*le="([^"]+)"\}/, "{le=$1}"));
    assert.deepEqual(buckets, [
      "asm_llm_proxy_first_token_ms_bucket{le=100} 0",
      "asm_llm_proxy_first_token_ms_bucket{le=250} 1",
      "asm_llm_proxy_first_token_ms_bucket{le=+Inf} 1",
    ]);
  });

  test("a non-streamed call has a duration histogram and no first-token histogram", async () => {
    const host = await load();
    const s = call(host, { wait: 700, chunks: [[40, completionBody("qwen-turbo")]] });
    assert.equal(STATE(s, "duration_ms"), "740");
    assert.equal(STATE(s, "first_token_ms"), "740");
    assert.equal(STATE(s, "ms_per_output_token"), "0.000");
    assert.deepEqual(host.histogram("asm_llm_proxy_duration_ms" + DIMS("qwen-turbo")), [740]);
    assert.equal(host.histogram("asm_llm_proxy_first_token_ms" + DIMS("qwen-turbo")), undefined);
  });
});

describe("partial streams", () => {
  test("a stream cancelled before its usage records the model, the first-token time and 'aborted'", async () => {
    const host = await load();
    const s = call(host, {
      request: '{"model":"qwen-turbo","stream":true,"stream_options":{"include_usage":true}}',
      contentType: "text/event-stream",
      wait: 80,
      chunks: [
        [20, sse([{ data: textEvent("Hel") }])],
        [100, sse([{ data: textEvent("lo") }]) + 'data: {"choi'],
      ],
      cut: true,
    });
    const log = JSON.parse(
      renderJsonAccessLog(
        {
          model: "%FILTER_STATE(wasm.asm.llmproxy.request_model:PLAIN)%",
          prompt: "%FILTER_STATE(wasm.asm.llmproxy.request_prompt_tokens:PLAIN)%",
          usage: "%FILTER_STATE(wasm.asm.llmproxy.usage:PLAIN)%",
          first: "%FILTER_STATE(wasm.asm.llmproxy.first_token_ms:PLAIN)%",
          duration: "%FILTER_STATE(wasm.asm.llmproxy.duration_ms:PLAIN)%",
        },
        { stream: s },
      ),
    );
    assert.deepEqual(log, {
      model: "qwen-turbo",
      prompt: "-",
      usage: "aborted",
      first: "100",
      duration: "200",
    });
    assert.equal(host.counter(REQUESTS("qwen-turbo", "aborted", true)), 1);
    assert.deepEqual(host.histogram("asm_llm_proxy_first_token_ms" + DIMS("qwen-turbo")), [100]);
    assert.equal(host.counter("asm_llm_proxy_prompt_tokens" + DIMS("qwen-turbo")), undefined);
  });

  test("a stream deleted without an access-log phase is still counted", async () => {
    const host = await load();
    const s = host.stream({ cluster: CLUSTER });
    s.sendRequestHeaders({
      ":method": "POST",
      ":path": "/v1/chat/completions",
      ":authority": "dashscope.aliyuncs.com",
    });
    s.sendRequestBody('{"model":"qwen-turbo"}', true);
    host.withStream(s, () => host.call("proxy_on_delete", s.id));
    assert.deepEqual(host.traps, []);
    assert.equal(host.counter(REQUESTS("qwen-turbo", "aborted", false)), 1);
  });

  test("a request reset before any response is counted as aborted", async () => {
    const host = await load();
    const s = host.stream({ cluster: CLUSTER });
    s.sendRequestHeaders({
      ":method": "POST",
      ":path": "/v1/chat/completions",
      ":authority": "dashscope.aliyuncs.com",
    });
    s.sendRequestBody('{"model":"qwen-turbo","messa', false);
    s.end();
    assert.equal(STATE(s, "usage"), "aborted");
    assert.equal(
      host.counter(REQUESTS("qwen-turbo", "aborted", false)),
      undefined,
      "the model was never read",
    );
    assert.equal(host.counter(REQUESTS("unknown", "aborted", false)), 1);
  });
});

describe("opt-in dimensions", () => {
  test("llmproxy_response_model, off by default", async () => {
    const off = await load();
    call(off, { chunks: [[0, completionBody("qwen-turbo-2025-01-01")]] });
    assert.ok(![...off.metrics.keys()].some((k) => k.includes("llmproxy_response_model")));
    const on = await load({ response_model_dimension: true });
    call(on, { chunks: [[0, completionBody("qwen-turbo-2025-01-01")]] });
    assert.equal(
      on.counter(
        "asm_llm_proxy_prompt_tokens" + DIMS("qwen-turbo") + "|llmproxy_response_model=qwen-turbo-2025-01-01",
      ),
      7,
    );
    const line = renderPrometheus(on, tags)
      .split("\n")
      .find((l) => l.startsWith("asm_llm_proxy_prompt_tokens{"))!;
    assert.ok(
      line.includes('llmproxy_model="qwen-turbo",llmproxy_response_model="qwen-turbo-2025-01-01"'),
      line,
    );
  });

  test("the response model shares the series cap", async () => {
    const host = await load({ response_model_dimension: true, max_series: 2 });
    for (let i = 0; i < 4; i++) call(host, { chunks: [[0, completionBody(`qwen-turbo-v${i}`)]] });
    const names = [...host.metrics.keys()].filter((k) =>
      k.startsWith("wasmcustom.asm_llm_proxy_prompt_tokens|"),
    );
    assert.equal(names.length, 3);
    assert.ok(names.some((n) => n.endsWith("llmproxy_model=other|llmproxy_response_model=other")));
  });

  test("configured request headers become dimensions and filter state", async () => {
    const host = await load({ header_dimensions: ["user-type", "X-Tenant"] });
    const vip = call(host, { headers: { "user-type": "subscriber", "x-tenant": "team|a=b" } });
    const plain = call(host, {});
    assert.equal(STATE(vip, "user_type"), "subscriber");
    assert.equal(STATE(vip, "x_tenant"), "team|a=b");
    assert.equal(STATE(plain, "user_type"), "unknown");
    assert.equal(
      host.counter(
        "asm_llm_proxy_prompt_tokens" +
          DIMS("qwen-turbo") +
          "|llmproxy_user_type=subscriber|llmproxy_x_tenant=team_a_b",
      ),
      11,
    );
    assert.equal(
      host.counter(
        "asm_llm_proxy_prompt_tokens" +
          DIMS("qwen-turbo") +
          "|llmproxy_user_type=unknown|llmproxy_x_tenant=unknown",
      ),
      11,
    );
    const withTag = [
      ...tags,
      { tag_name: "llmproxy_user_type", regex: "(\\|llmproxy_user_type=([^|]*))" },
      { tag_name: "llmproxy_x_tenant", regex: "(\\|llmproxy_x_tenant=([^|]*))" },
    ];
    const line = renderPrometheus(host, withTag)
      .split("\n")
      .find((l) => l.startsWith("asm_llm_proxy_prompt_tokens{") && l.includes("subscriber"))!;
    assert.ok(line.endsWith(',llmproxy_user_type="subscriber",llmproxy_x_tenant="team_a_b"} 11'), line);
  });

  test("a header that would shadow a built-in dimension is refused", async () => {
    const host = await load({ header_dimensions: ["Model"] });
    assert.deepEqual(
      host.logs.filter((l) => l.level === "warn").map((l) => l.message),
      [
        "asm-llm-proxy: 'header_dimensions' names a header that collides with a built-in dimension: Model; ignored",
      ],
    );
  });
});
