// SPDX-License-Identifier: Apache-2.0
// `npm run bench`: what the plugin costs a sidecar, measured in one run against the floor (a
// module that only copies each body chunk in, bench/wasm/floor.ts):
//  1. guest time per call in a lean host (bench/lean-host.ts: imports that do a map lookup and
//     one copy), the plugin next to the floor, for the plugin built with SIMD and without;
//  2. host calls per call, by name (load-independent);
//  3. allocations per call and per stream chunk (the debug build with counters,
//     bench/instrument.ts; load-independent), and the collector's pause;
//  4. linear memory after warm-up, after 100,000 calls, and with 1,000 distinct models;
//  5. the scanner's throughput next to V8's JSON.parse of the same bytes, on dense 1-4 KB
//     responses, an event stream and large bodies;
//  6. total time in the TypeScript test host (its own JavaScript included), next to the floor
//     and to a module that buffers bodies and parses them with a JSON library.
// Prints the tables and writes build/bench.json. BENCH_ROUNDS scales the timed rounds (default 15,
// after 3 warm-up rounds).

import { readFileSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { cpus, platform, release, loadavg } from "node:os";
import asc from "assemblyscript/asc";
import { ProxyWasmHost } from "../tests/host/host.ts";
import { ROOT, NODE_METADATA, CALLS, REQUEST_BODY, CLUSTER, PLUGIN_CONFIG } from "../tests/seed.ts";
import { bedrockEvent } from "../tests/fixtures/eventstream.ts";
import { completionBody, MOCK_API_KEY } from "../tests/mock-upstream.ts";
import { LeanHost, Call, type Exchange } from "./lean-host.ts";
import { countingModule } from "./instrument.ts";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 15);
const WARMUP = 3;
const enc = new TextEncoder();
const dec = new TextDecoder();
const OUT = ROOT + "build/bench/";
const PLUGIN = ROOT + "build/asm-llm-proxy.wasm";
const PLUGIN_NOSIMD = ROOT + "build/asm-llm-proxy.nosimd.wasm";
const PLUGIN_DEBUG = ROOT + "build/asm-llm-proxy.debug.wasm";

async function compile(name: string, extra: string[] = []): Promise<string> {
  mkdirSync(OUT, { recursive: true });
  const out = OUT + name + (extra.length > 0 ? ".nosimd" : "") + ".wasm";
  const { error, stderr } = await asc.main(
    // The plugin's release settings (bench/wasm/asconfig.json), without its abort handler.
    [`bench/wasm/${name}.ts`, "--config", "bench/wasm/asconfig.json", "-o", out, "--use", "abort=", ...extra],
    {},
  );
  if (error) throw new Error(`${name}: ${stderr.toString()}`);
  return out;
}

// ---- traffic ------------------------------------------------------------------------------

const REQUEST = enc.encode(
  JSON.stringify({
    model: "qwen-turbo",
    messages: [
      { role: "system", content: "You are a helpful assistant." },
      { role: "user", content: "Please introduce yourself in a few sentences, and mention what you can do." },
    ],
  }),
);

function chatBody(contentBytes: number): Uint8Array {
  const words = "Large language models generate text one token at a time, and this sentence is filler. ";
  const content = words.repeat(Math.ceil(contentBytes / words.length)).slice(0, contentBytes);
  return enc.encode(
    JSON.stringify({
      id: "chatcmpl-1",
      object: "chat.completion",
      created: 1720754403,
      model: "qwen-turbo",
      choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop", logprobs: null }],
      usage: { prompt_tokens: 11, completion_tokens: 90, total_tokens: 101 },
      system_fingerprint: null,
    }),
  );
}

/**
 * Dense JSON: many short tokens (tool calls and log probabilities), about `bytes` long, the kind
 * of body where a scanner spends its time on structure rather than on long strings.
 */
function denseBody(bytes: number): Uint8Array {
  const logprobs: object[] = [];
  const body = () =>
    JSON.stringify({
      id: "chatcmpl-9",
      object: "chat.completion",
      created: 1720754403,
      model: "gpt-4o-mini",
      choices: [
        {
          index: 0,
          message: {
            role: "assistant",
            content: null,
            tool_calls: [
              {
                id: "call_1",
                type: "function",
                function: { name: "get_weather", arguments: '{"city":"Paris","unit":"c"}' },
              },
            ],
          },
          logprobs: { content: logprobs },
          finish_reason: "tool_calls",
        },
      ],
      usage: {
        prompt_tokens: 82,
        completion_tokens: 17,
        total_tokens: 99,
        prompt_tokens_details: { cached_tokens: 0 },
        completion_tokens_details: { reasoning_tokens: 0 },
      },
    });
  let i = 0;
  while (body().length < bytes) {
    logprobs.push({ token: "t" + (i % 97), logprob: -0.25 - (i % 7) / 100, bytes: [116, 48 + (i % 10)] });
    i++;
  }
  return enc.encode(body());
}

const CHAT_2K = chatBody(1750);
const CHAT_1M = chatBody(1024 * 1024 - 300);
const CHAT_8M = chatBody(8 * 1024 * 1024 - 300);
const DENSE_1K = denseBody(1024);
const DENSE_4K = denseBody(4096);
const SEED_RESPONSE = enc.encode(completionBody(CALLS[1].model));

function streamEvents(n: number): Uint8Array[] {
  const events: Uint8Array[] = [];
  for (let i = 0; i < n - 1; i++) {
    events.push(
      enc.encode(
        `data: ${JSON.stringify({ id: "chatcmpl-2", object: "chat.completion.chunk", created: 1720754403, model: "qwen-turbo", choices: [{ index: 0, delta: { content: "token " + i }, finish_reason: null }], usage: null })}\n\n`,
      ),
    );
  }
  events.push(
    enc.encode(
      `data: ${JSON.stringify({ id: "chatcmpl-2", object: "chat.completion.chunk", created: 1720754403, model: "qwen-turbo", choices: [], usage: { prompt_tokens: 11, completion_tokens: 299, total_tokens: 310 } })}\n\ndata: [DONE]\n\n`,
    ),
  );
  return events;
}
const STREAM_300 = streamEvents(300);

function chunks(bytes: Uint8Array, size: number): Uint8Array[] {
  const out = [];
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.subarray(i, i + size));
  return out;
}
function join(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
const CHAT_1M_CHUNKS = chunks(CHAT_1M, 65536);

// An OpenAI-compatible server with no provider entry (a vLLM service in the mesh).
const LLM_REQUEST_HEADERS = {
  ":method": "POST",
  ":path": "/v1/chat/completions",
  ":authority": "vllm.models.svc.cluster.local",
  "content-type": "application/json",
  "accept-encoding": "gzip, deflate",
  "user-agent": "OpenAI/Python 1.51.0",
  authorization: "Bearer sk-0000000000000000000000000000",
};
const PROPERTIES = { "xds\0cluster_name": "outbound|8000||vllm.models.svc.cluster.local" };
/** The seed's second call: DashScope's cluster, and the route `vip-route` Envoy chose. */
const SEED_PROPERTIES = { "xds\0cluster_name": CLUSTER, "xds\0route_name": "vip-route" };

function llm(contentType: string, body: Uint8Array[], request = REQUEST): Exchange {
  return {
    requestHeaders: LLM_REQUEST_HEADERS,
    requestBody: [request],
    responseHeaders: { ":status": "200", "content-type": contentType, "x-request-id": "0c3f0a34" },
    responseBody: body,
    properties: PROPERTIES,
  };
}

interface Scenario {
  name: string;
  /** Streams per timed round. */
  perRound: number;
  exchange: Exchange;
  /** The plugin configuration, when not the seed sidecar's. */
  config?: string;
}

const SEED_EXCHANGE: Exchange = {
  requestHeaders: { ...CALLS[1].headers, "accept-encoding": "gzip, deflate", "user-agent": "curl/8.5.0" },
  requestBody: [enc.encode(REQUEST_BODY)],
  responseHeaders: { ":status": "200", "content-type": "application/json" },
  responseBody: [SEED_RESPONSE],
  properties: SEED_PROPERTIES,
};

const SCENARIOS: Scenario[] = [
  {
    name: `seed call, routed (${REQUEST_BODY.length} B request, ${SEED_RESPONSE.length} B response)`,
    perRound: 4000,
    exchange: SEED_EXCHANGE,
  },
  {
    // The same call with the opt-in cost (a price for its model) and OpenTelemetry histogram.
    name: "seed call, prices and gen_ai_metrics on",
    perRound: 4000,
    exchange: SEED_EXCHANGE,
    config: JSON.stringify({
      ...PLUGIN_CONFIG,
      prices: [{ model: "qwen-turbo*", input: 0.05, output: 0.2, cached_input: 0.02 }],
      gen_ai_metrics: true,
    }),
  },
  { name: "2 KB JSON response", perRound: 4000, exchange: llm("application/json", [CHAT_2K]) },
  { name: "4 KB dense JSON response", perRound: 2000, exchange: llm("application/json", [DENSE_4K]) },
  { name: "300-chunk event stream", perRound: 60, exchange: llm("text/event-stream", STREAM_300) },
  { name: "1 MB JSON (16 x 64 KB chunks)", perRound: 20, exchange: llm("application/json", CHAT_1M_CHUNKS) },
  {
    name: "non-LLM GET (2 KB response)",
    perRound: 8000,
    exchange: {
      requestHeaders: {
        ":method": "GET",
        ":path": "/compatible-mode/v1/models",
        ":authority": "dashscope.aliyuncs.com",
      },
      requestBody: [],
      responseHeaders: { ":status": "200", "content-type": "application/json" },
      responseBody: [CHAT_2K],
      properties: PROPERTIES,
    },
  },
  {
    name: "non-LLM POST (1 KB request, 2 KB response)",
    perRound: 8000,
    exchange: {
      requestHeaders: { ":method": "POST", ":path": "/api/orders", ":authority": "orders.default.svc" },
      requestBody: [DENSE_1K],
      responseHeaders: { ":status": "200", "content-type": "application/json" },
      responseBody: [CHAT_2K],
      properties: { "xds\0cluster_name": "outbound|80||orders.default.svc.cluster.local" },
    },
  },
];

// Bedrock ConverseStream: N binary event-stream messages (prelude, headers, JSON payload, two
// CRCs), one per chunk, usage in the last; the per-chunk cost of the event-stream reader is
// (plugin - floor) / N.
const CONVERSE_FRAMES = 300;
const CONVERSE_STREAM: Uint8Array[] = [];
for (let i = 0; i < CONVERSE_FRAMES - 1; i++) {
  CONVERSE_STREAM.push(
    bedrockEvent("contentBlockDelta", { contentBlockIndex: 0, delta: { text: "token " + i }, p: "abcdefgh" }),
  );
}
CONVERSE_STREAM.push(
  bedrockEvent("metadata", {
    usage: { inputTokens: 11, outputTokens: 299, totalTokens: 310 },
    metrics: { latencyMs: 900 },
  }),
);
SCENARIOS.push({
  name: `Bedrock ConverseStream, ${CONVERSE_FRAMES} event-stream messages`,
  perRound: 60,
  exchange: {
    requestHeaders: {
      ":method": "POST",
      ":path": "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream",
      ":authority": "bedrock-runtime.us-east-1.amazonaws.com",
      "content-type": "application/json",
    },
    requestBody: [REQUEST],
    responseHeaders: { ":status": "200", "content-type": "application/vnd.amazon.eventstream" },
    responseBody: CONVERSE_STREAM,
    properties: { "xds\0cluster_name": "outbound|443||bedrock-runtime.us-east-1.amazonaws.com" },
  },
});

// ---- statistics ---------------------------------------------------------------------------

interface Stats {
  min: number;
  median: number;
  max: number;
}

function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor(s.length / 2)], max: s[s.length - 1] };
}

const fmt = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : "-");
const fmtStats = (s: Stats, d = 2) => `${fmt(s.median, d)} (${fmt(s.min, d)}..${fmt(s.max, d)})`;

// ---- 1. guest time in the lean host -------------------------------------------------------

/**
 * The seed's sidecar: its provider (DashScope: path, route models, key from the VM environment).
 * Only the seed call goes to that provider; the other calls go to a host with no provider, so
 * they show what observing a call costs.
 */
const SEED_CONFIG = JSON.stringify(PLUGIN_CONFIG);
const SEED_ENV = { DASHSCOPE_API_KEY: MOCK_API_KEY };

async function leanHost(module: WebAssembly.Module, config = SEED_CONFIG): Promise<LeanHost> {
  const h = new LeanHost(module, NODE_METADATA, config, SEED_ENV);
  await h.start();
  return h;
}

/** µs per stream for each host, interleaved round by round so that load falls on all alike. */
function timeInterleaved(hosts: LeanHost[], call: Call, perRound: number): Stats[] {
  const samples: number[][] = hosts.map(() => []);
  for (let round = 0; round < WARMUP + ROUNDS; round++) {
    hosts.forEach((h, i) => {
      const t0 = process.hrtime.bigint();
      for (let k = 0; k < perRound; k++) h.run(call);
      const us = Number(process.hrtime.bigint() - t0) / 1000 / perRound;
      if (round >= WARMUP) samples[i].push(us);
    });
  }
  return samples.map(stats);
}

// ---- 5. scanner throughput ----------------------------------------------------------------

/** MB/s of f over `bytes` bytes, `inner` calls per sample. */
function throughput(bytes: number, inner: number, f: () => unknown): Stats {
  const samples: number[] = [];
  for (let r = 0; r < WARMUP + ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < inner; i++) f();
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    if (r >= WARMUP) samples.push((bytes * inner) / 1e6 / s);
  }
  return stats(samples);
}

async function main(): Promise<void> {
  const floorPath = await compile("floor");
  const altPath = await compile("buffering");
  const scanPath = await compile("scan");
  const scanNoSimdPath = await compile("scan", ["--disable", "simd"]);
  const hasNoSimd = existsSync(PLUGIN_NOSIMD);
  const modules = {
    plugin: await WebAssembly.compile(readFileSync(PLUGIN)),
    nosimd: hasNoSimd ? await WebAssembly.compile(readFileSync(PLUGIN_NOSIMD)) : null,
    floor: await WebAssembly.compile(readFileSync(floorPath)),
    buffering: await WebAssembly.compile(readFileSync(altPath)),
    counting: await WebAssembly.compile(
      countingModule(readFileSync(PLUGIN_DEBUG)) as Uint8Array<ArrayBuffer>,
    ),
  };
  const machine = {
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    os: `${platform()} ${release()}`,
    node: process.version,
    v8: process.versions.v8,
    loadavg: loadavg().map((x) => Number(x.toFixed(2))),
  };
  console.log(
    `asm-llm-proxy benchmark: ${ROUNDS} rounds after ${WARMUP} warm-up, median (min..max) over rounds.\n` +
      `Machine: ${machine.cpu}, ${machine.cores} cores, load average ${machine.loadavg.join(" ")} at the start, Node ${machine.node}.\n`,
  );

  // 1 + 2: guest time and host calls.
  console.log("## Guest time per call, lean host (µs; the plugin's default configuration)\n");
  const head = hasNoSimd
    ? "| call | plugin | floor | plugin / floor | plugin without SIMD | without SIMD / floor |\n|---|---|---|---|---|---|"
    : "| call | plugin | floor | plugin / floor |\n|---|---|---|---|";
  console.log(head);
  const guest: Array<Record<string, unknown>> = [];
  const hostCalls: Array<Record<string, unknown>> = [];
  for (const sc of SCENARIOS) {
    const call = new Call(sc.exchange);
    const plugin = await leanHost(modules.plugin, sc.config);
    const floor = await leanHost(modules.floor);
    const hosts = [plugin, floor];
    const nosimd = modules.nosimd ? await leanHost(modules.nosimd, sc.config) : null;
    if (nosimd) hosts.push(nosimd);
    const [p, f, n] = timeInterleaved(hosts, call, sc.perRound);
    const row: Record<string, unknown> = { call: sc.name, plugin: p, floor: f, ratio: p.median / f.median };
    if (n) Object.assign(row, { nosimd: n, nosimdRatio: n.median / f.median });
    guest.push(row);
    console.log(
      `| ${sc.name} | ${fmtStats(p)} | ${fmtStats(f)} | ${fmt(p.median / f.median, 1)}× |` +
        (n ? ` ${fmtStats(n)} | ${fmt(n.median / f.median, 1)}× |` : ""),
    );
    // Host calls of one call, counted after the warm-up (metrics already defined).
    for (const [h, name] of [
      [plugin, "plugin"],
      [floor, "floor"],
    ] as const) {
      h.resetCounts();
      h.counting = true;
      h.run(call);
      h.counting = false;
      const byName = Object.fromEntries([...h.calls.entries()].sort((a, b) => b[1] - a[1]));
      const total = [...h.calls.values()].reduce((a, b) => a + b, 0);
      hostCalls.push({ call: sc.name, module: name, total, byName });
    }
  }

  console.log("\n## Host calls per call (after warm-up; each costs about 0.1-0.3 µs in Envoy)\n");
  console.log("| call | plugin | floor | the plugin's calls |\n|---|---|---|---|");
  for (const sc of SCENARIOS) {
    const p = hostCalls.find((r) => r.call === sc.name && r.module === "plugin")!;
    const f = hostCalls.find((r) => r.call === sc.name && r.module === "floor")!;
    const detail = Object.entries(p.byName as Record<string, number>)
      .map(([k, v]) => `${k.replace("proxy_", "")} ${v}`)
      .join(", ");
    console.log(`| ${sc.name} | ${p.total} | ${f.total} | ${detail} |`);
  }

  // 3: allocations, with the counting build (the same code, unoptimised, with counters).
  console.log("\n## Allocations (debug build with counters; counts, not times)\n");
  console.log(
    "| call | managed objects per call | allocator blocks per call (objects + host buffers) | managed objects per body chunk (all chunks but the last) | collections per call |\n|---|---|---|---|---|",
  );
  const allocations: Array<Record<string, unknown>> = [];
  for (const sc of SCENARIOS) {
    const call = new Call(sc.exchange);
    const h = await leanHost(modules.counting, sc.config);
    const ex = h.exports;
    for (let i = 0; i < 64; i++) h.run(call);
    const n = sc.perRound >= 1000 ? 640 : 64;
    const o0 = ex.bench_objects.value;
    const b0 = ex.bench_blocks.value;
    const c0 = ex.bench_collections.value;
    for (let i = 0; i < n; i++) h.run(call);
    const collections = (ex.bench_collections.value - c0) / n;
    const objects = (ex.bench_objects.value - o0) / n;
    const blocks = (ex.bench_blocks.value - b0) / n;
    // Per chunk: the same exchange with its body cut short of its last chunk, against the first
    // chunk only; chunks in between must cost nothing.
    let perChunk = NaN;
    const body = sc.exchange.responseBody;
    if (body.length > 2) {
      const few = new Call({ ...sc.exchange, responseBody: [body[0], body[body.length - 1]] });
      const many = call;
      for (let i = 0; i < 8; i++) h.run(few);
      const f0 = ex.bench_objects.value;
      for (let i = 0; i < 64; i++) h.run(few);
      const fewObjects = (ex.bench_objects.value - f0) / 64;
      const m0 = ex.bench_objects.value;
      for (let i = 0; i < 64; i++) h.run(many);
      const manyObjects = (ex.bench_objects.value - m0) / 64;
      perChunk = (manyObjects - fewObjects) / (body.length - 2);
    }
    allocations.push({ call: sc.name, objects, blocks, perChunk, collections });
    console.log(
      `| ${sc.name} | ${fmt(objects, 2)} | ${fmt(blocks, 2)} | ${fmt(perChunk, 3)} | ${fmt(collections, 4)} |`,
    );
  }

  // The collector's pause: proxy_on_delete timed one by one on the release build; the minimal
  // runtime collects in it every 32 streams (and after a burst of new metric definitions).
  let pauses: number[] = [];
  let plain: number[] = [];
  {
    const h = await leanHost(modules.plugin);
    const call = new Call(SCENARIOS[0].exchange);
    for (let i = 0; i < 2000; i++) h.run(call);
    h.deleteTimes = [];
    for (let i = 0; i < 32 * 300; i++) h.run(call);
    // One delete in 32 collects: the slowest 1/32 of them.
    const sorted = [...h.deleteTimes].sort((a, b) => a - b);
    const cut = sorted.length - sorted.length / 32;
    pauses = sorted.slice(cut);
    plain = sorted.slice(0, cut);
  }
  const pause = stats(pauses);
  const plainDelete = stats(plain);
  console.log(
    `\nCollector: a collection every 32 streams takes ${fmtStats(pause, 1)} µs (proxy_on_delete that collects; one without: ${fmtStats(plainDelete, 2)} µs), ` +
      `${fmt(pause.median / 32, 2)} µs per stream amortised.`,
  );

  // 4: linear memory.
  const memory: Record<string, number> = {};
  {
    const seed = new Call(SCENARIOS[0].exchange);
    const h = await leanHost(modules.plugin);
    memory.start = h.memoryBytes;
    for (let i = 0; i < 1000; i++) h.run(seed);
    memory.afterWarmup = h.memoryBytes;
    for (let i = 0; i < 100000; i++) h.run(seed);
    memory.after100kCalls = h.memoryBytes;
    const stream = new Call(SCENARIOS[3].exchange);
    const big = new Call(SCENARIOS[4].exchange);
    for (let i = 0; i < 200; i++) h.run(stream);
    for (let i = 0; i < 20; i++) h.run(big);
    memory.afterStreamsAndLargeBodies = h.memoryBytes;
    const m = await leanHost(modules.plugin);
    const models = Array.from(
      { length: 1000 },
      (_, i) =>
        new Call({
          ...SCENARIOS[0].exchange,
          requestBody: [enc.encode(JSON.stringify({ model: `model-${i}-of-a-thousand`, messages: [] }))],
        }),
    );
    for (const c of models) m.run(c);
    memory.models1000 = m.memoryBytes;
    for (let round = 0; round < 20; round++) for (const c of models) m.run(c);
    memory.models1000After21Rounds = m.memoryBytes;
    memory.floor = (await leanHost(modules.floor)).memoryBytes;
  }
  const kib = (b: number) => `${b / 1024} KiB`;
  console.log(
    `\nLinear memory per VM: ${kib(memory.start)} at start, ${kib(memory.afterWarmup)} after 1,000 seed calls, ` +
      `${kib(memory.after100kCalls)} after 100,000 more, ${kib(memory.afterStreamsAndLargeBodies)} after 200 streams and 20 bodies of 1 MB; ` +
      `with 1,000 distinct models ${kib(memory.models1000)} after the first round, ${kib(memory.models1000After21Rounds)} after 20 more ` +
      `(floor: ${kib(memory.floor)}).`,
  );

  // 5: scanner throughput.
  const scanners = {
    simd: (await WebAssembly.instantiate(readFileSync(scanPath), { env: {} })).instance.exports as any,
    nosimd: (await WebAssembly.instantiate(readFileSync(scanNoSimdPath), { env: {} })).instance
      .exports as any,
  };
  const sse300 = join(STREAM_300);
  const sse40k = join(streamEvents(40000));
  const bodies: Array<{ name: string; bytes: Uint8Array; sse: boolean; events?: number }> = [
    { name: `seed response, ${SEED_RESPONSE.length} B`, bytes: SEED_RESPONSE, sse: false },
    { name: `dense response, ${DENSE_1K.length} B`, bytes: DENSE_1K, sse: false },
    { name: `dense response, ${DENSE_4K.length} B`, bytes: DENSE_4K, sse: false },
    { name: `event stream, 300 events, ${sse300.length} B`, bytes: sse300, sse: true, events: 300 },
    { name: `chat completion, ${fmt(CHAT_1M.length / 1e6)} MB`, bytes: CHAT_1M, sse: false },
    { name: `chat completion, ${fmt(CHAT_8M.length / 1e6)} MB`, bytes: CHAT_8M, sse: false },
    {
      name: `event stream, 40,000 events, ${fmt(sse40k.length / 1e6)} MB`,
      bytes: sse40k,
      sse: true,
      events: 40000,
    },
  ];
  const parseSse = (text: string) => {
    let n = 0;
    for (const line of text.split("\n"))
      if (line.startsWith("data: {")) n += JSON.parse(line.slice(6)) ? 1 : 0;
    return n;
  };
  console.log("\n## Scanner throughput (MB/s; the plugin's parsers alone, next to V8's JSON.parse)\n");
  console.log(
    "| body | scanner | scanner without SIMD | JSON.parse of the bytes (decode + parse) | JSON.parse of a ready string | scanner / JSON.parse of the bytes |\n|---|---|---|---|---|---|",
  );
  const tp: Array<Record<string, unknown>> = [];
  for (const b of bodies) {
    const inner = Math.max(1, Math.round(2_000_000 / b.bytes.length));
    const res: Record<string, Stats> = {};
    for (const [k, ex] of Object.entries(scanners)) {
      const ptr = ex.alloc(b.bytes.length);
      new Uint8Array(ex.memory.buffer).set(b.bytes, ptr);
      const len = b.bytes.length;
      if (b.sse) {
        if (ex.scanSse(ptr, len, 16384) !== b.events)
          throw new Error(`${k}: SSE reader missed events of ${b.name}`);
        res[k] = throughput(len, inner, () => ex.scanSse(ptr, len, 16384));
      } else {
        if (ex.scanJson(ptr, len, 16384) !== 1) throw new Error(`${k}: scanner refused ${b.name}`);
        res[k] = throughput(len, inner, () => ex.scanJson(ptr, len, 16384));
      }
    }
    const text = dec.decode(b.bytes);
    const parse = b.sse ? parseSse : (t: string) => JSON.parse(t);
    res.jsonParseOfBytes = throughput(b.bytes.length, inner, () => parse(dec.decode(b.bytes)));
    res.jsonParseOfString = throughput(b.bytes.length, inner, () => parse(text));
    const ratio = res.simd.median / res.jsonParseOfBytes.median;
    tp.push({ body: b.name, bytes: b.bytes.length, ...res, ratio });
    console.log(
      `| ${b.name} | ${fmtStats(res.simd, 0)} | ${fmtStats(res.nosimd, 0)} | ${fmtStats(res.jsonParseOfBytes, 0)} | ${fmtStats(res.jsonParseOfString, 0)} | ${fmt(ratio, 1)}× |`,
    );
  }

  // 6: total time in the TypeScript test host, as before.
  console.log(
    "\n## Total time per stream in the TypeScript test host (µs; its own JavaScript included, the same for all three modules)\n",
  );
  console.log(
    "| call | plugin | floor | buffer + JSON library | plugin / floor | buffering / floor |\n|---|---|---|---|---|---|",
  );
  const testHost: Array<Record<string, unknown>> = [];
  const th: Record<string, ProxyWasmHost> = {};
  for (const [name, m] of [
    ["plugin", modules.plugin],
    ["floor", modules.floor],
    ["buffering", modules.buffering],
  ] as const) {
    th[name] = new ProxyWasmHost(m, { nodeMetadata: NODE_METADATA });
    await th[name].start();
  }
  for (const sc of SCENARIOS.filter(
    (s) => !s.name.startsWith("4 KB") && !s.name.startsWith("non-LLM POST"),
  )) {
    const x = sc.exchange;
    const run = (h: ProxyWasmHost) => {
      const s = h.stream({ cluster: x.properties["xds\0cluster_name"] });
      s.sendRequestHeaders(x.requestHeaders, x.requestBody.length === 0);
      x.requestBody.forEach((b, i) => s.sendRequestBody(b, i === x.requestBody.length - 1));
      s.sendResponseHeaders(x.responseHeaders, x.responseBody.length === 0);
      x.responseBody.forEach((b, i) => s.sendResponseBody(b, i === x.responseBody.length - 1));
      s.end();
    };
    const per = Math.max(5, Math.round(sc.perRound / 4));
    const res: Record<string, Stats> = {};
    const samples: Record<string, number[]> = { plugin: [], floor: [], buffering: [] };
    for (let round = 0; round < WARMUP + ROUNDS; round++) {
      for (const name of Object.keys(samples)) {
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < per; i++) run(th[name]);
        if (round >= WARMUP) samples[name].push(Number(process.hrtime.bigint() - t0) / 1000 / per);
      }
    }
    for (const [k, v] of Object.entries(samples)) res[k] = stats(v);
    for (const h of Object.values(th)) if (h.traps.length > 0) throw h.traps[0];
    testHost.push({ call: sc.name, ...res });
    console.log(
      `| ${sc.name} | ${fmtStats(res.plugin, 1)} | ${fmtStats(res.floor, 1)} | ${fmtStats(res.buffering, 1)} | ${fmt(res.plugin.median / res.floor.median, 1)}× | ${fmt(res.buffering.median / res.floor.median, 1)}× |`,
    );
  }

  const wasm = readFileSync(PLUGIN);
  const size: Record<string, number> = { raw: wasm.length, gzip: gzipSync(wasm, { level: 9 }).length };
  if (hasNoSimd) size.nosimd = readFileSync(PLUGIN_NOSIMD).length;
  console.log(
    `\nRelease module: ${size.raw} bytes (${size.gzip} gzipped)` +
      (hasNoSimd ? `; without SIMD: ${size.nosimd} bytes.` : ".") +
      `\nThe machine is shared (load average ${loadavg()
        .map((x) => x.toFixed(2))
        .join(" ")} at the end): times move between runs, counts and memory do not.`,
  );

  mkdirSync(ROOT + "build", { recursive: true });
  writeFileSync(
    ROOT + "build/bench.json",
    JSON.stringify(
      {
        rounds: ROUNDS,
        warmup: WARMUP,
        guest,
        hostCalls,
        allocations,
        collector: { pause, plainDelete },
        memory,
        throughput: tp,
        testHost,
        size,
        machine,
      },
      null,
      2,
    ) + "\n",
  );
  console.log("\nWritten: build/bench.json");
}

await main();
