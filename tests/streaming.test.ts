// SPDX-License-Identifier: Apache-2.0
// Every supported API and provider, non-streamed and streamed, through the compiled plugin:
// each body is also fed split at every byte offset, and no chunk may be held or changed.

import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { ProxyWasmHost, type HttpStream } from "./host/host.ts";
import { drive } from "./host/driver.ts";
import { CASES, sse, recorded, type ProviderCase } from "./fixtures/providers.ts";
import { WASM, NODE_METADATA, ALL_FILTER_STATE } from "./seed.ts";

/** Token counters defined so far (the filter's own issue counters aside). */
function tokenCounters(host: ProxyWasmHost): string[] {
  return [...host.metrics.keys()].filter((k) => k.includes("_tokens|"));
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function run(
  host: ProxyWasmHost,
  c: ProviderCase,
  cuts: number[] = [],
  requestCuts: number[] = [],
): HttpStream {
  return drive(host, {
    cluster: `outbound|443||${c.authority.split(":")[0]}`,
    request: {
      headers: {
        ":method": "POST",
        ":path": c.path,
        ":authority": c.authority,
        "content-type": "application/json",
        "content-length": String(enc.encode(c.request).length),
      },
      body: c.request,
      cuts: requestCuts,
    },
    response: { headers: { "content-type": c.contentType }, body: c.body, cuts },
  });
}

function check(s: HttpStream, c: ProviderCase, what: string): void {
  assert.deepEqual(recorded(s), c.expected, what);
  assert.equal(
    s.state("wasm.asm.llmproxy.request_stream"),
    String(JSON.parse(c.request).stream === true),
    what,
  );
  assert.equal(s.held, 0, `${what}: no chunk held`);
  assert.equal(s.bufferChanges + s.headerChanges, 0, `${what}: nothing changed`);
  assert.equal(dec.decode(s.forwarded("response")), c.body, `${what}: response bytes unchanged`);
  assert.equal(dec.decode(s.forwarded("request")), c.request, `${what}: request bytes unchanged`);
}

describe("APIs and providers", () => {
  for (const c of CASES) {
    test(`${c.name}`, async () => {
      const host = await ProxyWasmHost.load(WASM, {
        nodeMetadata: NODE_METADATA,
        pluginConfig: ALL_FILTER_STATE,
      });
      const s = run(host, c);
      check(s, c, "whole body");
      assert.deepEqual(host.traps, []);
      const dims = `|llmproxy_source_workload=sleep|llmproxy_source_workload_namespace=default|llmproxy_destination_service=${c.authority.split(":")[0]}|llmproxy_model=${c.expected.model}`;
      const prompt = Number(c.expected.prompt ?? 0);
      const completion = Number(c.expected.completion ?? 0);
      assert.equal(host.counter("asm_llm_proxy_prompt_tokens" + dims), prompt > 0 ? prompt : undefined);
      assert.equal(
        host.counter("asm_llm_proxy_completion_tokens" + dims),
        completion > 0 ? completion : undefined,
      );
    });

    test(`${c.name}: split at every byte offset`, async () => {
      const host = await ProxyWasmHost.load(WASM, {
        nodeMetadata: NODE_METADATA,
        pluginConfig: ALL_FILTER_STATE,
      });
      const n = enc.encode(c.body).length;
      for (let i = 1; i < n; i++) check(run(host, c, [i]), c, `split at ${i}`);
      assert.deepEqual(host.traps, []);
    });
  }

  test("every stream fed in chunks of 1 to 7 bytes", async () => {
    const host = await ProxyWasmHost.load(WASM, {
      nodeMetadata: NODE_METADATA,
      pluginConfig: ALL_FILTER_STATE,
    });
    for (const c of CASES) {
      const n = enc.encode(c.body).length;
      for (let size = 1; size <= 7; size++) {
        const cuts = [];
        for (let i = size; i < n; i += size) cuts.push(i);
        check(run(host, c, cuts, [3, 9]), c, `${c.name} in ${size}-byte chunks`);
      }
    }
  });
});

describe("server-sent events", () => {
  const usageEvent = { model: "m", choices: [], usage: { prompt_tokens: 3, completion_tokens: 4 } };
  const base: ProviderCase = {
    name: "sse",
    path: "/v1/chat/completions",
    authority: "api.openai.com",
    request: '{"stream":true}',
    contentType: "text/event-stream",
    body: "",
    expected: { model: "m", responseModel: "m", prompt: "3", completion: "4", total: "7" },
  };
  const variants: Array<[string, string]> = [
    ["LF", sse([{ data: { model: "m" } }, { data: usageEvent }, { data: "[DONE]" }])],
    ["CRLF", sse([{ data: { model: "m" } }, { data: usageEvent }, { data: "[DONE]" }], "\r\n")],
    ["CR", sse([{ data: { model: "m" } }, { data: usageEvent }, { data: "[DONE]" }], "\r")],
    ["data: without a space", `data:${JSON.stringify(usageEvent)}\n\n`],
    [
      "one event's JSON over several data lines",
      `data: {"model":"m",\ndata: "usage":\ndata: {"prompt_tokens":3,"completion_tokens":4}}\n\n`,
    ],
    [
      "comments, id, retry and event lines",
      `: ping\n\nretry: 100\nid: 7\nevent: chunk\ndata: ${JSON.stringify(usageEvent)}\n\n: bye\n\n`,
    ],
    ["no blank line after the last event", `data: ${JSON.stringify(usageEvent)}`],
    ["a bare data line and an empty event", `data\n\ndata: ${JSON.stringify(usageEvent)}\n\n\n\n`],
  ];
  for (const [name, body] of variants) {
    test(`${name}, split at every byte offset`, async () => {
      const host = await ProxyWasmHost.load(WASM, {
        nodeMetadata: NODE_METADATA,
        pluginConfig: ALL_FILTER_STATE,
      });
      const c = { ...base, body };
      check(run(host, c), c, "whole");
      for (let i = 1; i < enc.encode(body).length; i++) check(run(host, c, [i]), c, `split at ${i}`);
    });
  }

  test("[DONE] with no usage records the model and no tokens", async () => {
    const host = await ProxyWasmHost.load(WASM, {
      nodeMetadata: NODE_METADATA,
      pluginConfig: ALL_FILTER_STATE,
    });
    const c = {
      ...base,
      body: sse([{ data: { model: "m", choices: [] } }, { data: "[DONE]" }]),
      expected: { model: "m", responseModel: "m" },
    };
    check(run(host, c), c, "done only");
    assert.deepEqual(tokenCounters(host), []);
    assert.deepEqual(
      host.logs.filter((l) => l.level !== "debug"),
      [],
    );
  });

  test("a stream cut in the middle of its usage event records no tokens", async () => {
    const host = await ProxyWasmHost.load(WASM, {
      nodeMetadata: NODE_METADATA,
      pluginConfig: ALL_FILTER_STATE,
    });
    const full = sse([{ data: { model: "m" } }, { data: usageEvent }]);
    const c = {
      ...base,
      body: full.slice(0, full.length - 20),
      expected: { model: "m", responseModel: "m" },
    };
    check(run(host, c), c, "cut");
    assert.deepEqual(tokenCounters(host), []);
    assert.ok(host.logs.some((l) => l.level === "info" && l.message.includes("1 event(s)")));
  });

  test("an unreadable event does not spoil the others", async () => {
    const host = await ProxyWasmHost.load(WASM, {
      nodeMetadata: NODE_METADATA,
      pluginConfig: ALL_FILTER_STATE,
    });
    const c = { ...base, body: `data: {"model":\n\n` + sse([{ data: usageEvent }]) };
    check(run(host, c), c, "bad event first");
  });

  test("state stays bounded: a long stream costs no memory", async () => {
    const host = await ProxyWasmHost.load(WASM, {
      nodeMetadata: NODE_METADATA,
      pluginConfig: ALL_FILTER_STATE,
    });
    const events = [];
    for (let i = 0; i < 20000; i++)
      events.push({ data: { model: "m", choices: [{ delta: { content: "token " + i } }], usage: null } });
    events.push({ data: usageEvent });
    const c = { ...base, body: sse(events) };
    const bytes = enc.encode(c.body);
    const cuts = [];
    for (let i = 4096; i < bytes.length; i += 4096) cuts.push(i);
    check(run(host, c, cuts), c, "long stream"); // the first may grow a fresh VM's heap once
    const before = host.memoryBytes;
    check(run(host, c, cuts), c, "long stream");
    assert.equal(host.memoryBytes, before, "linear memory did not grow");
  });
});

describe("inject_stream_usage", () => {
  const request = '{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"}"}]}\n';
  const injected =
    '{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"}"}],"stream_options":{"include_usage":true}}\n';

  async function send(body: string, options: { inject?: boolean; path?: string; cuts?: number[] } = {}) {
    const host = await ProxyWasmHost.load(WASM, {
      nodeMetadata: NODE_METADATA,
      pluginConfig: { inject_stream_usage: options.inject ?? true, ...ALL_FILTER_STATE },
    });
    const s = drive(host, {
      request: {
        headers: {
          ":method": "POST",
          ":path": options.path ?? "/v1/chat/completions",
          ":authority": "api.openai.com",
          "content-length": String(enc.encode(body).length),
        },
        body,
        cuts: options.cuts,
      },
    });
    const contentLength = s.requestHeaders.find(([k]) => k === "content-length")?.[1];
    assert.equal(s.held, 0);
    assert.deepEqual(host.traps, []);
    return { s, contentLength, forwarded: dec.decode(s.forwarded("request")) };
  }

  test("adds stream_options to a streamed chat request and drops content-length", async () => {
    const { forwarded, contentLength } = await send(request);
    assert.equal(forwarded, injected);
    assert.equal(JSON.parse(forwarded).stream_options.include_usage, true);
    assert.equal(contentLength, undefined);
  });

  test("works whatever the chunking, in whichever chunk the closing brace arrives", async () => {
    const n = enc.encode(request).length;
    for (let i = 1; i < n; i++) {
      // Split right after the brace, the last chunk holds only the newline.
      const { forwarded } = await send(request, { cuts: [i] });
      assert.equal(forwarded, injected, `split at ${i}`);
    }
  });

  test("a last chunk over 64 KiB gets the option too", async () => {
    const long = "x".repeat(200_000);
    const body = `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"${long}"}]}`;
    // One chunk of 200 KB (read in 32 KiB windows), and the same body with its last chunk 100 KB.
    for (const cuts of [[], [enc.encode(body).length - 100_000]]) {
      const { s, forwarded } = await send(body, { cuts });
      assert.equal(
        forwarded,
        body.slice(0, -1) + ',"stream_options":{"include_usage":true}}',
        `cuts ${cuts}`,
      );
      assert.equal(JSON.parse(forwarded).stream_options.include_usage, true);
      // So far into a chunk, the insertion moves the chunk a window (32 KiB) at a time, so that
      // plugin memory does not grow with the chunk: a drain and an append per window, before and
      // after the brace, and the option's own append.
      const chunk = enc.encode(body).length - (cuts[0] ?? 0);
      const windows = (n: number) => Math.ceil(n / 32768);
      assert.equal(s.bufferChanges, 2 * windows(chunk - 1) + 1 + 2 * windows(1), `cuts ${cuts}`);
    }
  });

  for (const [name, body, options] of [
    ["off by default", request, { inject: false }],
    ["not streamed", '{"model":"gpt-4o","messages":[]}', {}],
    [
      "the client set stream_options",
      '{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":false}}',
      {},
    ],
    ["not an OpenAI chat or completions path", '{"model":"claude","stream":true}', { path: "/v1/messages" }],
    ["not JSON", '{"stream":true', {}],
  ] as Array<[string, string, { inject?: boolean; path?: string }]>) {
    test(`leaves the body alone when ${name}`, async () => {
      const { s, forwarded } = await send(body, options);
      assert.equal(forwarded, body);
      assert.equal(s.bufferChanges, 0);
    });
  }

  test("content-length stays when injection is off", async () => {
    const { contentLength } = await send(request, { inject: false });
    assert.equal(contentLength, String(enc.encode(request).length));
  });
});
