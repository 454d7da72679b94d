// SPDX-License-Identifier: Apache-2.0
// Seeded, reproducible fuzzing of the compiled plugin: random and mutated JSON bodies and event
// streams, split at random points, must never trap, never hold or change a chunk, and record
// exactly what tests/fuzz/reference.ts (V8's JSON.parse plus a literal-keeping parser) says.
// FUZZ_CASES and FUZZ_SEED set the run; `npm run fuzz` runs a long one.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ProxyWasmHost } from "./host/host.ts";
import { drive } from "./host/driver.ts";
import { expectedFromBody, expectedFromStream, type Recorded } from "./fuzz/reference.ts";
import { CASES } from "./fixtures/providers.ts";
import { completionBody } from "./mock-upstream.ts";
import { WASM, NODE_METADATA, ALL_FILTER_STATE } from "./seed.ts";

const CASES_PER_RUN = Number(process.env.FUZZ_CASES ?? 2000);
const SEED = Number(process.env.FUZZ_SEED ?? 20261125);
const enc = new TextEncoder();

function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: T[]): T => xs[int(xs.length)];
  return { next, int, pick, chance: (p: number) => next() < p };
}
type Rng = ReturnType<typeof rng>;

const NUMBERS = [
  "0",
  "1",
  "7",
  "42",
  "1234567",
  "9007199254740991",
  "9007199254740992",
  "18446744073709551616",
  "-1",
  "-0",
  "1.5",
  "2.0",
  "1e3",
  "1E+2",
  "0.0",
  "123e-2",
];
const STRINGS = [
  "qwen-turbo",
  "gpt-4o",
  "claude-3-5-haiku",
  "通义千问",
  "a|b=c",
  "",
  "x".repeat(300),
  "model",
  "usage",
];
const KEYS = ["model", "usage", "response", "message", "choices", "id", "object", "data", "delta"];
const USAGE_KEYS = [
  "prompt_tokens",
  "completion_tokens",
  "total_tokens",
  "input_tokens",
  "output_tokens",
  "prompt_cache_hit_tokens",
  "cache_read_input_tokens",
  "prompt_tokens_details",
  "completion_tokens_details",
  "input_tokens_details",
  "output_tokens_details",
  "cached_tokens",
  "reasoning_tokens",
];

/** A JSON string literal, with some characters written as \u escapes (and sometimes odd ones). */
function stringLiteral(r: Rng, s: string): string {
  let out = '"';
  for (const ch of s) {
    const code = ch.codePointAt(0)!;
    if (ch === '"' || ch === "\\") out += "\\" + ch;
    else if (code < 0x20) out += "\\u" + code.toString(16).padStart(4, "0");
    else if (r.chance(0.1) && code < 0x10000) out += "\\u" + code.toString(16).padStart(4, "0");
    else out += ch;
  }
  if (r.chance(0.05)) out += r.pick(["\\ud83d\\ude00", "\\ud800", "\\udc00x", "\\n", "\\u007f", "\\/"]);
  return out + '"';
}

function value(r: Rng, depth: number, keys: string[]): string {
  const k = r.int(depth > 3 ? 4 : 7);
  if (k === 0) return r.pick(NUMBERS);
  if (k === 1) return stringLiteral(r, r.pick(STRINGS));
  if (k === 2) return r.pick(["true", "false", "null"]);
  if (k === 3) return r.chance(0.5) ? "[]" : `[${value(r, depth + 1, KEYS)}, ${value(r, depth + 1, KEYS)}]`;
  return object(r, depth + 1, keys);
}

function object(r: Rng, depth: number, keys: string[]): string {
  const parts: string[] = [];
  const n = r.int(5);
  for (let i = 0; i < n; i++) {
    const key = r.pick(keys);
    const childKeys =
      key === "usage" || key.endsWith("_details")
        ? USAGE_KEYS
        : key === "response" || key === "message"
          ? KEYS
          : [...KEYS, ...USAGE_KEYS];
    const v =
      key === "model" && r.chance(0.7) ? stringLiteral(r, r.pick(STRINGS)) : value(r, depth, childKeys);
    parts.push(`${stringLiteral(r, key)}${r.pick(["", " "])}:${r.pick(["", " ", "\n"])}${v}`);
  }
  return "{" + parts.join(r.pick([",", ", ", ",\n"])) + "}";
}

const INTERESTING = [
  0x7b, 0x7d, 0x5b, 0x5d, 0x22, 0x3a, 0x2c, 0x5c, 0x30, 0x65, 0x2d, 0x2e, 0x20, 0x0a, 0xff, 0xc3, 0x80, 0xed,
  0xa0, 0x00,
];

function mutate(r: Rng, bytes: Uint8Array): Uint8Array {
  const a = [...bytes];
  const n = 1 + r.int(3);
  for (let i = 0; i < n && a.length > 0; i++) {
    const at = r.int(a.length);
    switch (r.int(5)) {
      case 0:
        a[at] = r.pick(INTERESTING);
        break;
      case 1:
        a.splice(at, 1);
        break;
      case 2:
        a.splice(at, 0, r.pick(INTERESTING));
        break;
      case 3:
        a.length = at;
        break;
      default:
        a.splice(at, 0, ...a.slice(r.int(a.length), r.int(a.length)));
    }
  }
  return Uint8Array.from(a);
}

function cuts(r: Rng, length: number): number[] {
  const out: number[] = [];
  const n = r.int(6);
  for (let i = 0; i < n; i++) out.push(1 + r.int(Math.max(1, length - 1)));
  return out;
}

function stream(r: Rng, docs: string[]): Uint8Array {
  const eol = r.pick(["\n", "\r\n", "\r"]);
  let text = "";
  for (const d of docs) {
    if (r.chance(0.2)) text += `: comment${eol}`;
    if (r.chance(0.3)) text += `event: e${eol}`;
    if (r.chance(0.1) && d.length > 4) {
      const half = r.int(d.length);
      text += `data: ${d.slice(0, half)}${eol}data:${d.slice(half)}${eol}${eol}`;
    } else {
      text += `data:${r.pick([" ", ""])}${d}${eol}${eol}`;
    }
  }
  if (r.chance(0.5)) text += `data: [DONE]${eol}${eol}`;
  return enc.encode(text);
}

/** The plugin's tag encoding, for the expected counter names. */
function tagValue(v: string): string {
  if (v.length === 0) return "unknown";
  let n = Math.min(v.length, 128);
  if (n < v.length && v.charCodeAt(n - 1) >= 0xd800 && v.charCodeAt(n - 1) <= 0xdbff) n--;
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is replaced
  return v.slice(0, n).replace(/[|=\u0000-\u001f\u007f]/g, "_");
}

const KEYS_BY_FIELD: Record<keyof Recorded, string> = {
  model: "wasm.asm.llmproxy.response_model",
  prompt: "wasm.asm.llmproxy.request_prompt_tokens",
  completion: "wasm.asm.llmproxy.request_completion_tokens",
  total: "wasm.asm.llmproxy.request_total_tokens",
  cached: "wasm.asm.llmproxy.request_cached_tokens",
  reasoning: "wasm.asm.llmproxy.request_reasoning_tokens",
};

test(`fuzz: ${CASES_PER_RUN} random and mutated bodies and streams (seed ${SEED})`, async () => {
  const r = rng(SEED);
  const host = await ProxyWasmHost.load(WASM, {
    nodeMetadata: NODE_METADATA,
    pluginConfig: { max_series: 100000, ...ALL_FILTER_STATE },
  });
  const seeds = [...CASES.map((c) => c.body), completionBody("qwen-turbo")];
  const expectedCounters = new Map<string, number>();
  let streams = 0;
  for (let i = 0; i < CASES_PER_RUN; i++) {
    const sse = r.chance(0.4);
    let body: Uint8Array;
    if (sse) {
      const docs = Array.from({ length: 1 + r.int(5) }, () =>
        r.chance(0.2)
          ? r.pick(CASES.filter((c) => c.contentType === "application/json")).body
          : object(r, 0, KEYS),
      );
      body = stream(r, docs);
      streams++;
    } else {
      body = r.chance(0.15)
        ? enc.encode(r.pick(seeds))
        : enc.encode(r.pick(["", " ", "\n"]) + object(r, 0, KEYS) + r.pick(["", "\n"]));
    }
    if (r.chance(0.3)) body = mutate(r, body);
    const expected = sse ? expectedFromStream(body) : expectedFromBody(body);

    const s = drive(host, {
      cluster: "outbound|443||api.example.com",
      request: {
        headers: { ":method": "POST", ":path": "/v1/chat/completions", ":authority": "api.example.com" },
        body: "{}",
      },
      response: {
        headers: { "content-type": sse ? "text/event-stream" : "application/json" },
        body,
        cuts: cuts(r, body.length),
      },
    });

    const what = `case ${i} (${sse ? "stream" : "body"}): ${JSON.stringify(new TextDecoder().decode(body)).slice(0, 400)}`;
    assert.deepEqual(host.traps, [], what);
    assert.equal(s.held, 0, what);
    assert.deepEqual(s.forwarded("response"), body, what);
    const got: Recorded = {};
    for (const [field, key] of Object.entries(KEYS_BY_FIELD)) {
      const v = s.state(key);
      if (v !== undefined) got[field as keyof Recorded] = v;
    }
    assert.deepEqual(got, expected, what);
    assert.equal(s.state("wasm.asm.llmproxy.request_model"), expected.model, what);

    const dims = `|llmproxy_source_workload=sleep|llmproxy_source_workload_namespace=default|llmproxy_destination_service=api.example.com|llmproxy_model=${tagValue(expected.model ?? "unknown")}`;
    for (const [metric, v] of [
      ["asm_llm_proxy_prompt_tokens", expected.prompt],
      ["asm_llm_proxy_completion_tokens", expected.completion],
      ["asm_llm_proxy_cached_tokens", expected.cached],
      ["asm_llm_proxy_reasoning_tokens", expected.reasoning],
    ] as const) {
      if (v !== undefined && Number(v) > 0)
        expectedCounters.set(metric + dims, (expectedCounters.get(metric + dims) ?? 0) + Number(v));
    }
  }
  const counters = new Map(
    [...host.metrics.values()]
      .filter((m) => m.name.includes("_tokens|"))
      .map((m) => [m.name.slice("wasmcustom.".length), m.value]),
  );
  assert.deepEqual(counters, expectedCounters);
  assert.ok(streams > CASES_PER_RUN / 4);
});
