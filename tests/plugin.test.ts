// SPDX-License-Identifier: Apache-2.0
// The compiled plugin in the test host: what it records, what it leaves alone, and that it never
// holds or changes a byte, whatever the chunking.

import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { ProxyWasmHost, type HttpStream } from "./host/host.ts";
import { drive } from "./host/driver.ts";
import { loadStatsTags, renderPrometheus } from "./host/telemetry.ts";
import { completionBody } from "./mock-upstream.ts";
import { WASM, BOOTSTRAP_CONFIGMAP, NODE_METADATA, CLUSTER } from "./seed.ts";

/** Token counters defined so far (the filter's own issue counters aside). */
function tokenCounters(host: ProxyWasmHost): string[] {
  return [...host.metrics.keys()].filter((k) => k.includes("_tokens|"));
}

const tags = loadStatsTags(BOOTSTRAP_CONFIGMAP);
const enc = new TextEncoder();

const MODEL = "wasm.asm.llmproxy.request_model";
const PROMPT = "wasm.asm.llmproxy.request_prompt_tokens";
const COMPLETION = "wasm.asm.llmproxy.request_completion_tokens";

interface Call {
  method?: string;
  path?: string;
  authority?: string;
  requestBody?: string | Uint8Array;
  requestCuts?: number[];
  status?: string;
  responseHeaders?: Record<string, string>;
  responseBody?: string | Uint8Array;
  responseCuts?: number[];
  cluster?: string;
  /** Finish the response with trailers instead of end_of_stream on the last body chunk. */
  trailers?: boolean;
  /** Stop before the response ends (a reset): only on_log follows. */
  cutShort?: boolean;
}

function call(host: ProxyWasmHost, c: Call): HttpStream {
  const reqBody = c.requestBody ?? '{"model":"gpt-4o","messages":[]}';
  const body =
    typeof c.responseBody === "string" || c.responseBody === undefined
      ? enc.encode(c.responseBody ?? completionBody("gpt-4o-2024-08-06"))
      : c.responseBody;
  const half = body.subarray(0, Math.floor(body.length / 2));
  const s = drive(host, {
    cluster: c.cluster,
    request: {
      headers: {
        ":method": c.method ?? "POST",
        ":path": c.path ?? "/v1/chat/completions",
        ":authority": c.authority ?? "api.openai.com",
        "content-type": "application/json",
      },
      body: reqBody,
      cuts: c.requestCuts,
    },
    response: {
      status: c.status ?? "200",
      headers: { "content-type": "application/json", ...c.responseHeaders },
      ...(c.cutShort
        ? { body: half, end: "reset" }
        : c.trailers
          ? { body, end: "trailers" }
          : { body, cuts: c.responseCuts }),
    },
  });
  assert.equal(s.held, 0, "no chunk held");
  assert.equal(s.headerStops, 0, "headers continue");
  assert.equal(s.bufferChanges + s.headerChanges + s.localReplies, 0, "nothing changed");
  assert.deepEqual(s.forwarded("request"), typeof reqBody === "string" ? enc.encode(reqBody) : reqBody);
  assert.deepEqual(s.forwarded("response"), c.cutShort ? half : body);
  assert.deepEqual(host.traps, []);
  return s;
}

function recorded(s: HttpStream) {
  return { model: s.state(MODEL), prompt: s.state(PROMPT), completion: s.state(COMPLETION) };
}

async function newHost(options = {}) {
  return ProxyWasmHost.load(WASM, { nodeMetadata: NODE_METADATA, ...options });
}

describe("split bodies", () => {
  const response = JSON.stringify({
    id: "chatcmpl-1",
    object: "chat.completion",
    model: "qwen-max",
    choices: [
      {
        index: 0,
        message: { role: "assistant", content: 'Say "usage": {"prompt_tokens": 999} — 通义千问 \\u0022 ok' },
      },
    ],
    usage: { prompt_tokens: 1234567, completion_tokens: 89, total_tokens: 1234656 },
  });

  test("a response split at every byte offset gives the same result", async () => {
    const host = await newHost();
    for (let i = 1; i < enc.encode(response).length; i++) {
      const s = call(host, { requestBody: '{"messages":[]}', responseBody: response, responseCuts: [i] });
      assert.deepEqual(
        recorded(s),
        { model: "qwen-max", prompt: "1234567", completion: "89" },
        `split at ${i}`,
      );
    }
  });

  test("a response fed one byte per chunk", async () => {
    const host = await newHost();
    const bytes = enc.encode(response);
    const s = call(host, {
      requestBody: '{"messages":[]}',
      responseBody: bytes,
      responseCuts: [...bytes.keys()],
    });
    assert.equal(s.forwardedResponse.length, bytes.length);
    assert.deepEqual(recorded(s), { model: "qwen-max", prompt: "1234567", completion: "89" });
  });

  test("a request model with escapes and multi-byte characters, split at every offset", async () => {
    const host = await newHost();
    const body =
      '{"messages":[{"role":"user","content":"\\"model\\": \\"x\\""}],"model":"\\u0071wen-\\ud83d\\ude00-通义","stream":false}';
    for (let i = 1; i < enc.encode(body).length; i++) {
      const s = call(host, { requestBody: body, requestCuts: [i] });
      assert.equal(s.state(MODEL), "qwen-😀-通义", `split at ${i}`);
    }
  });
});

describe("what is and is not the top-level field", () => {
  test("model and usage keys nested in other objects or inside strings are ignored", async () => {
    const host = await newHost();
    const response = JSON.stringify({
      choices: [
        {
          message: { content: '{"model":"fake","usage":{"prompt_tokens":1}}', model: "nested" },
          usage: { prompt_tokens: 5 },
        },
      ],
      meta: { model: "nested-too", usage: { prompt_tokens: 6, completion_tokens: 7 } },
      usage: { prompt_tokens: 8, completion_tokens: 9, details: { prompt_tokens: 10 } },
      model: "real",
    });
    const s = call(host, { requestBody: '{"messages":[]}', responseBody: response });
    assert.deepEqual(recorded(s), { model: "real", prompt: "8", completion: "9" });
  });

  test("the request's model wins over the response's", async () => {
    const host = await newHost();
    const s = call(host, {
      requestBody: '{"model":"gpt-4o","messages":[]}',
      responseBody: completionBody("gpt-4o-2024-08-06"),
    });
    assert.equal(s.state(MODEL), "gpt-4o");
  });

  test("duplicate keys: the last occurrence wins, as with JSON.parse", async () => {
    const host = await newHost();
    const s = call(host, {
      requestBody: '{"model":"a","model":"b"}',
      responseBody: '{"usage":{"prompt_tokens":1,"completion_tokens":2},"usage":{"prompt_tokens":3}}',
    });
    assert.deepEqual(recorded(s), { model: "b", prompt: "3", completion: undefined });
  });

  test("wrong types record nothing for that field", async () => {
    const host = await newHost();
    for (const bad of [
      '"12"',
      "-1",
      "1.5",
      "1e3",
      "null",
      "true",
      "[]",
      "{}",
      "9007199254740992",
      "123456789012345678901234567890",
    ]) {
      const s = call(host, {
        requestBody: "{}",
        responseBody: `{"model":"m","usage":{"prompt_tokens":${bad},"completion_tokens":4}}`,
      });
      assert.deepEqual(recorded(s), { model: "m", prompt: undefined, completion: "4" }, bad);
    }
    const s = call(host, {
      requestBody: '{"model":42}',
      responseBody: '{"model":["x"],"usage":{"prompt_tokens":1}}',
    });
    assert.equal(s.state(MODEL), undefined);
  });
});

describe("requests that are not LLM calls", () => {
  for (const [name, c] of [
    ["a GET on a chat path", { method: "GET" }],
    ["a POST to another path", { path: "/v1/models" }],
    ["a path that only contains the suffix", { path: "/v1/chat/completions/extra" }],
  ] as Array<[string, Call]>) {
    test(`${name} records nothing and reads no body`, async () => {
      const host = await newHost();
      const s = call(host, { ...c, cluster: CLUSTER });
      assert.equal(s.filterState.size, 0);
      assert.equal(host.defineCalls, 0);
      assert.deepEqual(tokenCounters(host), []);
    });
  }

  test("the query string is ignored when matching paths", async () => {
    const host = await newHost();
    const s = call(host, { path: "/openai/deployments/gpt/chat/completions?api-version=2024-06-01" });
    assert.deepEqual(recorded(s), { model: "gpt-4o", prompt: "7", completion: "13" });
  });

  test("completions and embeddings paths match by default", async () => {
    const host = await newHost();
    const s1 = call(host, { path: "/v1/completions" });
    assert.equal(s1.state(MODEL), "gpt-4o");
    const s2 = call(host, {
      path: "/v1/embeddings",
      requestBody: '{"model":"text-embedding-3-small","input":"hi"}',
      responseBody:
        '{"object":"list","data":[],"model":"text-embedding-3-small","usage":{"prompt_tokens":5,"total_tokens":5}}',
    });
    assert.deepEqual(recorded(s2), { model: "text-embedding-3-small", prompt: "5", completion: undefined });
  });
});

describe("responses that are not read", () => {
  test("an error status records the request's model and no tokens", async () => {
    const host = await newHost();
    const s = call(host, {
      status: "429",
      responseBody: '{"error":{"message":"rate limited"},"usage":{"prompt_tokens":5}}',
    });
    assert.deepEqual(recorded(s), { model: "gpt-4o", prompt: undefined, completion: undefined });
    assert.deepEqual(tokenCounters(host), []);
  });

  test("a compressed response is left unparsed", async () => {
    const host = await newHost();
    const s = call(host, {
      responseHeaders: { "content-encoding": "gzip" },
      responseBody: new Uint8Array([0x1f, 0x8b, 8, 0, 0, 0]),
    });
    assert.deepEqual(recorded(s), { model: "gpt-4o", prompt: undefined, completion: undefined });
  });

  test("a response that is not JSON is left unparsed", async () => {
    const host = await newHost();
    const s = call(host, {
      responseHeaders: { "content-type": "text/html" },
      responseBody: "<html>usage</html>",
    });
    assert.equal(s.state(PROMPT), undefined);
  });
});

describe("bodies that cannot be parsed", () => {
  for (const [name, body] of [
    ["truncated", completionBody("m").slice(0, 120)],
    ["trailing garbage", completionBody("m") + "x"],
    ["two documents", completionBody("m") + completionBody("m")],
    ["invalid UTF-8", '{"model":"m\xff","usage":{"prompt_tokens":1}}'],
    ["a control character in a string", '{"model":"m\u0001","usage":{"prompt_tokens":1}}'],
    ["an invalid escape", '{"model":"\\x","usage":{"prompt_tokens":1}}'],
    ["a trailing comma", '{"model":"m","usage":{"prompt_tokens":1},}'],
    ["a leading zero", '{"usage":{"prompt_tokens":01}}'],
    [
      "nesting deeper than 1024",
      '{"usage":{"prompt_tokens":1},"x":' + "[".repeat(1100) + "]".repeat(1100) + "}",
    ],
  ] as Array<[string, string]>) {
    test(`${name}: nothing recorded from the response, no trap`, async () => {
      const host = await newHost();
      const bytes =
        name === "invalid UTF-8" ? Uint8Array.from(body, (ch) => ch.charCodeAt(0)) : enc.encode(body);
      const s = call(host, { requestBody: '{"messages":[]}', responseBody: bytes });
      assert.deepEqual(recorded(s), { model: undefined, prompt: undefined, completion: undefined });
      assert.deepEqual(tokenCounters(host), []);
      assert.equal(host.counter("asm_llm_proxy_issues|llmproxy_issue=parse_error"), 1);
      assert.ok(
        host.logs.some((l) => l.level === "info" && l.message.includes("could not be read")),
        "one clear log line",
      );
    });
  }

  test("a valid document that is not an object records nothing and logs nothing", async () => {
    const host = await newHost();
    for (const body of ['"usage"', "[]", "42", "null"]) {
      const s = call(host, { requestBody: "{}", responseBody: body });
      assert.deepEqual(recorded(s), { model: undefined, prompt: undefined, completion: undefined });
    }
    assert.deepEqual(
      host.logs.filter((l) => l.level !== "debug"),
      [],
    );
  });

  test("deep nesting that is valid within the limit is parsed without recursion", async () => {
    const host = await newHost();
    const body =
      '{"x":' + "[".repeat(1000) + "]".repeat(1000) + ',"model":"deep","usage":{"prompt_tokens":2}}';
    const s = call(host, { requestBody: "{}", responseBody: body });
    assert.deepEqual(recorded(s), { model: "deep", prompt: "2", completion: undefined });
  });

  test("a request body that is not JSON is passed on; the response still counts", async () => {
    const host = await newHost();
    const s = call(host, { requestBody: "a=1&b=2", responseBody: completionBody("m") });
    assert.equal(s.state(MODEL), "m");
  });

  test("a lone surrogate or a control character in the model keeps it out", async () => {
    const host = await newHost();
    const s1 = call(host, {
      requestBody: '{"model":"a\\ud800b"}',
      responseBody: '{"usage":{"prompt_tokens":1}}',
    });
    assert.equal(s1.state(MODEL), undefined);
    const s2 = call(host, {
      requestBody: '{"model":"a\\nb"}',
      responseBody: '{"usage":{"prompt_tokens":1}}',
    });
    assert.equal(s2.state(MODEL), undefined);
  });

  test("a model longer than 256 bytes is not recorded", async () => {
    const host = await newHost();
    const s = call(host, {
      requestBody: JSON.stringify({ model: "m".repeat(257) }),
      responseBody: '{"usage":{"prompt_tokens":1}}',
    });
    assert.equal(s.state(MODEL), undefined);
    const ok = call(host, {
      requestBody: JSON.stringify({ model: "m".repeat(256) }),
      responseBody: '{"usage":{"prompt_tokens":1}}',
    });
    assert.equal(ok.state(MODEL), "m".repeat(256));
  });
});

describe("end of stream", () => {
  test("trailers end the response when no body chunk had end_of_stream", async () => {
    const host = await newHost();
    const s = call(host, { trailers: true, responseBody: completionBody("qwen-turbo") });
    assert.deepEqual(recorded(s), { model: "gpt-4o", prompt: "11", completion: "90" });
  });

  test("a response reset before its end records no tokens", async () => {
    const host = await newHost();
    const s = call(host, { cutShort: true, responseBody: completionBody("qwen-turbo") });
    assert.deepEqual(recorded(s), { model: "gpt-4o", prompt: undefined, completion: undefined });
    assert.deepEqual(tokenCounters(host), []);
  });

  test("memory does not grow with the number of streams", async () => {
    const host = await newHost();
    const run = (n: number) => {
      for (let i = 0; i < n; i++)
        call(host, {
          cluster: CLUSTER,
          responseBody: completionBody(i % 2 ? "qwen-turbo" : "qwen1.5-72b-chat"),
        });
    };
    run(1000);
    const after1k = host.memoryBytes;
    run(5000);
    assert.equal(host.memoryBytes, after1k);
  });
});

describe("dimensions", () => {
  const name = (dest: string, model: string, workload = "sleep", ns = "default") =>
    `asm_llm_proxy_prompt_tokens|llmproxy_source_workload=${workload}|llmproxy_source_workload_namespace=${ns}|llmproxy_destination_service=${dest}|llmproxy_model=${model}`;

  test("destination: Istio cluster host, else the authority without its port", async () => {
    const host = await newHost();
    call(host, { cluster: "outbound|443|v1|api.deepseek.com", authority: "ignored:80" });
    call(host, { cluster: "PassthroughCluster", authority: "llm.internal:8000" });
    call(host, { authority: "[::1]:11434" });
    call(host, { cluster: "llm_upstream", authority: "ollama" });
    assert.equal(host.counter(name("api.deepseek.com", "gpt-4o")), 7);
    assert.equal(host.counter(name("llm.internal", "gpt-4o")), 7);
    assert.equal(host.counter(name("[::1]", "gpt-4o")), 7);
    assert.equal(host.counter(name("ollama", "gpt-4o")), 7);
  });

  test("missing node metadata gives 'unknown', never a trap", async () => {
    const host = await ProxyWasmHost.load(WASM, {});
    call(host, { cluster: CLUSTER });
    assert.equal(host.counter(name("dashscope.aliyuncs.com", "gpt-4o", "unknown", "unknown")), 7);
  });

  test("a model name cannot break the stat name's structure", async () => {
    const host = await newHost();
    const s = call(host, { cluster: CLUSTER, requestBody: '{"model":"evil|llmproxy_model=x=y"}' });
    assert.equal(s.state(MODEL), "evil|llmproxy_model=x=y", "filter state keeps the real value");
    const lines = renderPrometheus(host, tags)
      .split("\n")
      .filter((l) => l.startsWith("asm_llm_proxy_prompt_tokens{"));
    assert.deepEqual(lines, [
      'asm_llm_proxy_prompt_tokens{llmproxy_source_workload="sleep",llmproxy_source_workload_namespace="default",llmproxy_destination_service="dashscope.aliyuncs.com",llmproxy_model="evil_llmproxy_model_x_y"} 7',
    ]);
  });

  test("no token counter is defined for zero tokens", async () => {
    const host = await newHost();
    call(host, { responseBody: '{"model":"m","usage":{"prompt_tokens":0,"completion_tokens":0}}' });
    assert.deepEqual(tokenCounters(host), []);
  });
});

describe("configuration", () => {
  test("an empty configuration and any root id load with the defaults", async () => {
    for (const rootId of ["", "llm-proxy", "anything"]) {
      const host = await newHost({ pluginConfig: "", rootId });
      const s = call(host, {});
      assert.equal(s.state(MODEL), "gpt-4o");
    }
  });

  test("custom paths replace the defaults", async () => {
    const host = await newHost({ pluginConfig: { paths: ["/api/chat", "/v1/messages"] } });
    assert.equal(call(host, { path: "/api/chat" }).state(MODEL), "gpt-4o");
    assert.equal(call(host, { path: "/v1/chat/completions" }).filterState.size, 0);
    assert.deepEqual(
      host.logs.filter((l) => l.level === "warn"),
      [],
    );
  });

  const IGNORED =
    "the whole configuration is ignored and the defaults apply: no provider is configured, so provider calls go out without the configured key, model or path";
  for (const [config, message, level] of [
    [
      "{not json",
      "configuration is not valid JSON at line 1, column 2 (byte 1): expected a member name in double quotes but found 'n'; " +
        IGNORED,
      "error",
    ],
    ["[1,2]", "configuration must be a JSON object; " + IGNORED, "error"],
    ['{"paths":"x"}', "'paths' must be an array of non-empty strings; using the default"],
    [
      '{"paths":["/a",3]}',
      "'paths' must be an array of non-empty strings (item 1 is not); using the default",
    ],
    ['{"inject_stream_usage":"yes"}', "'inject_stream_usage' must be true or false; using the default"],
    ['{"pathz":[]}', "unknown configuration key 'pathz' ignored"],
  ]) {
    test(`a bad configuration (${config}) is logged and the plugin keeps running on defaults`, async () => {
      const host = await newHost({ pluginConfig: config });
      assert.deepEqual(
        host.logs.filter((l) => l.level === (level ?? "warn")).map((l) => l.message),
        ["asm-llm-proxy: " + message],
      );
      assert.equal(call(host, {}).state(MODEL), "gpt-4o");
    });
  }
});
