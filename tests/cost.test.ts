// SPDX-License-Identifier: Apache-2.0
// The cost of each call (`prices`) and OpenTelemetry's token histogram (`gen_ai_metrics`),
// through the compiled plugin: the exact cost of every provider fixture, worked out here in
// BigInt from the fixture's own counts and each API's documented way of reporting them (never
// from the plugin's code); rounding at the micro-unit; a glob that prices two models; a call
// with no price; the histogram's samples and labels; and, with both options off, none of their
// series or keys, the others as with them on. (Host calls and time with both off: npm run bench.)

import { test } from "node:test";
import assert from "node:assert/strict";
import { ProxyWasmHost, type HttpStream } from "./host/host.ts";
import { drive } from "./host/driver.ts";
import { CASES, API_CASES, type ApiCase } from "./fixtures/providers.ts";
import { WASM, NODE_METADATA } from "./seed.ts";

/** A fixture of either list (what both have in common). */
type Call = Omit<ApiCase, "stream" | "usage">;

const CALLS: Call[] = [...CASES, ...API_CASES];

/** One fixture through the plugin, its body whole. */
function run(host: ProxyWasmHost, c: Call): HttpStream {
  const get = c.method === "GET";
  return drive(host, {
    cluster: `outbound|443||${c.authority.split(":")[0]}`,
    request: {
      headers: { ":method": c.method ?? "POST", ":path": c.path, ":authority": c.authority },
      body: get ? undefined : c.request,
    },
    response: { headers: { "content-type": c.contentType, ...c.responseHeaders }, body: c.body },
  });
}

const load = (pluginConfig: object) =>
  ProxyWasmHost.load(WASM, { nodeMetadata: NODE_METADATA, pluginConfig });

// ---- the expected cost, worked out independently ---------------------------------------------

/** A decimal price per million tokens as 10^-12 units of the currency per token. */
function picoPerToken(price: string): bigint {
  const [whole, frac = ""] = price.split(".");
  return BigInt(whole + frac.padEnd(6, "0"));
}

interface Prices {
  input: string;
  output: string;
  cached_input?: string;
  cache_write?: string;
  reasoning?: string;
}

/**
 * Which counts an API reports beside its prompt and completion counts rather than inside them,
 * from the providers' documentation: Anthropic's input_tokens and Bedrock's inputTokens leave out
 * cache reads and writes; Gemini's candidatesTokenCount leaves out thoughtsTokenCount. The
 * OpenAI-style APIs count cached tokens inside prompt_tokens and reasoning inside
 * completion_tokens.
 */
function beside(path: string): { cache: boolean; reasoning: boolean } {
  const p = path.split("?")[0];
  return {
    cache:
      p.endsWith("/v1/messages") ||
      /\/model\/[^/]+\/(converse|converse-stream|invoke|invoke-with-response-stream)$/.test(p),
    reasoning: /:(stream)?[gG]enerateContent$/.test(p),
  };
}

const n = (v: string | undefined) => BigInt(v ?? "0");

function expectedPico(c: Call, prices: Prices): bigint {
  const e = c.expected;
  const parts = beside(c.path);
  const cached = n(e.cached);
  const write = n(e.cacheWrite);
  const reasoning = n(e.reasoning);
  let input = n(e.prompt);
  if (!parts.cache) input = input > cached + write ? input - cached - write : 0n;
  let output = n(e.completion);
  if (!parts.reasoning) output = output > reasoning ? output - reasoning : 0n;
  const price = (p: string | undefined, fallback: string) => picoPerToken(p ?? fallback);
  return (
    input * price(undefined, prices.input) +
    cached * price(prices.cached_input, prices.input) +
    write * price(prices.cache_write, prices.input) +
    output * price(undefined, prices.output) +
    reasoning * price(prices.reasoning, prices.output)
  );
}

/** 10^-12 units as the exact decimal: no exponent, no trailing zeros. */
function decimal(pico: bigint): string {
  const s = pico.toString().padStart(13, "0");
  const whole = s.slice(0, -12).replace(/^0+(?=\d)/, "");
  const frac = s.slice(-12).replace(/0+$/, "");
  return frac ? `${whole}.${frac}` : whole;
}

/** 10^-12 units to micro-units, to the nearest, a tie to the even one. */
function micros(pico: bigint): bigint {
  const q = pico / 1_000_000n;
  const r = pico % 1_000_000n;
  return r > 500_000n || (r === 500_000n && q % 2n === 1n) ? q + 1n : q;
}

const hasTokens = (c: Call) => c.expected.prompt !== undefined || c.expected.completion !== undefined;

/** The one counter whose name starts with `prefix`, or undefined. */
function only(host: ProxyWasmHost, prefix: string): { name: string; value: number } | undefined {
  const found = [...host.metrics.values()].filter((m) => m.name.startsWith("wasmcustom." + prefix));
  assert.ok(found.length <= 1, found.map((m) => m.name).join(", "));
  return found[0] && { name: found[0].name.slice("wasmcustom.".length), value: found[0].value };
}

// Prices chosen so that every part has its own rate and no two rates are alike.
const PRICED: Prices = {
  input: "1.25",
  output: "10",
  cached_input: "0.125",
  cache_write: "3.75",
  reasoning: "7.5",
};
const AS_OUTPUT: Prices = { input: "0.05", output: "0.2", cached_input: "0.02" };

const config = (p: Prices, extra: object = {}) => ({
  prices: [{ model: "*", ...Object.fromEntries(Object.entries(p).map(([k, v]) => [k, Number(v)])) }],
  ...extra,
});

for (const [label, prices] of [
  ["every part at its own price", PRICED],
  ["reasoning and cache writes at the output and input prices", AS_OUTPUT],
] as const) {
  test(`the exact cost of every provider fixture, ${label}`, async () => {
    const priced = CALLS.filter(hasTokens);
    const withParts = priced.filter((c) =>
      [c.expected.cached, c.expected.reasoning, c.expected.cacheWrite].some(
        (v) => v !== undefined && v !== "0",
      ),
    );
    assert.ok(
      withParts.length >= 12,
      `${withParts.length} fixtures with cached, reasoning or cache-write tokens`,
    );
    for (const c of priced) {
      const host = await load(config(prices));
      const s = run(host, c);
      const pico = expectedPico(c, prices);
      assert.equal(s.state("wasm.asm.llmproxy.request_cost"), decimal(pico), `${c.name}: request_cost`);
      const counter = only(host, "asm_llm_proxy_cost|");
      const want = micros(pico);
      if (want === 0n) assert.equal(counter, undefined, `${c.name}: a zero cost adds nothing`);
      else {
        assert.equal(BigInt(counter!.value), want, `${c.name}: asm_llm_proxy_cost`);
        assert.match(counter!.name, /\|llmproxy_model=[^|]+\|llmproxy_currency=USD$/, c.name);
      }
      assert.equal(only(host, "asm_llm_proxy_cost_unpriced"), undefined, c.name);
    }
  });
}

/** A call with another model, in its request and in every response event. */
function withModel(c: Call, model: string): Call {
  const swap = (text: string) => text.replaceAll(`"model":"${c.expected.model}"`, `"model":"${model}"`);
  return { ...c, request: swap(c.request), body: typeof c.body === "string" ? swap(c.body) : c.body };
}

test("rounding at the micro-unit: to the nearest, ties to even; the filter state exact", async () => {
  // 2006 prompt tokens (1920 of them cached) and 300 completion tokens, OpenAI-style.
  const openai = CASES.find((c) => c.name === "OpenAI chat completion")!;
  const cases: Array<[Prices, string, number | undefined, Call]> = [
    // 86 x 500 + 1920 x 250 = 523,000 pico = 0.523 micro-units -> 1.
    [{ input: "0.0005", output: "0", cached_input: "0.00025" }, "0.000000523", 1, openai],
    // 2006 x 250 = 501,500 -> 0.5015 -> 1.
    [{ input: "0.00025", output: "0", cached_input: "0.00025" }, "0.0000005015", 1, openai],
    // 86 x 250 + 1920 x 10 = 40,700 -> 0: nothing is counted (Envoy refuses a zero increment).
    [{ input: "0.00025", output: "0", cached_input: "0.00001" }, "0.0000000407", undefined, openai],
    // 300 x 8333 = 2,499,900 -> 2.4999 -> 2.
    [{ input: "0", output: "0.008333" }, "0.0000024999", 2, openai],
    // 300 x 8500 = 2,550,000 -> 3.
    [{ input: "0", output: "0.0085" }, "0.00000255", 3, openai],
    // 300 x 2500 = 750,000 -> 1.
    [{ input: "0", output: "0.0025" }, "0.00000075", 1, openai],
    // 300 x 5000 = 1,500,000: a tie, up to the even 2.
    [{ input: "0", output: "0.005" }, "0.0000015", 2, openai],
    // 500 x 5000 = 2,500,000: a tie, down to the even 2.
    [
      { input: "0", output: "0.005" },
      "0.0000025",
      2,
      {
        ...openai,
        body: (openai.body as string).replace('"completion_tokens":300', '"completion_tokens":500'),
        expected: { ...openai.expected, completion: "500" },
      },
    ],
  ];
  for (const [prices, cost, counted, call] of cases) {
    const host = await load(config(prices));
    const s = run(host, call);
    assert.equal(s.state("wasm.asm.llmproxy.request_cost"), cost, JSON.stringify(prices));
    assert.equal(decimal(expectedPico(call, prices)), cost, "the test's own arithmetic agrees");
    assert.equal(only(host, "asm_llm_proxy_cost|")?.value, counted, JSON.stringify(prices));
  }
});

test("a price glob that matches two models prices both; a model no entry matches is unpriced", async () => {
  const dashscope = CASES.find((c) => c.name.startsWith("DashScope compatible mode"))!;
  const host = await load({
    prices: [
      { model: "qwen-turbo*", input: 0.05, output: 0.2, cached_input: 0.02 },
      { model: "qwen-max", input: 1.6, output: 6.4 },
    ],
    currency: "CNY",
  });
  const turbo = { input: "0.05", output: "0.2", cached_input: "0.02" };
  for (const [model, prices] of [
    ["qwen-turbo", turbo],
    ["qwen-turbo-2024-11-01", turbo],
    ["qwen-max", { input: "1.6", output: "6.4" }],
  ] as const) {
    const call = withModel(dashscope, model);
    assert.equal(
      run(host, call).state("wasm.asm.llmproxy.request_cost"),
      decimal(expectedPico(call, prices)),
      model,
    );
  }
  const unpriced = run(host, withModel(dashscope, "qwen1.5-72b-chat"));
  assert.equal(
    unpriced.state("wasm.asm.llmproxy.request_cost"),
    undefined,
    "no request_cost without a price",
  );
  assert.equal(unpriced.state("wasm.asm.llmproxy.request_model"), "qwen1.5-72b-chat");
  const series = (prefix: string) =>
    [...host.metrics.values()]
      .filter((m) => m.name.startsWith(`wasmcustom.${prefix}|`))
      .map((m) => [m.name.replace(/.*\|llmproxy_model=/, ""), m.value]);
  assert.deepEqual(series("asm_llm_proxy_cost_unpriced"), [["qwen1.5-72b-chat", 1]]);
  const micro = (model: string, p: Prices) => Number(micros(expectedPico(withModel(dashscope, model), p)));
  assert.deepEqual(series("asm_llm_proxy_cost"), [
    ["qwen-turbo|llmproxy_currency=CNY", micro("qwen-turbo", turbo)],
    ["qwen-turbo-2024-11-01|llmproxy_currency=CNY", micro("qwen-turbo", turbo)],
    ["qwen-max|llmproxy_currency=CNY", micro("qwen-max", { input: "1.6", output: "6.4" })],
  ]);
});

test("gen_ai_client_token_usage: one input and one output sample per call, the conventions' labels and counts", async () => {
  const host = await load({ gen_ai_metrics: true });
  const anthropic = CASES.find((c) => c.name === "Anthropic Messages")!;
  const gemini = API_CASES.find((c) => c.name === "Gemini generateContent (AI Studio)")!;
  const dashscope = CASES.find((c) => c.name.startsWith("DashScope compatible mode"))!;
  const embeddings = CASES.find((c) => c.name === "OpenAI embeddings")!;
  for (const c of [anthropic, gemini, dashscope, embeddings]) run(host, c);
  const series = [...host.metrics.values()]
    .filter((m) => m.name.startsWith("wasmcustom.gen_ai_client_token_usage|"))
    .map((m) => [m.name.slice("wasmcustom.gen_ai_client_token_usage".length), m.type, m.samples]);
  /** The series of one call: its input and (when given) output samples, under its labels. */
  const samples = (c: Call, op: string, provider: string, server: string, input: number, output?: number) =>
    [["input", input] as const, ["output", output] as const]
      .filter(([, v]) => v !== undefined)
      .map(([type, v]) => [
        `|gen_ai_token_type=${type}|gen_ai_operation_name=${op}|gen_ai_provider_name=${provider}|gen_ai_request_model=${c.expected.model}|gen_ai_response_model=${c.expected.responseModel}|server_address=${server}`,
        2,
        [v],
      ]);
  const count = (v: string | undefined) => Number(v ?? 0);
  const [a, g, d, x] = [anthropic, gemini, dashscope, embeddings].map((c) => c.expected);
  // The conventions' input counts every input token: Anthropic's cache reads and writes are
  // added to its input_tokens; their output counts reasoning: Gemini's thoughts are added to its
  // candidates. Embeddings report no output: no output sample.
  const expected = [
    ...samples(
      anthropic,
      "chat",
      "anthropic",
      "api.anthropic.com",
      count(a.prompt) + count(a.cached) + count(a.cacheWrite),
      count(a.completion),
    ),
    ...samples(
      gemini,
      "generate_content",
      "gcp.gemini",
      "generativelanguage.googleapis.com",
      count(g.prompt),
      count(g.completion) + count(g.reasoning),
    ),
    ...samples(
      dashscope,
      "chat",
      "dashscope",
      "dashscope.aliyuncs.com",
      count(d.prompt),
      count(d.completion),
    ),
    ...samples(embeddings, "embeddings", "openai", "api.openai.com", count(x.prompt)),
  ];
  assert.deepEqual(series, expected);
});

test("both options off: no series and no filter-state key besides those without them", async () => {
  const off = await load({ filter_state: ["all"] });
  const on = await load({
    filter_state: ["all"],
    prices: [{ model: "*", input: 1, output: 2 }],
    gen_ai_metrics: true,
  });
  for (const c of CALLS) {
    const a = run(off, c);
    const b = run(on, c);
    const keys = (s: HttpStream) => [...s.filterState.keys()].sort();
    assert.ok(!keys(a).includes("wasm.asm.llmproxy.request_cost"), c.name);
    assert.deepEqual(
      keys(b).filter((k) => k !== "wasm.asm.llmproxy.request_cost"),
      keys(a),
      `${c.name}: the same keys besides request_cost`,
    );
    for (const k of keys(a)) assert.equal(b.state(k), a.state(k), `${c.name}: ${k}`);
  }
  const names = (h: ProxyWasmHost) =>
    new Map([...h.metrics.values()].map((m) => [m.name, m.type === 2 ? m.samples.join() : m.value]));
  const offSeries = names(off);
  const onSeries = names(on);
  assert.ok(
    ![...offSeries.keys()].some((k) => /asm_llm_proxy_cost|gen_ai_/.test(k)),
    "off: no cost or GenAI series",
  );
  for (const [k, v] of offSeries) assert.equal(onSeries.get(k), v, `on keeps ${k} as it is`);
  assert.ok(
    [...onSeries.keys()].some((k) => k.includes("gen_ai_client_token_usage|")),
    "on: the histogram",
  );
});
