// SPDX-License-Identifier: Apache-2.0
// The APIs with their own wire formats (Gemini and Vertex, Bedrock Converse, ConverseStream's
// binary event stream and InvokeModel, Cohere v2, Ollama native, Responses by id) and the usage
// fields beyond the OpenAI/Anthropic shapes, through the compiled plugin: each body whole, split
// at every byte offset and in small chunks; nothing held or changed.

import { test, describe } from "node:test";
import assert from "node:assert/strict";
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
    const before = host.memoryBytes;
    const cuts = [];
    for (let i = 4093; i < body.length; i += 4093) cuts.push(i);
    check(run(host, c, cuts), c, "long stream");
    assert.equal(host.memoryBytes, before, "linear memory did not grow");
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
    const before = host.memoryBytes;
    const bytes = enc.encode(c.body);
    const cuts = [];
    for (let i = 4096; i < bytes.length; i += 4096) cuts.push(i);
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
