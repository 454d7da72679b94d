// SPDX-License-Identifier: Apache-2.0
// Hostile and broken traffic: the series cap, compressed responses, error bodies, huge bodies and
// strings, and linear memory over 100,000 streams.

import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { ProxyWasmHost, type HttpStream } from "./host/host.ts";
import { drive } from "./host/driver.ts";
import { loadStatsTags, renderPrometheus } from "./host/telemetry.ts";
import { CASES } from "./fixtures/providers.ts";
import { completionBody } from "./mock-upstream.ts";
import { WASM, NODE_METADATA, BOOTSTRAP_CONFIGMAP } from "./seed.ts";

const enc = new TextEncoder();
const ISSUE = (kind: string) => `asm_llm_proxy_issues|llmproxy_issue=${kind}`;

function llmCall(
  host: ProxyWasmHost,
  opts: {
    request?: string | Uint8Array;
    requestHeaders?: Record<string, string>;
    status?: string;
    contentType?: string;
    encoding?: string;
    body: string | Uint8Array;
    cuts?: number[];
  },
): HttpStream {
  const s = drive(host, {
    cluster: "outbound|443||api.openai.com",
    request: {
      headers: {
        ":method": "POST",
        ":path": "/v1/chat/completions",
        ":authority": "api.openai.com",
        ...opts.requestHeaders,
      },
      body: opts.request ?? "{}",
    },
    response: {
      status: opts.status ?? "200",
      headers: {
        "content-type": opts.contentType ?? "application/json",
        ...(opts.encoding ? { "content-encoding": opts.encoding } : {}),
      },
      body: opts.body,
      cuts: opts.cuts,
    },
  });
  assert.equal(s.held, 0);
  assert.deepEqual(host.traps, []);
  return s;
}

describe("series cap", () => {
  test("models past max_series fold into one 'other' series and are counted", async () => {
    const host = await ProxyWasmHost.load(WASM, {
      nodeMetadata: NODE_METADATA,
      pluginConfig: { max_series: 3 },
    });
    for (let i = 0; i < 10; i++)
      llmCall(host, {
        request: JSON.stringify({ model: `m${i}` }),
        body: '{"usage":{"prompt_tokens":2,"completion_tokens":1}}',
      });
    const lines = renderPrometheus(host, loadStatsTags(BOOTSTRAP_CONFIGMAP))
      .split("\n")
      .filter((l) => l.startsWith("asm_llm_proxy_prompt_tokens{"));
    assert.deepEqual(
      lines.map((l) =>
        /llmproxy_destination_service="([^"]*)",llmproxy_model="([^"]*)"} (\d+)/.exec(l)!.slice(1),
      ),
      [
        ["api.openai.com", "m0", "2"],
        ["api.openai.com", "m1", "2"],
        ["api.openai.com", "m2", "2"],
        ["other", "other", "14"],
      ],
    );
    assert.equal(host.counter(ISSUE("cardinality_overflow")), 7);
  });

  test("the default cap is 1000 series per VM", async () => {
    const host = await ProxyWasmHost.load(WASM, { nodeMetadata: NODE_METADATA });
    for (let i = 0; i < 1100; i++)
      llmCall(host, {
        request: JSON.stringify({ model: `model-${i}` }),
        body: '{"usage":{"prompt_tokens":1}}',
      });
    const series = [...host.metrics.keys()].filter((k) =>
      k.startsWith("wasmcustom.asm_llm_proxy_prompt_tokens|"),
    );
    assert.equal(series.length, 1001);
    assert.equal(host.counter(ISSUE("cardinality_overflow")), 100);
  });

  test("a known series keeps counting after the cap is reached", async () => {
    const host = await ProxyWasmHost.load(WASM, {
      nodeMetadata: NODE_METADATA,
      pluginConfig: { max_series: 1 },
    });
    llmCall(host, { request: '{"model":"a"}', body: '{"usage":{"prompt_tokens":1}}' });
    llmCall(host, { request: '{"model":"b"}', body: '{"usage":{"prompt_tokens":1}}' });
    llmCall(host, { request: '{"model":"a"}', body: '{"usage":{"prompt_tokens":1}}' });
    assert.equal(
      host.counter(
        "asm_llm_proxy_prompt_tokens|llmproxy_source_workload=sleep|llmproxy_source_workload_namespace=default|llmproxy_destination_service=api.openai.com|llmproxy_model=a",
      ),
      2,
    );
  });
});

describe("compressed responses", () => {
  test("accept-encoding is removed from LLM requests by default, and only from them", async () => {
    const host = await ProxyWasmHost.load(WASM, { nodeMetadata: NODE_METADATA });
    const llm = host.stream();
    llm.sendRequestHeaders({
      ":method": "POST",
      ":path": "/v1/chat/completions",
      "accept-encoding": "gzip, deflate",
    });
    assert.equal(
      llm.requestHeaders.find(([k]) => k === "accept-encoding"),
      undefined,
    );
    const other = host.stream();
    other.sendRequestHeaders({ ":method": "POST", ":path": "/v1/files", "accept-encoding": "gzip" });
    assert.deepEqual(
      other.requestHeaders.find(([k]) => k === "accept-encoding"),
      ["accept-encoding", "gzip"],
    );
  });

  test("with strip_accept_encoding off, a gzip response passes unread and is counted", async () => {
    const host = await ProxyWasmHost.load(WASM, {
      nodeMetadata: NODE_METADATA,
      pluginConfig: { strip_accept_encoding: false },
    });
    const gz = Uint8Array.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xab, 0x56, 0x2a, 0x2d]);
    const s = drive(host, {
      request: {
        headers: { ":method": "POST", ":path": "/v1/chat/completions", "accept-encoding": "gzip" },
        body: '{"model":"gpt-4o"}',
      },
      response: { headers: { "content-type": "application/json", "content-encoding": "gzip" }, body: gz },
    });
    assert.deepEqual(
      s.requestHeaders.find(([k]) => k === "accept-encoding"),
      ["accept-encoding", "gzip"],
    );
    assert.deepEqual(s.forwarded("response"), gz);
    assert.equal(s.state("wasm.asm.llmproxy.request_model"), "gpt-4o");
    assert.equal(s.state("wasm.asm.llmproxy.request_prompt_tokens"), undefined);
    assert.equal(host.counter(ISSUE("encoded_body")), 1);
  });
});

describe("error responses", () => {
  for (const [status, type, body] of [
    [
      "400",
      "application/json",
      '{"error":{"message":"bad","type":"invalid_request_error"},"usage":{"prompt_tokens":9}}',
    ],
    ["502", "text/html", "<html><body>Bad gateway usage</body></html>"],
    ["503", "text/plain", "upstream connect error"],
    ["429", "text/event-stream", 'data: {"usage":{"prompt_tokens":9}}\n\n'],
  ]) {
    test(`${status} ${type}: the model is recorded, tokens never`, async () => {
      const host = await ProxyWasmHost.load(WASM, { nodeMetadata: NODE_METADATA });
      const s = llmCall(host, { request: '{"model":"gpt-4o"}', status, contentType: type, body });
      assert.equal(s.state("wasm.asm.llmproxy.request_model"), "gpt-4o");
      assert.equal(s.state("wasm.asm.llmproxy.request_prompt_tokens"), undefined);
      assert.equal([...host.metrics.keys()].filter((k) => k.includes("_tokens|")).length, 0);
    });
  }
});

describe("size", () => {
  test("a body of many megabytes passes in chunks and is read without growing memory", async () => {
    const host = await ProxyWasmHost.load(WASM, { nodeMetadata: NODE_METADATA });
    const filler = "x".repeat(1024);
    const big = `{"choices":[${Array.from({ length: 8 * 1024 }, () => `{"text":"${filler}"}`).join(",")}],"model":"big","usage":{"prompt_tokens":5,"completion_tokens":6}}`;
    const bytes = enc.encode(big);
    const cuts = [];
    for (let i = 65536; i < bytes.length; i += 65536) cuts.push(i);
    const first = llmCall(host, { body: bytes, cuts });
    assert.ok(bytes.length > 8_000_000);
    assert.equal(first.forwardedResponse.length, cuts.length + 1);
    assert.equal(first.state("wasm.asm.llmproxy.request_completion_tokens"), "6");
    // Garbage is collected every 32 streams, so memory is compared at the same point of a cycle.
    for (let i = 0; i < 64; i++) llmCall(host, { body: completionBody("m") });
    const after = host.memoryBytes;
    llmCall(host, { body: bytes, cuts });
    for (let i = 0; i < 64; i++) llmCall(host, { body: completionBody("m") });
    assert.equal(host.memoryBytes, after);
  });

  test("a huge model string is not recorded and costs no memory", async () => {
    const host = await ProxyWasmHost.load(WASM, { nodeMetadata: NODE_METADATA });
    // Warm up with bodies larger than one 16 KiB read window, through two collection cycles.
    const warm = JSON.stringify({ model: "w", pad: "p".repeat(40_000) });
    for (let i = 0; i < 64; i++) llmCall(host, { request: warm, body: completionBody("m") });
    const before = host.memoryBytes;
    // One 4 MB chunk: the plugin reads it in windows, so memory does not grow to its size.
    const s = llmCall(host, {
      request: JSON.stringify({ model: "m".repeat(4_000_000) }),
      body: '{"usage":{"prompt_tokens":1}}',
    });
    assert.equal(s.state("wasm.asm.llmproxy.request_model"), undefined);
    assert.equal(s.state("wasm.asm.llmproxy.request_prompt_tokens"), "1");
    for (let i = 0; i < 63; i++) llmCall(host, { request: warm, body: completionBody("m") });
    assert.equal(host.memoryBytes, before);
  });

  test("numbers beyond any integer type are refused, not wrapped", async () => {
    const host = await ProxyWasmHost.load(WASM, { nodeMetadata: NODE_METADATA });
    for (const n of ["1e400", "18446744073709551617", "9".repeat(400), "-9223372036854775809"]) {
      const s = llmCall(host, { body: `{"usage":{"prompt_tokens":${n},"completion_tokens":3}}` });
      assert.equal(s.state("wasm.asm.llmproxy.request_prompt_tokens"), undefined, n);
      assert.equal(s.state("wasm.asm.llmproxy.request_completion_tokens"), "3", n);
    }
  });
});

describe("request bodies that are not JSON", () => {
  for (const [name, body] of [
    ["a form", "model=gpt-4o&stream=true"],
    ["binary", Uint8Array.from({ length: 4096 }, (_, i) => (i * 7919) & 0xff)],
    ["multipart", '--b\r\nContent-Disposition: form-data; name="model"\r\n\r\ngpt-4o\r\n--b--\r\n'],
  ] as Array<[string, string | Uint8Array]>) {
    test(`${name}: passed on unchanged, counted as a parse error`, async () => {
      const host = await ProxyWasmHost.load(WASM, { nodeMetadata: NODE_METADATA });
      const s = llmCall(host, { request: body, body: completionBody("qwen-turbo") });
      assert.deepEqual(s.forwarded("request"), typeof body === "string" ? enc.encode(body) : body);
      assert.equal(
        s.state("wasm.asm.llmproxy.request_model"),
        "qwen-turbo",
        "the response still names the model",
      );
      assert.equal(host.counter(ISSUE("parse_error")), 1);
    });
  }
});

test("configuration problems are a gauge, right whatever the number of VMs", async () => {
  // The host runs Envoy's canary VM, then the worker VM; both configure, and Envoy keeps stats by
  // name, so a counter bumped per problem would read 6 here.
  const host = await ProxyWasmHost.load(WASM, { pluginConfig: { paths: 1, max_series: 0, nope: true } });
  assert.equal(host.gauge("asm_llm_proxy_config_problems"), 3);
  assert.equal(host.counter(ISSUE("config_error")), undefined, "no longer an issue counter");
  assert.equal(host.canaryLogs.filter((l) => l.level === "warn").length, 3, "the canary saw them too");
  // A good configuration sets it back to 0.
  const good = await ProxyWasmHost.load(WASM, { pluginConfig: {} });
  assert.equal(good.gauge("asm_llm_proxy_config_problems"), 0);
  assert.deepEqual(
    host.logs.filter((l) => l.level === "warn").map((l) => l.message),
    [
      "asm-llm-proxy: 'paths' must be an array of non-empty strings; using the default",
      "asm-llm-proxy: 'max_series' must be an integer from 1 to 100000; using the default",
      "asm-llm-proxy: unknown configuration key 'nope' ignored",
    ],
  );
});

test("memory: 100,000 streams of mixed traffic leave linear memory where 1,000 left it", async () => {
  const host = await ProxyWasmHost.load(WASM, { nodeMetadata: NODE_METADATA });
  const mixes = CASES.map((c) => ({ c, bytes: enc.encode(c.body) }));
  const run = (from: number, to: number) => {
    for (let i = from; i < to; i++) {
      const { c, bytes } = mixes[i % mixes.length];
      const kind = i % 10;
      drive(host, {
        cluster: `outbound|443||${c.authority}`,
        request: {
          headers: { ":method": kind === 9 ? "GET" : "POST", ":path": c.path, ":authority": c.authority },
          body: c.request,
        },
        response: {
          status: kind === 8 ? "500" : "200",
          headers: { "content-type": c.contentType },
          // kind 7: reset mid-body
          ...(kind === 7
            ? { body: bytes.subarray(0, bytes.length >> 1), end: "reset" as const }
            : { body: bytes, cuts: [bytes.length >> 2, bytes.length >> 1] }),
        },
      });
    }
  };
  run(0, 1000);
  const after1k = host.memoryBytes;
  run(1000, 100_000);
  assert.deepEqual(host.traps, []);
  assert.equal(host.memoryBytes, after1k, `linear memory ${after1k} bytes after 1,000 streams`);
  console.log(
    `# linear memory per VM: ${after1k} bytes after 1,000 streams, ${host.memoryBytes} after 100,000`,
  );
});
