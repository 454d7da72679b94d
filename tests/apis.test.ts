// SPDX-License-Identifier: Apache-2.0
// The APIs with their own wire formats (Gemini and Vertex, Bedrock Converse, ConverseStream's
// binary event stream and InvokeModel, Cohere v2, Ollama native, Responses by id) and the usage
// fields beyond the OpenAI/Anthropic shapes, through the compiled plugin: each body whole, split
// at every byte offset and in small chunks; nothing held or changed.

import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { ProxyWasmHost, type HttpStream } from "./host/host.ts";
import { drive, type Response } from "./host/driver.ts";
import {
  API_CASES,
  CONVERSE_STREAM_BODY,
  CONVERSE_STREAM_BAD_CRC_BODY,
  ndjson,
  type ApiCase,
  recorded,
} from "./fixtures/providers.ts";
import { bedrockEvent, message, concatBytes, decodeMessages } from "./fixtures/eventstream.ts";
import { WASM, NODE_METADATA, ALL_FILTER_STATE } from "./seed.ts";
import { rng } from "./fuzz/rng.ts";

const enc = new TextEncoder();
const PARSE_ERRORS = "asm_llm_proxy_issues|llmproxy_issue=parse_error";

function bytesOf(body: string | Uint8Array): Uint8Array {
  return typeof body === "string" ? enc.encode(body) : body;
}

function run(host: ProxyWasmHost, c: ApiCase, cuts: number[] = []): HttpStream {
  const get = c.method === "GET";
  return drive(host, {
    cluster: `outbound|443||${c.authority.split(":")[0]}`,
    request: {
      headers: {
        ":method": c.method ?? "POST",
        ":path": c.path,
        ":authority": c.authority,
        ...(get ? {} : { "content-type": "application/json" }),
      },
      body: get ? undefined : c.request,
      cuts: [3],
    },
    response: { headers: { "content-type": c.contentType, ...c.responseHeaders }, body: c.body, cuts },
  });
}

function check(s: HttpStream, c: ApiCase, what: string): void {
  assert.deepEqual(recorded(s), c.expected, what);
  assert.equal(s.state("wasm.asm.llmproxy.request_stream"), String(c.stream), `${what}: request_stream`);
  assert.equal(s.state("wasm.asm.llmproxy.usage"), c.usage ?? "present", `${what}: usage`);
  assert.equal(s.held, 0, `${what}: no chunk held`);
  assert.equal(s.bufferChanges + s.headerChanges, 0, `${what}: nothing changed`);
  assert.deepEqual(s.forwarded("response"), bytesOf(c.body), `${what}: response bytes unchanged`);
  assert.deepEqual(s.forwarded("request"), enc.encode(c.request), `${what}: request bytes unchanged`);
}

/** Every filter-state key published (`filter_state`), so that each fixture's values can be checked. */
const load = (pluginConfig: object = {}) =>
  ProxyWasmHost.load(WASM, {
    nodeMetadata: NODE_METADATA,
    pluginConfig: { ...ALL_FILTER_STATE, ...pluginConfig },
  });

describe("APIs in their own wire formats", () => {
  for (const c of API_CASES) {
    test(c.name, async () => {
      const host = await load();
      check(run(host, c), c, "whole body");
      assert.deepEqual(host.traps, []);
      const dims = `|llmproxy_source_workload=sleep|llmproxy_source_workload_namespace=default|llmproxy_destination_service=${c.authority.split(":")[0]}|llmproxy_model=${c.expected.model}`;
      for (const [metric, v] of [
        ["prompt", c.expected.prompt],
        ["completion", c.expected.completion],
        ["cached", c.expected.cached],
        ["reasoning", c.expected.reasoning],
        ["cache_write", c.expected.cacheWrite],
      ] as const) {
        const n = Number(v ?? 0);
        assert.equal(host.counter(`asm_llm_proxy_${metric}_tokens${dims}`), n > 0 ? n : undefined, metric);
      }
    });

    test(`${c.name}: split at every byte offset`, async () => {
      const host = await load();
      const n = bytesOf(c.body).length;
      for (let i = 1; i < n; i++) check(run(host, c, [i]), c, `split at ${i}`);
      assert.deepEqual(host.traps, []);
    });

    test(`${c.name}: in chunks of 1 to 7 bytes`, async () => {
      const host = await load();
      const n = bytesOf(c.body).length;
      for (let size = 1; size <= 7; size++) {
        const cuts = [];
        for (let i = size; i < n; i += size) cuts.push(i);
        check(run(host, c, cuts), c, `${size}-byte chunks`);
      }
      assert.deepEqual(host.traps, []);
    });
  }
});

const converse = API_CASES.find((c) => c.name.startsWith("Bedrock ConverseStream (binary"))!;

describe("Bedrock event stream", () => {
  test("the test encoder's messages decode with the test decoder, CRCs and headers included", () => {
    const good = decodeMessages(CONVERSE_STREAM_BODY);
    assert.deepEqual(
      good.map((m) => m.headers[":event-type"]),
      [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
      ],
    );
    assert.ok(good.every((m) => m.preludeOk && m.messageOk));
    assert.equal(good[0].headers["x-test-int"], 7);
    assert.equal(good[0].headers["x-test-flag"], true);
    assert.equal(good[0].headers["x-test-date"], 1730000000000n);
    assert.equal(JSON.parse(good[5].payload).usage.inputTokens, 25);
    const bad = decodeMessages(CONVERSE_STREAM_BAD_CRC_BODY);
    assert.deepEqual(
      bad.map((m) => m.messageOk),
      [true, false, true, true, true, true],
    );
  });

  test("a message with a bad CRC is a parse error, and its values are not read", async () => {
    const host = await load();
    check(run(host, API_CASES[1]), API_CASES[1], "bad CRC in a delta");
    assert.equal(host.counter(PARSE_ERRORS), 1);
    // The usage itself behind a bad CRC: nothing recorded, parse_error.
    const body = concatBytes([
      bedrockEvent("messageStop", { stopReason: "end_turn" }),
      bedrockEvent("metadata", { usage: { inputTokens: 3, outputTokens: 4, totalTokens: 7 } }, "payload"),
    ]);
    const s = run(host, {
      ...converse,
      body,
      usage: "parse_error",
      expected: { model: converse.expected.model, responseModel: converse.expected.model },
    });
    check(
      s,
      {
        ...converse,
        body,
        usage: "parse_error",
        expected: { model: converse.expected.model, responseModel: converse.expected.model },
      },
      "bad CRC",
    );
    assert.equal(host.counter(PARSE_ERRORS), 2);
    assert.ok(host.logs.some((l) => l.level === "info" && l.message.includes("1 event(s)")));
  });

  test("a bad prelude CRC stops the reading: later messages are not trusted", async () => {
    const host = await load();
    const metadata = bedrockEvent("metadata", { usage: { inputTokens: 3, outputTokens: 4, totalTokens: 7 } });
    const body = concatBytes([bedrockEvent("messageStop", { stopReason: "x" }, "prelude"), metadata]);
    const c = {
      ...converse,
      body,
      usage: "parse_error",
      expected: { model: converse.expected.model, responseModel: converse.expected.model },
    };
    for (let i = 0; i < body.length; i += 5) check(run(host, c, i > 0 ? [i] : []), c, `split at ${i}`);
    assert.deepEqual(host.traps, []);
  });

  test("an exception message is not usage and not a parse error", async () => {
    const host = await load();
    const body = concatBytes([
      bedrockEvent("messageStart", { role: "assistant" }),
      message(
        {
          ":exception-type": "throttlingException",
          ":content-type": "application/json",
          ":message-type": "exception",
        },
        { message: "Too many requests, please wait before trying again.", usage: { inputTokens: 9 } },
      ),
    ]);
    const c = {
      ...converse,
      body,
      usage: "missing",
      expected: { model: converse.expected.model, responseModel: converse.expected.model },
    };
    check(run(host, c), c, "exception");
    assert.equal(host.counter(PARSE_ERRORS), undefined);
  });

  test("a stream cut inside a message keeps what the complete messages said", async () => {
    const host = await load();
    const body = CONVERSE_STREAM_BODY.subarray(0, CONVERSE_STREAM_BODY.length - 10);
    const c = {
      ...converse,
      body,
      usage: "parse_error",
      expected: { model: converse.expected.model, responseModel: converse.expected.model },
    };
    check(run(host, c), c, "cut");
    assert.equal(host.counter(PARSE_ERRORS), 1);
  });

  test("state stays bounded: 20,000 messages cost no memory", async () => {
    const host = await load();
    const frames = [];
    for (let i = 0; i < 20000; i++) {
      frames.push(bedrockEvent("contentBlockDelta", { contentBlockIndex: 0, delta: { text: "token " + i } }));
    }
    frames.push(bedrockEvent("metadata", { usage: { inputTokens: 3, outputTokens: 4, totalTokens: 7 } }));
    const body = concatBytes(frames);
    const c = {
      ...converse,
      body,
      expected: {
        model: converse.expected.model,
        responseModel: converse.expected.model,
        prompt: "3",
        completion: "4",
        total: "7",
      },
    };
    const cuts = [];
    for (let i = 4093; i < body.length; i += 4093) cuts.push(i);
    // The first long stream may take the fresh VM's heap past its first pages, as any busy VM's
    // is (tests/robustness.test.ts: 256 KiB per VM); a second one must cost nothing more.
    check(run(host, c, cuts), c, "long stream");
    const before = host.memoryBytes;
    check(run(host, c, cuts), c, "long stream");
    assert.equal(host.memoryBytes, before, "linear memory did not grow");
  });
});

describe("Bedrock InvokeModel with a compressed body", () => {
  test("keeps the counts of its response headers: usage present, not encoded; the issue counted", async () => {
    // Bedrock's own counts travel in headers, which no content-encoding touches.
    const host = await load({ strip_accept_encoding: false });
    const invoke = API_CASES.find((c) => c.name.startsWith("Bedrock InvokeModel (counts"))!;
    const gz = new Uint8Array(gzipSync(bytesOf(invoke.body)));
    const s = run(host, {
      ...invoke,
      body: gz,
      responseHeaders: { ...invoke.responseHeaders, "content-encoding": "gzip" },
    });
    // The body unread, the response model is the path's, as for every Bedrock call without one.
    assert.deepEqual(recorded(s), {
      model: invoke.expected.model,
      responseModel: invoke.expected.model,
      prompt: "15",
      completion: "9",
      total: "24",
    });
    assert.equal(s.state("wasm.asm.llmproxy.usage"), "present");
    assert.deepEqual(s.forwarded("response"), gz, "the compressed bytes pass unchanged");
    // The body itself was compressed and not read: that is still counted as the issue.
    assert.equal(host.counter("asm_llm_proxy_issues|llmproxy_issue=encoded_body"), 1);
    // Without the headers, the same compressed body is encoded: nothing read, the issue counted.
    const bare = run(host, { ...invoke, body: gz, responseHeaders: { "content-encoding": "gzip" } });
    assert.equal(bare.state("wasm.asm.llmproxy.usage"), "encoded");
    assert.equal(bare.state("wasm.asm.llmproxy.request_prompt_tokens"), undefined);
    assert.equal(host.counter("asm_llm_proxy_issues|llmproxy_issue=encoded_body"), 2);
    assert.deepEqual(host.traps, []);
  });
});

describe("path shapes and request semantics", () => {
  const gemini = API_CASES.find((c) => c.name === "Gemini generateContent (AI Studio)")!;
  const ollama = API_CASES.find((c) => c.name.startsWith("Ollama /api/chat"))!;

  test("the model in the path wins over a model in the body; it is URL-decoded", async () => {
    const host = await load();
    const c = {
      ...gemini,
      path: "/v1beta/models/gemini%2D2.5%2Dflash:generateContent",
      request: '{"model":"other"}',
    };
    check(run(host, c), c, "decoded");
  });

  test("Ollama streams unless the body says stream: false", async () => {
    const host = await load();
    const c = { ...ollama, request: JSON.stringify({ model: "llama3.2", stream: false }), stream: false };
    check(run(host, c), c, "stream false");
  });

  test("a GET to a path that is not a Responses id, and a GET when no shape asks for it, are left alone", async () => {
    const get = API_CASES.find((c) => c.method === "GET")!;
    for (const [config, path] of [
      [undefined, "/v1/responses/resp_1/input_items"],
      [undefined, "/v1/models"],
      [{ paths: ["/v1/chat/completions", "/responses"] }, get.path],
    ] as const) {
      const host = await load(config);
      const s = run(host, { ...get, path });
      assert.equal(s.state("wasm.asm.llmproxy.usage"), undefined, path);
      // Nothing but the configuration gauge every VM sets at configure time.
      assert.deepEqual([...host.metrics.keys()], ["wasmcustom.asm_llm_proxy_config_problems"], path);
    }
  });

  test("configured shapes: wildcards and {model} work on any prefix", async () => {
    const host = await load({ paths: ["/gw/*/model/{model}/converse"] });
    const bedrock = API_CASES.find((c) => c.name.startsWith("Bedrock Converse ("))!;
    const c = { ...bedrock, path: "/tenant-a/gw/eu/model/amazon.nova-pro-v1%3A0/converse" };
    check(
      run(host, c),
      {
        ...c,
        expected: { ...c.expected, model: "amazon.nova-pro-v1:0", responseModel: "amazon.nova-pro-v1:0" },
      },
      "configured",
    );
    const s = run(host, { ...bedrock, path: "/gw/model/amazon.nova-pro-v1%3A0/converse" });
    assert.equal(s.state("wasm.asm.llmproxy.usage"), undefined, "a wildcard needs a segment");
  });
});

describe("OpenAI Responses by id", () => {
  const completed = API_CASES.find((c) => c.name === "OpenAI Responses GET by id, completed")!;

  test("a completed response polled again is counted once", async () => {
    const host = await load();
    const dims =
      "|llmproxy_source_workload=sleep|llmproxy_source_workload_namespace=default|llmproxy_destination_service=api.openai.com|llmproxy_model=gpt-4.1-2025-04-14";
    for (let i = 0; i < 3; i++) check(run(host, completed), completed, `poll ${i}`);
    assert.equal(host.counter("asm_llm_proxy_prompt_tokens" + dims), 36);
    assert.equal(host.counter("asm_llm_proxy_completion_tokens" + dims), 87);
    assert.equal(
      host.counter(`asm_llm_proxy_requests${dims}|llmproxy_usage=present|llmproxy_stream=false`),
      3,
      "every poll is a request",
    );
    // Another response is counted.
    const other = JSON.parse(completed.body as string);
    other.id = "resp_other";
    run(host, { ...completed, path: "/v1/responses/resp_other", body: JSON.stringify(other) });
    assert.equal(host.counter("asm_llm_proxy_prompt_tokens" + dims), 72);
  });

  test("the ids kept are bounded: after 256 others, a response is counted again", async () => {
    const host = await load();
    const dims =
      "|llmproxy_source_workload=sleep|llmproxy_source_workload_namespace=default|llmproxy_destination_service=api.openai.com|llmproxy_model=gpt-4.1-2025-04-14";
    const poll = (id: string) => {
      const body = JSON.parse(completed.body as string);
      body.id = id;
      run(host, { ...completed, path: "/v1/responses/" + id, body: JSON.stringify(body) });
    };
    poll("resp_first");
    for (let i = 0; i < 255; i++) poll("resp_" + i);
    poll("resp_first");
    assert.equal(host.counter("asm_llm_proxy_prompt_tokens" + dims), 36 * 256, "still remembered");
    poll("resp_255");
    poll("resp_first");
    assert.equal(host.counter("asm_llm_proxy_prompt_tokens" + dims), 36 * 258, "forgotten, counted again");
    assert.deepEqual(host.traps, []);
  });

  test("a response that the POST counted is not counted again by a GET", async () => {
    const host = await load();
    const body = completed.body as string;
    const post: ApiCase = {
      ...completed,
      method: "POST",
      path: "/v1/responses",
      request: '{"model":"gpt-4.1"}',
    };
    run(host, { ...post, body });
    run(host, completed);
    const dims =
      "|llmproxy_source_workload=sleep|llmproxy_source_workload_namespace=default|llmproxy_destination_service=api.openai.com|llmproxy_model=";
    assert.equal(host.counter(dims.replace(/^/, "asm_llm_proxy_prompt_tokens") + "gpt-4.1"), 36);
    assert.equal(
      host.counter(dims.replace(/^/, "asm_llm_proxy_prompt_tokens") + "gpt-4.1-2025-04-14"),
      undefined,
    );
  });
});

describe("empty 2xx JSON bodies", () => {
  test("give parse_error however they are framed", async () => {
    const host = await load();
    const json = { "content-type": "application/json" };
    const frames: Array<[string, Response]> = [
      ["end on the headers", { headers: json, end: "headers" }],
      ["an empty last data chunk", { headers: json, body: "" }],
      ["trailers", { headers: json, end: "trailers" }],
    ];
    for (const [name, response] of frames) {
      const s = drive(host, {
        request: {
          headers: { ":method": "POST", ":path": "/v1/chat/completions", ":authority": "api.openai.com" },
          body: '{"model":"gpt-4o"}',
        },
        response,
      });
      assert.equal(s.state("wasm.asm.llmproxy.usage"), "parse_error", name);
    }
    assert.equal(host.counter(PARSE_ERRORS), 3);
  });
});

describe("Vertex AI :predict token counts", () => {
  test("500 random bodies, cut at random points: the prompt is the sum of the elements' counts", async () => {
    const host = await load();
    const predict = API_CASES.find((c) => c.name.startsWith("Vertex AI :predict"))!;
    const r = rng(20261204);
    const COUNTS = ["0", "1.5", "-3", "1e2", '"7"', "null", "9007199254740993", "9007199254740991"];
    // One prediction's JSON, and the literal of the token_count that counts for it (the last).
    const prediction = (): [string, string | undefined] => {
      if (r.chance(0.05)) return ["[1,2]", undefined];
      const literals: string[] = [];
      for (let k = r.chance(0.85) ? 1 + (r.chance(0.1) ? 1 : 0) : 0; k > 0; k--)
        literals.push(r.chance(0.7) ? String(r.int(3000)) : r.pick(COUNTS));
      const statistics = [`"truncated":${r.chance(0.5)}`, ...literals.map((l) => `"token_count":${l}`)];
      const embeddings = [
        `"values":[${Array.from({ length: r.int(4) }, () => (r.next() - 0.5).toFixed(4))}]`,
      ];
      const withStatistics = r.chance(0.9);
      if (withStatistics) embeddings.push(`"statistics":{${statistics}}`);
      if (r.chance(0.5)) embeddings.reverse();
      return [`{"embeddings":{${embeddings}}}`, withStatistics ? literals.at(-1) : undefined];
    };
    for (let i = 0; i < 500; i++) {
      const predictions = Array.from({ length: r.int(5) }, prediction);
      const body = `{"predictions":[${predictions.map(([json]) => json)}],"metadata":{"billableCharacterCount":${r.int(99)}}}`;
      // The sum when every element's count, and the sum, is a whole number up to 2^53 - 1.
      const MAX = BigInt(Number.MAX_SAFE_INTEGER);
      const counts = predictions.map(([, literal]) => literal).filter((l) => l !== undefined);
      const whole = counts.every((l) => /^(0|[1-9][0-9]*)$/.test(l));
      const sum = whole ? counts.reduce((n, l) => n + BigInt(l), 0n) : MAX + 1n;
      const expected = counts.length > 0 && sum <= MAX ? String(sum) : undefined;
      assert.equal(JSON.parse(body).predictions.length, predictions.length);
      const bytes = enc.encode(body);
      const cuts = Array.from({ length: r.int(6) }, () => 1 + r.int(bytes.length - 1));
      const s = run(host, { ...predict, body }, cuts);
      assert.equal(s.state("wasm.asm.llmproxy.request_prompt_tokens"), expected, body);
      assert.equal(s.state("wasm.asm.llmproxy.usage"), expected === undefined ? "missing" : "present", body);
      assert.deepEqual(s.forwarded("response"), bytes);
    }
    assert.deepEqual(host.traps, []);
  });
});

describe("newline-delimited JSON", () => {
  test("CRLF line ends, blank lines, a last line without LF; a bad line does not spoil the rest", async () => {
    const host = await load();
    const ollama = API_CASES.find((c) => c.name.startsWith("Ollama /api/chat"))!;
    const done = { model: "m", done: true, prompt_eval_count: 3, eval_count: 4 };
    const c = {
      ...ollama,
      body: `{"model":"m","done":false}\r\n\r\n{"model":\n  \n` + JSON.stringify(done),
      expected: { model: "llama3.2", responseModel: "m", prompt: "3", completion: "4", total: "7" },
    };
    for (let i = 1; i < c.body.length; i++) check(run(host, c, [i]), c, `split at ${i}`);
    assert.ok((host.counter(PARSE_ERRORS) ?? 0) > 0);
  });

  test("state stays bounded: 20,000 lines cost no memory", async () => {
    const host = await load();
    const ollama = API_CASES.find((c) => c.name.startsWith("Ollama /api/chat"))!;
    const lines = [];
    for (let i = 0; i < 20000; i++) lines.push({ model: "m", message: { content: "tok " + i }, done: false });
    lines.push({ model: "m", done: true, prompt_eval_count: 3, eval_count: 4 });
    const c = {
      ...ollama,
      body: ndjson(lines),
      expected: { model: "llama3.2", responseModel: "m", prompt: "3", completion: "4", total: "7" },
    };
    const bytes = enc.encode(c.body);
    const cuts = [];
    for (let i = 4096; i < bytes.length; i += 4096) cuts.push(i);
    check(run(host, c, cuts), c, "long stream"); // the first may grow a fresh VM's heap once
    const before = host.memoryBytes;
    check(run(host, c, cuts), c, "long stream");
    assert.equal(host.memoryBytes, before);
  });
});

describe("garbage through every new framing", () => {
  test("random and mutated bodies: no trap, nothing held or changed", async () => {
    const host = await load();
    let seed = 12345;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let i = 0; i < 3000; i++) {
      const c = API_CASES[rand(API_CASES.length)];
      const body = bytesOf(c.body).slice();
      if (rand(4) === 0) {
        for (let j = 0; j < body.length; j++) body[j] = rand(256);
      } else {
        for (let k = 1 + rand(4); k > 0; k--) body[rand(body.length)] = rand(256);
      }
      const s = run(host, { ...c, body }, [rand(body.length + 1)]);
      assert.equal(s.held, 0);
      assert.equal(s.bufferChanges + s.headerChanges, 0);
      assert.deepEqual(s.forwarded("response"), body);
    }
    assert.deepEqual(host.traps, []);
  });
});
