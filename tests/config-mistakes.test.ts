// SPDX-License-Identifier: Apache-2.0
// Configuration mistakes through the compiled plugin: each one says exactly what is wrong and
// where, keeps what is good, never prints a secret, and the JSON Schema of deploy/ refuses what
// the plugin refuses.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Ajv } from "ajv";
import { ProxyWasmHost, LogLevel, type HostOptions } from "./host/host.ts";
import { WASM, ROOT, NODE_METADATA, PATH, CLUSTER, REQUEST_BODY } from "./seed.ts";
import { completionBody } from "./mock-upstream.ts";

const dec = new TextDecoder();
const KEY = "sk-test-5f0c1e2d3b4a69788796a5b4c3d2e1f0";
const DASHSCOPE = "dashscope.aliyuncs.com";
const CONFIG_PROBLEMS = "asm_llm_proxy_config_problems";
/** An API path: an LLM call without providers. */
const API = "/v1/chat/completions";

function load(pluginConfig: string | object, options: HostOptions = {}) {
  return ProxyWasmHost.load(WASM, {
    nodeMetadata: NODE_METADATA,
    logLevel: LogLevel.trace,
    ...options,
    pluginConfig,
  });
}

const messages = (host: ProxyWasmHost, level: string) =>
  host.logs.filter((l) => l.level === level).map((l) => l.message.replace(/^asm-llm-proxy: /, ""));

/** A POST to DashScope through its own cluster, answered 200; what went upstream. */
function call(host: ProxyWasmHost, headers: Record<string, string> = {}, path = "/") {
  const s = host.stream({ cluster: CLUSTER });
  s.sendRequestHeaders({
    ":method": "POST",
    ":path": path,
    ":authority": DASHSCOPE,
    "content-type": "application/json",
    ...headers,
  });
  s.sendRequestBody(REQUEST_BODY, true);
  const sent = {
    s,
    auth: s.requestHeaders.filter(([k]) => k === "authorization").map(([, v]) => v),
    path: s.requestHeaders.find(([k]) => k === ":path")?.[1],
    body: dec.decode(s.forwarded("request")),
  };
  s.sendResponseHeaders({ ":status": "200", "content-type": "application/json" });
  s.sendResponseBody(completionBody("qwen-turbo"), true);
  s.end();
  assert.deepEqual(host.traps, []);
  return sent;
}

const provider = (extra: object = {}) => ({ host: DASHSCOPE, path: PATH, model: "qwen-plus", ...extra });

describe("a configuration that is not JSON says where and what was expected", () => {
  const cases: Array<[string, string]> = [
    [
      '{"providers": [{"host": "a.example"]}',
      "line 1, column 36 (byte 35): expected ',' or '}' but found ']'",
    ],
    [
      '{\n  "max_series": 10,\n  "filter_state": ["all"],\n}',
      "line 4, column 1 (byte 49): expected a member name in double quotes but found '}'",
    ],
    ['{"max_series": 01}', "line 1, column 17 (byte 16): expected ',' or '}' but found '1'"],
    [
      '{"paths": ["/a"]} x',
      "line 1, column 19 (byte 18): expected nothing after the top-level value but found 'x'",
    ],
    [
      '{"paths": ["/a\n"]}',
      "line 1, column 15 (byte 14): expected no control character in a string (escape it, e.g. \\n) but found byte 0x0a",
    ],
    ['{"paths": tru}', "line 1, column 14 (byte 13): expected 'true' but found '}'"],
    [
      '{"paths": ["/a"',
      "line 1, column 16 (byte 15): expected ',' or ']' but found the end of the configuration",
    ],
  ];
  for (const [text, where] of cases) {
    test(JSON.stringify(text), async () => {
      const host = await load(text);
      const errors = messages(host, "error");
      assert.equal(errors.length, 1, JSON.stringify(host.logs));
      assert.ok(errors[0].startsWith("configuration is not valid JSON at " + where + "; "), errors[0]);
      assert.deepEqual(messages(host, "warn"), []);
      assert.equal(host.gauge(CONFIG_PROBLEMS), 1);
    });
  }

  test("a deeply nested text is diagnosed without recursion: no trap", async () => {
    const host = await load('{"paths":' + "[".repeat(100000));
    const [error] = messages(host, "error");
    assert.match(
      error,
      /at line 1, column 1033 \(byte 1032\): expected nesting of at most 1024 levels but found '\['/,
    );
  });

  test("the consequence is logged at error level: the seed call goes out without key and model", async () => {
    const broken = JSON.stringify({ providers: [provider({ api_key: KEY })] }).replace("}]", "]");
    const host = await load(broken);
    const [error] = messages(host, "error");
    assert.match(
      error,
      /no provider is configured, so provider calls go out without the configured key, model or path/,
    );
    const x = call(host);
    assert.deepEqual(x.auth, [], "what the message says happens");
    assert.equal(x.body, REQUEST_BODY);
  });
});

describe("filter_state: every unknown name is reported, the valid ones are kept", () => {
  test("two misspelt names among valid ones", async () => {
    const host = await load({ filter_state: ["usage", "usgae", "duration_ms", "duraton"] });
    const warns = messages(host, "warn");
    assert.equal(warns.length, 1, JSON.stringify(warns));
    assert.match(
      warns[0],
      /^'filter_state' names unknown keys 'usgae', 'duraton', ignored; the others are kept/,
    );
    // The message lists every valid name.
    for (const name of ["all", "request_total_tokens", "usage", "duration_ms", "ms_per_output_token"]) {
      assert.ok(warns[0].includes(name), name);
    }
    const s = call(host, {}, API).s;
    assert.equal(s.state("wasm.asm.llmproxy.usage"), "present");
    assert.ok(s.state("wasm.asm.llmproxy.duration_ms") !== undefined);
    assert.equal(s.state("wasm.asm.llmproxy.request_total_tokens"), undefined, "only what was asked");
  });
});

describe("header_dimensions", () => {
  const credentials = [
    "authorization",
    "Proxy-Authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
    "x-auth-token",
    "x-amz-security-token",
  ];
  test("refuses credential headers with a warn each, keeps the others; no token reaches a metric or filter state", async () => {
    const host = await load({ header_dimensions: ["x-tenant", ...credentials] });
    assert.deepEqual(
      messages(host, "warn"),
      credentials.map((h) => `'header_dimensions' names a header that may carry credentials: ${h}; ignored`),
    );
    const s = call(
      host,
      {
        "x-tenant": "team-a",
        authorization: "Bearer sk-client-secret-123",
        cookie: "session=sk-client-secret-123",
        "x-api-key": "sk-client-secret-123",
      },
      API,
    ).s;
    assert.equal(s.state("wasm.asm.llmproxy.x_tenant"), "team-a");
    const everything = [
      ...[...s.filterState.entries()].map(([k, v]) => k + "=" + dec.decode(v)),
      ...host.metrics.keys(),
      ...host.logs.map((l) => l.message),
    ].join("\n");
    assert.ok(everything.includes("llmproxy_x_tenant=team-a"));
    assert.ok(!everything.includes("sk-client-secret-123"));
  });

  test("at most 16: the first 16 are kept, one warn", async () => {
    const names = Array.from({ length: 20 }, (_, i) => `x-h${i}`);
    const host = await load({ header_dimensions: names });
    assert.deepEqual(messages(host, "warn"), [
      "'header_dimensions' lists 20 items; at most 16 are kept, the rest are ignored",
    ]);
    const s = call(host, Object.fromEntries(names.map((n) => [n, "v"])), API);
    for (let i = 0; i < 20; i++)
      assert.equal(s.s.filterState.has(`wasm.asm.llmproxy.x_h${i}`), i < 16, names[i]);
  });
});

describe("keys", () => {
  test("a key from the environment loses its trailing newline (a Secret file's)", async () => {
    const host = await load({ providers: [provider({ api_key_env: "K" })] }, { env: { K: KEY + "\r\n \t" } });
    assert.deepEqual(messages(host, "warn"), []);
    assert.deepEqual(call(host).auth, [`Bearer ${KEY}`]);
  });

  const bad: Array<[string, string, object, Record<string, string>, string]> = [
    [
      "an env key with CR LF inside",
      "api_key_env",
      { api_key_env: "K" },
      { K: "sk-a\r\nx-evil: 1" },
      "holds a control character (CR, LF, NUL, ...)",
    ],
    [
      // (A NUL cannot be in an environment variable: it ends the entry.)
      "an env key with ESC",
      "api_key_env",
      { api_key_env: "K" },
      { K: "sk-a\u001bb" },
      "holds a control character (CR, LF, NUL, ...)",
    ],
    [
      "an inline key with LF",
      "api_key",
      { api_key: "sk-a\nb" },
      {},
      "holds a control character (CR, LF, NUL, ...)",
    ],
    [
      "an inline key with NUL",
      "api_key",
      { api_key: "sk-a\u0000b" },
      {},
      "holds a control character (CR, LF, NUL, ...)",
    ],
    [
      "an inline key with a tab",
      "api_key",
      { api_key: "sk-a\tb" },
      {},
      "holds a control character (CR, LF, NUL, ...)",
    ],
    [
      "an env key over 8 KiB",
      "api_key_env",
      { api_key_env: "K" },
      { K: "k".repeat(8193) },
      "is longer than 8 KiB",
    ],
  ];
  for (const [name, field, fields, env, problem] of bad) {
    test(`${name}: refused with a warn naming the field, nothing sent`, async () => {
      const host = await load({ providers: [provider(fields)] }, { env });
      const warns = messages(host, "warn");
      assert.deepEqual(warns, [
        `'providers[0].${field}': the key ${problem}; no key is sent to ${DASHSCOPE}`,
      ]);
      const x = call(host, { authorization: "Bearer client" });
      assert.deepEqual(x.auth, ["Bearer client"], "no key sent, the client's header untouched");
      assert.equal(x.path, PATH, "the rest of the provider applies");
    });
  }

  test("exactly 8 KiB is accepted", async () => {
    const key = "k".repeat(8192);
    const host = await load({ providers: [provider({ api_key: key })] });
    assert.deepEqual(messages(host, "warn"), []);
    assert.deepEqual(call(host).auth, [`Bearer ${key}`]);
  });

  test("no secret in any log line: a key pasted into api_key_env is never printed", async () => {
    const pasted = "sk-live-0123456789abcdef0123456789abcdef";
    const host = await load(
      {
        providers: [
          provider({ api_key_env: pasted }),
          { host: "api.moonshot.cn", api_key: "sk-moon\nx" },
          { host: "bad.example", api_key: "sk-both-0123", api_key_env: "sk-both-4567" },
        ],
      },
      { env: {} },
    );
    const all = [...host.logs, ...host.canaryLogs].map((l) => l.message).join("\n");
    assert.ok(host.logs.length >= 3, all);
    for (const secret of [pasted, "sk-moon", "sk-both"]) assert.ok(!all.includes(secret), secret);
    // The missing-key warn names the field, and the Secret and the env patch as the likely cause.
    assert.match(all, /'providers\[0\]\.api_key_env' names a variable that the VM environment does not have/);
    assert.match(all, /the Secret .*llm-api-keys.* or from the istio-proxy env patch/);
    call(host);
    const after = host.logs.map((l) => l.message).join("\n");
    assert.ok(!after.includes(pasted));
  });
});

describe("a configured model that is not valid Unicode is refused at configuration", () => {
  for (const [name, model] of [
    ["a lone high surrogate", "qwen\ud800"],
    ["a lone low surrogate", "\udc00qwen"],
    ["a reversed pair", "\ude00\ud83d"],
  ]) {
    test(name, async () => {
      // JSON.stringify writes a lone surrogate as the escape \ud800, as Istio's JSON would.
      const config = JSON.stringify({ providers: [provider({ model, api_key: KEY })] });
      assert.match(config, /\\u[dD][89a-fA-F]/);
      const host = await load(config);
      assert.deepEqual(messages(host, "warn"), [
        "'providers[0].model' is not valid Unicode (a lone surrogate such as \\ud800); provider skipped",
      ]);
      const x = call(host);
      assert.equal(x.body, REQUEST_BODY, "no invalid UTF-8 goes upstream");
      assert.deepEqual(x.auth, []);
    });
  }

  test("a real pair (an emoji) is fine, and goes upstream as UTF-8", async () => {
    const host = await load(JSON.stringify({ providers: [provider({ model: "m-😀", api_key: KEY })] }));
    assert.deepEqual(messages(host, "warn"), []);
    assert.equal(JSON.parse(call(host).body).model, "m-😀");
  });
});

describe("deploy/plugin-config.schema.json refuses what the plugin refuses", () => {
  const schema = JSON.parse(readFileSync(ROOT + "deploy/plugin-config.schema.json", "utf8"));
  const validate = new Ajv({ strict: false, allErrors: true }).compile(schema);
  const p = (extra: object) => ({ providers: [{ host: "a.example", ...extra }] });
  const bad: object[] = [
    { unknown_option: true },
    { paths: "x" },
    { paths: [""] },
    { inject_stream_usage: 1 },
    { max_series: 0 },
    { max_series: 100001 },
    { max_series: 1.5 },
    { filter_state: ["usgae"] },
    { filter_state: ["usage", "wasm.asm.llmproxy.usage"] },
    { header_dimensions: ["authorization"] },
    { header_dimensions: ["X-Goog-Api-Key"] },
    { header_dimensions: ["cookie"] },
    { header_dimensions: ["Model"] },
    { header_dimensions: ["source-workload"] },
    { header_dimensions: Array.from({ length: 17 }, (_, i) => `x-h${i}`) },
    { providers: {} },
    { providers: ["a.example"] },
    { providers: [{ path: "/v1" }] },
    p({ host: "a.example:443" }),
    p({ host: "https://a.example" }),
    p({ host: "a.example/v1" }),
    p({ host: "a..example" }),
    p({ auth: "basic" }),
    p({ path: "v1/chat" }),
    p({ model: "" }),
    p({ model: "m\ud800" }),
    p({ stream: "yes" }),
    p({ api_key: "k", api_key_env: "K" }),
    p({ api_key: "sk-a\r\nb" }),
    p({ api_key: "k".repeat(8193) }),
    p({ modle: "m" }),
    p({ routes: { r: { model: 5 } } }),
    p({ routes: { r: { auth: "bearer" } } }),
  ];
  const good: object[] = [
    {},
    { filter_state: ["all"], header_dimensions: ["x-tenant", "user-type"] },
    { header_dimensions: Array.from({ length: 16 }, (_, i) => `x-h${i}`) },
    p({ host: "[::1]", model: "m-😀", api_key: "k".repeat(8192) }),
    p({ host: "ollama_internal", path: "/api/chat", routes: { r: { model: "m", stream: true } } }),
  ];
  test(`${bad.length} bad configurations: the plugin reports a problem and ajv refuses each`, async () => {
    assert.ok(bad.length >= 30);
    for (const config of bad) {
      const host = await load(config, { env: { K: "k" } });
      const problems = host.logs.filter((l) => l.level === "warn" || l.level === "error");
      assert.ok(problems.length > 0, `plugin accepted ${JSON.stringify(config)}`);
      assert.equal(validate(config), false, `schema accepted ${JSON.stringify(config)}`);
    }
  });
  test("good configurations: accepted by both", async () => {
    for (const config of good) {
      const host = await load(config);
      const problems = host.logs.filter((l) => l.level === "warn" || l.level === "error");
      assert.deepEqual(problems, [], JSON.stringify(config));
      assert.ok(validate(config), `${JSON.stringify(config)}: ${JSON.stringify(validate.errors)}`);
    }
  });
  test("every filter_state name of the schema is one the plugin knows", async () => {
    const names: string[] = schema.properties.filter_state.items.enum;
    assert.ok(names.length > 10);
    const host = await load({ filter_state: names });
    assert.deepEqual(messages(host, "warn"), []);
  });
});
